// Goal: the real, unmodified npm `netlicensing-client` 1.2.40 cannot tell the
// agent from the cloud, for every licensing model, both path layouts, API key
// and vendor auth, errors included. Method: a real Bun.serve on 127.0.0.1:0
// over a seeded LMDB store; the client talks HTTP to it.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import NL from 'netlicensing-client';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp, type RunningServer } from '../../src/server/serve.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import type { Entity } from '../../src/core/entities.ts';
import { ADMIN_API_KEY, API_KEY, demoEntities, entity, seedStore, VENDOR } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');
const clock = new ManualClock(NOW);
let store: AssetStore;
let server: RunningServer;

/**
 * The three models that answer with lists (Rental, Multi-Feature, Pricing Table), in a product of
 * their own so that the demo product's licensees and module count stay as they are; and a licensee
 * of the demo product without licenses, whose trial the Try & Buy test starts.
 */
function listEntities(): Entity[] {
  const P = 'P-LISTS';
  const out: Entity[] = [entity('Product', P, { name: 'Lists', version: '1.0', licenseeAutoCreate: 'false' })];
  const skudef = { skudef: [{ number: 'USERS', name: 'Users', type: 'QUOTA' }, { number: 'API_ACCESS', name: 'API access', type: 'FEATURE' }] };
  out.push(entity('ProductModule', 'M-RENT', { name: 'Rental module', licensingModel: 'Rental', productNumber: P, yellowThreshold: '30', redThreshold: '7' }));
  out.push(entity('ProductModule', 'M-MULTI', { name: 'Multi module', licensingModel: 'MultiFeature', productNumber: P }));
  out.push(entity('ProductModule', 'M-PRICE', { name: 'Pricing module', licensingModel: 'PricingTable', productNumber: P, skudef: JSON.stringify(skudef) }));
  const tpl = (number: string, module: string, licenseType: string, extra: Record<string, string> = {}) =>
    out.push(entity('LicenseTemplate', number, { name: number, licenseType, productModuleNumber: module, price: '0.00', currency: 'EUR', automatic: 'false', hidden: 'false', ...extra }));
  tpl('T-RENT-INSTANCE', 'M-RENT', 'FEATURE');
  tpl('T-RENT-MONTH', 'M-RENT', 'TIMEVOLUME', { timeVolume: '1', timeVolumePeriod: 'MONTH' });
  tpl('T-EXPORT', 'M-MULTI', 'FEATURE');
  tpl('T-REPORTS', 'M-MULTI', 'FEATURE');
  tpl('T-PLAN-FREE', 'M-PRICE', 'FEATURE', { automatic: 'true', skus: JSON.stringify({ USERS: '1', API_ACCESS: false }) });
  tpl('T-PLAN-PRO', 'M-PRICE', 'TIMEVOLUME', { price: '29.00', timeVolume: '1', timeVolumePeriod: 'MONTH', skus: JSON.stringify({ USERS: '25', API_ACCESS: true }) });
  out.push(entity('Licensee', 'L-LISTS', { productNumber: P }));
  const lic = (number: string, template: string, extra: Record<string, string> = {}) =>
    out.push(entity('License', number, { name: number, licenseeNumber: 'L-LISTS', licenseTemplateNumber: template, ...extra }));
  const november = { startDate: '2026-11-01T00:00:00.000Z', timeVolume: '1', timeVolumePeriod: 'MONTH' };
  lic('LIC-DEV1', 'T-RENT-INSTANCE');
  lic('LIC-DEV1-NOV', 'T-RENT-MONTH', { parentfeature: 'LIC-DEV1', ...november });
  lic('LIC-DEV2', 'T-RENT-INSTANCE');
  lic('LIC-EXPORT', 'T-EXPORT');
  // The free plan's license as the export carries it (the cloud assigns automatic plans at licensee creation).
  lic('LIC-FREE', 'T-PLAN-FREE');
  lic('LIC-PRO', 'T-PLAN-PRO', november);
  out.push(entity('Licensee', 'L-TRIAL', { productNumber: 'P-TEST' }));
  return out;
}

beforeAll(() => {
  ({ store } = seedStore([...demoEntities(), ...listEntities()]));
  const app = createApp({ store, clock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  server = serveApp(app, { port: 0, hostname: '127.0.0.1' });
});
afterAll(async () => {
  await server.stop();
  await store.close();
});

const base = (layout: 'rest' | 'core/v2/rest') => `http://127.0.0.1:${server.port}/${layout}`;
const apiKeyContext = (layout: 'rest' | 'core/v2/rest' = 'rest', key = API_KEY) =>
  new NL.Context({ baseUrl: base(layout), securityMode: NL.Constants.APIKEY_IDENTIFICATION, apiKey: key });
const vendorContext = (layout: 'rest' | 'core/v2/rest' = 'core/v2/rest') =>
  new NL.Context().setBaseUrl(base(layout)).setUsername(VENDOR.user).setPassword(VENDOR.password);

type Validators = Record<string, Record<string, unknown>>;
async function validate(
  licensee: string,
  modules: Record<string, Record<string, string>> = {},
  ctx = apiKeyContext(),
  configure?: (vp: InstanceType<typeof NL.ValidationParameters>) => void,
): Promise<Validators> {
  const vp = new NL.ValidationParameters();
  for (const [pm, params] of Object.entries(modules)) vp.setProductModuleValidationParameters(pm, params);
  configure?.(vp);
  const results = await NL.LicenseeService.validate(ctx, licensee, vp);
  const ttl = results.getTtl() as Date;
  expect(Number.isNaN(ttl.getTime())).toBe(false);
  expect(ttl.getTime()).toBeGreaterThan(NOW);
  const validators = results.getValidators() as Validators;
  for (const [pm, v] of Object.entries(validators)) {
    expect(v['productModuleNumber']).toBe(pm);
    expect(typeof v['licensingModel']).toBe('string');
    if (v['valid'] !== undefined) expect(String(v['valid'])).toMatch(/^(true|false)$/);
  }
  return validators;
}

describe('netlicensing-client 1.2.40 against the agent', () => {
  test('Subscription over both path layouts, API key and vendor credentials', async () => {
    for (const ctx of [apiKeyContext('rest'), apiKeyContext('core/v2/rest'), vendorContext('rest'), vendorContext()]) {
      const v = await validate('L-1', {}, ctx);
      expect(v['M-SUB']).toMatchObject({ valid: 'true', licensingModel: 'Subscription', expires: '2026-12-01T00:00:00.000Z' });
    }
  });

  test('Try & Buy starts the trial on the first validation, and it stays started', async () => {
    const v = await validate('L-TRIAL');
    expect(v['M-TRY']).toMatchObject({ valid: 'true', evaluation: 'true', licensingModel: 'TryAndBuy' });
    expect(v['M-TRY']!['evaluationExpires']).toBe('2026-12-15T12:00:00.000Z');
    // A day later the trial still ends 30 days after the first validation, not after this one.
    clock.advance(86_400_000);
    try {
      const later = await validate('L-TRIAL');
      expect(later['M-TRY']).toMatchObject({ valid: 'true', evaluationExpires: '2026-12-15T12:00:00.000Z' });
    } finally {
      clock.set(NOW);
    }
  });

  test('Quota and Node-Locked (CLIENT mode) through indexed parameters', async () => {
    const v = await validate('L-1', { 'M-QUOTA': {}, 'M-NODE': { nodeSecret: 'node-a' } });
    expect(v['M-QUOTA']).toMatchObject({ valid: 'true', quota: '35' });
    expect(v['M-NODE']).toMatchObject({ valid: 'true', licensingModel: 'NodeLocked' });
    await validate('L-1', { 'M-NODE': { nodeSecret: 'node-b' } });
    const third = await validate('L-1', { 'M-NODE': { nodeSecret: 'node-c' } });
    expect(third['M-NODE']!['valid']).toBe('false');
    const again = await validate('L-1', { 'M-NODE': { nodeSecret: 'node-a' } });
    expect(again['M-NODE']!['valid']).toBe('true');
  });

  test('Floating: check-out up to capacity, extension, check-in frees a seat, dry run consumes nothing', async () => {
    const out = (id: string) => validate('L-1', { 'M-FLOAT': { sessionId: id, action: 'checkOut' } });
    expect((await out('s1'))['M-FLOAT']).toMatchObject({ valid: 'true', expirationTimestamp: '2026-11-15T12:05:00.000Z' });
    expect((await out('s2'))['M-FLOAT']!['valid']).toBe('true');
    expect((await out('s3'))['M-FLOAT']!['valid']).toBe('false');
    expect((await out('s1'))['M-FLOAT']!['valid']).toBe('true');
    const checkIn = await validate('L-1', { 'M-FLOAT': { sessionId: 's2', action: 'checkIn' } });
    expect(checkIn['M-FLOAT']!['valid']).toBe('false');
    // One seat is free: a dry-run check-out would get it, and leaves it free.
    const dry = await validate('L-1', { 'M-FLOAT': { sessionId: 's4', action: 'checkOut' } }, apiKeyContext(), (vp) => vp.setDryRun(true));
    expect(dry['M-FLOAT']!['valid']).toBe('true');
    expect((await out('s3'))['M-FLOAT']!['valid']).toBe('true');
    expect((await out('s4'))['M-FLOAT']!['valid']).toBe('false');
    // Sessions expire after maxCheckoutValidity (300 s): the seats are free again.
    clock.advance(301_000);
    expect((await out('s5'))['M-FLOAT']!['valid']).toBe('true');
    expect((await out('s6'))['M-FLOAT']!['valid']).toBe('true');
    clock.set(NOW);
  });

  test('Pay-per-Use: use, reserve, overdraft with a WARNING (not an error)', async () => {
    const use = (params: Record<string, string>) => validate('L-1', { 'M-PPU': params });
    expect((await use({ usedQuantity: '0' }))['M-PPU']).toMatchObject({ valid: 'true', remainingQuantity: '35' });
    expect((await use({ usedQuantity: '10' }))['M-PPU']).toMatchObject({ valid: 'true', remainingQuantity: '25' });
    expect((await use({ reserveQuantity: '30' }))['M-PPU']).toMatchObject({ valid: 'false', remainingQuantity: '25' });
    expect((await use({ usedQuantity: '30' }))['M-PPU']).toMatchObject({ valid: 'false', remainingQuantity: '-5' });
    const last = NL.Service.getLastHttpRequestInfo() as { data: { infos: { info: { id: string; type: string }[] } } };
    expect(last.data.infos.info).toContainEqual(expect.objectContaining({ id: 'usedQuantityExceedsRemaining', type: 'WARNING' }));
  });

  test('Rental, Multi-Feature and Pricing Table: their lists reach the client as entries of each module', async () => {
    const v = await validate('L-LISTS');
    // Rental: one list per instance (FEATURE license), the November month chained on LIC-DEV1.
    expect(v['M-RENT']).toMatchObject({ licensingModel: 'Rental', warningLevel: 'RED' });
    expect(v['M-RENT']!['LIC-DEV1']).toEqual([{ valid: 'true', expires: '2026-12-01T00:00:00.000Z', expirationWarningLevel: 'yellow', warningLevel: 'YELLOW' }]);
    expect(v['M-RENT']!['LIC-DEV2']).toEqual([{ valid: 'false', expirationWarningLevel: 'red', warningLevel: 'RED' }]);
    // Multi-Feature: one list per feature template, valid where the licensee holds its license.
    expect(v['M-MULTI']).toMatchObject({ licensingModel: 'MultiFeature', warningLevel: 'GREEN' });
    expect(v['M-MULTI']!['T-EXPORT']).toEqual([{ valid: 'true', featureName: 'T-EXPORT' }]);
    expect(v['M-MULTI']!['T-REPORTS']).toEqual([{ valid: 'false', featureName: 'T-REPORTS' }]);
    // Pricing Table: the dearer plan wins over the free one; one list per SKU, with the winner's values.
    expect(v['M-PRICE']).toMatchObject({
      licensingModel: 'PricingTable',
      valid: 'true',
      pricingPlanId: 'T-PLAN-PRO',
      pricingPlanType: 'TIMEVOLUME',
      activePricingPlans: 'T-PLAN-FREE,T-PLAN-PRO',
    });
    expect(v['M-PRICE']!['USERS']).toEqual([{ valid: 'true', quota: '25', name: 'Users', type: 'QUOTA' }]);
    expect(v['M-PRICE']!['API_ACCESS']).toEqual([{ valid: 'true', name: 'API access', type: 'FEATURE' }]);
    // After the plan's month ends, the free plan applies.
    clock.set(Date.parse('2026-12-02T00:00:00.000Z'));
    try {
      const december = await validate('L-LISTS', { 'M-PRICE': {} });
      expect(december['M-PRICE']).toMatchObject({ valid: 'true', pricingPlanId: 'T-PLAN-FREE', activePricingPlans: 'T-PLAN-FREE' });
      expect(december['M-PRICE']!['USERS']).toEqual([expect.objectContaining({ quota: '1' })]);
      expect(december['M-PRICE']!['API_ACCESS']).toEqual([expect.objectContaining({ valid: 'false' })]);
    } finally {
      clock.set(NOW);
    }
  });

  test('forOfflineUse adds a Licensee item the client ignores', async () => {
    const v = await validate('L-1', {}, apiKeyContext(), (vp) => vp.setForOfflineUse(true));
    expect(v['M-SUB']!['valid']).toBe('true');
    const last = NL.Service.getLastHttpRequestInfo() as { data: { items: { item: { type: string }[] } } };
    expect(last.data.items.item[0]!.type).toBe('Licensee');
  });

  test('errors become NlicError with the server text: unknown licensee, bad key', async () => {
    const unknown = await NL.LicenseeService.validate(apiKeyContext(), 'NOPE', new NL.ValidationParameters()).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(NL.NlicError);
    expect((unknown as Error).message).toBe('Requested licensee does not exist and the productNumber is not provided');
    const badKey = await NL.LicenseeService.validate(apiKeyContext('rest', 'wrong'), 'L-1', new NL.ValidationParameters()).catch((e: unknown) => e);
    expect(badKey).toBeInstanceOf(NL.NlicError);
    expect((badKey as { response?: { status: number } }).response?.status).toBe(401);
  });

  test('a base URL ending in a slash (the client then sends //licensee/…) works for validate and reads', async () => {
    const ctx = new NL.Context({ baseUrl: `${base('rest')}/`, securityMode: NL.Constants.APIKEY_IDENTIFICATION, apiKey: API_KEY });
    const results = await NL.LicenseeService.validate(ctx, 'L-1', new NL.ValidationParameters());
    expect((results.getValidators() as Validators)['M-SUB']).toMatchObject({ valid: 'true' });
    const vendor = new NL.Context().setBaseUrl(`${base('core/v2/rest')}/`).setUsername(VENDOR.user).setPassword(VENDOR.password);
    expect((await NL.ProductService.get(vendor, 'P-TEST')).getName()).toBe('Test product');
  });

  test('read calls return typed entities', async () => {
    const ctx = apiKeyContext('core/v2/rest', ADMIN_API_KEY);
    const licensee = await NL.LicenseeService.get(ctx, 'L-1');
    expect(licensee.getNumber()).toBe('L-1');
    const product = await NL.ProductService.get(vendorContext(), 'P-TEST');
    expect(product.getName()).toBe('Test product');
    const modules = await NL.ProductModuleService.list(vendorContext(), 'productNumber=P-TEST');
    expect(modules.length).toBe(6);
    const template = await NL.LicenseTemplateService.get(vendorContext(), 'T-FLOAT');
    // The client casts numeric strings on entities it reads.
    expect(Number(template.getProperty('maxSessions'))).toBe(2);
  });
});
