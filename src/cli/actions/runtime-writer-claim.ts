/**
 * The serving actions' claim on their database: one serving agent per
 * database (the store keeps the latest runtime state in memory; see
 * store/runtime-writer.ts). A second one is refused with exit 8.
 */
import { logEvery, type Logger } from '../../platform/log.ts';
import { RuntimeWriterTakenError, type AssetStore, type OpenStoreOptions } from '../../store/asset-store.ts';
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

/** Log lines for the runtime journal file (store/runtime-wal.ts): what was applied at open, failing checkpoints. */
export function runtimeJournalLogging(log: Pick<Logger, 'info' | 'warn'>): Pick<OpenStoreOptions, 'onRecovered' | 'onCheckpointError'> {
  // Retried every second while it fails: one line a minute says it still does.
  const every = logEvery(60_000);
  return {
    onRecovered: (entries) =>
      log.info(`applied ${entries} journal entr${entries === 1 ? 'y' : 'ies'} that a stopped server had made durable only in database/runtime.wal`),
    onCheckpointError: (error) => {
      const { log: due, suppressed } = every(error.message, Date.now());
      if (!due) return;
      log.warn(
        'runtime changes could not be copied into the database yet (they are durable in database/runtime.wal; ' +
          `the copy is retried, and the next start applies them at the latest): ${error.message}` +
          (suppressed > 0 ? ` (${suppressed} more times since the last report)` : ''),
      );
    },
  };
}
