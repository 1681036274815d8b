/**
 * Folding the journal's oldest entries into a base (`--action=compact-journal`).
 *
 * The journal keeps every counter change, so it grew without a bound (~150–250 bytes per
 * validate that changes a counter: docs/operations.md, "Sizing: disk"), and everything that
 * replays it (verify-database, a card-bound start) took longer every day. A fold replaces the
 * entries up to a group boundary `throughSeq` by a snapshot: every licensee's runtime state
 * after that entry, stored under meta keys [BASE_STATE_PREFIX, marker seq, licensee key], with
 * its SHA-256 (`snapshotDigest`). Replaying the snapshot and then the entries kept gives exactly
 * what replaying the whole journal gave.
 *
 * Each fold appends a marker entry to the chain (licensee number JOURNAL_FOLD_MARKER) whose one
 * event names `throughSeq`, the chain link there and the snapshot's digest; the entries kept
 * still link to `throughHash`.
 *
 * Why a card-bound database folds in two steps. The meta records are not signed: anyone who can
 * write `database/` could write a base of their own (any snapshot, at the entry the card sealed)
 * and append a marker naming it, since entries after the sealed one are accepted unsealed. So a
 * base counts there only once the card has sealed its marker (verify-database, given the sealed
 * entry, refuses any other), and a fold is made *pending* first: snapshot and marker written,
 * nothing deleted. While it is pending, verify-database replays the records it folds and checks
 * that they give its snapshot and link; the agent's next start does that check and then seals the
 * marker; the next compact-journal promotes the sealed fold to the base and deletes what it
 * folded. A database without card folds at once (`mode: 'now'`): without a signature nothing in
 * it is more than corruption-evident, the base included.
 *
 * Atomicity: each step's writes to snapshot, marker, head and the base or pending record are one
 * LMDB transaction (the commit point). Folded records and snapshots no longer needed are deleted
 * after it, in transactions of DELETE_BATCH_KEYS keys (one transaction of millions of deletes
 * could exceed LMDB's dirty-page limit); what a step stopped in between leaves is never read
 * (AssetStore.journal starts after the base; snapshots are read by their marker) and is deleted
 * by the next fold.
 *
 * Runs only in a process that holds the runtime-writer lock and serves nothing
 * (AssetStore.exclusively): a serving agent's writer keeps its own view of the journal head.
 */
import { applyEventsInPlace, emptyRuntimeState, type RuntimeState } from '../core/runtime.ts';
import { keyPart } from './layout.ts';
import type { KvDatabase, KvEnvironment, KvKey } from './lmdb.ts';
import {
  entriesOfRecord,
  GENESIS_HASH,
  groupsOf,
  journalGroupRecord,
  journalHash,
  JOURNAL_FOLD_MARKER,
  runtimeEventsOf,
  type JournalEntry,
  type JournalFoldedEvent,
  type JournalRecord,
} from './journal-records.ts';
import { runtimeStateOrAsStored, type JournalHead, type RuntimeRecord } from './runtime-writer.ts';

/** Meta key of the base (JournalBase); absent: the journal starts at entry 1. */
export const JOURNAL_BASE_KEY = 'journalBase';
/** Meta key of a card-bound database's fold that waits for the card's seal (JournalBase). */
export const JOURNAL_PENDING_FOLD_KEY = 'journalPendingFold';
/** First part of the meta keys of the snapshots' states: [BASE_STATE_PREFIX, marker seq, licensee key]. */
export const BASE_STATE_PREFIX = 'journalBaseState';

/** A fold: where the journal starts once it is the base. */
export interface JournalBase {
  /** Entries 1 to `throughSeq` are folded into the snapshot; the journal holds the entries after it. */
  throughSeq: number;
  /** The chain link of entry `throughSeq`'s group, which the first entry kept links to. */
  throughHash: string;
  /** SHA-256 (hex) of the snapshot (snapshotDigest). */
  snapshotDigest: string;
  /** Licensees in the snapshot. */
  licensees: number;
  /** The marker entry the fold appended to the chain; its snapshot's states are keyed by it. */
  markerSeq: number;
  /** Entries folded so far, by every fold together. */
  foldedEntries: number;
  /** When the fold ran (the system clock; for the operator, not in the chain). */
  foldedAtMs: number;
}

export interface FoldLimits {
  /** Fold no entry after this one (the journal head; a card-bound database: what its newest checkpoint seals). */
  throughSeqAtMost: number;
  /** Fold only groups whose every entry is older than this (ms since epoch). */
  entriesBeforeMs: number;
  /** Now, for JournalBase.foldedAtMs. */
  atMs: number;
}

/** `now`: the fold is the base at once; `pending`: it waits for the card's seal (promotePendingFold). */
export type FoldMode = 'now' | 'pending';

export interface FoldResult {
  /** Entries folded by this call (0: nothing was old enough, or only earlier folds' markers). */
  folded: number;
  /** The base after the call. */
  base: JournalBase | undefined;
  /** The fold waiting for the card's seal after the call. */
  pending: JournalBase | undefined;
  /** Journal records deleted by this call (a stopped fold's leftovers included). */
  recordsDeleted: number;
}

/** The store's parts a fold reads and writes. */
export interface FoldDependencies {
  env: KvEnvironment;
  journalDb: KvDatabase<JournalRecord>;
  metaDb: KvDatabase<unknown>;
  readJournalHead(): JournalHead;
  /** The store's error for a journal that does not link or hash as it should. */
  brokenChain(message: string): Error;
  /** The store's error for a call out of order (a fold while another waits for its seal). */
  misuse(message: string): Error;
  /** Stamps the meta record's schema version (a folded journal needs an agent that knows folds). */
  markFolded(): void;
}

/** canonical's key for a Map's entries: U+001F occurs in no entity number or field name. */
const MAP_MARK = '\u001fMap';

/** Keys deleted per transaction. */
const DELETE_BATCH_KEYS = 10_000;

export function readJournalBase(metaDb: KvDatabase<unknown>): JournalBase | undefined {
  return metaDb.get(JOURNAL_BASE_KEY) as JournalBase | undefined;
}

export function readPendingFold(metaDb: KvDatabase<unknown>): JournalBase | undefined {
  return metaDb.get(JOURNAL_PENDING_FOLD_KEY) as JournalBase | undefined;
}

/** The snapshot of the fold with marker `markerSeq`, in key order. */
export function* foldStates(metaDb: KvDatabase<unknown>, markerSeq: number): Iterable<{ licenseeNumber: string; state: RuntimeState }> {
  for (const { value } of metaDb.getRange({ start: [BASE_STATE_PREFIX, markerSeq], end: [BASE_STATE_PREFIX, markerSeq + 1] })) {
    const record = value as RuntimeRecord;
    yield { licenseeNumber: record?.licenseeNumber, state: runtimeStateOrAsStored(record) };
  }
}

/**
 * SHA-256 (hex) of a snapshot: one line per licensee, in the order of their numbers, each the
 * JSON of the number and of the state with every object's keys sorted and each Map marked as
 * one. The order of keys and sessions is not part of a state (verify-database compares states
 * the same way), and LMDB's key order is not the numbers' order (long numbers are hashed).
 */
export function snapshotDigest(states: Iterable<{ licenseeNumber: string; state: RuntimeState }>): string {
  const lines: string[] = [];
  for (const { licenseeNumber, state } of states) lines.push(JSON.stringify([licenseeNumber, canonical(state)]));
  lines.sort();
  const hasher = new Bun.CryptoHasher('sha256');
  for (const line of lines) hasher.update(`${line}\n`);
  return hasher.digest('hex');
}

function canonical(value: unknown): unknown {
  // A Map stays apart from an object with the same entries: the served state reads them differently.
  if (value instanceof Map) return { [MAP_MARK]: canonical(Object.fromEntries(value)) };
  if (Array.isArray(value)) return value.map(canonical);
  if (value === null || typeof value !== 'object') return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) sorted[key] = canonical((value as Record<string, unknown>)[key]);
  return sorted;
}

/** The fold's event in its marker entry, as verify-database compares it with the stored record. */
export function foldedEvent(fold: JournalBase): JournalFoldedEvent {
  return { type: 'journalFolded', throughSeq: fold.throughSeq, throughHash: fold.throughHash, snapshotDigest: fold.snapshotDigest, licensees: fold.licensees };
}

/** Folds what `limits` allow (see the file's comment). */
export function foldJournal(deps: FoldDependencies, limits: FoldLimits, mode: FoldMode): FoldResult {
  const { env, journalDb, metaDb } = deps;
  if (readPendingFold(metaDb) !== undefined) throw deps.misuse('a fold waits for the card to seal it: promote it before folding further');
  const previous = readJournalBase(metaDb);
  let recordsDeleted = deleteLeftovers(deps, previous, undefined);

  // The new snapshot: the base's, then the folded groups, applied as they are taken (a fold of
  // millions of entries holds one group at a time, not the entries).
  const states = new Map<string, { licenseeNumber: string; state: RuntimeState }>();
  if (previous !== undefined) for (const item of foldStates(metaDb, previous.markerSeq)) states.set(keyPart(item.licenseeNumber), item);
  let changedAny = false;
  const apply = (entry: JournalEntry) => {
    if (entry.licenseeNumber === JOURNAL_FOLD_MARKER) return;
    const key = keyPart(entry.licenseeNumber);
    let item = states.get(key);
    if (item === undefined) states.set(key, (item = { licenseeNumber: entry.licenseeNumber, state: emptyRuntimeState() }));
    applyEventsInPlace(item.state, runtimeEventsOf(entry));
    changedAny = true;
  };

  // Whole groups, oldest first, while every entry is old enough.
  let folded = 0;
  let through: { seq: number; hash: string } | undefined;
  let prevHash = previous?.throughHash ?? GENESIS_HASH;
  const entries = function* () {
    for (const { value } of journalDb.getRange({ start: (previous?.throughSeq ?? 0) + 1 })) yield* entriesOfRecord(value);
  };
  for (const group of groupsOf(entries())) {
    const first = group[0]!;
    const last = group[group.length - 1]!;
    if (last.seq > limits.throughSeqAtMost || group.some((entry) => entry.atMs >= limits.entriesBeforeMs)) break;
    if (first.prevHash !== prevHash || journalHash(first.prevHash, group) !== first.hash) {
      throw deps.brokenChain(`journal entry ${first.seq} does not link to or match its chain`);
    }
    for (const entry of group) apply(entry);
    folded += group.length;
    through = { seq: last.seq, hash: first.hash };
    prevHash = first.hash;
  }
  // Only earlier folds' markers old enough: folding them would just replace one marker by another.
  if (through === undefined || !changedAny) return { folded: 0, base: previous, pending: undefined, recordsDeleted };
  const foldedThrough = through;
  const digest = snapshotDigest(states.values());

  const fold = env.commitSync((): JournalBase => {
    const head = deps.readJournalHead();
    const markerSeq = head.seq + 1;
    const next: JournalBase = {
      throughSeq: foldedThrough.seq,
      throughHash: foldedThrough.hash,
      snapshotDigest: digest,
      licensees: states.size,
      markerSeq,
      foldedEntries: (previous?.foldedEntries ?? 0) + folded,
      foldedAtMs: limits.atMs,
    };
    // The marker takes the time of the entry before it: a fold adds no time to what the
    // database has seen (service/trusted-clock.ts reads the newest entry's).
    const atMs = lastEntryAtMs(journalDb, head.seq);
    const { hash, record } = journalGroupRecord(head.hash, [{ seq: markerSeq, atMs, licenseeNumber: JOURNAL_FOLD_MARKER, events: [foldedEvent(next)] }]);
    for (const [key, item] of states) metaDb.putSync([BASE_STATE_PREFIX, markerSeq, key], item);
    journalDb.putSync(markerSeq, record);
    metaDb.putSync('journalHead', { seq: markerSeq, hash });
    metaDb.putSync(mode === 'now' ? JOURNAL_BASE_KEY : JOURNAL_PENDING_FOLD_KEY, next);
    deps.markFolded();
    return next;
  });
  if (mode === 'pending') return { folded, base: previous, pending: fold, recordsDeleted };
  recordsDeleted += deleteLeftovers(deps, fold, undefined);
  return { folded, base: fold, pending: undefined, recordsDeleted };
}

/**
 * Makes the pending fold the base (the caller has checked that the card sealed its marker and
 * that it verifies), then deletes what it folded. Returns undefined when none is pending.
 */
export function promotePendingFold(deps: FoldDependencies): { base: JournalBase; recordsDeleted: number } | undefined {
  const pending = readPendingFold(deps.metaDb);
  if (pending === undefined) return undefined;
  deps.env.commitSync(() => {
    deps.metaDb.putSync(JOURNAL_BASE_KEY, pending);
    deps.metaDb.removeSync(JOURNAL_PENDING_FOLD_KEY);
  });
  return { base: pending, recordsDeleted: deleteLeftovers(deps, pending, undefined) };
}

/**
 * Deletes what no reader needs once `base` is the base: the journal records below it and the
 * snapshots of other folds than it and `pending`. Returns the journal records deleted. (Each
 * batch's commit extends the data file over the free pages deletes leave after its end: lmdb.ts.)
 */
function deleteLeftovers(deps: FoldDependencies, base: JournalBase | undefined, pending: JournalBase | undefined): number {
  const keep = new Set([base?.markerSeq, pending?.markerSeq]);
  deleteInBatches(deps, deps.metaDb, () =>
    [...deps.metaDb.getKeys({ start: [BASE_STATE_PREFIX, 0], end: [BASE_STATE_PREFIX, Number.MAX_SAFE_INTEGER] })].filter(
      (key) => !keep.has((key as unknown[])[1] as number),
    ),
  );
  return base === undefined ? 0 : deleteInBatches(deps, deps.journalDb, () => [...deps.journalDb.getKeys({ end: base.throughSeq + 1, limit: DELETE_BATCH_KEYS })]);
}

/** Deletes the keys `batch` lists, DELETE_BATCH_KEYS per transaction, until it lists none. */
function deleteInBatches<V>(deps: FoldDependencies, db: KvDatabase<V>, batch: () => KvKey[]): number {
  let deleted = 0;
  for (;;) {
    const keys = batch().slice(0, DELETE_BATCH_KEYS);
    if (keys.length === 0) return deleted;
    deps.env.commitSync(() => {
      for (const key of keys) db.removeSync(key);
    });
    deleted += keys.length;
  }
}

function lastEntryAtMs(journalDb: KvDatabase<JournalRecord>, seq: number): number {
  for (const key of journalDb.getKeys({ start: seq, reverse: true, limit: 1 })) {
    const entries = entriesOfRecord(journalDb.get(key)!);
    return entries[entries.length - 1]!.atMs;
  }
  return 0;
}
