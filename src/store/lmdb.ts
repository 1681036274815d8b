/**
 * The only file that imports `lmdb`. It opens the environment with every
 * durability-relevant option written out (never library defaults), and
 * exposes the few operations the store needs.
 *
 * Durability of an LMDB write: it is *durable* when LMDB has committed its
 * transaction and the OS has reported the data synced to the storage device
 * (fdatasync). `commitDurable` resolves only then. A process killed with
 * SIGKILL after that point, or the machine losing power, still finds the
 * write on restart; a write whose promise had not resolved may or may not be
 * there, but never half of it (LMDB transactions are atomic). Runtime counter
 * changes are durable earlier, in the runtime journal file (runtime-wal.ts),
 * and reach LMDB in checkpoints (runtime-writer.ts) that use this.
 */
import { loadLibc, MADV_DONTNEED } from '../platform/libc.ts';
import { closeSync, fdatasyncSync, openSync, readFileSync, realpathSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { DatabaseDamageError, MissingSubDatabaseError } from './errors.ts';

export type KvKey = string | number | (string | number)[];

export interface KvRange {
  start?: KvKey;
  end?: KvKey;
  limit?: number;
  offset?: number;
  reverse?: boolean;
}

/** The subset of an LMDB database the store uses; values are msgpack-encoded. */
export interface KvDatabase<V> {
  get(key: KvKey): V | undefined;
  /**
   * Inside a transaction callback: written immediately to that transaction.
   * With `noOverwrite`, an existing key is left alone and false is returned
   * (one B-tree descent instead of a read followed by a write).
   */
  putSync(key: KvKey, value: V, options?: { noOverwrite?: boolean }): boolean;
  /** Inside a `commitBatchDurable` callback only: queues the write into that batch. */
  putInBatch(key: KvKey, value: V): void;
  removeSync(key: KvKey): boolean;
  /** Whether the key exists, without decoding its value. */
  doesExist(key: KvKey): boolean;
  /**
   * Inside a transaction callback: empties the sub-database in that
   * transaction. LMDB frees the pages without rewriting them (mdb_drop),
   * so this is quick even for millions of entries.
   */
  clearSync(): void;
  getRange(range: KvRange): Iterable<{ key: KvKey; value: V }>;
  getKeys(range: KvRange): Iterable<KvKey>;
  getCount(range: KvRange): number;
}

export interface KvEnvironment {
  /** A sub-database; created unless read-only (read-only, a missing one throws MissingSubDatabaseError). */
  open<V>(name: string): KvDatabase<V>;
  /** Whether the main tree names any sub-database (a database an open has initialised). */
  holdsSubDatabases(): boolean;
  /** Whether any transaction was ever committed: a new file holds only LMDB's two meta pages. */
  holdsPages(): boolean;
  /** Runs `action` in one write transaction, batched with others of the same event turn; resolves once durable. */
  commitDurable<T>(action: () => T): Promise<T>;
  /**
   * Queues the writes `queue` makes with `putInBatch` as one block that LMDB's
   * write thread applies in a single transaction (with other queued writes,
   * never split); resolves once that transaction is durable. Unlike
   * `commitDurable`, nothing runs on this thread inside the transaction: the
   * write thread does the B-tree work, and there is no round trip to the
   * event loop between starting the transaction and committing it — under
   * load that round trip waited behind every request of the turn (~1 ms).
   * Values are encoded when `putInBatch` is called.
   */
  commitBatchDurable(queue: () => void): Promise<void>;
  /**
   * Runs `action` in one synchronous write transaction; durable (committed and
   * fdatasync'ed) when it returns. Blocks the calling thread while another
   * writer (thread or process) holds LMDB's write lock; keep it small where a
   * server may be writing (the import's staging batches).
   */
  commitSync<T>(action: () => T): T;
  /** Consistent online copy of the whole environment (LMDB's mdb_env_copy with compaction). */
  backup(path: string): Promise<void>;
  /**
   * Drops this process's mapping of the database file's pages; they stay in
   * the OS page cache and are mapped again when read. LMDB reads through a
   * memory map, and each write transaction faults in the pages it reads
   * (the tree paths the previous one wrote): without this, a process that
   * commits thousands of transactions (an import) grows its resident set
   * with the database. Safe at any time (Linux; elsewhere it does nothing).
   */
  releaseMappedPages(): void;
  close(): Promise<void>;
  readonly path: string;
}

export interface OpenOptions {
  readOnly?: boolean;
  /** Test hook: makes every write fail as if the disk were full. */
  failWrites?: () => Error | undefined;
}

/** Address ranges where this process maps `file` (from /proc/self/maps). */
function mappingsOf(file: string): [bigint, bigint][] {
  const ranges: [bigint, bigint][] = [];
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    if (!line.endsWith(` ${file}`)) continue;
    const [start, end] = line.slice(0, line.indexOf(' ')).split('-');
    ranges.push([BigInt(`0x${start}`), BigInt(`0x${end}`)]);
  }
  return ranges;
}

/**
 * lmdb-js rejects a failed commit with "Commit failed" and keeps the real cause
 * (ENOSPC, EIO…) in a second promise, rejected in the same tick: surface that cause.
 */
async function withCommitCause<T>(commit: Promise<T>): Promise<T> {
  try {
    return await commit;
  } catch (error) {
    const detail = (error as { commitError?: Promise<unknown> }).commitError;
    if (detail) {
      const cause = await detail.then(
        () => undefined,
        (e: unknown) => e,
      );
      if (cause instanceof Error) throw new Error(`${cause.message} (code ${String((cause as { code?: unknown }).code)})`, { cause });
    }
    throw error;
  }
}

/** lmdb-js's environment object, which its typings leave out: LMDB's mdb_env_info and mdb_env_stat. */
function lmdbEnv(root: RootDatabase): { info(): { lastPageNumber: number }; stat(): { pageSize: number } } {
  return (root as unknown as { env: ReturnType<typeof lmdbEnv> }).env;
}

/**
 * A data file shorter than the pages its newest meta page counts (a copy cut short, a file system
 * repair) would be read past its end through the memory map, and the kernel ends the process
 * (SIGBUS) at the first such read: refused here, at open, with what it is. LMDB writes a
 * transaction's pages before the meta page that counts them and never shrinks the file, but it
 * may count free pages it never wrote (coverCountedPages, below): every commit of this
 * module covers those at once, so a sound database this agent wrote is not shorter, but for a
 * crash in the moment between a commit and that.
 */
function assertFileHoldsPages(root: RootDatabase, path: string): void {
  const file = join(path, 'data.mdb');
  // Another process may have just committed, and not yet covered, free pages after the file's end
  // (coverCountedPages, milliseconds later): a file short for longer than this is cut short.
  for (let attempt = 0; ; attempt++) {
    const needed = countedBytes(root);
    const size = statSync(file).size;
    if (size >= needed) return;
    if (attempt === COVER_WAIT_ATTEMPTS) throw new DatabaseDamageError(`${file} is cut short: ${size} bytes, its pages need ${needed}`);
    shortFileWaitCount += 1;
    Atomics.wait(SLEEP_CELL, 0, 0, COVER_WAIT_MS);
  }
}

/** The bytes of the pages LMDB's newest meta page counts. */
function countedBytes(root: RootDatabase): number {
  const env = lmdbEnv(root);
  return (env.info().lastPageNumber + 1) * env.stat().pageSize;
}

/** assertFileHoldsPages: looks again this many times, this many ms apart, before it refuses a short file. */
const COVER_WAIT_ATTEMPTS = 4;
const COVER_WAIT_MS = 50;
const SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));
let shortFileWaitCount = 0;

/** How often an open of this process has waited for a short data file to be covered (tests). */
export function shortFileWaits(): number {
  return shortFileWaitCount;
}

export function openKvEnvironment(path: string, options: OpenOptions = {}): KvEnvironment {
  const root: RootDatabase = open({
    // Start a transaction at the first queued write (not lmdb's default of 5 when
    // eventTurnBatching is off): lower latency; later writes join the next one.
    ...({ txnStartThreshold: 1 } as object),
    path,
    // Durability: fsync on every commit; never skip metadata sync; no write map
    // (a stray pointer must not corrupt the file).
    noSync: false,
    noMetaSync: false,
    useWritemap: false,
    // The commit itself syncs (fdatasync before the commit promise resolves).
    // Measured here: overlappingSync (flush after commit, outside the writer
    // lock) gave 190 durable writes/s with p99 > 600 ms under 64 connections,
    // because each acknowledgement then waits for a separate, later flush;
    // syncing inside the commit gave ~11,800/s with p99 8 ms (group commit).
    overlappingSync: false,
    // Group commit: transactions queued while the write thread is busy (or within
    // one event turn) share one LMDB transaction and one flush. eventTurnBatching
    // stays off: its internal batch promise is rejected unobserved when a commit
    // fails (disk full), which would end the process; queued transactions are
    // still combined without it.
    eventTurnBatching: false,
    commitDelay: 0,
    // Definitions exist in two generations (asset-store.ts): 3 + 2 × 13 sub-databases
    // are used; the rest is room for later ones.
    maxDbs: 48,
    maxReaders: 256,
    // 1 TiB of address space; the file only grows as data is written.
    mapSize: 2 ** 40,
    compression: false,
    readOnly: options.readOnly ?? false,
  });

  try {
    assertFileHoldsPages(root, path);
  } catch (error) {
    void root.close();
    throw error;
  }

  const dataFile = join(path, 'data.mdb');
  /**
   * Makes the data file at least as long as the pages LMDB's newest meta page counts, which the
   * open refuses a file for (assertFileHoldsPages). A transaction that allocates pages and frees
   * them again leaves free pages after the file's end: "the file may be shorter if the freeDB
   * lists the final pages" (LMDB's mdb.c, MDB_meta.mm_last_pg): measured after a batch of 20
   * deletes (compact-journal's) and after run-agent's cache purge. Run after every commit below
   * (4.5-5.0 µs when there is nothing to cover, measured); a crash between a commit and it leaves a file the
   * open refuses. Never throws: the commit before it succeeded, and a write that fails here (the
   * disk full) is tried again after the next commit.
   */
  const coverCountedPages = () => {
    try {
      coverOnce();
    } catch {
      // Left short until a later commit covers it; an open meanwhile refuses the file (README, "A damaged database").
    }
  };
  const coverOnce = () => {
    if (options.readOnly || statSync(dataFile).size >= countedBytes(root)) return;
    // Inside a write transaction that writes nothing: LMDB's write lock keeps every other writer
    // (thread or process) out, so the pages after the file's end stay free and untouched while
    // one byte at the end of the last of them extends the file; LMDB writes such a page whole
    // before it reads it. fdatasync: a crash after this must not bring the short file back.
    root.transactionSync(() => {
      const needed = countedBytes(root);
      if (statSync(dataFile).size >= needed) return;
      const fd = openSync(dataFile, 'r+');
      try {
        writeSync(fd, Buffer.alloc(1), 0, 1, needed - 1);
        fdatasyncSync(fd);
      } finally {
        closeSync(fd);
      }
    });
  };

  // The map has a fixed size (mapSize) and stays where it is: the file and its mappings are looked up once.
  let mapped: { file: string; ranges: [bigint, bigint][] } | undefined;
  const wrap = <V>(db: Database<V, KvKey>): KvDatabase<V> => ({
    get: (key) => db.get(key),
    putSync: (key, value, putOptions) => {
      const failure = options.failWrites?.();
      if (failure) throw failure;
      // lmdb-js types putSync as void; it returns whether the write happened.
      const written = putOptions?.noOverwrite ? db.putSync(key, value, { noOverwrite: true }) : db.putSync(key, value);
      return (written as unknown as boolean) !== false;
    },
    // Inside root.batch the returned promise is a shared placeholder: the batch's promise reports the outcome.
    putInBatch: (key, value) => void db.put(key, value),
    removeSync: (key) => db.removeSync(key),
    doesExist: (key) => db.doesExist(key),
    clearSync: () => {
      const failure = options.failWrites?.();
      if (failure) throw failure;
      db.clearSync();
    },
    getRange: (range) => db.getRange(range as Parameters<typeof db.getRange>[0]),
    getKeys: (range) => db.getKeys(range as Parameters<typeof db.getKeys>[0]),
    getCount: (range) => db.getCount(range as Parameters<typeof db.getCount>[0]),
  });

  return {
    path,
    open<V>(name: string) {
      const db = root.openDB<V, KvKey>({ name, compression: false }) as Database<V, KvKey> | undefined;
      // Read-only, a sub-database that does not exist is not created: lmdb-js gives undefined.
      if (db === undefined) throw new MissingSubDatabaseError(name);
      return wrap(db);
    },
    holdsSubDatabases() {
      for (const _ of root.getKeys({ limit: 1 })) return true;
      return false;
    },
    holdsPages: () => lmdbEnv(root).info().lastPageNumber > 1,
    async commitDurable<T>(action: () => T): Promise<T> {
      const result = (await withCommitCause(root.transaction(action))) as T;
      // Belt and braces: without overlappingSync the commit already synced, and
      // `flushed` resolves at once; should the option ever change, it still waits.
      await root.flushed;
      coverCountedPages();
      return result;
    },
    async commitBatchDurable(queue: () => void): Promise<void> {
      // Checked once, before anything is queued: a failing batch must not leave half its writes queued.
      const failure = options.failWrites?.();
      if (failure) throw failure;
      await withCommitCause(root.batch(queue));
      await root.flushed;
      coverCountedPages();
    },
    commitSync<T>(action: () => T): T {
      const result = root.transactionSync(action);
      coverCountedPages();
      return result;
    },
    async backup(target: string) {
      await root.backup(target, true);
    },
    releaseMappedPages() {
      // Where libc cannot be loaded (platform/libc.ts) the mapping is kept as it is.
      const advise = loadLibc()?.madvise;
      if (!advise) return;
      try {
        if (mapped === undefined || mapped.ranges.length === 0) {
          const file = realpathSync(join(path, 'data.mdb'));
          mapped = { file, ranges: mappingsOf(file) };
        }
        const size = (BigInt(statSync(mapped.file).size) + 4095n) & ~4095n;
        for (const [start, end] of mapped.ranges) advise(start, end - start < size ? end - start : size, MADV_DONTNEED);
      } catch {
        // Only a memory optimisation: never fail a write because of it.
      }
    },
    async close() {
      await root.close();
    },
  };
}
