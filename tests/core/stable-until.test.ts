/**
 * Goal: `stableUntilMs` never promises too much. The server reuses a
 * read-only answer (events empty) for the same request and state until that
 * instant, so the answer — all but its ttl — must be the same at every time
 * in [now, stableUntilMs), and still read-only.
 * Method: fast-check builds products that mix every time-dependent model
 * (Subscription, Try & Buy, Rental, Pricing Table, Floating) with periods,
 * thresholds and sessions around a base time, brings the runtime state to a
 * random point by applying random validations, then validates at `now` and
 * again at random instants before `stableUntilMs` (and 1 ms before it), and
 * compares. A second check shows the bound is not trivially "never": a
 * plain Subscription answer is reusable until the subscription's 80 % mark.
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import type { Envelope } from '../../src/core/envelope.ts';
import { applyEvents, type RuntimeState } from '../../src/core/runtime.ts';
import { toIso } from '../../src/core/time.ts';
import { validate } from '../../src/core/validate.ts';
import { DAY_MS, HOUR_MS, buildAssets, fresh, ms, request, type LicenseSpec, type ModuleSpec } from './helpers.ts';

const BASE = ms('2025-03-01T00:00:00Z');
const offsetArb = fc.integer({ min: -40 * DAY_MS, max: 40 * DAY_MS });

const scenarioArb = fc.record({
  subscriptionStarts: fc.array(fc.option(offsetArb, { nil: undefined }), { maxLength: 3 }),
  subscriptionDays: fc.integer({ min: 1, max: 30 }),
  trialStart: fc.option(offsetArb, { nil: undefined }),
  trialAutomatic: fc.boolean(),
  rentalStarts: fc.array(offsetArb, { maxLength: 2 }),
  rentalThresholds: fc.tuple(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 5 })),
  pricingStarts: fc.array(offsetArb, { maxLength: 2 }),
  importedSessions: fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 0, max: 2 * HOUR_MS }), { maxKeys: 3 }),
  // Validations that shape the runtime state before the checked one: [time offset, form body].
  history: fc.array(
    fc.tuple(
      fc.integer({ min: -2 * HOUR_MS, max: 0 }),
      fc.constantFrom('', 'productModuleNumber0=M-F&sessionId0=a&action0=checkOut', 'productModuleNumber0=M-F&sessionId0=x&action0=checkOut', 'productModuleNumber0=M-F&sessionId0=b&action0=checkIn'),
    ),
    { maxLength: 4 },
  ),
  nowOffset: fc.integer({ min: -20 * DAY_MS, max: 40 * DAY_MS }),
  body: fc.constantFrom('', 'dryRun=true', 'productModuleNumber0=M-F&sessionId0=a&action0=checkIn&dryRun=true', 'productModuleNumber0=M-F&sessionId0=z&action0=checkOut&dryRun=true'),
  probes: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 4 }),
});

function withoutTtl(envelope: Envelope): Omit<Envelope, 'ttl'> {
  const { ttl: _ttl, ...rest } = envelope;
  return rest;
}

test('an answer is the same, but for its ttl, at every instant before stableUntilMs', () => {
  let compared = 0;
  fc.assert(
    fc.property(scenarioArb, (s) => {
      const modules: ModuleSpec[] = [
        { number: 'M-S', licensingModel: 'Subscription', templates: [{ number: 'T-S', licenseType: 'TIMEVOLUME', props: { timeVolume: String(s.subscriptionDays), timeVolumePeriod: 'DAY' } }] },
        { number: 'M-T', licensingModel: 'TryAndBuy', templates: [{ number: 'T-T', licenseType: 'TIMEVOLUME', props: { timeVolume: '14', timeVolumePeriod: 'DAY', automatic: String(s.trialAutomatic) } }, { number: 'T-TF', licenseType: 'FEATURE' }] },
        { number: 'M-R', licensingModel: 'Rental', props: { yellowThreshold: String(s.rentalThresholds[0]), redThreshold: String(s.rentalThresholds[1]) }, templates: [{ number: 'T-RF', licenseType: 'FEATURE' }, { number: 'T-RT', licenseType: 'TIMEVOLUME', props: { timeVolume: '10', timeVolumePeriod: 'DAY' } }] },
        { number: 'M-P', licensingModel: 'PricingTable', props: { skudef: 'S1=feature1' }, templates: [{ number: 'T-P1', licenseType: 'TIMEVOLUME', props: { timeVolume: '7', timeVolumePeriod: 'DAY', price: '5', skus: 'S1=true' } }] },
        { number: 'M-F', licensingModel: 'Floating', props: { maxCheckoutValidity: '3600' }, templates: [{ number: 'T-F', licenseType: 'FLOATING' }] },
      ];
      const sessionProps = Object.fromEntries(Object.entries(s.importedSessions).map(([id, ago]) => [`sessionId_${id}`, toIso(BASE + s.nowOffset - ago)]));
      const licenses: LicenseSpec[] = [
        ...s.subscriptionStarts.map((start, i) => ({ number: `L-S${i}`, template: 'T-S', props: start === undefined ? ({} as Record<string, string>) : { startDate: toIso(BASE + start) } })),
        ...(s.trialStart === undefined ? [] : [{ number: 'L-T', template: 'T-T', props: { startDate: toIso(BASE + s.trialStart) } }]),
        { number: 'L-RF', template: 'T-RF' },
        ...s.rentalStarts.map((start, i) => ({ number: `L-R${i}`, template: 'T-RT', props: { parentfeature: 'L-RF', startDate: toIso(BASE + start) } })),
        ...s.pricingStarts.map((start, i) => ({ number: `L-P${i}`, template: 'T-P1', props: { startDate: toIso(BASE + start) } })),
        { number: 'L-F', template: 'T-F', props: { maxSessions: '2', ...sessionProps } },
      ];
      const assets = buildAssets({ modules, licenses });
      const nowMs = BASE + s.nowOffset;
      let state: RuntimeState = fresh();
      for (const [offset, body] of s.history) {
        const outcome = validate(assets, state, request(body), { nowMs: nowMs + offset, ttlMs: DAY_MS });
        state = applyEvents(state, outcome.events);
      }
      const options = (at: number) => ({ nowMs: at, ttlMs: DAY_MS });
      const first = validate(assets, state, request(s.body), options(nowMs));
      if (first.events.length > 0 || first.stableUntilMs <= nowMs) return;
      const horizon = Math.min(first.stableUntilMs, nowMs + 200 * DAY_MS);
      const instants = [...s.probes.map((p) => nowMs + Math.floor(p * (horizon - nowMs - 1))), horizon - 1];
      for (const at of instants) {
        const later = validate(assets, state, request(s.body), options(at));
        expect(later.events).toEqual([]);
        expect(withoutTtl(later.envelope)).toEqual(withoutTtl(first.envelope));
      }
      compared += 1;
    }),
    { numRuns: 1500 },
  );
  // Most generated answers must be reusable for a while, or this test proves nothing.
  expect(compared).toBeGreaterThan(500);
});

test('a plain Subscription answer is reusable until its 80 % mark, then until its end', () => {
  const start = BASE;
  const assets = buildAssets({
    modules: [{ number: 'M-S', licensingModel: 'Subscription', templates: [{ number: 'T-S', licenseType: 'TIMEVOLUME', props: { timeVolume: '10', timeVolumePeriod: 'DAY' } }] }],
    licenses: [{ number: 'L-S', template: 'T-S', props: { startDate: toIso(start) } }],
  });
  const at = (nowMs: number) => validate(assets, fresh(), request(''), { nowMs, ttlMs: DAY_MS }).stableUntilMs;
  const eightyPercent = start + 8 * DAY_MS;
  expect(at(start + DAY_MS)).toBe(eightyPercent - 1);
  expect(at(eightyPercent)).toBe(start + 10 * DAY_MS);
  expect(at(start + 11 * DAY_MS)).toBe(Number.POSITIVE_INFINITY);
});
