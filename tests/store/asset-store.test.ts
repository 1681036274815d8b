// Goal: the asset store keeps definitions, indexes and runtime state apart and
// durable. Method: real LMDB in a temp directory, reopened between steps.
import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { journalHash, openAssetStore, SCHEMA_VERSION, SCHEMA_VERSION_FOLDED, StoreError } from '../../src/store/asset-store.ts';
import { openKvEnvironment } from '../../src/store/lmdb.ts';
import type { Entity } from '../../src/core/entities.ts';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { SCAN_AT_ONCE, summariseDefinitions } from '../../src/service/status.ts';
import { tempDir } from '../helpers.ts';

const licensee = (number: string, product = 'P1', extra: Record<string, string> = {}): Entity => ({
  kind: 'Licensee',
  number,
  props: { number, active: 'true', productNumber: product, ...extra },
});

/** A new database whose meta claims `schemaVersion`, with a raw runtime record for L1 if given. */
async function databaseWithSchema(schemaVersion: number, runtimeRecordOfL1?: unknown): Promise<string> {
  const dir = join(tempDir(), 'database');
  await openAssetStore(dir, { create: true }).close();
  const env = openKvEnvironment(dir);
  const meta = env.open<Record<string, unknown>>('meta');
  const runtime = env.open<unknown>('runtime');
  env.commitSync(() => {
    meta.putSync('meta', { ...meta.get('meta'), schemaVersion });
    if (runtimeRecordOfL1 !== undefined) runtime.putSync('L1', runtimeRecordOfL1);
  });
  await env.close();
  return dir;
}

describe('asset store', () => {
  test('refuses to open a missing database unless asked to create it', () => {
    const dir = join(tempDir(), 'database');
    expect(() => openAssetStore(dir)).toThrow(StoreError);
  });

  test('puts, indexes by parent and resolves aliases', async () => {
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    store.importTransaction((tx) => {
      tx.put({ kind: 'Product', number: 'P1', props: { number: 'P1', name: 'Demo' } });
      tx.put(licensee('L1', 'P1', { aliases: '["alias-1"]', 'custom key': 'ä ö' }));
      tx.put(licensee('L2', 'P1'));
      tx.put({ kind: 'License', number: 'X1', props: { number: 'X1', licenseeNumber: 'L1', licenseTemplateNumber: 'T' } });
    });
    expect(store.children('Licensee', 'P1').map((e) => e.number)).toEqual(['L1', 'L2']);
    expect(store.resolveLicensee('alias-1')?.number).toBe('L1');
    expect(store.getEntity('Licensee', 'L1')?.props['custom key']).toBe('ä ö');
    // Moving a license to another licensee moves its index entry.
    store.importTransaction((tx) =>
      tx.put({ kind: 'License', number: 'X1', props: { number: 'X1', licenseeNumber: 'L2', licenseTemplateNumber: 'T' } }),
    );
    expect(store.children('License', 'L1')).toEqual([]);
    expect(store.children('License', 'L2').map((e) => e.number)).toEqual(['X1']);
    await store.close();
  });

  test('long numbers are stored and found', async () => {
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    const long = 'ü'.repeat(1000);
    store.importTransaction((tx) => tx.put(licensee(long)));
    expect(store.getEntity('Licensee', long)?.number).toBe(long);
    expect(store.children('Licensee', 'P1').map((e) => e.number)).toEqual([long]);
    await store.close();
  });

  test('runtime changes are journaled with a hash chain and survive reopening', async () => {
    const dir = join(tempDir(), 'database');
    let store = openAssetStore(dir, { create: true });
    await Promise.all(
      Array.from({ length: 20 }, () =>
        store.commitRuntime('L1', 1000, () => ({
          events: [{ type: 'quantityUsed', licenseNumber: 'X1', quantity: 1 }],
          result: null,
        })),
      ),
    );
    await store.close();
    store = openAssetStore(dir);
    expect(store.getRuntime('L1').usedQuantity['X1']).toBe(20);
    const entries = [...store.journal()];
    expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // One chain link per group commit: 20 concurrent changes form more than one group and fewer than 20.
    const links = new Set(entries.map((e) => e.hash));
    expect(links.size).toBeGreaterThan(1);
    expect(links.size).toBeLessThan(20);
    for (let i = 1; i < entries.length; i++) {
      const [before, entry] = [entries[i - 1]!, entries[i]!];
      if (entry.hash === before.hash) expect(entry.prevHash).toBe(before.prevHash);
      else expect(entry.prevHash).toBe(before.hash);
    }
    expect(verifyDatabase(store).problems).toEqual([]);
    expect(store.journalHead().seq).toBe(20);
    await store.close();
  });

  test('a floating pool emptied by check-ins is stored without its empty table, as the journal replays it', async () => {
    // The writer applies events in place (core/runtime.ts): an emptied session table must go
    // with its last session, or the stored state differs from the replayed one (verify-database).
    const dir = join(tempDir(), 'database');
    let store = openAssetStore(dir, { create: true });
    const ids = ['a', 'b', 'c'];
    await Promise.all(
      ids.map((sessionId) =>
        store.commitRuntime('L1', 1000, () => ({
          events: [{ type: 'sessionCheckedOut', moduleNumber: 'M', sessionId, checkedOutMs: 1000, expiresMs: 5000 }],
          result: null,
        })),
      ),
    );
    // Acknowledged changes reach LMDB (what getRuntime reads) with the next checkpoint.
    await store.settled();
    expect([...(store.getRuntime('L1').sessions['M']?.keys() ?? [])]).toEqual(ids);
    await Promise.all(
      ids.map((sessionId) => store.commitRuntime('L1', 2000, () => ({ events: [{ type: 'sessionCheckedIn', moduleNumber: 'M', sessionId }], result: null }))),
    );
    await store.settled();
    expect(store.getRuntime('L1').sessions).toEqual({});
    expect(verifyDatabase(store).problems).toEqual([]);
    await store.close();
    store = openAssetStore(dir);
    expect(store.getRuntime('L1').sessions).toEqual({});
    await store.close();
  });

  test('a schema-1 database (session tables stored as objects) is read, served and upgraded to schema 2', async () => {
    // What a schema-1 agent left: meta version 1, a runtime record whose session table is an object.
    const sessions = { M: { a: { checkedOutMs: 1000, expiresMs: 5000 }, b: { checkedOutMs: 1000, expiresMs: 6000 } } };
    const dir = await databaseWithSchema(1, { licenseeNumber: 'L1', state: { createdLicenses: {}, startDates: {}, sessions, usedQuantity: {}, nodeSecrets: {} } });

    const readOnly = openAssetStore(dir, { readOnly: true });
    expect([...(readOnly.getRuntime('L1').sessions['M']?.keys() ?? [])]).toEqual(['a', 'b']);
    expect(readOnly.meta().schemaVersion).toBe(1);
    await readOnly.close();

    const store = openAssetStore(dir);
    expect(store.meta().schemaVersion).toBe(SCHEMA_VERSION);
    await store.commitRuntime('L1', 2000, (state) => {
      expect(state.sessions['M']?.get('b')?.expiresMs).toBe(6000);
      return { events: [{ type: 'sessionCheckedIn', moduleNumber: 'M', sessionId: 'a' }], result: null };
    });
    await store.settled();
    expect([...(store.getRuntime('L1').sessions['M']?.keys() ?? [])]).toEqual(['b']);
    await store.close();
  });

  test('a schema-2 journal (one record per entry) is read, extended with group records and verifies as one chain', async () => {
    // What a schema-2 agent left: entries 1 and 2 committed alone, 3 and 4 in one group (both
    // records carry the group's links), the head, and the state they produced.
    const dir = await databaseWithSchema(2, {
      licenseeNumber: 'L1',
      state: { createdLicenses: {}, startDates: {}, sessions: {}, usedQuantity: { X: 10 }, nodeSecrets: {} },
    });
    const body = (seq: number) => ({ seq, atMs: 1000 + seq, licenseeNumber: 'L1', events: [{ type: 'quantityUsed' as const, licenseNumber: 'X', quantity: seq }] });
    const h1 = journalHash('0'.repeat(64), [body(1)]);
    const h2 = journalHash(h1, [body(2)]);
    const h34 = journalHash(h2, [body(3), body(4)]);
    const env = openKvEnvironment(dir);
    const journal = env.open<unknown>('journal');
    const meta = env.open<unknown>('meta');
    env.commitSync(() => {
      journal.putSync(1, { ...body(1), prevHash: '0'.repeat(64), hash: h1 });
      journal.putSync(2, { ...body(2), prevHash: h1, hash: h2 });
      journal.putSync(3, { ...body(3), prevHash: h2, hash: h34 });
      journal.putSync(4, { ...body(4), prevHash: h2, hash: h34 });
      meta.putSync('journalHead', { seq: 4, hash: h34 });
    });
    await env.close();

    const store = openAssetStore(dir);
    expect(store.meta().schemaVersion).toBe(SCHEMA_VERSION);
    // Three changes decided at once: the first is committed alone, the two decided meanwhile
    // share the next group commit, stored as one record keyed 6.
    await Promise.all([5, 6, 7].map((seq) => store.commitRuntime('L1', 2000, () => ({ events: body(seq).events, result: null }))));
    await store.settled();
    const head = store.journalHead();
    expect(head.seq).toBe(7);
    expect([...store.journal()].map((entry) => entry.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect([...store.journal(7)].map((entry) => [entry.seq, entry.hash])).toEqual([[7, head.hash]]);
    expect([...store.journal(4)].map((entry) => entry.hash)).toEqual([h34, store.journalHashAt(5)!, head.hash, head.hash]);
    expect(store.journalHashAt(5)).not.toBe(head.hash);
    expect(store.journalHashAt(3)).toBe(h34);
    expect(store.journalHashAt(7)).toBe(head.hash);
    expect(store.journalHashAt(8)).toBeUndefined();
    expect(store.getRuntime('L1').usedQuantity['X']).toBe(28);
    const report = verifyDatabase(store);
    expect(report.problems).toEqual([]);
    expect(report.entries).toBe(7);
    await store.close();
    const records = openKvEnvironment(dir);
    expect([...records.open<unknown>('journal').getKeys({})]).toEqual([1, 2, 3, 4, 5, 6]);
    await records.close();
  });

  test('verify-database replays a floating pool without copying its state per entry, and still finds a changed session', async () => {
    // A card-bound start runs this replay: a copy of the licensee's state per journal entry made it
    // O(entries × open sessions) — 32 s for 15,000 entries with 5,000 sessions open (session 14,
    // scripts/bench-floating-pool.ts prints the replay's time now). Counted, not timed.
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    const out = (sessionId: string) => ({ type: 'sessionCheckedOut' as const, moduleNumber: 'M', sessionId, checkedOutMs: 1000, expiresMs: 9_000_000 });
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, (_, k) => store.commitRuntime('L1', 1000, () => ({ events: [out(`s${batch * 50 + k}`)], result: null }))),
      );
    }
    await Promise.all(
      Array.from({ length: 100 }, (_, k) =>
        store.commitRuntime('L1', 2000, () => ({ events: [{ type: 'sessionCheckedIn' as const, moduleNumber: 'M', sessionId: `s${k}` }], result: null })),
      ),
    );
    await store.settled();
    const realClone = globalThis.structuredClone;
    let clones = 0;
    globalThis.structuredClone = ((value: unknown, options?: Parameters<typeof structuredClone>[1]) => {
      clones += 1;
      return realClone(value, options);
    }) as typeof structuredClone;
    let report;
    try {
      report = verifyDatabase(store);
    } finally {
      globalThis.structuredClone = realClone;
    }
    expect(report.problems).toEqual([]);
    expect(report.entries).toBe(600);
    expect(report.totals.sessions).toBe(400);
    expect(clones).toBe(0);
    await store.close();
    // The replay still compares: a session added to the stored state behind the journal's back.
    const env = openKvEnvironment(dir);
    const runtime = env.open<{ licenseeNumber: string; state: { sessions: Record<string, Map<string, unknown>> } }>('runtime');
    const record = runtime.get('L1')!;
    record.state.sessions['M']!.set('forged', { checkedOutMs: 1000, expiresMs: 9_000_000 });
    env.commitSync(() => runtime.putSync('L1', record));
    await env.close();
    const reopened = openAssetStore(dir, { readOnly: true });
    expect(verifyDatabase(reopened).problems).toEqual(["runtime state of licensee 'L1' differs from the replayed journal"]);
    await reopened.close();
  });

  test('entitiesAfter pages by key: every entity once, in key order, whatever the page size; the status scan agrees with one read', async () => {
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    const numbers = Array.from({ length: 23 }, (_, i) => `L ${String(i).padStart(2, '0')}`);
    store.importTransaction((tx) => {
      tx.put({ kind: 'Product', number: 'P1', props: { number: 'P1', active: 'true' } });
      for (const number of numbers) tx.put(licensee(number));
    });
    for (const pageSize of [1, 5, 7, 23, 24, 100]) {
      const seen: string[] = [];
      let after: string | undefined;
      let pages = 0;
      for (;;) {
        const page = store.entitiesAfter('Licensee', after, pageSize);
        pages += 1;
        seen.push(...page.items.map((e) => e.number));
        expect(page.items.length).toBeLessThanOrEqual(pageSize);
        if (page.last === undefined) break;
        after = page.last;
      }
      expect(seen).toEqual(numbers);
      // A full last page is followed by one empty page; a short one ends it.
      expect(pages).toBe(Math.floor(23 / pageSize) + 1);
    }
    expect(store.entitiesAfter('License', undefined, 5)).toEqual({ items: [], last: undefined });
    const atOnce = await summariseDefinitions(store, SCAN_AT_ONCE);
    const inPages = await summariseDefinitions(store, { pageSize: 4, pause: () => {} });
    expect(inPages).toEqual(atOnce);
    expect(inPages.counts.licensees).toBe(23);
    await store.close();
  });

  test('a database of an unknown schema version is refused with a clear message and left as it is', async () => {
    const dir = await databaseWithSchema(99);
    for (const options of [{}, { readOnly: true }]) {
      expect(() => openAssetStore(dir, options)).toThrow(StoreError);
      expect(() => openAssetStore(dir, options)).toThrow(`has schema version 99, this agent reads versions 1 to ${SCHEMA_VERSION_FOLDED}`);
    }
    const after = openKvEnvironment(dir);
    expect(after.open<Record<string, unknown>>('meta').get('meta')?.['schemaVersion']).toBe(99);
    await after.close();
  });

  test('an import transaction that throws leaves nothing behind', async () => {
    const dir = join(tempDir(), 'database');
    const store = openAssetStore(dir, { create: true });
    expect(() =>
      store.importTransaction((tx) => {
        tx.put(licensee('L9'));
        throw new Error('bad file');
      }),
    ).toThrow('bad file');
    expect(store.getEntity('Licensee', 'L9')).toBeUndefined();
    await store.close();
  });
});
