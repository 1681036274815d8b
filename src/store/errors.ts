/** Store failures, with a stable code; kept apart from the LMDB adapter so the CLI can
 * recognise them without loading the native module. */
export type StoreErrorCode = 'schema_mismatch' | 'not_initialised' | 'io' | 'disk_full' | 'corrupt';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreError';
  }
}

