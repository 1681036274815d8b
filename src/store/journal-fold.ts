/**
 * Folding the journal's oldest entries into a base (`--action=compact-journal`).
 *
 * The journal keeps every counter change, so it grew without a bound (~150–250 bytes per
 * validate that changes a counter: docs/operations.md, "Sizing: disk"), and everything that
 * replays it (verify-database, a card-bound start) took longer every day. A fold replaces the
 * entries up to a group boundary `throughSeq` by a snapshot: every licensee's runtime state
 * after that entry, stored under meta keys [BASE_STATE_PREFIX, licensee key], with its SHA-256
 * (`snapshotDigest`) in the meta record `journalBase`. Replaying the snapshot and then the
 * entries kept gives exactly what replaying the whole journal gave.
 *
 * What keeps it tamper-evident: the fold appends a marker entry to the chain (licensee number
 * JOURNAL_FOLD_MARKER) whose one event names `throughSeq`, the chain link there and the
 * snapshot's digest. The entries kept still link to `throughHash`, and the smart card's next
 * checkpoint seals a head that covers the marker: a snapshot altered afterwards no longer matches
 * the digest the sealed chain holds. A card-bound database is folded only up to the entry its
 * newest checkpoint seals (the card's start-up check reads that entry's link: journalHashAt).
 *
 * Atomicity: the snapshot, the marker, the new head and `journalBase` are one LMDB transaction
 * (the commit point). The folded records are deleted after it, in transactions of
 * DELETE_BATCH_KEYS keys (one transaction of millions of deletes could exceed LMDB's
 * dirty-page limit); records left by a fold that was stopped before it finished lie below the
 * base, are never read (AssetStore.journal starts after it) and are deleted by the next fold.
 *
 * Runs only in a process that holds the runtime-writer lock and serves nothing (the caller's
 * claim): a serving agent's writer keeps its own view of the journal head.
 */
import { applyEventsInPlace, emptyRuntimeState, type RuntimeState } from '../core/runtime.ts';
import { keyPart } from './layout.ts';
import type { KvDatabase, KvEnvironment } from './lmdb.ts';
import {
  entriesOfRecord,
  journalGroupRecord,
  journalHash,
  JOURNAL_FOLD_MARKER,
  runtimeEventsOf,
  type JournalEntry,
  type JournalFoldedEvent,
  type JournalRecord,
} from './journal-records.ts';
import { runtimeStateOf, type JournalHead, type RuntimeRecord } from './runtime-writer.ts';

/** Meta key of the fold's record (JournalBase); absent: the journal starts at entry 1. */
export const JOURNAL_BASE_KEY = 'journalBase';
/** First part of the meta keys of the snapshot's states: [BASE_STATE_PREFIX, licensee key]. */
export const BASE_STATE_PREFIX = 'journalBaseState';

/** What the newest fold left: where the journal now starts. */
export interface JournalBase {
  /** Entries 1 to `throughSeq` are folded into the snapshot; the journal holds the entries after it. */
  throughSeq: number;
  /** The chain link of entry `throughSeq`'s group, which the first entry kept links to. */
  throughHash: string;
  /** SHA-256 (hex) of the snapshot (snapshotDigest). */
  snapshotDigest: string;
  /** Licensees in the snapshot. */
  licensees: number;
  /** The marker entry the fold appended to the chain. */
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

export interface FoldResult {
  /** Entries folded by this call (0: nothing was old enough, or the journal is empty). */
  folded: number;
  /** The base after the call (the previous one when nothing was folded). */
  base: JournalBase | undefined;
  /** Journal records deleted by this call (a stopped fold's leftovers included). */
  recordsDeleted: number;
}

/** The store's parts a fold reads and writes. */
export interface FoldDependencies {
  env: KvEnvironment;
  journalDb: KvDatabase<JournalRecord>;
  metaDb: KvDatabase<unknown>;
  readJournalHead(): JournalHead;
  /** Throws the store's error for a journal that does not link or hash as it should. */
  brokenChain(message: string): Error;
  /** Stamps the meta record's schema version (a folded journal needs an agent that knows folds). */
  markFolded(): void;
}

/** Folded records deleted per transaction. */
const DELETE_BATCH_KEYS = 10_000;

export function readJournalBase(metaDb: KvDatabase<unknown>): JournalBase | undefined {
  return metaDb.get(JOURNAL_BASE_KEY) as JournalBase | undefined;
}

/** The snapshot's states, in key order. */
export function* journalBaseStates(metaDb: KvDatabase<unknown>): Iterable<{ licenseeNumber: string; state: RuntimeState }> {
  for (const { value } of metaDb.getRange({ start: [BASE_STATE_PREFIX], end: [BASE_STATE_PREFIX, '\uffff'] })) {
    const record = value as RuntimeRecord;
    yield { licenseeNumber: record.licenseeNumber, state: runtimeStateOf(record) };
  }
}

/**
 * SHA-256 (hex) of a snapshot: one line per licensee, in the order of their numbers, each the
 * JSON of the number and of the state with every object's keys sorted and session tables as
 * objects. The order of keys and sessions is not part of a state (verify-database compares
 * states the same way), and LMDB's key order is not the numbers' order (long numbers are hashed).
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
  if (value instanceof Map) value = Object.fromEntries(value);
  if (Array.isArray(value)) return value.map(canonical);
  if (value === null || typeof value !== 'object') return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) sorted[key] = canonical((value as Record<string, unknown>)[key]);
  return sorted;
}

/** The chain link a journal continues from after `base` (the genesis link without one). */
export function linkBeforeKept(base: JournalBase | undefined, genesisHash: string): string {
  return base?.throughHash ?? genesisHash;
}

/** Folds what `limits` allow (see the file's comment). */
export function foldJournal(deps: FoldDependencies, limits: FoldLimits, genesisHash: string): FoldResult {
  const { env, journalDb, metaDb } = deps;
  const previous = readJournalBase(metaDb);
  let recordsDeleted = deleteRecordsBelow(deps, (previous?.throughSeq ?? 0) + 1);

  // The new snapshot: the previous one, then the folded groups, applied as they are taken (a
  // fold of millions of entries holds one group at a time, not the entries).
  const states = new Map<string, { licenseeNumber: string; state: RuntimeState }>();
  for (const item of journalBaseStates(metaDb)) states.set(keyPart(item.licenseeNumber), item);
  const changed = new Set<string>();
  const apply = (entry: JournalEntry) => {
    if (entry.licenseeNumber === JOURNAL_FOLD_MARKER) return;
    const key = keyPart(entry.licenseeNumber);
    let item = states.get(key);
    if (item === undefined) states.set(key, (item = { licenseeNumber: entry.licenseeNumber, state: emptyRuntimeState() }));
    applyEventsInPlace(item.state, runtimeEventsOf(entry));
    changed.add(key);
  };
  const changedAny = () => changed.size > 0;

  // Whole groups, oldest first, while every entry is old enough.
  let folded = 0;
  let through: { seq: number; hash: string } | undefined;
  let prevHash = linkBeforeKept(previous, genesisHash);
  let group: JournalEntry[] = [];
  /** Folds the group collected so far if it may be folded; false when the fold ends before it. */
  const takeGroup = (): boolean => {
    const first = group[0];
    if (first === undefined) return true;
    const last = group[group.length - 1]!;
    if (last.seq > limits.throughSeqAtMost || group.some((entry) => entry.atMs >= limits.entriesBeforeMs)) return false;
    if (first.prevHash !== prevHash || journalHash(first.prevHash, group) !== first.hash) {
      throw deps.brokenChain(`journal entry ${first.seq} does not link to or match its chain`);
    }
    for (const entry of group) apply(entry);
    folded += group.length;
    through = { seq: last.seq, hash: first.hash };
    prevHash = first.hash;
    group = [];
    return true;
  };
  let ended = false;
  scan: for (const { value } of journalDb.getRange({ start: (previous?.throughSeq ?? 0) + 1 })) {
    for (const entry of entriesOfRecord(value)) {
      const sameGroup = group.length > 0 && entry.prevHash === group[0]!.prevHash && entry.hash === group[0]!.hash;
      if (!sameGroup && !takeGroup()) {
        ended = true;
        break scan;
      }
      group.push(entry);
    }
  }
  if (!ended) takeGroup();
  // Only earlier folds' markers old enough: folding them would just replace one marker by another.
  if (through === undefined || !changedAny()) return { folded: 0, base: previous, recordsDeleted };
  const digest = snapshotDigest(states.values());
  const foldedThrough = through as { seq: number; hash: string };

  const base = env.commitSync((): JournalBase => {
    const head = deps.readJournalHead();
    const markerSeq = head.seq + 1;
    const event: JournalFoldedEvent = {
      type: 'journalFolded',
      throughSeq: foldedThrough.seq,
      throughHash: foldedThrough.hash,
      snapshotDigest: digest,
      licensees: states.size,
    };
    // The marker takes the time of the entry before it: a fold adds no time to what the
    // database has seen (service/trusted-clock.ts reads the newest entry's).
    const atMs = lastEntryAtMs(journalDb, head.seq);
    const { hash, record } = journalGroupRecord(head.hash, [{ seq: markerSeq, atMs, licenseeNumber: JOURNAL_FOLD_MARKER, events: [event] }]);
    for (const key of changed) metaDb.putSync([BASE_STATE_PREFIX, key], states.get(key)!);
    journalDb.putSync(markerSeq, record);
    metaDb.putSync('journalHead', { seq: markerSeq, hash });
    const next: JournalBase = {
      throughSeq: foldedThrough.seq,
      throughHash: foldedThrough.hash,
      snapshotDigest: digest,
      licensees: states.size,
      markerSeq,
      foldedEntries: (previous?.foldedEntries ?? 0) + folded,
      foldedAtMs: limits.atMs,
    };
    metaDb.putSync(JOURNAL_BASE_KEY, next);
    deps.markFolded();
    return next;
  });
  recordsDeleted += deleteRecordsBelow(deps, base.throughSeq + 1);
  return { folded, base, recordsDeleted };
}

function lastEntryAtMs(journalDb: KvDatabase<JournalRecord>, seq: number): number {
  for (const key of journalDb.getKeys({ start: seq, reverse: true, limit: 1 })) {
    const entries = entriesOfRecord(journalDb.get(key)!);
    return entries[entries.length - 1]!.atMs;
  }
  return 0;
}

/** Deletes the journal records keyed below `seq` (folded), in transactions of DELETE_BATCH_KEYS. */
function deleteRecordsBelow(deps: FoldDependencies, seq: number): number {
  let deleted = 0;
  for (;;) {
    const keys = [...deps.journalDb.getKeys({ end: seq, limit: DELETE_BATCH_KEYS })];
    if (keys.length === 0) return deleted;
    deps.env.commitSync(() => {
      for (const key of keys) deps.journalDb.removeSync(key);
    });
    deleted += keys.length;
  }
}
