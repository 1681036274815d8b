// Goal: cached definitions never outlive an import: a re-import (here through a
// second store handle, as a separate import process would do) is seen by the
// next request, and a deactivated API key stops working at once.
// Method: in-process app over LMDB; the second handle commits an import.
import { expect, test } from 'bun:test';
import { join } from 'node:path';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { createDefinitionsCache } from '../../src/store/definitions-cache.ts';
import { API_KEY, apiKeyAuth, demoEntities, entity, seedStore } from '../support/seed-store.ts';

test('a re-import invalidates cached definitions and tokens', async () => {
  const { store, cwd } = seedStore(demoEntities());
  const app = createApp({ store, clock: new ManualClock(Date.parse('2026-11-15T12:00:00Z')), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  const quota = async () => {
    const res = await app.request('/rest/licensee/L-1/validate', {
      method: 'POST',
      headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'productModuleNumber0=M-QUOTA',
    });
    return { status: res.status, text: await res.text() };
  };
  expect((await quota()).text).toContain('<ns2:property name="quota">35</ns2:property>');

  const importer = openAssetStore(join(cwd, 'database'));
  importer.importTransaction((tx) => tx.put(entity('License', 'LIC-QUOTA', { licenseeNumber: 'L-1', licenseTemplateNumber: 'T-QUOTA', quantity: '50' })));
  await Bun.sleep(1);
  expect((await quota()).text).toContain('<ns2:property name="quota">50</ns2:property>');

  importer.importTransaction((tx) => tx.put(entity('Token', API_KEY, { tokenType: 'APIKEY', active: 'false' })));
  // lmdb-js renews a reader's snapshot on the next event turn; a server sees an import
  // from another process by the next request in any case.
  await Bun.sleep(1);
  expect((await quota()).status).toBe(401);
  await importer.close();
  await store.close();
});

/** `store`, with the argument of every call of `method` recorded in `calls`. */
function recordingCalls(store: AssetStore, method: 'resolveLicensee' | 'loadProductAssets', calls: string[]): AssetStore {
  const read = store[method] as (number: string) => unknown;
  return { ...store, [method]: (number: string) => (calls.push(number), read(number)) };
}

test('when full, the least recently used licensee goes first; licensees in use are not read again', () => {
  const { store } = seedStore(demoEntities());
  const reads: string[] = [];
  const cache = createDefinitionsCache(recordingCalls(store, 'resolveLicensee', reads), { entriesMax: 2 });
  for (const number of ['L-1', 'L 2/ä', 'L-1', 'NOBODY', 'L-1', 'NOBODY', 'L 2/ä']) cache.resolveLicensee(number);
  // NOBODY (absent, remembered as such) pushed out L 2/ä, the least recently used; L-1 stayed.
  expect(reads).toEqual(['L-1', 'L 2/ä', 'NOBODY', 'L 2/ä']);
  expect(cache.resolveLicensee('L-1')?.number).toBe('L-1');
  expect(cache.resolveLicensee('NOBODY')).toBeUndefined();
  return store.close();
});

test("licensees of one product share its modules and templates: read once, and again after an import; each licensee's own licenses", () => {
  const { store } = seedStore(demoEntities());
  const productReads: string[] = [];
  const cache = createDefinitionsCache(recordingCalls(store, 'loadProductAssets', productReads));
  const assetsOf = (number: string) => cache.loadLicenseeAssets(store.resolveLicensee(number)!)!;
  const one = assetsOf('L-1');
  const two = assetsOf('L 2/ä');
  expect(productReads).toEqual(['P-TEST']);
  expect(two.modules).toBe(one.modules);
  expect(two.templates).toBe(one.templates);
  // The same as the store's own, uncached reading.
  for (const number of ['L-1', 'L 2/ä']) expect(assetsOf(number)).toEqual(store.loadLicenseeAssets(store.resolveLicensee(number)!)!);
  expect(one.licenses.map((license) => license.number)).toContain('LIC-QUOTA');
  expect(two.licenses.map((license) => license.number)).not.toContain('LIC-QUOTA');

  store.importTransaction((tx) => tx.put(entity('ProductModule', 'M-NEW', { productNumber: 'P-TEST', licensingModel: 'Subscription', name: 'New' })));
  expect(assetsOf('L 2/ä').modules.map((module) => module.number)).toContain('M-NEW');
  expect(productReads).toEqual(['P-TEST', 'P-TEST']);
  return store.close();
});
