// Goal: the store methods run-agent added keep their promises: a replay entry
// is written only with runtime events and in the same transaction; the
// cursor advances one entry at a time and only forward; a refresh bumps the
// definitions version (caches drop stale definitions) and journals its
// runtime corrections; small values round-trip. Method: a real LMDB store in
// a temp directory (tests/support/seed-store.ts).
import { afterAll, describe, expect, test } from 'bun:test';
import type { RuntimeEvent } from '../../src/core/runtime.ts';
import { join } from 'node:path';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { openKvEnvironment } from '../../src/store/lmdb.ts';
import { entity, seedStore } from '../support/seed-store.ts';

const { store } = seedStore([entity('Licensee', 'L', { productNumber: 'P' }), entity('Licensee', 'B', { productNumber: 'P' })]);
afterAll(async () => {
  await store.close();
});

const used = (quantity: number): RuntimeEvent => ({ type: 'quantityUsed', licenseNumber: 'X', quantity });
const decision = { status: 200, valid: { M: 'true' } };

describe('run-agent store records', () => {
  test('replay entries: only for decisions with events, with their events and request', async () => {
    await store.commitRuntimeWithReplay('L', 1, () => ({ events: [], result: 'none' }), () => ({ form: 'a=0', decision }));
    await store.commitRuntimeWithReplay('L', 2, () => ({ events: [used(2)], result: 'one' }), () => ({ form: 'a=1', decision }));
    await store.commitRuntimeWithReplay('L', 3, () => ({ events: [used(3)], result: 'two' }), () => ({ form: 'a=2', decision }));
    await store.settled();
    const backlog = [...store.replayBacklog()];
    expect(backlog.map((e) => [e.seq, e.form, e.events])).toEqual([
      [1, 'a=1', [used(2)]],
      [2, 'a=2', [used(3)]],
    ]);
    expect(store.getRuntime('L').usedQuantity['X']).toBe(5);
    expect(verifyDatabase(store).ok).toBe(true);
  });

  test('the cursor moves one entry at a time, forward only', async () => {
    const ack = { atMs: 10, status: 200, decision, conflict: false };
    await expect(store.acknowledgeReplay(2, ack)).rejects.toThrow('out of order');
    await store.acknowledgeReplay(1, ack);
    await expect(store.acknowledgeReplay(1, ack)).rejects.toThrow('out of order');
    expect(store.replayCursor()).toBe(1);
    expect([...store.replayBacklog()].map((e) => e.seq)).toEqual([2]);
    await store.acknowledgeReplay(2, { ...ack, conflict: true }, { seq: 2, licenseeNumber: 'L', offlineAtMs: 3, detectedAtMs: 10, form: 'a=2', local: decision, upstream: { status: 200, valid: { M: 'false' } }, message: 'm' });
    expect([...store.replayConflicts()].map((c) => c.seq)).toEqual([2]);
    expect([...store.replayBacklog()]).toEqual([]);
  });

  test('a refresh bumps the definitions version, journals corrections and drops acknowledged entries', async () => {
    const version = store.definitionsVersion();
    const dropped = await store.refreshLicensee('L', 20, (tx) => {
      tx.put(entity('Licensee', 'L', { productNumber: 'P', name: 'renamed' }));
      const entries = tx.replayEntries();
      for (const entry of entries) tx.dropReplayEntry(entry.seq);
      tx.appendRuntimeEvents([used(-5)]);
      return entries.length;
    });
    expect(dropped).toBe(2);
    expect(store.definitionsVersion()).toBe(version + 1);
    expect(store.getEntity('Licensee', 'L')?.props['name']).toBe('renamed');
    expect(store.getRuntime('L').usedQuantity['X']).toBe(0);
    expect(verifyDatabase(store).ok).toBe(true);
    // An entry that is not acknowledged cannot be dropped.
    await store.commitRuntimeWithReplay('L', 30, () => ({ events: [used(1)], result: null }), () => ({ form: 'a=3', decision }));
    await expect(store.refreshLicensee('L', 31, (tx) => tx.dropReplayEntry(3))).rejects.toThrow('not acknowledged');
    expect([...store.replayBacklog()].map((e) => e.seq)).toEqual([3]);
  });

  test("a refresh reads its own licensee's replay entries through the index, also for entries written before the index existed", async () => {
    const { store: s, cwd } = seedStore([entity('Licensee', 'A', { productNumber: 'P' }), entity('Licensee', 'Z', { productNumber: 'P' })]);
    for (const licensee of ['A', 'Z', 'A', 'Z', 'Z']) {
      await s.commitRuntimeWithReplay(licensee, 1, () => ({ events: [used(1)], result: null }), () => ({ form: `l=${licensee}`, decision }));
    }
    await s.settled();
    const entriesOf = (licensee: string) => s.refreshLicensee(licensee, 2, (tx) => tx.replayEntries().map((e) => [e.seq, e.licenseeNumber]));
    expect(await entriesOf('A')).toEqual([[1, 'A'], [3, 'A']]);
    expect(await entriesOf('Z')).toEqual([[2, 'Z'], [4, 'Z'], [5, 'Z']]);
    await s.close();
    // As an earlier version leaves them (before the index, or run after a downgrade, also once this
    // database had been indexed): the entries without their index records.
    const env = openKvEnvironment(join(cwd, 'database'));
    const meta = env.open<unknown>('meta');
    env.commitSync(() => {
      for (const key of [...meta.getKeys({ start: ['proxy', 'replayOf'], end: ['proxy', 'replayOf', '\uffff'] })]) meta.removeSync(key);
    });
    expect([...meta.getKeys({ start: ['proxy', 'replayOf'], end: ['proxy', 'replayOf', '\uffff'] })]).toEqual([]);
    await env.close();
    const reopened = openAssetStore(join(cwd, 'database'));
    for (let seq = 1; seq <= 5; seq++) await reopened.acknowledgeReplay(seq, { atMs: 3, status: 200, decision, conflict: false });
    // The first refresh of the process indexes them all; each refresh then drops its own.
    expect(await reopened.refreshLicensee('Z', 4, (tx) => tx.replayEntries().map((e) => (tx.dropReplayEntry(e.seq), e.seq)))).toEqual([2, 4, 5]);
    expect(await reopened.refreshLicensee('A', 5, (tx) => tx.replayEntries().map((e) => e.seq))).toEqual([1, 3]);
    expect(await reopened.refreshLicensee('Z', 6, (tx) => tx.replayEntries().length)).toBe(0);
    await reopened.close();
  });

  test("a refresh reloads the refreshed licensee's runtime state only; decisions see the refreshed state", async () => {
    await store.commitRuntime('B', 40, () => ({ events: [used(7)], result: null }));
    const before = { L: store.runtimeRevision('L'), B: store.runtimeRevision('B') };
    await store.refreshLicensee('L', 41, (tx) => tx.appendRuntimeEvents([used(100)]));
    // B's memory was kept (same revision), L's reloaded (a new one).
    expect(store.runtimeRevision('B')).toBe(before.B);
    expect(store.runtimeRevision('L')).not.toBe(before.L);
    const seen = (licensee: string) => store.commitRuntime(licensee, 42, (state) => ({ events: [], result: state.usedQuantity['X'] }));
    expect(await seen('L')).toBe(store.getRuntime('L').usedQuantity['X']!);
    expect(await seen('L')).toBeGreaterThanOrEqual(100);
    expect(await seen('B')).toBe(7);
    expect(verifyDatabase(store).ok).toBe(true);
  });

  test('small values: write, list by prefix, remove', async () => {
    await store.putProxyValue('answer:1', { expiresAtMs: 5, value: 'x' });
    await store.putProxyValue('answer:2', { expiresAtMs: 6, value: 'y' });
    await store.putProxyValue('credential:1', { expiresAtMs: 7, value: 'z' });
    expect([...store.proxyValueKeys('answer:')]).toEqual(['answer:1', 'answer:2']);
    expect(store.proxyValue('credential:1')).toEqual({ expiresAtMs: 7, value: 'z' });
    await store.putProxyValue('answer:1', undefined);
    expect([...store.proxyValueKeys('answer:')]).toEqual(['answer:2']);
  });
});
