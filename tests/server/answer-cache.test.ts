/**
 * Goal: reusing rendered read-only answers never changes what a client sees.
 * Method: differential. Two apps over two identically seeded stores, one
 * reusing answers and one computing every answer, get the same random
 * sequence of validate calls (every model, JSON and XML, GET and POST,
 * dryRun, writes), clock jumps (milliseconds to months) and re-imports that
 * change definitions; status and body must be equal after every step. Then
 * direct checks that the reuse really happens (hits) and that a write, a
 * re-import and the passing of time each end it.
 */
import { afterAll, describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import type { Entity } from '../../src/core/entities.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createAnswerCache, type CachedAnswer } from '../../src/server/answer-cache.ts';
import { createApp } from '../../src/server/app.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { apiKeyAuth, demoEntities, entity, seedStore } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');
const stores: AssetStore[] = [];
afterAll(async () => {
  for (const store of stores) await store.close();
});

function makeApp(store: AssetStore, clock: ManualClock, reuseAnswers: boolean) {
  return createApp({ store, clock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false, reuseAnswers });
}

async function call(app: ReturnType<typeof createApp>, op: ValidateOp): Promise<string> {
  const path = `/rest/licensee/${encodeURIComponent(op.licensee)}/validate`;
  const headers = { authorization: apiKeyAuth(), accept: op.json ? 'application/json' : 'application/xml' };
  const res = op.get
    ? await app.request(`${path}?${op.body}`, { headers })
    : await app.request(path, { method: 'POST', headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: op.body });
  return `${res.status} ${await res.text()}`;
}

interface ValidateOp {
  kind: 'validate';
  licensee: string;
  body: string;
  json: boolean;
  get: boolean;
  /** Sent this many times in a row (repeats are what reuse is for). */
  times: number;
}
type Op = ValidateOp | { kind: 'advance'; ms: number } | { kind: 'reimport'; change: number };

const BODIES = [
  '',
  'productModuleNumber0=M-SUB',
  'dryRun=true',
  'productModuleNumber0=M-PPU&usedQuantity0=1',
  'productModuleNumber0=M-PPU&usedQuantity0=0',
  'productModuleNumber0=M-FLOAT&sessionId0=s1&action0=checkOut',
  'productModuleNumber0=M-FLOAT&sessionId0=s2&action0=checkOut',
  'productModuleNumber0=M-FLOAT&sessionId0=s1&action0=checkIn',
  'productModuleNumber0=M-FLOAT&sessionId0=s1&action0=checkOut&dryRun=true',
  'productModuleNumber0=M-NODE&nodeSecret0=n1',
  'productModuleNumber0=M-QUOTA&usedQuantity0=2&dryRun=true',
  'forOfflineUse=true',
];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('validate' as const),
      licensee: fc.constantFrom('L-1', 'L-1', 'L-1', 'alias-one', 'L 2/ä', 'NOBODY'),
      body: fc.constantFrom(...BODIES),
      json: fc.constantFrom(true, true, false),
      get: fc.constantFrom(false, false, false, true),
      times: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(1, 999, 60_000, 299_999, 300_000, 86_400_000, 20 * 86_400_000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reimport' as const), change: fc.integer({ min: 0, max: 3 }) }) },
);

/** Definition changes a re-import may bring. */
function changed(change: number): Entity[] {
  switch (change) {
    case 0:
      return [entity('License', 'LIC-PPU', { licenseeNumber: 'L-1', licenseTemplateNumber: 'T-PPU', quantity: '50' })];
    case 1:
      return [entity('License', 'LIC-SUB', { licenseeNumber: 'L-1', licenseTemplateNumber: 'T-SUB-MONTH', startDate: '2026-10-20T00:00:00.000Z', timeVolume: '2', timeVolumePeriod: 'MONTH' })];
    case 2:
      return [entity('ProductModule', 'M-FLOAT', { name: 'Floating module', licensingModel: 'Floating', productNumber: 'P-TEST', maxCheckoutValidity: '60' })];
    default:
      return [entity('Licensee', 'L-1', { productNumber: 'P-TEST', aliases: '["alias-one"]', active: 'false' })];
  }
}

describe('answer reuse', () => {
  test('answers with reuse equal answers computed every time, for any sequence of calls, clock jumps and re-imports', async () => {
    // A reused answer skips the decision, so: reused = calls for existing licensees − decisions.
    let calls = 0;
    let decisions = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 40 }), async (ops) => {
        const clock = new ManualClock(NOW);
        const a = seedStore(demoEntities()).store;
        const b = seedStore(demoEntities()).store;
        stores.push(a, b);
        const counting: AssetStore = {
          ...a,
          commitRuntime<R>(...args: Parameters<AssetStore['commitRuntime']>): Promise<R> {
            decisions += 1;
            return a.commitRuntime(...args) as Promise<R>;
          },
        };
        const reusing = makeApp(counting, clock, true);
        const computing = makeApp(b, clock, false);
        for (const op of ops) {
          if (op.kind === 'advance') clock.advance(op.ms);
          else if (op.kind === 'reimport') {
            for (const store of [a, b]) store.importTransaction((tx) => changed(op.change).forEach((e) => tx.put(e)));
          } else {
            for (let i = 0; i < op.times; i++) {
              if (op.licensee !== 'NOBODY') calls += 1;
              expect(await call(reusing, op)).toBe(await call(computing, op));
            }
          }
        }
        await a.close();
        await b.close();
        stores.length = 0;
      }),
      { numRuns: 50 },
    );
    // Reuse really happened, often, or the comparison proves nothing.
    expect(calls - decisions).toBeGreaterThan(100);
  }, 60_000);

  test('a repeated read is served again with a fresh ttl; a write, a re-import and time each end the reuse', async () => {
    const clock = new ManualClock(NOW);
    const { store } = seedStore(demoEntities());
    stores.push(store);
    let validated = 0;
    const app = createApp({
      store,
      clock,
      log: silentLogger(),
      ttlMs: 600_000,
      allowAnonymous: false,
      observer: { request: () => undefined, validated: () => void (validated += 1) },
    });
    let decisions = 0;
    const commitRuntime = store.commitRuntime;
    store.commitRuntime = (...args) => {
      decisions += 1;
      return commitRuntime(...args);
    };
    const read = { kind: 'validate' as const, licensee: 'L-1', body: 'productModuleNumber0=M-PPU', json: true, get: false, times: 1 };
    const remaining = (text: string) => /"value":"(\d+)","name":"remainingQuantity"/.exec(text)?.[1];
    await call(app, read); // starts the Try & Buy trial: a write, not reusable
    const first = await call(app, read);
    clock.advance(1_000);
    const second = await call(app, read);
    expect(second).toBe(first.replace('2026-11-15T12:10:00.000Z', '2026-11-15T12:10:01.000Z'));
    // The third call reused the second's answer, and was still counted for the metrics.
    expect(decisions).toBe(2);
    expect(validated).toBe(3);
    await call(app, { ...read, body: 'productModuleNumber0=M-PPU&usedQuantity0=5' });
    expect(remaining(await call(app, read))).toBe(String(Number(remaining(first)) - 5));
    store.importTransaction((tx) => tx.put(entity('License', 'LIC-PPU', { licenseeNumber: 'L-1', licenseTemplateNumber: 'T-PPU', quantity: '100' })));
    expect(remaining(await call(app, read))).toBe('95');
    // The subscription (Nov 1 + 1 month) is valid now and expired after Dec 1.
    const sub = { ...read, body: 'productModuleNumber0=M-SUB' };
    const subValid = (text: string) => /"M-SUB","name":"productModuleNumber"\},\{"value":"(\w+)","name":"valid"/.exec(text)?.[1];
    expect(subValid(await call(app, sub))).toBe('true');
    expect(subValid(await call(app, sub))).toBe('true');
    clock.set(Date.parse('2026-12-01T00:00:00.000Z'));
    expect(subValid(await call(app, sub))).toBe('false');
  });
});

describe('bounds', () => {
  const answer = (n: number): CachedAnswer => ({ head: `{"n":${n},"ttl":"`, tail: '"}', ttlCapMs: Infinity, envelope: { infos: [], items: [] }, definitionsVersion: 1, runtimeRevision: 1, fromMs: NOW, untilMs: NOW + 60_000 });

  test('when full, the least recently used answer goes first; answers in use stay', () => {
    const cache = createAnswerCache({ ttlMs: 1_000, entriesMax: 2 });
    const hit = (key: string) => cache.lookup(key, 1, 1, NOW)?.body;
    cache.remember('a', answer(1));
    cache.remember('b', answer(2));
    expect(hit('a')).toBe('{"n":1,"ttl":"2026-11-15T12:00:01.000Z"}');
    cache.remember('c', answer(3)); // b is the least recently used
    expect(cache.size).toBe(2);
    expect(hit('a')).toBeDefined();
    expect(hit('b')).toBeUndefined();
    expect(hit('c')).toBeDefined();
  });
});
