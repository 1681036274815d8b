/**
 * Goal: a module's decision is reused by later requests exactly while nothing
 * it depends on changed, and decided again as soon as something did.
 * Method: validate a two-module product (Subscription, Pay-per-Use) on one
 * runtime state object changed in place, as the server's runtime writer does;
 * a reused decision shows as the very same item object. Equality with full
 * decisions over random sequences is tested in tests/server/answer-cache.test.ts.
 */
import { expect, test } from 'bun:test';
import { applyEventsInPlace } from '../../src/core/runtime.ts';
import { validate } from '../../src/core/validate.ts';
import { buildAssets, DAY_MS, fresh, item, ms, props, request } from './helpers.ts';

const NOW = ms('2026-03-01T10:00:00Z');
const assets = buildAssets({
  modules: [
    { number: 'M-SUB', licensingModel: 'Subscription', templates: [{ number: 'T-SUB', licenseType: 'TIMEVOLUME', props: { timeVolume: '1', timeVolumePeriod: 'MONTH' } }] },
    { number: 'M-PPU', licensingModel: 'PayPerUse', templates: [{ number: 'T-Q', licenseType: 'QUANTITY', props: { quantity: '10' } }] },
  ],
  licenses: [
    { number: 'L-SUB', template: 'T-SUB', props: { startDate: '2026-02-15T00:00:00.000Z', timeVolume: '1', timeVolumePeriod: 'MONTH' } },
    { number: 'L-Q', template: 'T-Q', props: { quantity: '10' } },
  ],
});

test('reused while unchanged; decided again after a change it read, after its stable window, and when named with parameters', () => {
  const state = fresh();
  const at = (nowMs: number, body = '', reuseModuleResults = true) => {
    const outcome = validate(assets, state, request(body), { nowMs, ttlMs: DAY_MS, reuseModuleResults });
    applyEventsInPlace(state, outcome.events);
    return outcome.envelope;
  };
  const first = at(NOW);
  const second = at(NOW + 1000);
  expect(item(second, 'M-SUB')).toBe(item(first, 'M-SUB'));
  expect(item(second, 'M-PPU')).toBe(item(first, 'M-PPU'));

  // Booking changes what Pay-per-Use read; the subscription is not named and keeps its decision.
  const booking = at(NOW + 2000, 'productModuleNumber0=M-PPU&usedQuantity0=3');
  expect(props(item(booking, 'M-PPU')).remainingQuantity).toBe('7');
  expect(item(booking, 'M-SUB')).toBe(item(first, 'M-SUB'));
  const afterBooking = at(NOW + 3000);
  expect(item(afterBooking, 'M-PPU')).not.toBe(item(first, 'M-PPU'));
  expect(props(item(afterBooking, 'M-PPU')).remainingQuantity).toBe('7');

  // The subscription ends on 2026-03-15: from then on it is decided again, and invalid.
  const ended = at(ms('2026-03-15T00:00:00Z'));
  expect(item(ended, 'M-SUB')).not.toBe(item(first, 'M-SUB'));
  expect(props(item(ended, 'M-SUB')).valid).toBe('false');
  expect(props(item(first, 'M-SUB')).valid).toBe('true');

  // Off: every module decided in full, the same answer.
  const later = ms('2026-03-16T00:00:00Z');
  const reused = at(later);
  const full = at(later, '', false);
  expect(full).toEqual(reused);
  expect(item(full, 'M-PPU')).not.toBe(item(reused, 'M-PPU'));
});
