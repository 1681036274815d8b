/** Store failures, with a stable code; kept apart from the LMDB adapter so the CLI can
 * recognise them without loading the native module. */
export type StoreErrorCode = 'schema_mismatch' | 'not_initialised' | 'io' | 'disk_full' | 'corrupt';

export class StoreError extends Error {
  /**
   * A refused change that may have been stored all the same: its journal write failed, and so did
   * the write that should have voided what of it reached the disk (runtime-writer.ts). Such a
   * change can be in effect after the next start; the client is told to check before repeating it.
   */
  readonly mayBeStored: boolean;

  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown; mayBeStored?: boolean },
  ) {
    super(message, options);
    this.name = 'StoreError';
    this.mayBeStored = options?.mayBeStored ?? false;
  }
}

