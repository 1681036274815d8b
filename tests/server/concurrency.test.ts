// Goal: concurrent requests never over-allocate a floating seat or lose a used
// quantity, and acknowledged changes survive a restart. Method: real Bun.serve
// on 127.0.0.1:0 over LMDB; 200 parallel check-outs against 50 seats and 1,000
// parallel usedQuantity=1 calls; then the store is closed, reopened, re-read.
import { afterAll, expect, test } from 'bun:test';
import { join } from 'node:path';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp, type RunningServer } from '../../src/server/serve.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { apiKeyAuth, entity, seedStore } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function start(store: AssetStore): RunningServer {
  const app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  return serveApp(app, { port: 0, hostname: '127.0.0.1' });
}

function seed() {
  return seedStore([
    entity('Product', 'P'),
    entity('ProductModule', 'M-FLOAT', { productNumber: 'P', licensingModel: 'Floating', maxCheckoutValidity: '3600' }),
    entity('LicenseTemplate', 'T-FLOAT', { productModuleNumber: 'M-FLOAT', licenseType: 'FLOATING', maxSessions: '50' }),
    entity('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse' }),
    entity('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: '5000' }),
    entity('Licensee', 'L', { productNumber: 'P' }),
    entity('License', 'LF1', { licenseeNumber: 'L', licenseTemplateNumber: 'T-FLOAT', maxSessions: '30' }),
    entity('License', 'LF2', { licenseeNumber: 'L', licenseTemplateNumber: 'T-FLOAT', maxSessions: '20' }),
    entity('License', 'LP1', { licenseeNumber: 'L', licenseTemplateNumber: 'T-PPU', quantity: '5000' }),
  ]);
}

async function post(server: RunningServer, body: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${server.port}/rest/licensee/L/validate`, {
    method: 'POST',
    headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body,
  });
  expect(res.status).toBe(200);
  return res.text();
}

function property(json: string, module: string, name: string): string | undefined {
  const body = JSON.parse(json) as { items: { item: { property: { name: string; value: string }[] }[] } };
  const item = body.items.item.find((i) => i.property.some((p) => p.name === 'productModuleNumber' && p.value === module));
  return item?.property.find((p) => p.name === name)?.value;
}

test('200 parallel check-outs against 50 seats give exactly 50 valid, also after a restart', async () => {
  const { store, cwd } = seed();
  let server = start(store);
  const answers = await Promise.all(
    Array.from({ length: 200 }, (_, i) => post(server, `productModuleNumber0=M-FLOAT&sessionId0=s${i}&action0=checkOut`)),
  );
  const valid = answers.filter((a) => property(a, 'M-FLOAT', 'valid') === 'true').length;
  expect(valid).toBe(50);
  await server.stop();
  await store.close();

  const reopened = openAssetStore(join(cwd, 'database'));
  cleanups.push(() => reopened.close());
  expect(reopened.getRuntime('L').sessions['M-FLOAT']?.size).toBe(50);
  server = start(reopened);
  cleanups.push(() => server.stop());
  const more = await post(server, 'productModuleNumber0=M-FLOAT&sessionId0=late&action0=checkOut');
  expect(property(more, 'M-FLOAT', 'valid')).toBe('false');
});

test('1,000 parallel usedQuantity=1 calls leave exactly 1,000 used, also after a restart', async () => {
  const { store, cwd } = seed();
  let server = start(store);
  await Promise.all(Array.from({ length: 1000 }, () => post(server, 'productModuleNumber0=M-PPU&usedQuantity0=1')));
  await server.stop();
  await store.close();

  const reopened = openAssetStore(join(cwd, 'database'));
  cleanups.push(() => reopened.close());
  expect(reopened.getRuntime('L').usedQuantity['LP1']).toBe(1000);
  expect(reopened.journalHead().seq).toBe(1000);
  server = start(reopened);
  cleanups.push(() => server.stop());
  const answer = await post(server, 'productModuleNumber0=M-PPU&usedQuantity0=0');
  expect(property(answer, 'M-PPU', 'remainingQuantity')).toBe('4000');
});
