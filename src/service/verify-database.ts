/**
 * Verifies the runtime journal: walks the hash chain from the first entry,
 * replays every entry's events per licensee from an empty state, and checks
 * that the stored runtime state of every licensee equals the replayed one.
 * The first broken entry (or the first licensee whose state differs) is
 * reported, so an operator knows where tampering or corruption starts.
 *
 * After a fold (store/journal-fold.ts) the walk starts at the base: the
 * snapshot must match its digest, the chain continues from the base's link,
 * and the fold's marker entry, in the chain, must name that base. On a
 * card-bound database (`sealedJournalSeq` given) the card must have sealed
 * that marker: the meta records are not signed, and a base of someone's own
 * with a marker appended after the sealed entry would otherwise pass. A fold
 * that still waits for the seal is checked against the records it folds,
 * which are kept until then: their replay must give its snapshot and link.
 */
import { isDeepStrictEqual } from 'node:util';
import { applyEventsInPlace, emptyRuntimeState, ownEntry, runtimeEventFormProblem, runtimeStateFormProblem, type RuntimeEvent, type RuntimeState } from '../core/runtime.ts';
import { keyPart } from '../store/layout.ts';
import { journalHash, type AssetStore, type JournalBase, type JournalEntry } from '../store/asset-store.ts';
import { GENESIS_HASH, groupsOf, JOURNAL_FOLD_MARKER, runtimeEventsOf } from '../store/journal-records.ts';
import { foldedEvent, snapshotDigest } from '../store/journal-fold.ts';
import { decodeCheckpointPayload, verifyCheckpointSignature } from '../card/checkpoint.ts';

export interface VerifyReport {
  ok: boolean;
  /** Entries walked (after the fold's base, if there is one). */
  entries: number;
  /** The fold's base the walk started from, if the journal was folded. */
  base?: JournalBase;
  /** A fold that waits for the card's seal (checked against the records it folds). */
  pending?: JournalBase;
  licensees: number;
  /** Counters recomputed from the journal. */
  totals: { usedQuantity: number; sessions: number; createdLicenses: number; startDates: number; nodeSecrets: number };
  problems: string[];
}


/**
 * For a card-bound database, the journal entry its newest card checkpoint seals, once that
 * checkpoint's signature verifies with the bound card's public key; otherwise what is wrong.
 * Undefined for a database without card.
 */
export function sealedJournalSeqOf(store: Pick<AssetStore, 'meta' | 'cardCheckpoint'>): { seq: number } | { problem: string } | undefined {
  const binding = store.meta().cardBinding;
  if (binding === undefined) return undefined;
  const stored = store.cardCheckpoint();
  if (stored === undefined) return { problem: 'this database is bound to a smart card but holds no card checkpoint' };
  if (!verifyCheckpointSignature(stored, binding.publicKey)) return { problem: "its newest card checkpoint is not signed by the bound card's key" };
  let fields;
  try {
    fields = decodeCheckpointPayload(stored.payload);
  } catch (error) {
    return { problem: `its newest card checkpoint cannot be read (${(error as Error).message})` };
  }
  // The card signs checkpoints of every database it is bound to: one of another database says nothing of this one.
  if (fields.databaseId !== store.meta().databaseId) return { problem: `its newest card checkpoint was sealed for another database (${fields.databaseId})` };
  return { seq: fields.journalSeq };
}

/** The sealed entry of sealedJournalSeqOf's answer; undefined without card or when it names a problem. */
export function sealedSeqIn(sealed: ReturnType<typeof sealedJournalSeqOf>): number | undefined {
  return sealed !== undefined && 'seq' in sealed ? sealed.seq : undefined;
}

/**
 * `sealedJournalSeq`: for a card-bound database, the journal entry its newest card checkpoint
 * seals (undefined: the database runs without card).
 */
export function verifyDatabase(store: AssetStore, maxProblems = 20, sealedJournalSeq?: number): VerifyReport {
  const problems: string[] = [];
  const problem = (text: string) => void (problems.length < maxProblems && problems.push(text));
  /** A snapshot's states must have the agent's forms (core/runtime.ts): its digest sees only their text. */
  const checkStateForms = (states: readonly { licenseeNumber: string; state: RuntimeState }[], what: string) => {
    for (const { licenseeNumber, state } of states) {
      const form = typeof licenseeNumber === 'string' ? runtimeStateFormProblem(state) : 'it names no licensee';
      if (form !== undefined) problem(`${what}: the state of licensee '${String(licenseeNumber)}' is not of the agent's form: ${form} (altered)`);
    }
  };
  const replayed = new Map<string, RuntimeState>();
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let entries = 0;
  const base = store.journalBase();
  const pending = store.journalPendingFold();
  const markersSeen = new Set<number>();
  let pendingReached = false;
  /** A fold's snapshot must match its digest and have the agent's forms. */
  const checkSnapshot = (fold: JournalBase, snapshot: readonly { licenseeNumber: string; state: RuntimeState }[], what: string) => {
    if (snapshotDigest(snapshot) !== fold.snapshotDigest || snapshot.length !== fold.licensees) problem(`${what} does not match its digest (altered)`);
    checkStateForms(snapshot, what);
  };
  if (base !== undefined) {
    const snapshot = [...store.journalBaseStates()];
    checkSnapshot(base, snapshot, `the journal's folded base (entries 1–${base.throughSeq})`);
    if (sealedJournalSeq !== undefined && base.markerSeq > sealedJournalSeq) {
      problem(
        `the journal's folded base (entries 1–${base.throughSeq}) was not sealed by the card: its marker, entry ${base.markerSeq}, ` +
          `is after the newest entry the card sealed (${sealedJournalSeq}); compact-journal does not make such a base (altered)`,
      );
    }
    for (const { licenseeNumber, state } of snapshot) replayed.set(licenseeNumber, state);
    prevHash = base.throughHash;
    expectedSeq = base.throughSeq + 1;
  }
  if (pending !== undefined) checkSnapshot(pending, [...store.journalPendingStates()], `the fold through entry ${pending.throughSeq} that waits for the card's seal`);
  /** The markers of the base and of the pending fold must name them as stored; older markers are history. */
  const checkMarker = (entry: JournalEntry) => {
    // After the sealed entry, a marker must be the pending fold's, which the replay checks: the
    // start seals every entry it accepts, and a forged base could later name a sealed marker.
    if (sealedJournalSeq !== undefined && entry.seq > sealedJournalSeq && entry.seq !== pending?.markerSeq) {
      problem(`journal entry ${entry.seq}: a fold marker after the newest entry the card sealed (${sealedJournalSeq}) that no pending fold names (altered)`);
    }
    for (const fold of [base, pending]) {
      if (fold === undefined || entry.seq !== fold.markerSeq) continue;
      markersSeen.add(entry.seq);
      if (!isDeepStrictEqual(entry.events, [foldedEvent(fold)])) problem(`journal entry ${entry.seq}: the fold marker does not name the stored fold (altered)`);
    }
  };
  /** At the end of the pending fold's last group: the replay so far must be its snapshot, its link the fold's. */
  const checkPendingAt = (closed: readonly JournalEntry[]) => {
    if (pending === undefined || closed[closed.length - 1]!.seq !== pending.throughSeq) return;
    pendingReached = true;
    const states = [...replayed].map(([licenseeNumber, state]) => ({ licenseeNumber, state }));
    if (closed[0]!.hash !== pending.throughHash || snapshotDigest(states) !== pending.snapshotDigest) {
      problem(`the fold through entry ${pending.throughSeq} that waits for the card's seal is not what the entries it folds replay to (altered)`);
    }
  };
  /** One link of the chain per group commit (journal-records.ts, groupsOf). */
  const checkGroup = (group: readonly JournalEntry[]) => {
    const first = group[0]!;
    if (first.prevHash !== prevHash) problem(`journal entry ${first.seq}: previous-hash link broken`);
    else if (journalHash(first.prevHash, group) !== first.hash) {
      problem(
        group.length === 1
          ? `journal entry ${first.seq}: content does not match its hash (altered)`
          : `journal entries ${first.seq}–${group[group.length - 1]!.seq} (one group commit): content does not match their hash (altered)`,
      );
    }
  };
  /** Replays one entry onto `replayed`, checking what it may do. */
  const replay = (entry: JournalEntry) => {
    if (entry.licenseeNumber === JOURNAL_FOLD_MARKER) return checkMarker(entry);
    const events = runtimeEventsOf(entry);
    const form = typeof entry.licenseeNumber === 'string' ? events.map(runtimeEventFormProblem).find((p) => p !== undefined) : 'it names no licensee';
    // Not replayed: what it would do is not defined.
    if (form !== undefined) return problem(`journal entry ${entry.seq}: ${form} (altered)`);
    // The replayed states are this function's own: changed in place. (A copy per entry, as
    // applyEvents makes, cost O(pool size) per entry: 32 s for 15,000 entries of a licensee
    // holding 5,000 floating sessions, and a card-bound start runs this.)
    let state = replayed.get(entry.licenseeNumber);
    if (state === undefined) replayed.set(entry.licenseeNumber, (state = emptyRuntimeState()));
    const afterSeal = sealedJournalSeq !== undefined && entry.seq > sealedJournalSeq;
    for (const event of events) {
      // One event at a time: an entry's second event is judged against what its first did.
      const backwards = afterSeal ? takesBack(state, event) : undefined;
      if (backwards !== undefined) problem(`journal entry ${entry.seq}, after the newest entry the card sealed (${sealedJournalSeq}): ${backwards} (altered)`);
      applyEventsInPlace(state, [event]);
    }
  };
  for (const group of groupsOf(store.journal())) {
    for (const entry of group) {
      entries++;
      if (entry.seq !== expectedSeq) problem(`journal entry ${entry.seq}: expected sequence ${expectedSeq} (entries missing)`);
      expectedSeq = entry.seq + 1;
      replay(entry);
    }
    checkGroup(group);
    checkPendingAt(group);
    prevHash = group[0]!.hash;
  }
  for (const fold of [base, pending]) {
    if (fold !== undefined && !markersSeen.has(fold.markerSeq)) problem(`journal entry ${fold.markerSeq}: the marker of the fold through entry ${fold.throughSeq} is missing`);
  }
  if (pending !== undefined && !pendingReached) {
    problem(`the fold through entry ${pending.throughSeq} that waits for the card's seal does not end where a group of the journal ends, or its entries are missing`);
  }
  const head = store.journalHead();
  if (head.seq !== expectedSeq - 1 || head.hash !== prevHash) {
    problems.push(`journal head (sequence ${head.seq}) does not match the last entry (sequence ${expectedSeq - 1}): entries lost or appended outside the agent`);
  }
  let licensees = 0;
  const seen = new Set<string>();
  for (const { key, licenseeNumber, state } of store.runtimeEntries()) {
    licensees++;
    // The agent serves the record under the licensee's key: a record moved to another key would
    // be compared under one licensee and served for another.
    // The raw key: lmdb keys may be numbers, booleans or arrays too, whose text looks like the number's.
    if (typeof licenseeNumber !== 'string' || typeof key !== 'string' || key !== keyPart(licenseeNumber) || seen.has(licenseeNumber)) {
      problem(`runtime record ${JSON.stringify(key).slice(0, 120)} is not the state of the licensee it is stored under (moved or altered)`);
      continue;
    }
    seen.add(licenseeNumber);
    const form = runtimeStateFormProblem(state);
    if (form !== undefined) {
      problem(`runtime state of licensee '${licenseeNumber}' is not of the agent's form: ${form} (altered)`);
      continue;
    }
    const expected = replayed.get(licenseeNumber) ?? emptyRuntimeState();
    if (!isDeepStrictEqual(normalise(state), normalise(expected))) problem(`runtime state of licensee '${licenseeNumber}' differs from the replayed journal`);
  }
  for (const number of replayed.keys()) {
    if (!seen.has(number) && problems.length < maxProblems) {
      problems.push(`licensee '${number}' has journal entries but no stored runtime state`);
    }
  }
  const totals = { usedQuantity: 0, sessions: 0, createdLicenses: 0, startDates: 0, nodeSecrets: 0 };
  for (const state of replayed.values()) {
    // Counted where their form is the agent's (the problems above name the others).
    if (runtimeStateFormProblem(state) !== undefined) continue;
    totals.usedQuantity += Object.values(state.usedQuantity).reduce((a, b) => a + b, 0);
    totals.sessions += Object.values(state.sessions).reduce((a, s) => a + s.size, 0);
    totals.createdLicenses += Object.keys(state.createdLicenses).length;
    totals.startDates += Object.keys(state.startDates).length;
    totals.nodeSecrets += Object.values(state.nodeSecrets).reduce((a, s) => a + s.length, 0);
  }
  return { ok: problems.length === 0, entries, ...(base === undefined ? {} : { base }), ...(pending === undefined ? {} : { pending }), licensees, totals, problems };
}

/**
 * What `event` takes back of what `state` counted, if anything. The agent's own entries only move
 * a state forward: they book non-negative quantities, and start a license or set a start date
 * once. The card seals the journal only up to its newest checkpoint, so entries after it are
 * accepted as written, and this is what tells an entry someone appended from one the agent wrote.
 * (run-agent books negative quantities when it reconciles, but its database has no card.)
 */
function takesBack(state: RuntimeState, event: RuntimeEvent): string | undefined {
  if (event.type === 'quantityUsed' && event.quantity < 0) return `a negative used quantity (${event.quantity}) on license '${event.licenseNumber}'`;
  if (event.type === 'licenseCreated' && ownEntry(state.createdLicenses, event.license.templateNumber) !== undefined) {
    return `the license of template '${event.license.templateNumber}' created again`;
  }
  if (event.type === 'startDateSet' && ownEntry(state.startDates, event.licenseNumber) !== undefined) return `the start date of license '${event.licenseNumber}' set again`;
  return undefined;
}

/** msgpack round trips may drop empty maps; compare on content only (session tables as plain objects). */
function normalise(state: RuntimeState): unknown {
  return JSON.parse(JSON.stringify(state, (_key, value: unknown) => (value instanceof Map ? Object.fromEntries(value) : value)));
}
