/**
 * The serving actions' claim on their database: one serving agent per
 * database (the store keeps the latest runtime state in memory; see
 * store/runtime-writer.ts). A second one is refused with exit 8.
 */
import { RuntimeWriterTakenError, type AssetStore } from '../../store/asset-store.ts';
import { CliError, EXIT } from '../exit-codes.ts';

export function claimRuntimeWriter(store: AssetStore, port: number, nowMs: number): void {
  try {
    store.claimRuntimeWriter(`pid ${process.pid}, port ${port}, since ${new Date(nowMs).toISOString()}`);
  } catch (error) {
    if (error instanceof RuntimeWriterTakenError) {
      throw new CliError(`${error.message}; stop it first, or serve another working directory`, EXIT.server, { cause: error });
    }
    throw error;
  }
}
