// Goal: verify-database (and so a card-bound start, which runs it before asking the card) refuses
// records the agent never writes, which compared equal to the replay once normalised but were
// served differently: a runtime record whose usedQuantity or createdLicenses is a Map, a record
// moved to another licensee's key, a journal quantity that is a text, a fold's snapshot whose
// usedQuantity is a Map (the digest saw no difference), and events of unknown type.
// Method: a real store with bookings; the edits through a raw LMDB handle on the closed database,
// as someone who can write the files would make them (a session-15 review showed each one
// served with counters lower than the journal says).
import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import type { RuntimeEvent } from '../../src/core/runtime.ts';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { BASE_STATE_PREFIX, JOURNAL_BASE_KEY, snapshotDigest, type JournalBase } from '../../src/store/journal-fold.ts';
import { journalGroupRecord, type JournalRecord } from '../../src/store/journal-records.ts';
import { keyPart } from '../../src/store/layout.ts';
import { openKvEnvironment, type KvDatabase } from '../../src/store/lmdb.ts';
import { tempDir } from '../helpers.ts';

const T0 = Date.UTC(2026, 0, 1);
type Stored = { licenseeNumber: string; state: Record<string, unknown> };

/** L1 booked 30 on license X and started a trial; returns the database directory (closed). */
async function booked(): Promise<string> {
  const dir = join(tempDir(), 'database');
  const store = openAssetStore(dir, { create: true });
  await store.commitRuntime('L1', T0, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 30 }], result: null }));
  await store.commitRuntime('L1', T0, () => ({
    events: [{ type: 'licenseCreated', license: { number: 'AGENT-L1-TRIAL', templateNumber: 'TRIAL', startDate: new Date(T0).toISOString() } }],
    result: null,
  }));
  await store.close();
  return dir;
}

function edit(dir: string, change: (dbs: { meta: KvDatabase<unknown>; runtime: KvDatabase<Stored>; journal: KvDatabase<JournalRecord> }) => void): void {
  const env = openKvEnvironment(dir);
  const dbs = { meta: env.open<unknown>('meta'), runtime: env.open<Stored>('runtime'), journal: env.open<JournalRecord>('journal') };
  env.commitSync(() => change(dbs));
  void env.close();
}

async function problemsOf(dir: string, sealedSeq?: number): Promise<string[]> {
  const store = openAssetStore(dir);
  try {
    return verifyDatabase(store, 20, sealedSeq).problems;
  } finally {
    await store.close();
  }
}

describe('verify-database refuses forms the agent never writes', () => {
  test('a runtime record whose usedQuantity or createdLicenses is a Map with the same entries', async () => {
    for (const field of ['usedQuantity', 'createdLicenses']) {
      const dir = await booked();
      expect(await problemsOf(dir)).toEqual([]);
      edit(dir, ({ runtime }) => {
        const record = runtime.get('L1')!;
        record.state[field] = new Map(Object.entries(record.state[field] as object));
        runtime.putSync('L1', record);
      });
      expect(await problemsOf(dir)).toEqual([`runtime state of licensee 'L1' is not of the agent's form: its ${field} is not a plain object (altered)`]);
    }
  });

  test("a record moved to another key, an empty one in its place that names another licensee", async () => {
    const dir = await booked();
    edit(dir, ({ runtime }) => {
      const record = runtime.get('L1')!;
      runtime.putSync('zz-elsewhere', record);
      runtime.putSync('L1', { licenseeNumber: 'L 2', state: { createdLicenses: {}, startDates: {}, sessions: {}, usedQuantity: {}, nodeSecrets: {} } });
    });
    expect(await problemsOf(dir)).toEqual([
      'runtime record "L1" is not the state of the licensee it is stored under (moved or altered)',
      'runtime record "zz-elsewhere" is not the state of the licensee it is stored under (moved or altered)',
      "licensee 'L1' has journal entries but no stored runtime state",
    ]);
  });

  test("a record moved to a key of another type whose text is the licensee's number (a number key): served as no state", async () => {
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    await store.commitRuntime('10001', T0, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 3 }], result: null }));
    await store.close();
    edit(dir, ({ runtime }) => {
      const record = runtime.get('10001')!;
      runtime.removeSync('10001');
      runtime.putSync(10001, record);
    });
    expect(await problemsOf(dir)).toEqual([
      'runtime record 10001 is not the state of the licensee it is stored under (moved or altered)',
      "licensee '10001' has journal entries but no stored runtime state",
    ]);
  });

  test('journal events of another form: a quantity as a text, an unknown type; they are not replayed', async () => {
    const dir = await booked();
    const append = (events: unknown[]) =>
      edit(dir, ({ meta, journal }) => {
        const head = meta.get('journalHead') as { seq: number; hash: string };
        const { hash, record } = journalGroupRecord(head.hash, [{ seq: head.seq + 1, atMs: T0 + 1, licenseeNumber: 'L1', events: events as RuntimeEvent[] }]);
        journal.putSync(head.seq + 1, record);
        meta.putSync('journalHead', { seq: head.seq + 1, hash });
      });
    append([{ type: 'quantityUsed', licenseNumber: 'X', quantity: '0e-5' }]);
    append([{ type: 'usageForgiven', licenseNumber: 'X' }]);
    append([{ type: 'quantityUsed', licenseNumber: 'X', quantity: 1.5 }]);
    expect(await problemsOf(dir)).toEqual([
      'journal entry 3: a "quantityUsed" event of another form (altered)',
      'journal entry 4: a "usageForgiven" event of another form (altered)',
      'journal entry 5: a "quantityUsed" event of another form (altered)',
    ]);
  });

  test("a fold's snapshot whose usedQuantity is a Map: its digest no longer matches, and its form is not the agent's", async () => {
    const dir = await booked();
    let store = openAssetStore(dir);
    const base = store.exclusively('test', () => store.foldJournal({ throughSeqAtMost: 2, entriesBeforeMs: T0 + 1, atMs: T0 + 1 }, 'now')).base!;
    await store.close();
    // The forger rewrites the snapshot state and, so that nothing looks changed, its digest.
    edit(dir, ({ meta }) => {
      const key = [BASE_STATE_PREFIX, base.markerSeq, keyPart('L1')];
      const record = meta.get(key) as Stored;
      record.state['usedQuantity'] = new Map(Object.entries(record.state['usedQuantity'] as object));
      meta.putSync(key, record);
    });
    store = openAssetStore(dir, { readOnly: true });
    const digest = snapshotDigest(store.journalBaseStates());
    await store.close();
    expect(digest).not.toBe(base.snapshotDigest);
    edit(dir, ({ meta }) => meta.putSync(JOURNAL_BASE_KEY, { ...(meta.get(JOURNAL_BASE_KEY) as JournalBase), snapshotDigest: digest }));
    expect(await problemsOf(dir)).toEqual([
      "the journal's folded base (entries 1–2): the state of licensee 'L1' is not of the agent's form: its usedQuantity is not a plain object (altered)",
      `journal entry ${base.markerSeq}: the fold marker does not name the stored fold (altered)`,
    ]);
  });
});
