// Goal: the pure parts of run-agent behave as documented: the circuit
// breaker's states and cool-down, which requests change counters (and may
// therefore not be answered from the cache), the cache key, the ttl of an
// answer, and what counts as a replay conflict. Method: direct calls with a
// manual clock and hand-written inputs.
import { describe, expect, test } from 'bun:test';
import { ManualClock } from '../../src/platform/clock.ts';
import { CircuitBreaker, type BreakerState } from '../../src/proxy/circuit-breaker.ts';
import { answerCacheKey, answerTtlMs, changesCounters, conflictBetween, decisionOfEnvelope, decisionOfJsonAnswer } from '../../src/proxy/decision.ts';
import { upstreamUrl } from '../../src/proxy/upstream.ts';
import { redisUrl } from '../../src/proxy/redis-cache.ts';
import { Replayer, REPLAY_RETRY_MS } from '../../src/proxy/replay.ts';
import { sharedApiKeyListing } from '../../src/proxy/refresh.ts';
import type { Entity } from '../../src/core/entities.ts';
import type { AssetSource } from '../../src/export/export-assets.ts';
import type { ProxyStats } from '../../src/proxy/stats.ts';
import { silentLogger } from '../../src/platform/log.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';

describe('circuit breaker', () => {
  const make = (failureThreshold = 3) => {
    const clock = new ManualClock(0);
    const changes: string[] = [];
    const breaker = new CircuitBreaker({
      failureThreshold,
      coolDownMs: 1000,
      clock,
      onStateChange: (from: BreakerState, to: BreakerState) => changes.push(`${from}->${to}`),
    });
    return { clock, breaker, changes };
  };

  test('closed until K consecutive failures; a success resets the count', () => {
    const { breaker } = make(3);
    breaker.failure();
    breaker.failure();
    breaker.success();
    breaker.failure();
    breaker.failure();
    expect(breaker.state).toBe('closed');
    expect(breaker.acquire()).toBe('pass');
    breaker.failure();
    expect(breaker.state).toBe('open');
    expect(breaker.acquire()).toBe('reject');
  });

  test('after the cool-down exactly one probe; its failure reopens for a full cool-down, its success closes', () => {
    const { clock, breaker, changes } = make(1);
    breaker.failure();
    clock.advance(999);
    expect(breaker.acquire()).toBe('reject');
    expect(breaker.retryInMs()).toBe(1);
    clock.advance(1);
    expect(breaker.acquire()).toBe('probe');
    expect(breaker.acquire()).toBe('reject');
    breaker.failure();
    expect(breaker.state).toBe('open');
    clock.advance(999);
    expect(breaker.acquire()).toBe('reject');
    clock.advance(1);
    expect(breaker.acquire()).toBe('probe');
    breaker.success();
    expect(breaker.acquire()).toBe('pass');
    expect(changes).toEqual(['closed->open', 'open->half-open', 'half-open->open', 'open->half-open', 'half-open->closed']);
  });

  test('late failures of requests sent before it opened do not push the probe back', () => {
    const { clock, breaker } = make(1);
    breaker.failure();
    clock.advance(600);
    breaker.failure();
    clock.advance(400);
    expect(breaker.acquire()).toBe('probe');
  });

  test('rejects a threshold below 1', () => {
    expect(() => new CircuitBreaker({ failureThreshold: 0, coolDownMs: 1, clock: new ManualClock(0) })).toThrow('failureThreshold');
  });
});

describe('replay retries', () => {
  test('while another request is out as the probe (half-open), the replay waits its retry interval, not a millisecond', async () => {
    const clock = new ManualClock(0);
    const breaker = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 10_000, clock });
    const delays: number[] = [];
    const due: (() => void)[] = [];
    const store = {
      replayBacklog: () => [{ seq: 1, licenseeNumber: 'L1', form: '', atMs: 0, decision: {} }],
      replayCursor: () => 0,
      settled: () => Promise.resolve(),
    } as unknown as AssetStore;
    const stats = { replayPending: 0, replayStalls: 0, replayed: 0, replayConflicts: 0 } as unknown as ProxyStats;
    const replayer = new Replayer({
      store,
      breaker,
      stats,
      log: silentLogger(),
      clock,
      upstream: { baseUrl: 'http://upstream.invalid', authorization: '', timeoutMs: 1 },
      schedule: (ms, retry) => {
        delays.push(ms);
        due.push(retry);
        return () => undefined;
      },
    });
    breaker.acquire();
    breaker.failure(); // the outage opens the breaker
    replayer.noteRecorded('L1', 1);
    expect(delays).toEqual([10_000]); // a retry at the end of the cool-down
    clock.advance(10_000);
    expect(breaker.acquire()).not.toBe('reject'); // a client request takes the probe first
    due.shift()!();
    for (let i = 0; i < 50 && delays.length < 2; i++) await Bun.sleep(1);
    expect(delays).toEqual([10_000, REPLAY_RETRY_MS]);
    await replayer.close();
  });
});

describe('requests and answers', () => {
  test('counter-changing requests', () => {
    expect(changesCounters([['productModuleNumber0', 'M'], ['usedQuantity0', '1']])).toBe(true);
    expect(changesCounters([['productModuleNumber0', 'M'], ['usedQuantity0', '0']])).toBe(false);
    expect(changesCounters([['productModuleNumber0', 'M'], ['reserveQuantity0', '5']])).toBe(true);
    expect(changesCounters([['productModuleNumber', 'M'], ['sessionId', 's'], ['action', 'checkIn']])).toBe(true);
    expect(changesCounters([['productModuleNumber0', 'M'], ['usedQuantity0', '3'], ['dryRun', 'true']])).toBe(false);
    expect(changesCounters([['productModuleNumber0', 'M'], ['nodeSecret0', 'abc']])).toBe(false);
    // A parameter without its module is ignored by validate, and here.
    expect(changesCounters([['usedQuantity0', '1']])).toBe(false);
  });

  test('cache key: parameter order is irrelevant; licensee, format, values and first-wins duplicates matter', () => {
    const key = answerCacheKey('L', 'json', [['a', '1'], ['b', '2']]);
    expect(answerCacheKey('L', 'json', [['b', '2'], ['a', '1']])).toBe(key);
    expect(answerCacheKey('L', 'json', [['a', '1'], ['b', '2'], ['a', '9']])).toBe(key);
    expect(answerCacheKey('L', 'xml', [['a', '1'], ['b', '2']])).not.toBe(key);
    expect(answerCacheKey('M', 'json', [['a', '1'], ['b', '2']])).not.toBe(key);
    expect(answerCacheKey('L', 'json', [['a', '1'], ['b', '3']])).not.toBe(key);
  });

  test('ttl of XML and JSON answers; none means "do not cache"', () => {
    const iso = '2026-11-15T12:10:00.000Z';
    expect(answerTtlMs(`<?xml version="1.0"?><ns2:netlicensing xmlns="x" xmlns:ns2="y" ttl="${iso}"><ns2:infos/>`, 'xml')).toBe(Date.parse(iso));
    expect(answerTtlMs(`{"signature":null,"infos":{"info":[]},"ttl":"${iso}"}`, 'json')).toBe(Date.parse(iso));
    expect(answerTtlMs('<ns2:netlicensing xmlns:ns2="y"><ns2:infos/></ns2:netlicensing>', 'xml')).toBeUndefined();
  });

  test('decisions and conflicts', () => {
    const local = decisionOfEnvelope(200, {
      infos: [],
      items: [
        { type: 'ProductModuleValidation', properties: [['productModuleNumber', 'M1'], ['valid', 'true']], lists: [] },
        { type: 'ProductModuleValidation', properties: [['productModuleNumber', 'M2']], lists: [] },
      ],
    });
    expect(local).toEqual({ status: 200, valid: { M1: 'true' } });
    const json = (valid: string) =>
      JSON.stringify({ infos: { info: [] }, items: { item: [{ type: 'ProductModuleValidation', property: [{ name: 'productModuleNumber', value: 'M1' }, { name: 'valid', value: valid }] }] } });
    expect(conflictBetween(local, decisionOfJsonAnswer(200, json('true')))).toBeUndefined();
    expect(conflictBetween(local, decisionOfJsonAnswer(200, json('false')))).toContain('module M1: the agent answered valid=true, the upstream valid=false');
    expect(conflictBetween(local, decisionOfJsonAnswer(400, '{"infos":{"info":[{"id":"NotFoundException","type":"ERROR","value":"x"}]}}'))).toContain('HTTP 400');
    expect(conflictBetween(local, decisionOfJsonAnswer(200, 'not json'))).toContain('module M1: not in the upstream answer');
  });

  test('upstream URLs and Redis URLs', () => {
    expect(upstreamUrl('https://go.netlicensing.io', '/rest/licensee/L%201/validate', '?a=1')).toBe('https://go.netlicensing.io/core/v2/rest/licensee/L%201/validate?a=1');
    expect(upstreamUrl('http://hub:8080', '/core/v2/rest/product', '')).toBe('http://hub:8080/core/v2/rest/product');
    expect(upstreamUrl('http://hub:8080', '/metrics', '')).toBeUndefined();
    expect(redisUrl({ host: 'localhost', port: 6379, database: 0, ssl: false })).toBe('redis://localhost:6379/0');
    expect(redisUrl({ host: '::1', port: 6380, database: 2, ssl: true, password: 'p@ss/w' })).toBe('rediss://:p%40ss%2Fw@[::1]:6380/2');
  });
});

describe('the API-key listing refreshes share', () => {
  const key = (number: string): Entity => ({ kind: 'Token', number, props: { number, tokenType: 'APIKEY' } });
  const countingSource = (keys: Entity[]) => {
    const calls: string[] = [];
    let failNext = false;
    const source: AssetSource = {
      baseUrl: 'http://upstream.test',
      get: (resource, number) => (calls.push(`get ${resource} ${number}`), Promise.resolve(key(number))),
      list: (resource, criteria) => {
        calls.push(`list ${resource} ${JSON.stringify(criteria ?? {})}`);
        const failing = failNext;
        failNext = false;
        return (async function* () {
          await Bun.sleep(5);
          if (failing) throw new Error('upstream down');
          yield* keys;
        })();
      },
    };
    return { source, calls, failOnce: () => (failNext = true) };
  };
  const all = async (iterable: AsyncIterable<Entity>) => {
    const out: string[] = [];
    for await (const entity of iterable) out.push(entity.number);
    return out;
  };

  test('one listing per interval, one for listings at the same time; a failed one is not kept; the rest passes through', async () => {
    const clock = new ManualClock(0);
    const { source, calls, failOnce } = countingSource([key('k1'), key('k2')]);
    const shared = sharedApiKeyListing(source, clock, 60_000);
    const keys = () => all(shared.list('token', { tokenType: 'APIKEY' }));
    expect(await Promise.all([keys(), keys(), keys()])).toEqual([['k1', 'k2'], ['k1', 'k2'], ['k1', 'k2']]);
    clock.advance(59_999);
    expect(await keys()).toEqual(['k1', 'k2']);
    expect(calls).toEqual(['list token {"tokenType":"APIKEY"}']);
    clock.advance(1);
    failOnce();
    await expect(keys()).rejects.toThrow('upstream down');
    expect(await keys()).toEqual(['k1', 'k2']);
    expect(calls.length).toBe(3);
    // Other listings and reads are the source's own, every time.
    await all(shared.list('token', { tokenType: 'APIKEY', licenseeNumber: 'L' }));
    await all(shared.list('license', { licenseeNumber: 'L' }));
    await shared.get('licensee', 'L');
    expect(calls.slice(3)).toEqual(['list token {"tokenType":"APIKEY","licenseeNumber":"L"}', 'list license {"licenseeNumber":"L"}', 'get licensee L']);
    expect(shared.baseUrl).toBe('http://upstream.test');
  });
});
