/**
 * Verifies the runtime journal: walks the hash chain from the first entry,
 * replays every entry's events per licensee from an empty state, and checks
 * that the stored runtime state of every licensee equals the replayed one.
 * The first broken entry (or the first licensee whose state differs) is
 * reported, so an operator knows where tampering or corruption starts.
 *
 * After a fold (store/journal-fold.ts) the walk starts at the fold's base: the
 * snapshot must match its digest, the chain continues from the base's link,
 * and the fold's marker entry, in the chain, must name that base.
 */
import { isDeepStrictEqual } from 'node:util';
import { applyEventsInPlace, emptyRuntimeState, type RuntimeState } from '../core/runtime.ts';
import { journalHash, type AssetStore, type JournalBase, type JournalEntry } from '../store/asset-store.ts';
import { JOURNAL_FOLD_MARKER, runtimeEventsOf, type JournalFoldedEvent } from '../store/journal-records.ts';
import { snapshotDigest } from '../store/journal-fold.ts';

export interface VerifyReport {
  ok: boolean;
  /** Entries walked (after the fold's base, if there is one). */
  entries: number;
  /** The fold's base the walk started from, if the journal was folded. */
  base?: JournalBase;
  licensees: number;
  /** Counters recomputed from the journal. */
  totals: { usedQuantity: number; sessions: number; createdLicenses: number; startDates: number; nodeSecrets: number };
  problems: string[];
}

const GENESIS_HASH = '0'.repeat(64);

export function verifyDatabase(store: AssetStore, maxProblems = 20): VerifyReport {
  const problems: string[] = [];
  const replayed = new Map<string, RuntimeState>();
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let entries = 0;
  const base = store.journalBase();
  let markerSeen = false;
  if (base !== undefined) {
    const snapshot = [...store.journalBaseStates()];
    if (snapshotDigest(snapshot) !== base.snapshotDigest || snapshot.length !== base.licensees) {
      problems.push(`the journal's folded base (entries 1–${base.throughSeq}) does not match its digest (altered)`);
    }
    for (const { licenseeNumber, state } of snapshot) replayed.set(licenseeNumber, state);
    prevHash = base.throughHash;
    expectedSeq = base.throughSeq + 1;
  }
  /** The newest fold's marker must name the base as stored; older markers are history. */
  const checkMarker = (entry: JournalEntry) => {
    if (base === undefined || entry.seq !== base.markerSeq) return;
    markerSeen = true;
    const event = entry.events[0] as JournalFoldedEvent | undefined;
    const names =
      entry.events.length === 1 &&
      event?.type === 'journalFolded' &&
      event.throughSeq === base.throughSeq &&
      event.throughHash === base.throughHash &&
      event.snapshotDigest === base.snapshotDigest &&
      event.licensees === base.licensees;
    if (!names && problems.length < maxProblems) problems.push(`journal entry ${entry.seq}: the fold marker does not name the stored base (altered)`);
  };
  // The chain has one link per group commit: consecutive entries with the same prevHash and
  // hash (runtime-writer.ts, JournalEntry). Each group is checked when the next one begins.
  let group: JournalEntry[] = [];
  const checkGroup = () => {
    if (group.length === 0 || problems.length >= maxProblems) return;
    const first = group[0]!;
    if (first.prevHash !== prevHash) problems.push(`journal entry ${first.seq}: previous-hash link broken`);
    else if (journalHash(first.prevHash, group) !== first.hash) {
      problems.push(
        group.length === 1
          ? `journal entry ${first.seq}: content does not match its hash (altered)`
          : `journal entries ${first.seq}–${group[group.length - 1]!.seq} (one group commit): content does not match their hash (altered)`,
      );
    }
  };
  /** Checks the group collected so far and moves the chain past it. */
  const closeGroup = () => {
    checkGroup();
    if (group.length > 0) prevHash = group[0]!.hash;
    group = [];
  };
  for (const entry of store.journal()) {
    entries++;
    const sameGroup = group.length > 0 && entry.prevHash === group[0]!.prevHash && entry.hash === group[0]!.hash;
    if (!sameGroup) closeGroup();
    group.push(entry);
    if (entry.seq !== expectedSeq && problems.length < maxProblems) {
      problems.push(`journal entry ${entry.seq}: expected sequence ${expectedSeq} (entries missing)`);
    }
    expectedSeq = entry.seq + 1;
    // The replayed states are this function's own: changed in place. (A copy per entry, as
    // applyEvents makes, cost O(pool size) per entry: 32 s for 15,000 entries of a licensee
    // holding 5,000 floating sessions, and a card-bound start runs this.)
    if (entry.licenseeNumber === JOURNAL_FOLD_MARKER) {
      checkMarker(entry);
      continue;
    }
    let state = replayed.get(entry.licenseeNumber);
    if (state === undefined) replayed.set(entry.licenseeNumber, (state = emptyRuntimeState()));
    applyEventsInPlace(state, runtimeEventsOf(entry));
  }
  closeGroup();
  if (base !== undefined && !markerSeen && problems.length < maxProblems) {
    problems.push(`journal entry ${base.markerSeq}: the marker of the fold through entry ${base.throughSeq} is missing`);
  }
  const head = store.journalHead();
  if (head.seq !== expectedSeq - 1 || head.hash !== prevHash) {
    problems.push(`journal head (sequence ${head.seq}) does not match the last entry (sequence ${expectedSeq - 1}): entries lost or appended outside the agent`);
  }
  let licensees = 0;
  const seen = new Set<string>();
  for (const { licenseeNumber, state } of store.runtimeEntries()) {
    licensees++;
    seen.add(licenseeNumber);
    const expected = replayed.get(licenseeNumber) ?? emptyRuntimeState();
    if (!isDeepStrictEqual(normalise(state), normalise(expected)) && problems.length < maxProblems) {
      problems.push(`runtime state of licensee '${licenseeNumber}' differs from the replayed journal`);
    }
  }
  for (const number of replayed.keys()) {
    if (!seen.has(number) && problems.length < maxProblems) {
      problems.push(`licensee '${number}' has journal entries but no stored runtime state`);
    }
  }
  const totals = { usedQuantity: 0, sessions: 0, createdLicenses: 0, startDates: 0, nodeSecrets: 0 };
  for (const state of replayed.values()) {
    totals.usedQuantity += Object.values(state.usedQuantity).reduce((a, b) => a + b, 0);
    totals.sessions += Object.values(state.sessions).reduce((a, s) => a + s.size, 0);
    totals.createdLicenses += Object.keys(state.createdLicenses).length;
    totals.startDates += Object.keys(state.startDates).length;
    totals.nodeSecrets += Object.values(state.nodeSecrets).reduce((a, s) => a + s.length, 0);
  }
  return { ok: problems.length === 0, entries, ...(base === undefined ? {} : { base }), licensees, totals, problems };
}

/** msgpack round trips may drop empty maps; compare on content only (session tables as plain objects). */
function normalise(state: RuntimeState): unknown {
  return JSON.parse(JSON.stringify(state, (_key, value: unknown) => (value instanceof Map ? Object.fromEntries(value) : value)));
}
