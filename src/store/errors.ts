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

/**
 * LMDB's names for a damaged file, as lmdb-js puts them in its messages: a page that is not where
 * a pointer says (PAGE_NOTFOUND), a page of the wrong type (CORRUPTED), no LMDB file at all
 * (INVALID), a sub-database record that is not one (INCOMPATIBLE), a format LMDB does not know
 * (VERSION_MISMATCH), and a transaction a damaged cursor made invalid (BAD_TXN, "Invalid dupdata
 * flag"). LMDB has no page checksums: damage shows only when the damaged page is read.
 */
const LMDB_DAMAGE = /\bMDB_(?:PAGE_NOTFOUND|CORRUPTED|INVALID|INCOMPATIBLE|VERSION_MISMATCH|BAD_TXN)\b/;

/** Damage found by the store's own checks (lmdb.ts: a data file shorter than its pages). */
export class DatabaseDamageError extends Error {
  override name = 'DatabaseDamageError';
}

/** A read-only open found no sub-database of this name (lmdb.ts): a database never initialised, or one whose main tree is damaged. */
export class MissingSubDatabaseError extends Error {
  override name = 'MissingSubDatabaseError';
  constructor(readonly subDatabase: string) {
    super(`it has no sub-database "${subDatabase}"`);
  }
}

/** Whether an error is LMDB (or the store's own check) reporting a damaged database file (not a full disk, not a bug of ours). */
export function isDatabaseDamage(error: unknown): boolean {
  return error instanceof DatabaseDamageError || (error instanceof Error && LMDB_DAMAGE.test(error.message));
}

/** What an operator is told about a damaged database, wherever it shows (verify-database: without pointing to itself). */
export function damagedDatabaseAdvice(path: string, options: { verifying?: boolean } = {}): string {
  const restore = `restore the latest backup of ${path} (README, "verify-database, backup, status") or import into a new directory`;
  return options.verifying ? restore : `${restore}; --action=verify-database shows what is damaged`;
}

/** The StoreError for LMDB's report of damage (`cause`, kept as the error's cause) in the database at `path`. */
export function damagedDatabase(path: string, cause: unknown): StoreError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new StoreError('corrupt', `the database in ${path} is damaged (${detail}): ${damagedDatabaseAdvice(path)}`, { cause });
}
