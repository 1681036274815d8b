// Goal: any sequence of Floating check-outs (with and without a per-call validity), check-ins,
// extensions, expiries, Pay-per-Use usage and restarts of the store gives the answers of a
// reference model: a restart loses nothing acknowledged and brings back nothing checked in or
// expired. Method: fast-check (fixed seed) over the real app and LMDB store, closed and reopened
// at the `restart` steps; the reference is a map of session expiries and a running sum.
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import { join } from 'node:path';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { apiKeyAuth, entity, seedStore } from '../support/seed-store.ts';

const SESSION_IDS = ['a', 'b', 'c', 'd'];
const CREDITS = 20;
type Step =
  | { kind: 'checkOut'; id: string; validitySeconds?: number }
  | { kind: 'checkIn'; id: string }
  | { kind: 'use'; quantity: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'restart' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('checkOut' as const), id: fc.constantFrom(...SESSION_IDS), validitySeconds: fc.option(fc.integer({ min: 1, max: 100 }), { nil: undefined }) }, { requiredKeys: ['kind', 'id'] }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('checkIn' as const), id: fc.constantFrom(...SESSION_IDS) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('use' as const), quantity: fc.integer({ min: 0, max: 8 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 90_000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('restart' as const) }) },
);

test('Floating and Pay-per-Use across restarts agree with a reference model', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.array(step, { minLength: 1, maxLength: 25 }), async (seats, steps) => {
      const seeded = seedStore([
        entity('Product', 'P'),
        entity('ProductModule', 'M-FLOAT', { productNumber: 'P', licensingModel: 'Floating', maxCheckoutValidity: '60' }),
        entity('LicenseTemplate', 'T-FLOAT', { productModuleNumber: 'M-FLOAT', licenseType: 'FLOATING', maxSessions: String(seats) }),
        entity('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse' }),
        entity('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: String(CREDITS) }),
        entity('Licensee', 'L', { productNumber: 'P' }),
        entity('License', 'LF', { licenseeNumber: 'L', licenseTemplateNumber: 'T-FLOAT', maxSessions: String(seats) }),
        entity('License', 'LP', { licenseeNumber: 'L', licenseTemplateNumber: 'T-PPU', quantity: String(CREDITS) }),
      ]);
      let store: AssetStore = seeded.store;
      const clock = new ManualClock(Date.parse('2026-11-15T12:00:00Z'));
      const appOf = () => createApp({ store, clock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
      let app = appOf();
      const expiries = new Map<string, number>();
      let used = 0;
      const answer = async (body: string, module: string) => {
        const res = await app.request('/rest/licensee/L/validate', {
          method: 'POST',
          headers: { authorization: apiKeyAuth(), accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
          body,
        });
        expect(res.status).toBe(200);
        const json = (await res.json()) as { items: { item: { property: { name: string; value: string }[] }[] } };
        const item = json.items.item.find((i) => i.property.some((p) => p.name === 'productModuleNumber' && p.value === module))!;
        return (name: string) => item.property.find((p) => p.name === name)?.value;
      };
      try {
        for (const [at, s] of steps.entries()) {
          const where = `step ${at} of ${JSON.stringify(steps)} with ${seats} seat(s)`;
          const now = clock.nowMs();
          if (s.kind === 'wait') clock.advance(s.ms);
          else if (s.kind === 'restart') {
            await store.close();
            store = openAssetStore(join(seeded.cwd, 'database'));
            app = appOf();
          } else if (s.kind === 'use') {
            used += s.quantity;
            const get = await answer(`productModuleNumber0=M-PPU&usedQuantity0=${s.quantity}`, 'M-PPU');
            expect(`${where}: ${get('remainingQuantity')}`).toBe(`${where}: ${CREDITS - used}`);
          } else {
            const live = [...expiries.values()].filter((expires) => expires > now).length;
            let body = `productModuleNumber0=M-FLOAT&sessionId0=${s.id}&action0=${s.kind}`;
            let valid = false;
            if (s.kind === 'checkOut') {
              if (s.validitySeconds !== undefined) body += `&maxCheckoutValidity0=${s.validitySeconds}`;
              const held = (expiries.get(s.id) ?? -1) > now;
              if (held || live < seats) {
                valid = true;
                expiries.set(s.id, now + (s.validitySeconds ?? 60) * 1000);
              }
            } else {
              expiries.delete(s.id);
            }
            const get = await answer(body, 'M-FLOAT');
            expect(`${where}: ${get('valid')}`).toBe(`${where}: ${valid}`);
          }
        }
      } finally {
        await store.close();
      }
    }),
    { numRuns: 80, seed: 42 },
  );
}, 120_000);
