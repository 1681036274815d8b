// Goal: /metrics is valid Prometheus text and its figures are right — requests
// by route/status/licensing model, validate latency histogram, floating seats
// used/free, quantities, clock drift, last import, card counters at zero —
// and /health, /ready behave (pluggable checks, draining). Also: the access log
// never carries credentials. Method: the real app over a seeded LMDB store,
// driven in-process with app.request; admin app likewise; a strict parser of
// the exposition format checks every line; fixed ManualClock.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { Writable } from 'node:stream';
import { ManualClock } from '../../src/platform/clock.ts';
import { createLogger, silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { createAdminApp, withHealth } from '../../src/server/ops/admin-app.ts';
import { adminCredentials, createOps, type Ops } from '../../src/server/ops/ops.ts';
import { Counter, gauge, Histogram, renderFamilies } from '../../src/server/ops/prometheus.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { ADMIN_API_KEY, apiKeyAuth, basic, demoEntities, entity, seedStore, VENDOR, vendorAuth } from '../support/seed-store.ts';
import { createStatusReader, DEFINITIONS_RESCAN_MS, SCAN_AT_ONCE } from '../../src/service/status.ts';
import { parseExposition } from './support.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');
const BUILD = { version: '9.9.9', commit: 'abc123', bun: Bun.version };

let store: AssetStore;
let clock: ManualClock;
let ops: Ops;
let app: ReturnType<typeof createApp>;
let admin: ReturnType<typeof createAdminApp>;

function adminFor(o: Ops, s: AssetStore) {
  return createAdminApp({
    store: s,
    status: o.status,
    metrics: o.metrics,
    readiness: o.readiness,
    sampler: o.sampler,
    sampleIntervalMs: o.sampleIntervalMs,
    clock,
    version: 'test-version',
  });
}

beforeAll(() => {
  ({ store } = seedStore(demoEntities()));
  clock = new ManualClock(NOW);
  ops = createOps({ store, clock, log: silentLogger(), build: BUILD, versionText: 'test-version', cardDisabled: false });
  app = createApp({ store, clock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false, observer: ops.metrics });
  admin = adminFor(ops, store);
});
afterAll(async () => {
  await ops.stop();
  await store.close();
});

const validate = (body: string, auth = apiKeyAuth()) =>
  app.request('/core/v2/rest/licensee/L-1/validate', {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body,
  });

async function scrape() {
  const res = await admin.request('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(await res.text());
}

describe('Prometheus text writer', () => {
  test('escapes label values and help text, renders cumulative buckets and +Inf', () => {
    const counter = new Counter('x_total', 'line one\nback\\slash');
    counter.inc({ path: 'a"b\\c\nd' }, 2);
    const histogram = new Histogram('h_seconds', 'h', [0.1, 1]);
    for (const v of [0.05, 0.5, 0.5, 7]) histogram.observe(v);
    const text = renderFamilies([counter.family(), histogram.family()]);
    expect(text).toContain('# HELP x_total line one\\nback\\\\slash\n');
    expect(text).toContain('x_total{path="a\\"b\\\\c\\nd"} 2\n');
    expect(text).toContain('h_seconds_bucket{le="0.1"} 1\nh_seconds_bucket{le="1"} 3\nh_seconds_bucket{le="+Inf"} 4\nh_seconds_sum 8.05\nh_seconds_count 4\n');
    const parsed = parseExposition(text);
    expect(parsed.value('x_total', { path: 'a"b\\c\nd' })).toBe(2);
  });

  test('refuses names the format does not allow', () => {
    expect(() => renderFamilies([{ name: 'bad-name', help: 'h', type: 'gauge', samples: [] }])).toThrow('invalid metric name');
    expect(() => renderFamilies([{ name: 'ok', help: 'h', type: 'gauge', samples: [{ labels: { 'bad-label': 'x' }, value: 1 }] }])).toThrow('invalid label name');
  });
});

describe('/metrics', () => {
  test('before any traffic: well-formed, card counters zero, import and build info present', async () => {
    const m = await scrape();
    expect(m.value('nla_build_info', { version: '9.9.9', commit: 'abc123' })).toBe(1);
    expect(m.value('nla_card_checkpoint_duration_seconds_count')).toBe(0);
    expect(m.types.get('nla_card_checkpoints_total')).toBe('counter');
    expect(m.value('nla_last_import_info', { export_id: 'test-export', source_host: 'test' })).toBe(1);
    expect(m.value('nla_last_import_timestamp_seconds')).toBe(Date.parse('2026-01-01T00:00:00.000Z') / 1000);
    expect(m.value('nla_licensees')).toBe(2);
    expect(m.value('nla_floating_seats_capacity', { module: 'M-FLOAT' })).toBe(2);
    expect(m.value('nla_floating_seats_free', { module: 'M-FLOAT' })).toBe(2);
    expect(m.value('nla_quantity_total', { module: 'M-PPU' })).toBe(35);
    expect(m.value('nla_journal_entries')).toBe(0);
    // No journal entry yet: the drift is measured from the newest time seen, the import.
    expect(m.value('nla_clock_drift_seconds')).toBe((NOW - Date.parse('2026-01-01T00:00:00.000Z')) / 1000);
    expect(m.value('nla_ready', { check: 'store' })).toBe(1);
    expect(m.value('nla_database_size_bytes')).toBeGreaterThan(0);
  });

  test('validate traffic shows in requests, models, latency, seats, quantities and clock drift', async () => {
    const checkOut = (id: string) => validate(`productModuleNumber0=M-FLOAT&sessionId0=${id}&action0=checkOut`);
    expect((await checkOut('seat-a')).status).toBe(200);
    expect((await checkOut('seat-b')).status).toBe(200);
    expect((await checkOut('seat-c')).status).toBe(200); // pool full: valid=false
    expect((await validate('productModuleNumber0=M-PPU&usedQuantity0=4')).status).toBe(200);
    expect((await validate('', basic(VENDOR.user, 'wrong'))).status).toBe(401);
    expect((await app.request('/rest/product/P-TEST', { headers: { authorization: vendorAuth() } })).status).toBe(200);
    clock.advance(90_000);

    const m = await scrape();
    expect(m.value('nla_http_requests_total', { route: 'validate', method: 'POST', status: '200' })).toBe(4);
    expect(m.value('nla_http_requests_total', { route: 'validate', method: 'POST', status: '401' })).toBe(1);
    expect(m.value('nla_http_requests_total', { route: 'entity', method: 'GET', status: '200' })).toBe(1);
    expect(m.value('nla_validations_total', { licensing_model: 'Floating', valid: 'true' })).toBe(2);
    expect(m.value('nla_validations_total', { licensing_model: 'Floating', valid: 'false' })).toBe(2);
    expect(m.value('nla_validations_total', { licensing_model: 'PayPerUse', valid: 'true' })).toBe(4);
    // Every validate request (401 included) is timed.
    expect(m.value('nla_validate_duration_seconds_count')).toBe(5);
    expect(m.value('nla_validate_duration_seconds_sum')).toBeGreaterThan(0);
    expect(m.value('nla_floating_seats_used', { module: 'M-FLOAT' })).toBe(2);
    expect(m.value('nla_floating_seats_free', { module: 'M-FLOAT' })).toBe(0);
    expect(m.value('nla_quantity_booked', { module: 'M-PPU' })).toBe(4);
    expect(m.value('nla_quantity_used', { module: 'M-PPU' })).toBe(4);
    expect(m.value('nla_licensees_with_runtime_state')).toBe(1);
    expect(m.value('nla_journal_entries')).toBeGreaterThanOrEqual(3);
    expect(m.value('nla_clock_drift_seconds')).toBe(90);

    // Sessions expire after maxCheckoutValidity (300 s): the gauges follow without any request.
    clock.advance(300_000);
    const later = await scrape();
    expect(later.value('nla_floating_seats_used', { module: 'M-FLOAT' })).toBe(0);
    expect(later.value('nla_floating_seats_free', { module: 'M-FLOAT' })).toBe(2);
  });

  test('a clock set back behind the journal shows as negative drift', async () => {
    const before = clock.nowMs();
    clock.set(NOW - 3_600_000);
    const m = await scrape();
    expect(m.value('nla_clock_drift_seconds')).toBe(-3600);
    clock.set(before);
  });

  test('a reused answer is counted like a decided one, each time', async () => {
    const before = await scrape();
    const subscriptions = (m: typeof before) => m.value('nla_validations_total', { licensing_model: 'Subscription', valid: 'true' }) ?? 0;
    const answered = (m: typeof before) => m.value('nla_http_requests_total', { route: 'validate', method: 'POST', status: '200' }) ?? 0;
    // The same read three times: decided once, then answered from the answer cache.
    for (let i = 0; i < 3; i++) expect((await validate('productModuleNumber0=M-SUB')).status).toBe(200);
    const after = await scrape();
    expect(subscriptions(after) - subscriptions(before)).toBe(3);
    expect(answered(after) - answered(before)).toBe(3);
  });

  test('card checkpoints reported by the card layer are counted', async () => {
    const { store: s } = seedStore(demoEntities());
    const o = createOps({ store: s, clock, log: silentLogger(), build: BUILD, versionText: 'v', cardDisabled: false });
    o.metrics.cardCheckpoint(40);
    o.metrics.cardCheckpoint(300);
    const m = parseExposition(await (await adminFor(o, s).request('/metrics')).text());
    expect(m.value('nla_card_checkpoints_total')).toBe(2);
    expect(m.value('nla_card_checkpoint_duration_seconds_bucket', { le: '0.05' })).toBe(1);
    expect(m.value('nla_card_checkpoint_duration_seconds_count')).toBe(2);
    await s.close();
  });
});

describe('status snapshots', () => {
  test('definitions changed without an import (run-agent refreshes) show within a minute; an import at once', async () => {
    const { store: s } = seedStore(demoEntities());
    const reader = createStatusReader(s, SCAN_AT_ONCE);
    const licensees = async (atMs: number) => (await reader.snapshot(atMs)).definitions.counts.licensees;
    const before = await licensees(NOW);
    s.importTransaction((tx) => tx.put(entity('Licensee', 'REFRESHED-1', { productNumber: 'P-TEST' })));
    // Within DEFINITIONS_RESCAN_MS of the last scan: the summary kept (a refresh every few seconds would otherwise rescan at every scrape).
    expect(await licensees(NOW + 1_000)).toBe(before);
    expect(await licensees(NOW + DEFINITIONS_RESCAN_MS)).toBe(before + 1);
    // Nothing changed since: kept however long.
    expect(await licensees(NOW + 10 * DEFINITIONS_RESCAN_MS)).toBe(before + 1);
    // An import: at once.
    s.importTransaction((tx) => {
      tx.put(entity('Licensee', 'IMPORTED-1', { productNumber: 'P-TEST' }));
      tx.setMeta({ ...tx.meta(), lastImport: { exportId: 'next', createdAt: '', sourceHost: 'h', importedAt: new Date(NOW).toISOString(), files: 1, entities: 1 } });
    });
    expect(await licensees(NOW + 10 * DEFINITIONS_RESCAN_MS + 1)).toBe(before + 2);
    await s.close();
  });
});

describe('admin extensions', () => {
  test("a serving mode's metrics, status tiles, warnings (escaped) and status.json key show on the listener", async () => {
    const { store: s } = seedStore(demoEntities());
    const o = createOps({ store: s, clock, log: silentLogger(), build: BUILD, versionText: 'v', cardDisabled: false });
    const listener = o.listenAdmin({ host: '127.0.0.1', port: 0 });
    try {
      // Added after the listener started (as run-agent-offline adds the card's once the card is open).
      let seen = 7;
      o.extend({
        name: 'extra',
        metrics: () => [gauge('nla_extra_seen', 'Test gauge.', [{ value: seen }])],
        tiles: () => [{ title: 'Extra <tile>', value: 'a & b', detail: '<script>x</script>' }],
        warnings: () => ['Look <here>'],
        json: () => ({ seen }),
      });
      o.extend({ name: 'metrics-only', metrics: () => [gauge('nla_other', 'Other.', [{ value: 1 }])] });
      const get = (path: string) => fetch(`http://127.0.0.1:${listener.port}${path}`);
      seen = 8;
      const m = parseExposition(await (await get('/metrics')).text());
      expect(m.value('nla_extra_seen')).toBe(8);
      expect(m.value('nla_other')).toBe(1);
      expect(m.value('nla_build_info', { ...BUILD })).toBe(1);
      const page = await (await get('/status')).text();
      expect(page).toContain('<h3>Extra &#60;tile&#62;</h3><div class="value">a &#38; b<small>&#60;script&#62;x&#60;/script&#62;</small>');
      expect(page).toContain('<div class="warn">Look &#60;here&#62;</div>');
      expect(page).not.toContain('<script>');
      const json = (await (await get('/status.json')).json()) as Record<string, unknown>;
      expect(json['extra']).toEqual({ seen: 8 });
      expect('metrics-only' in json).toBe(false);
    } finally {
      await o.stop();
      await s.close();
    }
  });
});

describe('admin listener beyond loopback', () => {
  test('asks for credentials unless on loopback or with required client certificates', () => {
    expect(adminCredentials('127.0.0.1', undefined, store)).toBeUndefined();
    expect(adminCredentials('localhost', 'off', store)).toBeUndefined();
    expect(adminCredentials('::1', undefined, store)).toBeUndefined();
    expect(adminCredentials('0.0.0.0', 'require', store)).toBeUndefined();
    for (const clientAuth of [undefined, 'off', 'optional']) expect(adminCredentials('0.0.0.0', clientAuth, store)).toBeFunction();
    expect(adminCredentials('192.0.2.7', undefined, store)).toBeFunction();
  });

  test('/metrics and the status page need the vendor or a reading API key; /health and /ready stay open', async () => {
    // The rule for a host beyond loopback, on a listener the test binds to 127.0.0.1.
    const authorize = adminCredentials('0.0.0.0', undefined, store)!;
    const listener = ops.listenAdmin({ host: '127.0.0.1', port: 0, authorize });
    try {
      const get = (path: string, authorization?: string) =>
        fetch(`http://127.0.0.1:${listener.port}${path}`, authorization ? { headers: { authorization } } : {});
      for (const path of ['/health', '/ready']) expect((await get(path)).status).toBe(200);
      for (const path of ['/metrics', '/status', '/status.json']) {
        const refused = await get(path);
        expect(refused.status).toBe(401);
        expect(refused.headers.get('www-authenticate')).toBe('Basic realm="NetLicensing Agent admin"');
        expect((await get(path, basic(VENDOR.user, 'wrong'))).status).toBe(401);
        // A licensee's key may validate, not read: not the operator's page either.
        expect((await get(path, apiKeyAuth())).status).toBe(401);
        expect((await get(path, vendorAuth())).status).toBe(200);
        expect((await get(path, apiKeyAuth(ADMIN_API_KEY))).status).toBe(200);
      }
    } finally {
      await listener.stop();
    }
  });
});

describe('/health and /ready', () => {
  test('/health on the admin app and, through withHealth, on the main port; /ready only on admin', async () => {
    for (const res of [await admin.request('/health'), await withHealth(app).fetch(new Request('http://agent/health'))]) {
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    }
    const main = withHealth(app);
    expect((await main.fetch(new Request('http://agent/ready'))).status).toBe(404);
    expect((await main.fetch(new Request('http://agent/metrics'))).status).toBe(404);
    // The licensing routes still go through.
    const res = await main.fetch(new Request('http://agent/rest/licensee/L-1/validate', { method: 'POST', headers: { authorization: apiKeyAuth() } }));
    expect(res.status).toBe(200);
  });

  test('/ready is 200 with its checks, 503 for a card-bound database until a card check is plugged in, 503 while draining', async () => {
    const ready = await admin.request('/ready');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: [{ name: 'store', ok: true }, { name: 'card', ok: true }] });

    const { store: bound } = seedStore(demoEntities());
    bound.importTransaction((tx) => tx.setMeta({ ...tx.meta(), withoutCard: false, cardSerial: 'D276000124010304000500001234' }));
    const o = createOps({ store: bound, clock, log: silentLogger(), build: BUILD, versionText: 'v', cardDisabled: false });
    const boundAdmin = adminFor(o, bound);
    const notReady = await boundAdmin.request('/ready');
    expect(notReady.status).toBe(503);
    const body = (await notReady.json()) as { checks: { name: string; ok: boolean; detail: string }[] };
    expect(body.checks.find((c) => c.name === 'card')).toMatchObject({ ok: false });
    expect(body.checks.find((c) => c.name === 'card')!.detail).toContain('D276000124010304000500001234');

    o.readiness.replace({ name: 'card', run: () => ({ ok: true, detail: 'card D2760001… present' }) });
    expect((await boundAdmin.request('/ready')).status).toBe(200);
    o.readiness.add({ name: 'flaky', run: () => { throw new Error('boom'); } });
    const failing = await boundAdmin.request('/ready');
    expect(failing.status).toBe(503);
    expect(JSON.stringify(await failing.json())).toContain('check failed: boom');
    await bound.close();

    ops.draining();
    const draining = await admin.request('/ready');
    expect(draining.status).toBe(503);
    expect(JSON.stringify(await draining.json())).toContain('the agent is stopping');
    // Liveness is unaffected.
    expect((await admin.request('/health')).status).toBe(200);
  });
});

describe('access log', () => {
  test('with --verbose it logs method, path and status, never credentials or the query', async () => {
    let logged = '';
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logged += String(chunk);
        done();
      },
    });
    for (const json of [false, true]) {
      const log = createLogger({ verbose: true, json, stream: sink });
      const logged0 = logged.length;
      const verboseApp = createApp({ store, clock, log, ttlMs: 600_000, allowAnonymous: false });
      await verboseApp.request('/rest/licensee/L-1/validate?secretQuery=q-secret', {
        method: 'POST',
        headers: { authorization: vendorAuth(), 'content-type': 'application/x-www-form-urlencoded' },
        body: 'productModuleNumber0=M-SUB&password=body-secret',
      });
      await verboseApp.request('/rest/licensee/L-1/validate', { method: 'POST', headers: { authorization: basic(VENDOR.user, 'wrong-pass') } });
      const mine = logged.slice(logged0);
      expect(mine).toContain('POST /rest/licensee/L-1/validate 200');
      expect(mine).toContain('POST /rest/licensee/L-1/validate 401');
      for (const secret of [VENDOR.password, 'wrong-pass', vendorAuth().slice(6), basic(VENDOR.user, 'wrong-pass').slice(6), 'q-secret', 'body-secret', 'Basic ']) {
        expect(mine).not.toContain(secret);
      }
      expect(mine.toLowerCase()).not.toContain('authorization');
    }
  });
});
