// Goal: the validation cache answers, during an outage, requests for a
// licensee the agent holds no copy of — with the upstream's own bytes, until
// the answer's ttl, only for requests that change no counter and only for
// callers whose credentials the upstream accepted — locally (the agent's
// database) and in Redis, where two agents behind one load balancer share
// it. Method: stand-in upstream; proxies whose asset refresh is disabled (so
// only the cache can answer); a real redis-server started by the test on
// 127.0.0.1 with a free port and stopped by PID.
import { afterAll, beforeAll, afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import type { AssetSource } from '../../src/export/export-assets.ts';
import { createLogger, silentLogger } from '../../src/platform/log.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { LocalProxyCache } from '../../src/proxy/cache.ts';
import { RedisProxyCache } from '../../src/proxy/redis-cache.ts';
import { apiKeyAuth, basic, entity, seedStore, vendorAuth, VENDOR } from '../support/seed-store.ts';
import { form, startProxy, StandinUpstream, type ProxyFixture } from './support.ts';

/** Refreshes always fail: the proxy never holds local assets. */
const noAssets: AssetSource = {
  baseUrl: 'http://refresh.disabled',
  get: () => Promise.reject(new Error('refresh disabled in this test')),
  list: () => ({
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new Error('refresh disabled in this test')) }),
  }),
};

const SUB_JSON = form('productModuleNumber0=M-SUB', { authorization: vendorAuth(), accept: 'application/json' });
const PATH = '/rest/licensee/L-1/validate';

describe('local cache (the agent database)', () => {
  let upstream: StandinUpstream;
  let fixture: ProxyFixture;
  beforeEach(() => {
    upstream = StandinUpstream.start();
    fixture = startProxy(upstream, { assetSource: noAssets });
  });
  afterEach(async () => {
    await fixture.close();
    await upstream.close();
  });

  test('serves the cached upstream bytes during an outage until the ttl, then 503', async () => {
    const healthy = await fixture.request(PATH, SUB_JSON);
    expect(healthy.status).toBe(200);
    const bytes = await healthy.text();
    // A counter-changing request is forwarded but never cached.
    await fixture.request(PATH, form('productModuleNumber0=M-PPU&usedQuantity0=1', { authorization: vendorAuth(), accept: 'application/json' }));
    await fixture.proxy.idle();
    expect(fixture.proxy.stats.refreshFailures).toBeGreaterThanOrEqual(1);
    expect([...fixture.store.proxyValueKeys('answer:')]).toHaveLength(1);
    expect([...fixture.store.proxyValueKeys('credential:')]).toHaveLength(1);

    upstream.mode = 'failing';
    const cached = await fixture.request(PATH, SUB_JSON);
    expect(cached.status).toBe(200);
    expect(cached.headers.get('content-type')).toBe(healthy.headers.get('content-type'));
    expect(await cached.text()).toBe(bytes);
    expect(fixture.proxy.stats.cacheAnswers).toBe(1);
    expect(fixture.logText()).toContain('answered from the validation cache');

    // Same request in XML, and the counter-changing one: nothing cached for them.
    expect((await fixture.request(PATH, form('productModuleNumber0=M-SUB', { authorization: vendorAuth() }))).status).toBe(503);
    expect((await fixture.request(PATH, form('productModuleNumber0=M-PPU&usedQuantity0=1', { authorization: vendorAuth(), accept: 'application/json' }))).status).toBe(503);
    // Credentials the upstream never accepted do not get the cached answer.
    expect((await fixture.request(PATH, form('productModuleNumber0=M-SUB', { authorization: basic(VENDOR.user, 'wrong'), accept: 'application/json' }))).status).toBe(503);
    expect(fixture.proxy.stats.cacheAnswers).toBe(1);

    // The answer's ttl (600 s) has passed: gone.
    fixture.clock.advance(600_001);
    expect((await fixture.request(PATH, SUB_JSON)).status).toBe(503);
  });

  test("a licensee-scoped API key this agent knows does not get another licensee's cached answer", async () => {
    const scoped = '44444444-4444-4444-8444-444444444444';
    const token = entity('Token', scoped, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE', licenseeNumber: 'L-1' });
    upstream.store.importTransaction((tx) => tx.put(token));
    // The key is in the local copy (a refresh of L-1 brings it); licensee "L 2/ä" is only in the cache.
    fixture.store.importTransaction((tx) => tx.put(token));
    const other = `/rest/licensee/${encodeURIComponent('L 2/ä')}/validate`;
    const asked = (authorization: string) => form('', { authorization, accept: 'application/json' });
    expect((await fixture.request(other, asked(vendorAuth()))).status).toBe(200);
    await fixture.proxy.idle();
    expect((await fixture.request(other, asked(apiKeyAuth(scoped)))).status).toBe(403); // the upstream's answer
    upstream.mode = 'failing';
    const offline = await fixture.request(other, asked(apiKeyAuth(scoped)));
    expect(offline.status).toBe(403);
    expect(await offline.text()).toContain('AccessDeniedException');
    // The vendor still gets the cached answer.
    expect((await fixture.request(other, asked(vendorAuth()))).status).toBe(200);
    expect(fixture.proxy.stats.cacheAnswers).toBe(1);
  });
});

describe('Redis cache shared by two agents', () => {
  let upstream: StandinUpstream;
  let redis: Bun.Subprocess;
  let redisPort: number;
  let a: ProxyFixture;
  let b: ProxyFixture;
  let cacheA: RedisProxyCache;
  let cacheB: RedisProxyCache;
  let cacheLog = '';
  const PREFIX = 'test:validate:';

  beforeAll(async () => {
    const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response() });
    redisPort = probe.port!;
    await probe.stop(true);
    redis = Bun.spawn(['redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdout: 'ignore',
      stderr: 'inherit',
    });
    for (let attempt = 0; ; attempt++) {
      const client = new RedisClient(`redis://127.0.0.1:${redisPort}`, { connectionTimeout: 200, autoReconnect: false });
      try {
        await client.connect();
        await client.send('PING', []);
        client.close();
        break;
      } catch (error) {
        client.close();
        if (attempt >= 50) throw new Error(`redis-server did not start: ${(error as Error).message}`);
        await Bun.sleep(100);
      }
    }
    upstream = StandinUpstream.start();
    const options = { host: '127.0.0.1', port: redisPort, database: 1, keyPrefix: PREFIX, ssl: false };
    cacheA = await RedisProxyCache.connect({ ...options, log: silentLogger() });
    cacheB = await RedisProxyCache.connect({
      ...options,
      log: createLogger({ stream: { write: (chunk: string) => ((cacheLog += chunk), true) } as unknown as NodeJS.WritableStream }),
    });
    a = startProxy(upstream, { cache: cacheA });
    b = startProxy(upstream, { cache: cacheB, assetSource: noAssets });
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await cacheA.close();
    await cacheB.close();
    await upstream.close();
    if (redis.exitCode === null) redis.kill();
    await redis.exited;
  });

  test('agent A forwards and fills Redis; agent B answers the same request from it during an outage', async () => {
    const healthy = await a.request(PATH, SUB_JSON);
    expect(healthy.status).toBe(200);
    const bytes = await healthy.text();
    await a.proxy.idle();

    const client = new RedisClient(`redis://127.0.0.1:${redisPort}/1`);
    const keys = ((await client.send('KEYS', [`${PREFIX}*`])) as string[]).sort();
    expect(keys.map((key) => key.replace(/[0-9a-f]{64}$/, '<sha256>'))).toEqual([`${PREFIX}answer:<sha256>`, `${PREFIX}credential:user:<sha256>`]);
    const ttlMs = (await client.send('PTTL', [keys[0]!])) as number;
    expect(ttlMs).toBeGreaterThan(0);
    expect(ttlMs).toBeLessThanOrEqual(600_000);
    // The record holds a salted hash, never the password.
    const record = (await client.get(keys[1]!)) ?? '';
    expect(record).not.toContain(VENDOR.password);
    expect(JSON.parse(record)).toMatchObject({ user: VENDOR.user });
    expect(JSON.parse(record).salt).toMatch(/^[0-9a-f]{32}$/);
    // --cache.database: nothing in database 0.
    const db0 = new RedisClient(`redis://127.0.0.1:${redisPort}/0`);
    expect((await db0.send('KEYS', ['*'])) as string[]).toEqual([]);
    db0.close();
    client.close();

    upstream.mode = 'failing';
    const fromB = await b.request(PATH, SUB_JSON);
    expect(fromB.status).toBe(200);
    expect(fromB.headers.get('content-type')).toBe(healthy.headers.get('content-type'));
    expect(await fromB.text()).toBe(bytes);
    expect(b.proxy.stats.cacheAnswers).toBe(1);
    expect(b.store.getEntity('Licensee', 'L-1')).toBeUndefined();
    // B authenticated the vendor only through what A learnt; other callers get nothing.
    expect((await b.request(PATH, form('productModuleNumber0=M-SUB', { authorization: basic(VENDOR.user, 'wrong'), accept: 'application/json' }))).status).toBe(503);
    expect((await b.request(PATH, form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth(), accept: 'application/json' }))).status).toBe(503);
    expect(b.proxy.stats.cacheAnswers).toBe(1);
  });

  test('Redis down: a cache read is a quick miss (503), logged, never an error', async () => {
    redis.kill();
    await redis.exited;
    const res = await b.request(PATH, SUB_JSON);
    expect(res.status).toBe(503);
    expect(cacheLog).toContain('validation cache (Redis)');
  });

  test('connecting to a Redis that is not there fails with a clear message', async () => {
    const error = await RedisProxyCache.connect({ host: '127.0.0.1', port: redisPort, database: 0, keyPrefix: PREFIX, ssl: false, log: silentLogger(), timeoutMs: 500 }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toContain(`cannot use Redis at 127.0.0.1:${redisPort}`);
  });
});

describe('local cache purge', () => {
  test('removes expired answers and credentials in batches, keeps live ones and ones written anew, and does not stack up', async () => {
    const { store } = seedStore([]);
    const clock = new ManualClock(Date.parse('2026-11-15T12:00:00.000Z'));
    const cache = new LocalProxyCache(store, clock);
    const answer = { status: 200, contentType: 'application/json', body: 'e30=' };
    // 2,500 answers that expire in a minute (three commits of up to 1000), 3 that live an hour.
    for (let at = 0; at < 2500; at += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, k) => cache.putAnswer(`short-${at + k}`, answer, 60_000)));
    }
    for (let i = 0; i < 3; i++) await cache.putAnswer(`long-${i}`, answer, 3_600_000);
    await cache.putCredential('cred-short', { kind: 'vendor', hash: 'h' } as never, 60_000);
    clock.advance(120_000);
    const first = cache.purge();
    // Asked again while it runs: the same purge, not a second one.
    expect(cache.purge()).toBe(first);
    expect(await first).toBe(2501);
    expect(await cache.getAnswer('long-1')).toEqual(answer);
    expect([...store.proxyValueKeys('answer:')].sort()).toEqual(['answer:long-0', 'answer:long-1', 'answer:long-2']);
    expect([...store.proxyValueKeys('credential:')]).toEqual([]);
    expect(await cache.purge()).toBe(0);
    // The removal checks again in its commit: an entry written anew after the purge found it
    // expired (its write not yet committed when the purge looked) stays.
    await cache.putAnswer('again', answer, 60_000);
    clock.advance(120_000);
    const rewritten = cache.putAnswer('again', answer, 60_000);
    const purging = cache.purge();
    await Promise.all([rewritten, purging]);
    expect(await purging).toBe(0);
    expect(await cache.getAnswer('again')).toEqual(answer);
    await store.close();
  });
});
