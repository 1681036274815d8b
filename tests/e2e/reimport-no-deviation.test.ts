// Goal: no row in the seed manual's "Known Limitations" table applies to this
// agent. After it has worked (trial started, subscription started by the agent,
// floating seats held, quantities used, node secrets registered), a repeated
// export → import leaves every answer exactly as before, also after a restart;
// and where the cloud changed a definition, the change applies while the
// runtime state is kept (README, "Re-import without deviation").
// Method: transfer files written with the project's writer, imported with
// runCli; the agent in-process over LMDB with a fixed clock; answers compared
// as rendered JSON (dry runs, so comparing does not change state).
import { expect, test } from 'bun:test';
import { join } from 'node:path';
import type { CliIo } from '../../src/cli/actions.ts';
import { runCli } from '../../src/cli/run.ts';
import type { Entity } from '../../src/core/entities.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { API_KEY, apiKeyAuth, entity } from '../support/seed-store.ts';

const T0 = Date.parse('2026-11-15T12:00:00.000Z');
const DAY = 86_400_000;

/** One licensee using every stateful model; licenses as a cloud export has them. */
function cloudData(changes: { ppuQuantity?: string; floatSessions?: string; subscriptionMonths?: string } = {}): Entity[] {
  const P = 'P-RE';
  const mod = (n: string, model: string, extra: Record<string, string> = {}) =>
    entity('ProductModule', n, { name: n, licensingModel: model, productNumber: P, ...extra });
  const tpl = (n: string, m: string, type: string, extra: Record<string, string> = {}) =>
    entity('LicenseTemplate', n, { name: n, licenseType: type, productModuleNumber: m, price: '0.00', currency: 'EUR', ...extra });
  const lic = (n: string, t: string, extra: Record<string, string> = {}) =>
    entity('License', n, { name: n, licenseeNumber: 'L-RE', licenseTemplateNumber: t, ...extra });
  return [
    entity('Product', P, { name: 'Re-import product' }),
    mod('M-TRY', 'TryAndBuy'),
    mod('M-SUB', 'Subscription'),
    mod('M-RENT', 'Rental', { yellowThreshold: '10', redThreshold: '3' }),
    mod('M-FLOAT', 'Floating', { maxCheckoutValidity: '86400' }),
    mod('M-MF', 'MultiFeature'),
    mod('M-PPU', 'PayPerUse'),
    mod('M-QUOTA', 'Quota'),
    mod('M-NODE', 'NodeLocked', { nodeSecretMode: 'CLIENT' }),
    mod('M-PRICE', 'PricingTable', { skudef: JSON.stringify({ skudef: [{ number: 'USERS', name: 'Users', type: 'QUOTA' }] }) }),
    tpl('T-TRIAL', 'M-TRY', 'TIMEVOLUME', { timeVolume: '14', timeVolumePeriod: 'DAY', automatic: 'true', hidden: 'true' }),
    tpl('T-BUY', 'M-TRY', 'FEATURE'),
    tpl('T-SUB', 'M-SUB', 'TIMEVOLUME', { timeVolume: '1', timeVolumePeriod: 'MONTH' }),
    tpl('T-RENT-DEV', 'M-RENT', 'FEATURE'),
    tpl('T-RENT-TIME', 'M-RENT', 'TIMEVOLUME', { timeVolume: '30', timeVolumePeriod: 'DAY' }),
    tpl('T-FLOAT', 'M-FLOAT', 'FLOATING', { maxSessions: '2' }),
    tpl('F-EXPORT', 'M-MF', 'FEATURE', { name: 'Export' }),
    tpl('T-PPU', 'M-PPU', 'QUANTITY', { quantity: '35' }),
    tpl('T-QUOTA', 'M-QUOTA', 'QUANTITY', { quantity: '10' }),
    tpl('T-NODE', 'M-NODE', 'QUANTITY', { quota: '2' }),
    tpl('T-PLAN', 'M-PRICE', 'TIMEVOLUME', { timeVolume: '1', timeVolumePeriod: 'MONTH', skus: JSON.stringify({ USERS: '5' }) }),
    entity('Licensee', 'L-RE', { productNumber: P }),
    // No startDate: the agent starts it at the first validation (the original loses that on re-import).
    lic('LIC-SUB', 'T-SUB', { timeVolume: changes.subscriptionMonths ?? '1', timeVolumePeriod: 'MONTH' }),
    lic('DEV-1', 'T-RENT-DEV'),
    lic('DEV-1-TIME', 'T-RENT-TIME', { parentfeature: 'DEV-1', timeVolume: '30', timeVolumePeriod: 'DAY' }),
    lic('LIC-FLOAT', 'T-FLOAT', { maxSessions: changes.floatSessions ?? '2' }),
    lic('LIC-EXPORT', 'F-EXPORT'),
    lic('LIC-PPU', 'T-PPU', { quantity: changes.ppuQuantity ?? '35', usedQuantity: '0' }),
    lic('LIC-QUOTA', 'T-QUOTA', { quantity: '10' }),
    lic('LIC-NODE', 'T-NODE', { quota: '2' }),
    // A plan without startDate: the agent starts it at the first validation, as the subscription.
    lic('LIC-PLAN', 'T-PLAN', { timeVolume: '1', timeVolumePeriod: 'MONTH' }),
    entity('Token', API_KEY, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE' }),
  ];
}

const silentIo = (): CliIo & { err: string } => {
  const io = { err: '', stdout: () => {}, stderr: (t: string) => void (io.err += t), isTTY: false, env: {} };
  return io;
};

async function exportAndImport(cwd: string, entities: Entity[], n: number): Promise<void> {
  const dir = join(cwd, `export-${n}`);
  await writeTransferFiles(
    { exportId: crypto.randomUUID(), createdAt: new Date(T0).toISOString(), sourceHost: 'test-cloud', licensees: ['L-RE'] },
    entities,
    { directory: dir },
  );
  const io = silentIo();
  const code = await runCli(['--action=import-assets', `--input=${dir}`, '--without-card'], io, { cwd, log: silentLogger() });
  if (code !== 0) throw new Error(`import failed (${code}): ${io.err}`);
}

function agent(store: AssetStore, clock: ManualClock) {
  const app = createApp({ store, clock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  return async (body: string): Promise<string> => {
    const res = await app.request('/rest/licensee/L-RE/validate', {
      method: 'POST',
      headers: { authorization: apiKeyAuth(), accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    expect(res.status).toBe(200);
    return res.text();
  };
}

/** Dry-run probes covering every model; they change nothing, so they can be repeated. */
const PROBES = [
  'dryRun=true',
  'dryRun=true&productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=probe',
  'dryRun=true&productModuleNumber0=M-PPU&usedQuantity0=0',
  'dryRun=true&productModuleNumber0=M-NODE&nodeSecret0=node-a',
  'dryRun=true&productModuleNumber0=M-NODE&nodeSecret0=node-new',
];

async function answers(call: (body: string) => Promise<string>): Promise<string[]> {
  const out: string[] = [];
  for (const probe of PROBES) out.push(await call(probe));
  return out;
}

function property(json: string, module: string, name: string): string | undefined {
  const body = JSON.parse(json) as { items: { item: { property: { name: string; value: string }[] }[] } };
  const item = body.items.item.find((i) => i.property.some((p) => p.name === 'productModuleNumber' && p.value === module));
  return item?.property.find((p) => p.name === name)?.value;
}

test('re-import after the agent has worked: every model answers exactly as before, also after a restart', async () => {
  const cwd = tempDir('nla-reimport-');
  const clock = new ManualClock(T0);
  await exportAndImport(cwd, cloudData(), 1);
  let store = openAssetStore(join(cwd, 'database'));
  let call = agent(store, clock);
  // The agent works: first validation starts the trial and the subscription; seats,
  // credits and node slots are taken.
  await call('');
  await call('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s1');
  await call('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s2');
  await call('productModuleNumber0=M-PPU&usedQuantity0=10');
  await call('productModuleNumber0=M-NODE&nodeSecret0=node-a');
  clock.advance(3_600_000);
  const before = await answers(call);
  // Sanity: the state is really there.
  expect(property(before[0]!, 'M-TRY', 'evaluationExpires')).toBe(new Date(T0 + 14 * DAY).toISOString());
  expect(property(before[0]!, 'M-SUB', 'expires')).toBe('2026-12-15T12:00:00.000Z');
  expect(property(before[1]!, 'M-FLOAT', 'valid')).toBe('false');
  expect(property(before[2]!, 'M-PPU', 'remainingQuantity')).toBe('25');
  await store.close();

  await exportAndImport(cwd, cloudData(), 2);
  store = openAssetStore(join(cwd, 'database'));
  call = agent(store, clock);
  expect(await answers(call)).toEqual(before);
  expect(verifyDatabase(store).ok).toBe(true);
  await store.close();

  // Restart only: the same.
  store = openAssetStore(join(cwd, 'database'));
  expect(await answers(agent(store, clock))).toEqual(before);
  // The plan the agent started at T0 ends a month after T0, not a month after the re-import (T0 + 1 h).
  expect(property(before[0]!, 'M-PRICE', 'pricingPlanId')).toBe('T-PLAN');
  clock.set(Date.parse('2026-12-15T12:30:00.000Z'));
  expect(property(await agent(store, clock)('dryRun=true'), 'M-PRICE', 'valid')).toBe('false');
  await store.close();
});

test('a definition changed in the cloud applies, and the runtime state is kept where it still makes sense', async () => {
  const cwd = tempDir('nla-reimport-change-');
  const clock = new ManualClock(T0);
  await exportAndImport(cwd, cloudData(), 1);
  let store = openAssetStore(join(cwd, 'database'));
  let call = agent(store, clock);
  await call('');
  await call('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s1');
  await call('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s2');
  await call('productModuleNumber0=M-PPU&usedQuantity0=10');
  await store.close();

  // The vendor tops up credits, adds a seat and extends the subscription to 3 months.
  await exportAndImport(cwd, cloudData({ ppuQuantity: '50', floatSessions: '3', subscriptionMonths: '3' }), 2);
  store = openAssetStore(join(cwd, 'database'));
  call = agent(store, clock);
  const all = await call('dryRun=true&productModuleNumber0=M-PPU&usedQuantity0=0');
  expect(property(all, 'M-PPU', 'remainingQuantity')).toBe('40');
  // The start date the agent set is kept; the new time volume counts from it.
  expect(property(all, 'M-SUB', 'expires')).toBe('2027-02-15T12:00:00.000Z');
  // s1 and s2 still hold their seats: one seat is free, not three.
  expect(property(await call('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s3'), 'M-FLOAT', 'valid')).toBe('true');
  expect(property(await call('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s4'), 'M-FLOAT', 'valid')).toBe('false');
  // The trial the agent started keeps its start.
  expect(property(all, 'M-TRY', 'evaluationExpires')).toBe(new Date(T0 + 14 * DAY).toISOString());
  expect(verifyDatabase(store).ok).toBe(true);
  await store.close();
});

