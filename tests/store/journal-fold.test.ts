// Goal: folding the journal's oldest entries into a base (store/journal-fold.ts) changes no
// licensee's state and nothing verify-database recomputes; the journal then starts after the
// base, the entries kept still link to it, a second fold builds on the first, a fold stops at a
// group boundary and at its limits, altering the base is found, a stopped fold's leftovers are
// never read, and writes after a fold (crash copies included) verify.
// Method: real LMDB stores in temp directories; runtime changes through commitRuntime with
// chosen times; tampering through a raw LMDB handle on the closed database.
import { describe, expect, test } from 'bun:test';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { RuntimeEvent } from '../../src/core/runtime.ts';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore, RuntimeWriterTakenError, SCHEMA_VERSION_FOLDED, StoreError, type AssetStore, type FoldMode, type JournalEntry } from '../../src/store/asset-store.ts';
import { BASE_STATE_PREFIX, JOURNAL_BASE_KEY, JOURNAL_PENDING_FOLD_KEY, snapshotDigest, type JournalBase } from '../../src/store/journal-fold.ts';
import { journalGroupRecord, JOURNAL_FOLD_MARKER, type JournalRecord } from '../../src/store/journal-records.ts';
import { keyPart } from '../../src/store/layout.ts';
import { openKvEnvironment } from '../../src/store/lmdb.ts';
import { WAL_FILE } from '../../src/store/runtime-wal.ts';
import { tempDir } from '../helpers.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const LONG = 'ü'.repeat(1000); // stored under a hashed key (layout.ts keyPart)

const used = (quantity: number): RuntimeEvent[] => [{ type: 'quantityUsed', licenseNumber: 'X', quantity }];

/** Ten days of changes: quantities, sessions out and in, a node secret, a trial start, a long licensee number. */
async function tenDays(store: AssetStore, fromDay = 0): Promise<void> {
  for (let d = fromDay; d < fromDay + 10; d++) {
    const at = T0 + d * DAY;
    const changes: Promise<unknown>[] = [
      store.commitRuntime('L1', at, () => ({ events: used(d + 1), result: null })),
      store.commitRuntime('L2', at, () => ({
        events: [{ type: 'sessionCheckedOut', moduleNumber: 'M', sessionId: `s${d}`, checkedOutMs: at, expiresMs: at + DAY }],
        result: null,
      })),
      store.commitRuntime(LONG, at, () => ({ events: [{ type: 'nodeSecretRegistered', moduleNumber: 'N', secret: `n${d % 3}` }], result: null })),
    ];
    if (d > fromDay) changes.push(store.commitRuntime('L2', at, () => ({ events: [{ type: 'sessionCheckedIn', moduleNumber: 'M', sessionId: `s${d - 1}` }], result: null })));
    if (d === fromDay) {
      changes.push(
        store.commitRuntime('L3', at, () => ({
          events: [{ type: 'licenseCreated', license: { number: `AGENT-L3-T${d}`, templateNumber: `T${d}`, startDate: new Date(at).toISOString() } }],
          result: null,
        })),
      );
    }
    await Promise.all(changes);
  }
}

function newJournal(): Promise<string> {
  const dir = join(tempDir(), 'database');
  const store = openAssetStore(dir, { create: true });
  return tenDays(store).then(async () => {
    await store.close();
    return dir;
  });
}

/** Every licensee's state, comparable (session tables as objects). */
function states(store: AssetStore): Record<string, unknown> {
  const all: Record<string, unknown> = {};
  for (const { licenseeNumber, state } of store.runtimeEntries()) {
    all[licenseeNumber] = JSON.parse(JSON.stringify(state, (_k, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v)));
  }
  return all;
}

function fold(store: AssetStore, entriesBeforeMs: number, throughSeqAtMost = store.journalHead().seq, mode: FoldMode = 'now') {
  return store.exclusively('test', () => store.foldJournal({ throughSeqAtMost, entriesBeforeMs, atMs: T0 + 100 * DAY }, mode));
}

function journalRecordKeys(dir: string): number[] {
  const env = openKvEnvironment(dir, { readOnly: true });
  try {
    return [...env.open<JournalRecord>('journal').getKeys({})] as number[];
  } finally {
    void env.close();
  }
}

describe('journal fold', () => {
  test('folding the oldest days keeps every state and every recomputed counter; the journal starts after the base', async () => {
    const dir = await newJournal();
    const store = openAssetStore(dir);
    const before = verifyDatabase(store);
    expect(before.problems).toEqual([]);
    const stateBefore = states(store);
    const entriesBefore = [...store.journal()];
    const cut = T0 + 5 * DAY;
    const old = entriesBefore.filter((e) => e.atMs < cut);
    const headBefore = store.journalHead();

    const result = fold(store, cut);
    const base = result.base!;
    expect(result.folded).toBe(old.length);
    expect(base.throughSeq).toBe(old[old.length - 1]!.seq);
    expect(base.throughHash).toBe(old[old.length - 1]!.hash);
    expect(base.markerSeq).toBe(headBefore.seq + 1);
    expect(base.licensees).toBe(4);
    expect(base.foldedEntries).toBe(old.length);
    expect(result.recordsDeleted).toBeGreaterThan(0);

    const kept = [...store.journal()];
    expect(kept[0]!.seq).toBe(base.throughSeq + 1);
    expect(kept[0]!.prevHash).toBe(base.throughHash);
    expect(kept.slice(0, -1)).toEqual(entriesBefore.filter((e) => e.atMs >= cut));
    const marker = kept[kept.length - 1]!;
    expect(marker.licenseeNumber).toBe(JOURNAL_FOLD_MARKER);
    expect(marker.events).toEqual([{ type: 'journalFolded', throughSeq: base.throughSeq, throughHash: base.throughHash, snapshotDigest: base.snapshotDigest, licensees: 4 }]);
    // The marker takes the newest entry's time: a fold adds no time the trusted clock would take.
    expect(marker.atMs).toBe(entriesBefore[entriesBefore.length - 1]!.atMs);
    expect(store.journalHead()).toEqual({ seq: base.markerSeq, hash: marker.hash });
    expect(store.journalHashAt(base.throughSeq)).toBe(base.throughHash);
    expect(store.journalHashAt(base.throughSeq - 1)).toBeUndefined();
    expect(store.journalHashAt(0)).toBeUndefined();
    expect(store.meta().schemaVersion).toBe(SCHEMA_VERSION_FOLDED);

    const after = verifyDatabase(store);
    expect(after.problems).toEqual([]);
    expect(after.totals).toEqual(before.totals);
    expect(after.entries).toBe(kept.length);
    expect(after.base).toEqual(base);
    expect(states(store)).toEqual(stateBefore);
    await store.close();

    // Only the records after the base are left; the fold is in the file.
    expect(journalRecordKeys(dir).every((key) => key > base.throughSeq)).toBe(true);
    const reader = openAssetStore(dir, { readOnly: true });
    expect(verifyDatabase(reader).problems).toEqual([]);
    expect(reader.journalBase()).toEqual(base);
    await reader.close();
  });

  test('a second fold builds on the first (its marker folded too); writes after it verify, also from a crash copy', async () => {
    const dir = await newJournal();
    let store = openAssetStore(dir);
    const totals = verifyDatabase(store).totals;
    const first = fold(store, T0 + 3 * DAY).base!;
    const second = fold(store, T0 + 1000 * DAY).base!;
    expect(second.throughSeq).toBe(first.markerSeq);
    expect(second.foldedEntries).toBe(first.markerSeq);
    expect([...store.journal()].map((e) => e.licenseeNumber)).toEqual([JOURNAL_FOLD_MARKER]);
    expect(verifyDatabase(store)).toMatchObject({ ok: true, entries: 1, totals });

    // Serving again after the fold: new groups link to the marker; a copy taken before any
    // checkpoint (what a crash leaves) applies them from the journal file at its open.
    await store.close();
    store = openAssetStore(dir, { checkpointQuietMs: 60_000, checkpointEveryGroups: 1000 });
    await Promise.all(Array.from({ length: 7 }, () => store.commitRuntime('L1', T0 + 200 * DAY, () => ({ events: used(1), result: null }))));
    const copy = join(tempDir(), 'database');
    mkdirSync(copy);
    for (const file of ['data.mdb', WAL_FILE]) copyFileSync(join(dir, file), join(copy, file));
    await store.close();
    for (const where of [dir, copy]) {
      const reopened = openAssetStore(where);
      const report = verifyDatabase(reopened);
      expect(report.problems).toEqual([]);
      expect(report.totals.usedQuantity).toBe(totals.usedQuantity + 7);
      expect(reopened.getRuntime('L1').usedQuantity['X']).toBe(55 + 7);
      await reopened.close();
    }
  });

  test('a fold ends before the first group it may not take whole: at its sequence limit, and at the first new entry', async () => {
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    for (let i = 0; i < 3; i++) await store.commitRuntime('L1', T0, () => ({ events: used(1), result: null }));
    // One group of several entries (queued while the previous record was written), then singles.
    await Promise.all(Array.from({ length: 12 }, () => store.commitRuntime('L1', T0, () => ({ events: used(1), result: null }))));
    await store.commitRuntime('L1', T0 + DAY, () => ({ events: used(1), result: null }));
    await store.close();

    const reopened = openAssetStore(dir);
    const entries = [...reopened.journal()];
    const groups = new Map<string, JournalEntry[]>();
    for (const entry of entries) groups.set(entry.hash, [...(groups.get(entry.hash) ?? []), entry]);
    const wide = [...groups.values()].find((g) => g.length > 1)!;
    expect(wide).toBeDefined();
    // A limit inside the wide group: the fold stops before it.
    const limited = fold(reopened, T0 + 10 * DAY, wide[1]!.seq);
    expect(limited.base!.throughSeq).toBe(wide[0]!.seq - 1);
    expect(limited.folded).toBe(wide[0]!.seq - 1);
    // A cut-off after T0: everything of T0 folds, the entry of the next day stays.
    const timed = fold(reopened, T0 + 1);
    expect(timed.base!.throughSeq).toBe(15);
    expect([...reopened.journal()].map((e) => e.seq)).toEqual([16, limited.base!.markerSeq, timed.base!.markerSeq]);
    expect(verifyDatabase(reopened).problems).toEqual([]);
    // Nothing left that may be folded: no new marker, no write.
    const head = reopened.journalHead();
    expect(fold(reopened, T0 + 1).folded).toBe(0);
    expect(reopened.journalHead()).toEqual(head);
    await reopened.close();
  });

  test('an altered base is found: the snapshot against its digest, the stored base against the marker in the chain', async () => {
    const dir = await newJournal();
    let store = openAssetStore(dir);
    const base = fold(store, T0 + 5 * DAY).base!;
    await store.close();

    // A forger lowers L1's booked quantity in the snapshot and in its runtime record alike.
    const forge = (change: (meta: ReturnType<typeof metaOf>) => void) => {
      const env = openKvEnvironment(dir);
      const meta = metaOf(env);
      env.commitSync(() => change(meta));
      void env.close();
    };
    const metaOf = (env: ReturnType<typeof openKvEnvironment>) => env.open<unknown>('meta');
    type Booked = { licenseeNumber: string; state: { usedQuantity: Record<string, number> } };
    forge((meta) => {
      const key = [BASE_STATE_PREFIX, base.markerSeq, keyPart('L1')];
      const record = meta.get(key) as Booked;
      expect(record.state.usedQuantity['X']).toBe(15);
      record.state.usedQuantity['X'] = 1;
      meta.putSync(key, record);
    });
    {
      const env = openKvEnvironment(dir);
      const runtime = env.open<Booked>('runtime');
      const record = runtime.get('L1')!;
      record.state.usedQuantity['X'] = 55 - 14;
      env.commitSync(() => runtime.putSync('L1', record));
      void env.close();
    }
    store = openAssetStore(dir);
    expect(verifyDatabase(store).problems).toEqual([`the journal's folded base (entries 1–${base.throughSeq}) does not match its digest (altered)`]);
    await store.close();

    // ... and then writes the new snapshot's digest into the base: the marker in the chain still names the old one.
    store = openAssetStore(dir, { readOnly: true });
    const forgedDigest = snapshotDigest(store.journalBaseStates());
    await store.close();
    forge((meta) => meta.putSync(JOURNAL_BASE_KEY, { ...(meta.get(JOURNAL_BASE_KEY) as JournalBase), snapshotDigest: forgedDigest }));
    store = openAssetStore(dir);
    expect(verifyDatabase(store).problems).toEqual([`journal entry ${base.markerSeq}: the fold marker does not name the stored fold (altered)`]);
    await store.close();

    // Without the base record, the journal is missing its first entries.
    forge((meta) => meta.removeSync(JOURNAL_BASE_KEY));
    store = openAssetStore(dir);
    expect(verifyDatabase(store).problems[0]).toBe(`journal entry ${base.throughSeq + 1}: expected sequence 1 (entries missing)`);
    await store.close();
  });

  test('records a stopped fold left below the base are never read, and the next fold deletes them', async () => {
    const dir = await newJournal();
    const leftover = (() => {
      const env = openKvEnvironment(dir, { readOnly: true });
      const record = env.open<JournalRecord>('journal').get(1);
      void env.close();
      return record!;
    })();
    let store = openAssetStore(dir);
    const base = fold(store, T0 + 5 * DAY).base!;
    await store.close();
    const env = openKvEnvironment(dir);
    env.commitSync(() => env.open<JournalRecord>('journal').putSync(1, leftover));
    void env.close();

    store = openAssetStore(dir);
    expect([...store.journal()][0]!.seq).toBe(base.throughSeq + 1);
    expect([...store.journal(1)][0]!.seq).toBe(base.throughSeq + 1);
    expect(verifyDatabase(store).problems).toEqual([]);
    const again = fold(store, T0 + 5 * DAY);
    expect(again.folded).toBe(0);
    expect(again.recordsDeleted).toBe(1);
    await store.close();
    expect(journalRecordKeys(dir)).not.toContain(1);
  });

  test('a fold runs only inside exclusively, never while an agent serves the database, never in a serving process', async () => {
    const dir = await newJournal();
    const server = openAssetStore(dir);
    server.claimRuntimeWriter('pid 1, port 8080');
    const other = openAssetStore(dir);
    expect(() => other.foldJournal({ throughSeqAtMost: 100, entriesBeforeMs: Infinity, atMs: T0 }, 'now')).toThrow(StoreError);
    expect(() => other.exclusively('test', () => 1)).toThrow(RuntimeWriterTakenError);
    expect(() => server.exclusively('test', () => 1)).toThrow(StoreError);
    await server.close();
    // A process that wrote runtime changes itself (its writer keeps its own journal head) may not fold.
    const writing = openAssetStore(dir);
    await writing.commitRuntime('L1', T0, () => ({ events: used(1), result: null }));
    expect(() => writing.exclusively('test', () => 1)).toThrow('this process writes runtime changes itself');
    await writing.close();
    // Once the agent stopped, the lock is free; it is given back after the action.
    expect(other.exclusively('test', () => 2)).toBe(2);
    expect(other.exclusively('test', () => 3)).toBe(3);
    await other.close();
  });

  test('a pending fold (card-bound) deletes nothing, is checked against the entries it folds, and becomes the base when promoted', async () => {
    const dir = await newJournal();
    let store = openAssetStore(dir);
    const totals = verifyDatabase(store).totals;
    const head = store.journalHead();
    const result = fold(store, T0 + 5 * DAY, head.seq, 'pending');
    const pending = result.pending!;
    expect(result).toMatchObject({ base: undefined, recordsDeleted: 0 });
    expect(pending.markerSeq).toBe(head.seq + 1);
    expect([...store.journal()][0]!.seq).toBe(1);
    expect(store.journalHashAt(1)).toBeDefined();
    // Unsealed is fine while it is pending: the entries it folds are still there to check it.
    expect(verifyDatabase(store, 20, head.seq)).toMatchObject({ ok: true, pending, totals });
    expect(() => fold(store, T0 + 6 * DAY)).toThrow('a fold waits for the card to seal it');
    await store.close();

    // A snapshot altered with its digest and its marker's record: the entries it folds disagree.
    const env = openKvEnvironment(dir);
    const meta = env.open<unknown>('meta');
    env.commitSync(() => {
      const key = [BASE_STATE_PREFIX, pending.markerSeq, keyPart('L1')];
      const record = meta.get(key) as { licenseeNumber: string; state: { usedQuantity: Record<string, number> } };
      record.state.usedQuantity['X'] = 1;
      meta.putSync(key, record);
    });
    void env.close();
    store = openAssetStore(dir, { readOnly: true });
    const forgedDigest = snapshotDigest(store.journalPendingStates());
    await store.close();
    const env2 = openKvEnvironment(dir);
    env2.commitSync(() => env2.open<unknown>('meta').putSync(JOURNAL_PENDING_FOLD_KEY, { ...pending, snapshotDigest: forgedDigest }));
    void env2.close();
    store = openAssetStore(dir);
    expect(verifyDatabase(store).problems).toContain(`the fold through entry ${pending.throughSeq} that waits for the card's seal is not what the entries it folds replay to (altered)`);
    const env3 = openKvEnvironment(dir);
    await store.close();
    env3.commitSync(() => env3.open<unknown>('meta').putSync(JOURNAL_PENDING_FOLD_KEY, pending));
    void env3.close();
    // Back as it was, but for the altered state: its digest says so.
    store = openAssetStore(dir);
    expect(verifyDatabase(store).problems).toEqual([`the fold through entry ${pending.throughSeq} that waits for the card's seal does not match its digest (altered)`]);
    await store.close();
  });

  test('a promoted fold is the base; on a card-bound database it counts only when the card sealed its marker', async () => {
    const dir = await newJournal();
    const store = openAssetStore(dir);
    const totals = verifyDatabase(store).totals;
    const pending = fold(store, T0 + 5 * DAY, store.journalHead().seq, 'pending').pending!;
    const promoted = store.exclusively('test', () => store.promotePendingFold())!;
    expect(promoted.base).toEqual(pending);
    expect(promoted.recordsDeleted).toBeGreaterThan(0);
    expect(store.journalPendingFold()).toBeUndefined();
    expect(store.journalBase()).toEqual(pending);
    expect([...store.journal()][0]!.seq).toBe(pending.throughSeq + 1);
    expect(verifyDatabase(store, 20, pending.markerSeq)).toMatchObject({ ok: true, totals });
    expect(verifyDatabase(store, 20, pending.markerSeq - 1).problems).toEqual([
      `the journal's folded base (entries 1–${pending.throughSeq}) was not sealed by the card: its marker, entry ${pending.markerSeq}, ` +
        `is after the newest entry the card sealed (${pending.markerSeq - 1}); compact-journal does not make such a base (altered)`,
      `journal entry ${pending.markerSeq}: a fold marker after the newest entry the card sealed (${pending.markerSeq - 1}) that no pending fold names (altered)`,
    ]);
    expect(store.exclusively('test', () => store.promotePendingFold())).toBeUndefined();
    await store.close();
  });

  test('after the entry the card sealed: a fold marker no pending fold names, and entries that take counts back, are refused', async () => {
    // What someone who can write database/ but not use the card could append: the start seals
    // every entry it accepts, so an unnamed marker sealed now could be named by a forged base later.
    const dir = join(tempDir(), 'database');
    let store = openAssetStore(dir, { create: true });
    await store.commitRuntime('L1', T0, () => ({ events: used(50), result: null }));
    await store.commitRuntime('L1', T0, () => ({
      events: [
        { type: 'licenseCreated', license: { number: 'AGENT-L1-TRIAL', templateNumber: 'TRIAL', startDate: new Date(T0).toISOString() } },
        { type: 'startDateSet', licenseNumber: 'LIC', startDate: new Date(T0).toISOString() },
      ],
      result: null,
    }));
    await store.close();
    store = openAssetStore(dir);
    const sealed = store.journalHead();
    // The agent's own entries after the seal move forward: accepted.
    await store.commitRuntime('L1', T0 + 1, () => ({
      events: [...used(0), ...used(2), { type: 'startDateSet', licenseNumber: 'LIC2', startDate: new Date(T0).toISOString() }],
      result: null,
    }));
    await store.close();
    store = openAssetStore(dir);
    expect(verifyDatabase(store, 20, sealed.seq).problems).toEqual([]);
    const forward = store.journalHead().seq;
    await store.close();

    // Appended as an editor would: chain-valid groups after the head, runtime records to match.
    const append = (licenseeNumber: string, events: unknown[]) => {
      const env = openKvEnvironment(dir);
      const meta = env.open<unknown>('meta');
      const journal = env.open<JournalRecord>('journal');
      env.commitSync(() => {
        const head = meta.get('journalHead') as { seq: number; hash: string };
        const { hash, record } = journalGroupRecord(head.hash, [{ seq: head.seq + 1, atMs: T0 + 2, licenseeNumber, events: events as RuntimeEvent[] }]);
        journal.putSync(head.seq + 1, record);
        meta.putSync('journalHead', { seq: head.seq + 1, hash });
      });
      void env.close();
    };
    append(JOURNAL_FOLD_MARKER, [{ type: 'journalFolded', throughSeq: sealed.seq, throughHash: sealed.hash, snapshotDigest: '0'.repeat(64), licensees: 1 }]);
    append('L1', used(-50));
    append('L1', [{ type: 'licenseCreated', license: { number: 'AGENT-L1-TRIAL', templateNumber: 'TRIAL', startDate: new Date(T0 + 365 * DAY).toISOString() } }]);
    append('L1', [{ type: 'startDateSet', licenseNumber: 'LIC', startDate: new Date(T0 + 365 * DAY).toISOString() }]);
    // Two events of one entry are judged one after the other.
    const trial2 = (at: number) => ({ type: 'licenseCreated', license: { number: 'AGENT-L1-T2', templateNumber: 'T2', startDate: new Date(at).toISOString() } });
    append('L1', [trial2(T0), trial2(T0 + 365 * DAY)]);
    store = openAssetStore(dir);
    const problems = verifyDatabase(store, 20, sealed.seq).problems;
    expect(problems).toContain(`journal entry ${forward + 5}, after the newest entry the card sealed (${sealed.seq}): the license of template 'T2' created again (altered)`);
    expect(problems.slice(0, 4)).toEqual([
      `journal entry ${forward + 1}: a fold marker after the newest entry the card sealed (${sealed.seq}) that no pending fold names (altered)`,
      `journal entry ${forward + 2}, after the newest entry the card sealed (${sealed.seq}): a negative used quantity (-50) on license 'X' (altered)`,
      `journal entry ${forward + 3}, after the newest entry the card sealed (${sealed.seq}): the license of template 'TRIAL' created again (altered)`,
      `journal entry ${forward + 4}, after the newest entry the card sealed (${sealed.seq}): the start date of license 'LIC' set again (altered)`,
    ]);
    // Once sealed, entries are the card's word (the agent wrote them and the start checked them); without card nothing is sealed.
    for (const sealedSeq of [store.journalHead().seq, undefined]) expect(verifyDatabase(store, 20, sealedSeq).problems.filter((p) => p.includes('card sealed'))).toEqual([]);
    await store.close();
  });
});
