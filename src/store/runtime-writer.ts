/**
 * Runtime state writes of a serving agent: decide in memory, commit in groups.
 *
 * The serving process is the only writer of runtime state (the store's
 * claimRuntimeWriter lock, platform/exclusive-lock.ts, keeps a second server
 * off the same database; imports write definitions only). So the latest runtime state of a licensee
 * — the durable state plus the changes already decided and queued — can live
 * in memory, and every change is decided exactly once, synchronously, against
 * it: the JavaScript event loop serialises deciders, so two check-outs for the
 * last seat cannot both see it free.
 *
 * Decided changes (new state snapshot, journal entry, replay entry) are queued
 * and written by ONE LMDB write transaction at a time: everything queued while
 * the previous transaction was committing goes into the next one (group
 * commit), sharing its fdatasync. A change is acknowledged — its promise
 * resolves — only when the transaction holding it is durable (see lmdb.ts).
 *
 * No dirty reads: a decision without changes for a licensee that has queued,
 * not yet durable changes is answered only once those are durable; if their
 * transaction fails, that answer fails too. A failed transaction fails every
 * queued change (they were decided on top of it) and the memory is reloaded
 * from the database, which still holds the last durable state.
 */
import { applyEventsInPlace, emptyRuntimeState, type FloatingSession, type RuntimeEvent, type RuntimeState } from '../core/runtime.ts';
import type { JournalEntryBody, JournalRecord } from './journal-records.ts';
import type { KvDatabase, KvEnvironment, KvKey } from './lmdb.ts';

/**
 * A licensee's runtime state as stored (msgpack): schema 2 stores the state as
 * it is in memory, session tables as Maps (encoding a Map of 64 sessions took
 * 7.5 µs, converting it to an object and encoding that 58 µs: new keys on
 * every check-out defeat msgpackr's records). Schema 1 stored them as objects;
 * `runtimeStateOf` reads both.
 */
export interface RuntimeRecord {
  licenseeNumber: string;
  state: RuntimeState | SchemaOneRuntimeState;
}

type SchemaOneRuntimeState = Omit<RuntimeState, 'sessions'> & { sessions: Record<string, Record<string, FloatingSession>> };

export function runtimeStateOf(record: RuntimeRecord | undefined): RuntimeState {
  if (record === undefined) return emptyRuntimeState();
  const stored = record.state;
  for (const moduleNumber in stored.sessions) {
    if (!(stored.sessions[moduleNumber] instanceof Map)) {
      const sessions: RuntimeState['sessions'] = {};
      for (const [number, table] of Object.entries(stored.sessions)) {
        const map = table instanceof Map ? table : new Map(Object.entries(table));
        if (map.size > 0) sessions[number] = map;
      }
      return { ...stored, sessions };
    }
  }
  return stored as RuntimeState;
}

/**
 * The journal is hash-chained per group commit: one link, and one stored
 * record, for the entries one transaction wrote (journal-records.ts). A group
 * of one is hashed exactly as earlier databases hashed every entry, so their
 * journals verify unchanged. Hashing once per group instead of once per
 * entry: Floating check-out/check-in pairs went from 34,100–35,500 req/s
 * (4 runs) to 36,700–37,300 (2 runs), wrk -t1 -c64 on the 2-core machine.
 */
export type { JournalEntry } from './journal-records.ts';

export interface JournalHead {
  seq: number;
  hash: string;
}

/** What a decision adds besides runtime events: the proxy's replay entry. */
export interface ExtraRecord {
  key: KvKey;
  value: unknown;
}

export interface RuntimeWriterDeps {
  env: KvEnvironment;
  runtimeDb: KvDatabase<RuntimeRecord>;
  journalDb: KvDatabase<JournalRecord>;
  metaDb: KvDatabase<unknown>;
  keyOf(licenseeNumber: string): string;
  readJournalHead(): JournalHead;
  /** The record of a group commit and its chain link (journal-records.ts, journalGroupRecord). */
  journalGroupRecord(prevHash: string, entries: readonly JournalEntryBody[]): { hash: string; record: string };
  /** Turns a commit failure into the store's error (disk full, I/O). */
  wrapWriteError(cause: unknown): Error;
  /** Called whenever the memory is reloaded from the database (after a failed commit or an exclusive write). */
  onReload?(): void;
  /** Most licensees kept in memory (those with queued changes are never dropped). */
  licenseesInMemoryMax?: number;
}

export interface Decision<R> {
  events: RuntimeEvent[];
  result: R;
}

/** Proxy hook: records to write with the change (its replay entry); called only when there are events. */
export type ExtraRecords<R> = (result: R, events: RuntimeEvent[]) => ExtraRecord[];

export interface RuntimeWriter {
  /** A number that changes whenever the licensee's latest state changes (never reused in this process). */
  revision(licenseeNumber: string): number;
  /**
   * Decides against the latest state now and queues the events; resolves
   * with the result once they (and everything the decision saw) are durable.
   */
  commit<R>(licenseeNumber: string, atMs: number, decide: (state: RuntimeState) => Decision<R>, extra?: ExtraRecords<R>): Promise<R>;
  /**
   * Runs a write that bypasses the queue (e.g. the proxy's refresh of a
   * licensee): waits until the queue is empty, holds new decisions back while
   * it runs, then reloads the memory from the database.
   */
  exclusive<T>(write: () => Promise<T>): Promise<T>;
  /** Resolves when nothing is queued or committing (for close and tests). */
  drained(): Promise<void>;
}

interface Job {
  licenseeKey: string;
  licenseeNumber: string;
  entry: JournalEntryBody;
  extra: ExtraRecord[];
}

interface Slot {
  state: RuntimeState;
  rev: number;
  /** Queued or committing jobs of this licensee. */
  pending: number;
  /** Durability of its newest queued job. */
  lastDone?: Promise<void>;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Rejections are handed to every waiter; an unobserved one must not end the process.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export function createRuntimeWriter(deps: RuntimeWriterDeps): RuntimeWriter {
  const inMemoryMax = deps.licenseesInMemoryMax ?? 100_000;
  const slots = new Map<string, Slot>();
  // Revisions are unique for the process lifetime (never reused after a reload), so a cache keyed by one stays valid.
  let revCounter = 0;
  /** Seq of the newest decided entry, and the chain hash after the newest group formed. */
  let { seq: lastSeq, hash: chainHash } = deps.readJournalHead();
  let queue: Job[] = [];
  /** Durability of the queued jobs: one promise per group commit, shared by its jobs. */
  let queuedDone: Deferred | undefined;
  /**
   * A transaction has been started and not yet finished. One at a time: with two or three queued
   * to lmdb-js at once, LMDB still commits them one after the other, groups shrink and the rate
   * did not rise (Pay-per-Use 10,483 / 10,290 / 11,322 req/s for 1 / 2 / 3, README "Benchmarks").
   */
  let committing = false;
  let barrier: Promise<void> | undefined;
  let idleWaiters: Array<() => void> = [];

  const slotOf = (licenseeNumber: string): Slot => {
    const key = deps.keyOf(licenseeNumber);
    let slot = slots.get(key);
    if (slot === undefined) {
      if (slots.size >= inMemoryMax) {
        for (const [k, s] of slots) if (s.pending === 0) slots.delete(k);
      }
      slot = { state: runtimeStateOf(deps.runtimeDb.get(key)), rev: ++revCounter, pending: 0 };
      slots.set(key, slot);
    }
    return slot;
  };

  const forgetMemory = () => {
    slots.clear();
    ({ seq: lastSeq, hash: chainHash } = deps.readJournalHead());
    deps.onReload?.();
  };

  const notifyIdle = () => {
    if (committing || queue.length > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const wake of waiters) wake();
  };

  const startCommit = () => {
    if (committing || queue.length === 0) return;
    committing = true;
    // Takes every job decided until now. The in-memory state of a licensee is exactly the state
    // after its last job in the batch (states are changed in place, so no snapshot per job is
    // needed); it is encoded here, before any later decision changes it.
    const batch = queue;
    const done = queuedDone!;
    queue = [];
    queuedDone = undefined;
    // One link of the hash chain, and one journal record, for the whole group (see JournalEntry).
    const entries = batch.map((job) => job.entry);
    const first = entries[0]!;
    const last = entries[entries.length - 1]!;
    const { hash, record } = deps.journalGroupRecord(chainHash, entries);
    chainHash = hash;
    const write = () => {
      const written = new Set<string>();
      for (const job of batch) {
        if (written.has(job.licenseeKey)) continue;
        written.add(job.licenseeKey);
        const slot = slots.get(job.licenseeKey)!;
        deps.runtimeDb.putInBatch(job.licenseeKey, { licenseeNumber: job.licenseeNumber, state: slot.state });
      }
      deps.journalDb.putInBatch(first.seq, record);
      for (const job of batch) for (const { key, value } of job.extra) deps.metaDb.putInBatch(key, value);
      deps.metaDb.putInBatch('journalHead', { seq: last.seq, hash });
    };
    // A write thread applies the batch (lmdb.ts, commitBatchDurable); this thread goes on deciding.
    deps.env.commitBatchDurable(write).then(
      () => {
        committing = false;
        for (const job of batch) {
          const slot = slots.get(job.licenseeKey);
          if (slot) slot.pending -= 1;
        }
        done.resolve();
        startCommit();
        notifyIdle();
      },
      (cause: unknown) => {
        const error = deps.wrapWriteError(cause);
        // Everything queued was decided on top of the failed batch: fail it all, reload from the database.
        const failed = [done, queuedDone];
        committing = false;
        queue = [];
        queuedDone = undefined;
        forgetMemory();
        for (const waiting of failed) waiting?.reject(error);
        notifyIdle();
      },
    );
  };

  const commit = <R>(licenseeNumber: string, atMs: number, decide: (state: RuntimeState) => Decision<R>, extra?: ExtraRecords<R>): Promise<R> => {
    if (barrier !== undefined) return barrier.then(() => commit(licenseeNumber, atMs, decide, extra));
    const slot = slotOf(licenseeNumber);
    const { events, result } = decide(slot.state);
    if (events.length === 0) {
      // Answer only what is durable: wait for the queued changes this decision saw.
      return slot.pending > 0 && slot.lastDone ? slot.lastDone.then(() => result) : Promise.resolve(result);
    }
    const seq = ++lastSeq;
    // Its chain link is made with its group's (startCommit).
    const entry: JournalEntryBody = { seq, atMs, licenseeNumber, events };
    const job: Job = {
      licenseeKey: deps.keyOf(licenseeNumber),
      licenseeNumber,
      entry,
      extra: extra ? extra(result, events) : [],
    };
    const done = (queuedDone ??= deferred());
    applyEventsInPlace(slot.state, events);
    slot.rev = ++revCounter;
    slot.pending += 1;
    slot.lastDone = done.promise;
    queue.push(job);
    startCommit();
    return done.promise.then(() => result);
  };

  const drained = (): Promise<void> =>
    !committing && queue.length === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));

  return {
    revision: (licenseeNumber) => slotOf(licenseeNumber).rev,
    commit,
    async exclusive(write) {
      while (barrier !== undefined) await barrier;
      let release!: () => void;
      barrier = new Promise<void>((resolve) => (release = resolve));
      try {
        await drained();
        return await write();
      } finally {
        forgetMemory();
        barrier = undefined;
        release();
      }
    },
    drained,
  };
}
