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

describe('entity numbers that name members of Object.prototype', () => {
  test("a module 'constructor', a license 'toString' and a trial template 'valueOf' are served, journaled and verified like any other", async () => {
    // Such a Node-Locked module's node secret found Object.prototype's member: applying the event
    // threw after the journal sequence was taken (a gap: verify-database exit 5, a card-bound start
    // exit 6, for good), and a request's earlier events stayed applied in memory.
    const { createApp } = await import('../../src/server/app.ts');
    const { silentLogger } = await import('../../src/platform/log.ts');
    const { ManualClock } = await import('../../src/platform/clock.ts');
    const { apiKeyAuth, entity, seedStore } = await import('../support/seed-store.ts');
    const { store, cwd } = seedStore([
      entity('Product', 'P', { name: 'P' }),
      entity('ProductModule', 'constructor', { name: 'n', licensingModel: 'NodeLocked', productNumber: 'P', nodeSecretMode: 'CLIENT' }),
      entity('LicenseTemplate', 'T-NODE', { licenseType: 'QUANTITY', productModuleNumber: 'constructor', quota: '5' }),
      entity('ProductModule', 'M-PPU', { name: 'p', licensingModel: 'PayPerUse', productNumber: 'P' }),
      entity('LicenseTemplate', 'T-PPU', { licenseType: 'QUANTITY', productModuleNumber: 'M-PPU', quantity: '50' }),
      entity('ProductModule', 'M-TRY', { name: 't', licensingModel: 'TryAndBuy', productNumber: 'P' }),
      entity('LicenseTemplate', 'valueOf', { licenseType: 'TIMEVOLUME', productModuleNumber: 'M-TRY', timeVolume: '7', timeVolumePeriod: 'DAY', automatic: 'true' }),
      entity('Licensee', 'L1', { productNumber: 'P' }),
      entity('License', 'LIC-NODE', { licenseeNumber: 'L1', licenseTemplateNumber: 'T-NODE' }),
      entity('License', 'toString', { licenseeNumber: 'L1', licenseTemplateNumber: 'T-PPU' }),
    ]);
    const app = createApp({ store, clock: new ManualClock(T0), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
    const validate = async (body: string) => {
      const res = await app.request('/rest/licensee/L1/validate', {
        method: 'POST',
        headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body,
      });
      return { status: res.status, text: await res.text() };
    };
    expect((await validate('productModuleNumber0=M-PPU&usedQuantity0=1&productModuleNumber1=constructor&nodeSecret1=machine-1')).status).toBe(200);
    const again = await validate('productModuleNumber0=M-PPU&usedQuantity0=2&productModuleNumber1=M-TRY');
    expect(again.status).toBe(200);
    expect(again.text).toContain('"value":"47","name":"remainingQuantity"');
    expect(again.text).toContain('"name":"evaluationExpires"');
    await store.close();
    const dir = join(cwd, 'database');
    const reopened = openAssetStore(dir);
    expect([...reopened.journal()].map((e) => e.seq)).toEqual([1, 2]);
    const state = reopened.getRuntime('L1');
    expect(Object.hasOwn(state.usedQuantity, 'toString') && state.usedQuantity['toString']).toBe(3);
    expect(Object.hasOwn(state.nodeSecrets, 'constructor') && state.nodeSecrets['constructor']).toEqual(['machine-1']);
    expect(Object.hasOwn(state.createdLicenses, 'valueOf')).toBe(true);
    expect(verifyDatabase(reopened).problems).toEqual([]);
    await reopened.close();
  });
});

describe('a decision whose events cannot be applied', () => {
  test('is refused before anything of it is applied and before a journal sequence number is taken', async () => {
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    await store.commitRuntime('L1', T0, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 1 }], result: null }));
    await store.settled();
    // Its first event is of the agent's form, its second is not (no license): a bug's decision, say.
    const broken = [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 5 }, { type: 'licenseCreated' }] as unknown as RuntimeEvent[];
    expect(async () => await store.commitRuntime('L1', T0, () => ({ events: broken, result: null }))).toThrow(TypeError);
    await store.commitRuntime('L1', T0, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 2 }], result: null }));
    await store.close();
    const reopened = openAssetStore(dir);
    expect([...reopened.journal()].map((e) => e.seq)).toEqual([1, 2]);
    expect(reopened.getRuntime('L1').usedQuantity).toEqual({ X: 3 });
    expect(verifyDatabase(reopened).problems).toEqual([]);
    await reopened.close();
  });
});

describe('entries another process appends to LMDB while the agent runs', () => {
  test("are overwritten by the agent's next group, also after a failed journal write; what a card may seal is the agent's own head", async () => {
    for (const failedWriteFirst of [false, true]) {
      const dir = join(tempDir(), 'database');
      let fail = false;
      const store = openAssetStore(dir, { create: true, failJournalWritesAfterLanding: () => (fail ? new Error('EIO') : undefined) });
      store.claimRuntimeWriter('test');
      const book = (n: number) => store.commitRuntime('A', T0, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: n }], result: null }));
      await book(1);
      await store.settled();
      const own = store.journalHead();
      edit(dir, ({ meta, journal }) => {
        const { hash, record } = journalGroupRecord(own.hash, [
          { seq: own.seq + 1, atMs: T0, licenseeNumber: 'EVIL', events: [{ type: 'startDateSet', licenseNumber: 'T', startDate: '2020-01-01T00:00:00.000Z' }] },
        ]);
        journal.putSync(own.seq + 1, record);
        meta.putSync('journalHead', { seq: own.seq + 1, hash });
      });
      await Bun.sleep(5); // the store's reads see the other handle's commit from a later turn on
      expect(store.sealableJournalHead()).toEqual(own);
      if (failedWriteFirst) {
        // A failed write rebuilds the writer's memory (runtime-writer.ts, rebuildMemory).
        fail = true;
        expect(async () => await book(1)).toThrow();
        fail = false;
      }
      await book(2);
      await store.settled();
      expect([...store.journal()].map((e) => `${e.seq}:${e.licenseeNumber}`)).toEqual(['1:A', '2:A']);
      expect(store.sealableJournalHead()).toEqual(store.journalHead());
      await store.close();
    }
  });
});
