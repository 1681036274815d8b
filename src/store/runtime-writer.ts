/**
 * Runtime state writes of a serving agent: decide in memory, make durable in
 * groups, checkpoint into LMDB behind.
 *
 * The serving process is the only writer of runtime state (the store's
 * claimRuntimeWriter lock, platform/exclusive-lock.ts, keeps a second server
 * off the same database; imports write definitions only). So the latest runtime state of a licensee
 * — the durable state plus the changes already decided and queued — can live
 * in memory, and every change is decided exactly once, synchronously, against
 * it: the JavaScript event loop serialises deciders, so two check-outs for the
 * last seat cannot both see it free.
 *
 * Decided changes are queued; everything queued while the previous group was
 * being written forms the next group (group commit): ONE record in the
 * runtime journal file (runtime-wal.ts), written with O_DSYNC. A change is
 * acknowledged — its promise resolves — when that write has returned: from
 * then on it survives a kill or a power loss.
 *
 * LMDB receives the same changes in checkpoints, one LMDB transaction at a
 * time, each covering every group made durable since the previous one: the
 * licensees' states as they were after the checkpoint's last group (copied
 * when that group was formed, as later decisions change the memory in place),
 * the groups' journal records and extra records, the journal head, and the
 * file offset after the last group (walResume): every `checkpointEveryGroups`
 * groups under load (about every 60 ms at ~14,000 writes/s, measured; more groups apart for
 * states with large session tables, see checkpointInterval), and soon after the
 * writes stop. So LMDB is always a consistent state at a group boundary,
 * somewhat behind the acknowledged one; after a crash the file's records
 * after LMDB's head are applied on the next open (asset-store.ts). Readers of LMDB that must see every acknowledged
 * change first wait for `settled()`.
 *
 * No dirty reads: a decision without changes for a licensee that has queued,
 * not yet durable changes is answered only once those are durable; if their
 * write fails, that answer fails too. A failed write fails every queued change
 * (they were decided on top of it), and the memory is rebuilt from LMDB and
 * the durable groups not yet checkpointed. A failed checkpoint loses nothing
 * (its groups are in the file): it is retried, new changes wait for a retry
 * that succeeds (and fail with the cause when it does not), and meanwhile the
 * file is not rewound.
 */
import { applyEventsInPlace, emptyRuntimeState, runtimeEventFormProblem, snapshotRuntimeState, type FloatingSession, type RuntimeEvent, type RuntimeState } from '../core/runtime.ts';
import { entriesOfRecord, runtimeEventsOf, type JournalEntryBody, type JournalRecord } from './journal-records.ts';
import type { KvDatabase, KvEnvironment, KvKey } from './lmdb.ts';
import { StoreError } from './errors.ts';
import { encodeWalGroup, type RuntimeWalFile, type WalExtra } from './runtime-wal.ts';

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

/**
 * runtimeStateOf for readers that check records (verify-database): a record of another form
 * than the agent writes is handed on as stored, for the check to name, instead of throwing.
 */
export function runtimeStateOrAsStored(record: RuntimeRecord | undefined): RuntimeState {
  try {
    return runtimeStateOf(record);
  } catch {
    return (record as { state?: unknown } | undefined)?.state as RuntimeState;
  }
}

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
 * Applies the entries of journal records, in order, to the states `stateFor` hands out for each
 * entry's licensee (the recovery at open, and the rebuild after a failed write). Returns the number
 * of entries applied.
 */
export function applyJournalRecords(records: readonly string[], stateFor: (licenseeNumber: string) => RuntimeState): number {
  let entries = 0;
  for (const record of records) {
    for (const entry of entriesOfRecord(record)) {
      applyEventsInPlace(stateFor(entry.licenseeNumber), runtimeEventsOf(entry));
      entries += 1;
    }
  }
  return entries;
}

/**
 * The journal is hash-chained per group commit: one link, and one stored
 * record, for the entries one group holds (journal-records.ts). A group
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

/** Meta key of the journal file offset where the records after LMDB's journal head start. */
export const WAL_RESUME_KEY = 'walResume';

export interface RuntimeWriterDeps {
  env: KvEnvironment;
  runtimeDb: KvDatabase<RuntimeRecord>;
  journalDb: KvDatabase<JournalRecord>;
  metaDb: KvDatabase<unknown>;
  /** The runtime journal file, with LMDB holding every record in it (asset-store.ts recovers first). */
  wal: RuntimeWalFile;
  /** meta.databaseId, written into every record (runtime-wal.ts). */
  databaseId: string;
  /** Where the next record goes: LMDB's walResume. */
  walOffset: number;
  /** Past this offset, the file starts again at 0 once LMDB holds every record in it. */
  rewindAtBytes: number;
  keyOf(licenseeNumber: string): string;
  readJournalHead(): JournalHead;
  /** The record of a group commit and its chain link (journal-records.ts, journalGroupRecord). */
  journalGroupRecord(prevHash: string, entries: readonly JournalEntryBody[]): { hash: string; record: string };
  /** Turns a write failure into the store's error (disk full, I/O). */
  wrapWriteError(cause: unknown): Error;
  /**
   * Called whenever the memory is reloaded from the database (after a failed write or an exclusive
   * write), with the extras of the durable groups LMDB does not hold yet: what the database says
   * lags them (run-agent's replay head).
   */
  onReload?(pendingExtras: readonly ExtraRecord[]): void;
  /** A checkpoint into LMDB failed (it is retried; nothing acknowledged is lost): for the log. */
  onCheckpointError?(error: Error): void;
  /** A checkpoint is committed: the keys of the runtime records it wrote (AssetStore.runtimeChangesSince). */
  onCheckpointed?(keys: Iterable<string>): void;
  /** Under load, a checkpoint every this many groups (default 32). */
  checkpointEveryGroups?: number;
  /** When the writes stop, the last ones reach LMDB this many ms later (default 2; see checkpointWhenQuiet). */
  checkpointQuietMs?: number;
  /** Wait before a failed checkpoint is tried again without anything else asking for it (default 1 s). */
  checkpointRetryMs?: number;
  /** Most licensees kept in memory (those with changes not yet in LMDB are never dropped). */
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
   * Resolves once LMDB holds every change acknowledged before the call
   * (rejects when the checkpoint that should bring them there fails).
   */
  settled(): Promise<void>;
  /**
   * Runs a write that bypasses the queue and changes the runtime state of
   * `licenseeNumber` alone (the proxy's refresh of a licensee): waits until
   * everything is in LMDB, holds new decisions back while it runs, then
   * reloads that licensee's state from the database (the others' in memory
   * are still what LMDB holds).
   */
  exclusive<T>(licenseeNumber: string, write: () => Promise<T>): Promise<T>;
  /**
   * The journal head this writer's own checkpoints put into LMDB (at first: LMDB's head when it
   * was created). What a card may seal: LMDB's head is also what another process wrote there,
   * and a seal of it (the hourly heartbeat of an idle agent) would make entries someone appended
   * the card's word for the next start.
   */
  checkpointedHead(): JournalHead;
  /** Resolves when nothing is queued, being written or waiting for a checkpoint (for close and tests); rejects when a checkpoint fails. */
  drained(): Promise<void>;
  /** Stops the timers (quiet checkpoint, retry); call after `drained`, before the environment closes. */
  close(): void;
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
  /** Jobs of this licensee queued or being written to the journal file. */
  writing: number;
  /** Jobs of this licensee not yet in LMDB (`writing` included): the slot must stay in memory. */
  unsaved: number;
  /** Durability of its newest queued job. */
  lastDone?: Promise<void>;
}

/** See checkpointInterval. */
const CHECKPOINT_ENTRIES_PER_GROUP = 256;

/** What a checkpoint's cost grows with: the sessions and node secrets of a state. */
function runtimeStateEntries(state: RuntimeState): number {
  let entries = 0;
  for (const moduleNumber in state.sessions) entries += state.sessions[moduleNumber]!.size;
  for (const moduleNumber in state.nodeSecrets) entries += state.nodeSecrets[moduleNumber]!.length;
  return entries;
}

/** A group commit: one record in the journal file. */
interface Group {
  firstSeq: number;
  lastSeq: number;
  hash: string;
  record: string;
  extras: ExtraRecord[];
  /** Licensee key of each of its jobs. */
  keys: string[];
  offset: number;
  end: number;
}

/** The states of the licensees changed since the previous checkpoint, as they were right after group `upTo`. */
interface Checkpoint {
  upTo: Group;
  states: { key: string; licenseeNumber: string; state: RuntimeState }[];
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/** `error` marked as a refusal whose change may have been stored all the same (StoreError.mayBeStored). */
function mayBeStored(error: Error): StoreError {
  const code = error instanceof StoreError ? error.code : 'io';
  return new StoreError(code, error.message, { cause: error instanceof StoreError ? error.cause : error, mayBeStored: true });
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
  let ownHead: JournalHead = { seq: lastSeq, hash: chainHash };
  let queue: Job[] = [];
  /** Durability of the queued jobs: one promise per group, shared by its jobs. */
  let queuedDone: Deferred | undefined;
  /**
   * The group being written to the journal file. One at a time: the next group forms from
   * everything decided meanwhile. (When groups were LMDB commits, two or three in flight at once
   * were still committed one after the other, groups shrank and the rate did not rise: Pay-per-Use
   * 10,483 / 10,290 / 11,322 req/s for 1 / 2 / 3, docs/benchmarks.md.)
   */
  let writing: Group | undefined;
  let walOffset = deps.walOffset;
  /** Past rewindAtBytes: the next group waits until LMDB holds every record, then goes to offset 0. */
  const rewinding = () => walOffset >= deps.rewindAtBytes;
  /** Durable groups not yet in LMDB, oldest first. */
  let durable: Group[] = [];
  /** Checkpoints formed and not yet committed, oldest first; the first may be committing. */
  let checkpoints: Checkpoint[] = [];
  let checkpointing = false;
  /** Groups formed since the newest checkpoint was formed. */
  let groupsSinceCheckpoint = 0;
  /** Someone waits for LMDB (settled, drained): the next group formed carries a checkpoint. */
  let checkpointWanted = false;
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  const checkpointEveryGroups = deps.checkpointEveryGroups ?? 32;
  /**
   * Groups between checkpoints under load: `checkpointEveryGroups`, or more when the states a
   * checkpoint copies and encodes are large. That cost grows with the licensees' session tables
   * and node secrets (with a Floating pool of 50,000 sessions, copying and msgpack-encoding it
   * every 32 groups took about a third of bench-floating-pool's profile), so the next checkpoint
   * comes one group later per CHECKPOINT_ENTRIES_PER_GROUP entries the last one held, which keeps
   * that share flat. LMDB then lags further behind, which nothing acknowledged depends on (the
   * journal file holds it, and whoever waits for LMDB asks for a checkpoint at once).
   */
  let checkpointInterval = checkpointEveryGroups;
  /**
   * The newest checkpoint attempt failed (LMDB's disk is full, say): new decisions wait for a
   * retry (commit), and a rewind of the file waits for none (the groups already formed go on).
   */
  let checkpointFailing = false;
  /** From a failed write until rebuildMemory has dropped its changes from the memory. */
  let memoryStale = false;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  /** Licensees changed by formed groups since the newest checkpoint was formed: key → number. */
  const dirty = new Map<string, string>();
  let barrier: Promise<void> | undefined;
  let idleWaiters: Deferred[] = [];
  let settleWaiters: { seq: number; waiter: Deferred }[] = [];

  const loadSlot = (key: string): Slot => ({ state: runtimeStateOf(deps.runtimeDb.get(key)), rev: ++revCounter, writing: 0, unsaved: 0 });
  const slotOf = (licenseeNumber: string): Slot => {
    const key = deps.keyOf(licenseeNumber);
    let slot = slots.get(key);
    if (slot === undefined) {
      if (slots.size >= inMemoryMax) {
        // The earliest loaded tenth goes (never one with changes not yet in LMDB). Dropping all at
        // once made every licensee's next answer a miss of the answer cache (a new revision) and a
        // read from LMDB at the same moment; a busy licensee dropped here is simply loaded again.
        let dropping = Math.ceil(inMemoryMax / 10);
        for (const [k, s] of slots) {
          if (dropping === 0) break;
          if (s.unsaved === 0) {
            slots.delete(k);
            dropping -= 1;
          }
        }
      }
      slot = loadSlot(key);
      slots.set(key, slot);
    }
    return slot;
  };

  const isIdle = () => writing === undefined && queue.length === 0 && durable.length === 0 && !checkpointing && checkpoints.length === 0;
  const notifyIdle = () => {
    if (!isIdle()) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  };

  /** Copies the dirty licensees' states: the memory is the state right after `upTo` (nothing else queued). */
  const formCheckpoint = (upTo: Group) => {
    groupsSinceCheckpoint = 0;
    checkpointWanted = false;
    const states: Checkpoint['states'] = [];
    let entries = 0;
    for (const [key, licenseeNumber] of dirty) {
      const state = snapshotRuntimeState(slots.get(key)!.state);
      entries += runtimeStateEntries(state);
      states.push({ key, licenseeNumber, state });
    }
    dirty.clear();
    checkpoints.push({ upTo, states });
    checkpointInterval = Math.max(checkpointEveryGroups, Math.ceil(entries / CHECKPOINT_ENTRIES_PER_GROUP));
  };

  /**
   * Starts the oldest formed checkpoint once its last group is durable. With `formIfIdle`, and
   * none formed, forms one first where the memory is exactly the durable state: nothing queued
   * or being written (and no failed write whose changes rebuildMemory is about to drop).
   */
  const startCheckpoint = (formIfIdle: boolean) => {
    if (checkpointing || closed) return;
    if (checkpoints.length === 0) {
      const newest = durable[durable.length - 1];
      if (!formIfIdle || newest === undefined || memoryStale) return;
      if (writing !== undefined || queue.length > 0) {
        // Busy: the next group formed carries one (formGroup).
        checkpointWanted = true;
        return;
      }
      formCheckpoint(newest);
    }
    const checkpoint = checkpoints[0]!;
    const coveredCount = durable.findIndex((group) => group === checkpoint.upTo) + 1;
    // Its last group is still being written: it starts when that write is durable.
    if (coveredCount === 0) return;
    const covered = durable.slice(0, coveredCount);
    checkpointing = true;
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    retryTimer = undefined;
    const write = () => {
      for (const { key, licenseeNumber, state } of checkpoint.states) deps.runtimeDb.putInBatch(key, { licenseeNumber, state });
      for (const group of covered) {
        deps.journalDb.putInBatch(group.firstSeq, group.record);
        for (const { key, value } of group.extras) deps.metaDb.putInBatch(key, value);
      }
      deps.metaDb.putInBatch('journalHead', { seq: checkpoint.upTo.lastSeq, hash: checkpoint.upTo.hash });
      deps.metaDb.putInBatch(WAL_RESUME_KEY, checkpoint.upTo.end);
    };
    // A write thread applies the batch (lmdb.ts, commitBatchDurable); this thread goes on deciding.
    deps.env.commitBatchDurable(write).then(
      () => {
        checkpointing = false;
        checkpointFailing = false;
        checkpoints.shift();
        durable = durable.slice(coveredCount);
        for (const group of covered) {
          for (const key of group.keys) {
            const slot = slots.get(key);
            if (slot) slot.unsaved -= 1;
          }
        }
        deps.onCheckpointed?.(checkpoint.states.map((state) => state.key));
        const checkpointedSeq = checkpoint.upTo.lastSeq;
        ownHead = { seq: checkpointedSeq, hash: checkpoint.upTo.hash };
        settleWaiters = settleWaiters.filter(({ seq, waiter }) => (seq <= checkpointedSeq ? (waiter.resolve(), false) : true));
        startCheckpoint(settleWaiters.length > 0 || idleWaiters.length > 0);
        formGroup();
        notifyIdle();
      },
      (cause: unknown) => {
        checkpointing = false;
        checkpointFailing = true;
        const error = deps.wrapWriteError(cause);
        deps.onCheckpointError?.(error);
        // Nothing is lost (the groups are durable in the file); whoever waits for LMDB is told.
        const waiting = [...settleWaiters.map(({ waiter }) => waiter), ...idleWaiters];
        settleWaiters = [];
        idleWaiters = [];
        for (const waiter of waiting) waiter.reject(error);
        // A group held back for a rewind goes on now (the file grows; see formGroup).
        formGroup();
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          startCheckpoint(true);
        }, deps.checkpointRetryMs ?? 1000);
        retryTimer.unref?.();
      },
    );
  };

  /**
   * Under load a checkpoint forms every `checkpointEveryGroups` groups; when the writes stop, the
   * last ones reach LMDB this soon after. Checking right when a write returns found the queue
   * empty nearly every time (the next requests were still on their way) and checkpointed after
   * every ~3 groups: their fdatasyncs slowed the journal file's writes (1.1 ms instead of 0.15).
   */
  const checkpointWhenQuiet = () => {
    if (idleTimer !== undefined || durable.length === 0) return;
    idleTimer = setTimeout(() => {
      idleTimer = undefined;
      if (writing === undefined && queue.length === 0) startCheckpoint(true);
    }, deps.checkpointQuietMs ?? 2);
    idleTimer.unref?.();
  };

  const formGroup = () => {
    if (writing !== undefined || queue.length === 0) return;
    if (rewinding()) {
      // Every record must be in LMDB before offset 0 is written over. While checkpoints fail,
      // the file grows instead: acknowledging goes on as long as the file takes records.
      if (durable.length === 0 && checkpoints.length === 0) {
        walOffset = 0;
      } else if (!checkpointFailing) {
        return;
      }
    }
    // Takes every job decided until now. The in-memory state of a licensee is exactly the state
    // after its last job in the group (states are changed in place, so no copy per job is needed).
    const batch = queue;
    const done = queuedDone!;
    queue = [];
    queuedDone = undefined;
    // One link of the hash chain, and one journal record, for the whole group (see JournalEntry).
    const entries = batch.map((job) => job.entry);
    const { hash, record } = deps.journalGroupRecord(chainHash, entries);
    chainHash = hash;
    const extras = batch.flatMap((job) => job.extra);
    const firstSeq = entries[0]!.seq;
    const lastSeq = entries[entries.length - 1]!.seq;
    const bytes = encodeWalGroup({ databaseId: deps.databaseId, firstSeq, lastSeq, record, extras: extras as WalExtra[] });
    const group: Group = { firstSeq, lastSeq, hash, record, extras, keys: [], offset: walOffset, end: walOffset + bytes.byteLength };
    for (const job of batch) {
      group.keys.push(job.licenseeKey);
      dirty.set(job.licenseeKey, job.licenseeNumber);
    }
    walOffset = group.end;
    // A checkpoint at this group every `checkpointInterval` groups or when someone waits for
    // LMDB (and none is waiting already), and always before a rewind, which waits for LMDB to hold
    // this group.
    groupsSinceCheckpoint += 1;
    if ((checkpoints.length === 0 && (groupsSinceCheckpoint >= checkpointInterval || checkpointWanted)) || rewinding()) formCheckpoint(group);
    writing = group;
    deps.wal.write(bytes, group.offset).then(
      () => {
        writing = undefined;
        durable.push(group);
        for (const key of group.keys) slots.get(key)!.writing -= 1;
        done.resolve();
        startCheckpoint(false);
        formGroup();
        checkpointWhenQuiet();
        notifyIdle();
      },
      (cause: unknown) => {
        const error = deps.wrapWriteError(cause);
        // Everything queued was decided on top of the failed group: fail it all.
        const failed = [done, queuedDone];
        queue = [];
        queuedDone = undefined;
        // The next record goes where this one was: its bytes may be torn there.
        walOffset = group.offset;
        if (checkpoints[checkpoints.length - 1]?.upTo === group) checkpoints.pop();
        memoryStale = true;
        rebuildMemory();
        // A failed write may still have put the whole record on the device (an I/O error reported
        // after the data went out): the next open would apply it, and a refused change would be
        // in effect after a crash. So the record is voided before the refusal is sent; while that
        // write runs, `writing` keeps every other write away from the offset. When voiding fails
        // as well, the refusal says that the change may have been stored.
        const refuse = (reason: Error) => {
          writing = undefined;
          for (const waiting of failed) waiting?.reject(reason);
          formGroup();
          // As rebuildMemory does when it ends: it may have ended while this write ran, when no checkpoint could form.
          startCheckpoint(true);
          notifyIdle();
        };
        deps.wal.voidRecordAt(group.offset).then(
          () => refuse(error),
          () => refuse(mayBeStored(error)),
        );
      },
    );
  };

  /**
   * After a failed write: the memory holds changes that are not durable. Rebuilt from LMDB plus
   * the durable groups not yet in it, once no checkpoint is committing (so LMDB does not change
   * under the rebuild); decisions wait meanwhile.
   */
  const rebuildMemory = () => {
    let release!: () => void;
    const rebuilt = new Promise<void>((resolve) => (release = resolve));
    const previous = barrier;
    barrier = rebuilt;
    const run = async () => {
      if (previous) await previous;
      while (checkpointing) await new Promise<void>((resolve) => setTimeout(resolve, 1));
      slots.clear();
      dirty.clear();
      applyJournalRecords(
        durable.map((group) => group.record),
        (licenseeNumber) => {
          const key = deps.keyOf(licenseeNumber);
          let slot = slots.get(key);
          if (slot === undefined) slots.set(key, (slot = loadSlot(key)));
          slot.unsaved += 1;
          dirty.set(key, licenseeNumber);
          return slot.state;
        },
      );
      // Checkpoints formed for durable groups keep their copies; a new one covers what they do not.
      // Without durable groups, the head is the one this writer checkpointed: LMDB's may hold
      // entries another process appended, which the next group would chain on and the card seal.
      const newest = durable[durable.length - 1];
      const head = newest ? { seq: newest.lastSeq, hash: newest.hash } : ownHead;
      lastSeq = head.seq;
      chainHash = head.hash;
      memoryStale = false;
      deps.onReload?.(durable.flatMap((group) => group.extras));
    };
    void run().finally(() => {
      if (barrier === rebuilt) barrier = undefined;
      release();
      startCheckpoint(true);
      notifyIdle();
    });
  };

  const commit = <R>(licenseeNumber: string, atMs: number, decide: (state: RuntimeState) => Decision<R>, extra?: ExtraRecords<R>): Promise<R> => {
    if (barrier !== undefined) return barrier.then(() => commit(licenseeNumber, atMs, decide, extra));
    const slot = slotOf(licenseeNumber);
    const { events, result } = decide(slot.state);
    if (events.length === 0) {
      // Answer only what is durable: wait for the queued changes this decision saw.
      return slot.writing > 0 && slot.lastDone ? slot.lastDone.then(() => result) : Promise.resolve(result);
    }
    // LMDB cannot take changes (its disk is full, say): try again now, and refuse this change with
    // the cause if it still cannot (deciding again if it can), rather than let the journal file
    // grow without a bound and hide the problem. Reads are answered all the same.
    if (checkpointFailing) return settled().then(() => commit(licenseeNumber, atMs, decide, extra));
    // Whatever may throw comes before the sequence number is taken and the replay entry is made
    // (extras): a journal gap is never recovered from (verify-database, a card-bound start), nor
    // is a gap in run-agent's replay entries. An event of another form than the agent writes is
    // refused before anything is applied; one of the agent's form cannot throw (ownEntry, setOwn).
    const malformed = events.map(runtimeEventFormProblem).find((problem) => problem !== undefined);
    if (malformed !== undefined) throw new TypeError(`a decision for licensee '${licenseeNumber}' made ${malformed}`);
    applyEventsInPlace(slot.state, events);
    const extras = extra ? extra(result, events) : [];
    const seq = ++lastSeq;
    // Its chain link is made with its group's (formGroup).
    const entry: JournalEntryBody = { seq, atMs, licenseeNumber, events };
    const job: Job = {
      licenseeKey: deps.keyOf(licenseeNumber),
      licenseeNumber,
      entry,
      extra: extras,
    };
    const done = (queuedDone ??= deferred());
    slot.rev = ++revCounter;
    slot.writing += 1;
    slot.unsaved += 1;
    slot.lastDone = done.promise;
    queue.push(job);
    formGroup();
    return done.promise.then(() => result);
  };

  const settled = (): Promise<void> => {
    // Everything durable and not yet in LMDB is in `durable`: its newest group is the target.
    const newestDurable = durable[durable.length - 1];
    if (newestDurable === undefined) return Promise.resolve();
    const waiter = deferred();
    settleWaiters.push({ seq: newestDurable.lastSeq, waiter });
    startCheckpoint(true);
    return waiter.promise;
  };

  const drained = (): Promise<void> => {
    if (isIdle()) return Promise.resolve();
    const waiter = deferred();
    idleWaiters.push(waiter);
    startCheckpoint(true);
    return waiter.promise;
  };

  return {
    revision: (licenseeNumber) => slotOf(licenseeNumber).rev,
    commit,
    settled,
    async exclusive(licenseeNumber, write) {
      while (barrier !== undefined) await barrier;
      let release!: () => void;
      barrier = new Promise<void>((resolve) => (release = resolve));
      try {
        await drained();
      } catch (error) {
        // LMDB does not hold everything: the write must not run, and the memory stays as it is.
        barrier = undefined;
        release();
        throw error;
      }
      try {
        return await write();
      } finally {
        // Reloaded when next used. The others stay: a large Floating pool of another licensee
        // would otherwise be decoded again after every refresh.
        slots.delete(deps.keyOf(licenseeNumber));
        dirty.clear();
        // Its own transaction wrote the head (the proxy's refresh, which runs while nothing else writes).
        ({ seq: lastSeq, hash: chainHash } = deps.readJournalHead());
        ownHead = { seq: lastSeq, hash: chainHash };
        deps.onReload?.([]);
        barrier = undefined;
        release();
      }
    },
    checkpointedHead: () => ownHead,
    drained,
    close() {
      closed = true;
      if (idleTimer !== undefined) clearTimeout(idleTimer);
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      idleTimer = retryTimer = undefined;
    },
  };
}
