/**
 * Goal: Pay-per-Use behaves like a one-number reference model (remaining
 * credits) for ANY licenses and ANY sequence of used / reserved quantities,
 * dry runs included, and books usage only where the rules allow.
 * Method: fast-check generates licenses (quantity, imported usedQuantity,
 * active flag) and operation sequences; each step runs validate on the state
 * so far and applies its events. Compared per step: valid, remainingQuantity,
 * the overdraft warning, and where the usage was booked.
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import { USED_QUANTITY_EXCEEDS_REMAINING } from '../../src/core/models/pay-per-use.ts';
import { applyEvents, type RuntimeState } from '../../src/core/runtime.ts';
import { validate } from '../../src/core/validate.ts';
import { DAY_MS, buildAssets, fresh, item, ms, props, request } from './helpers.ts';

const NOW = ms('2024-01-01T00:00:00Z');

type Op = { kind: 'used' | 'reserve'; k: number; dry: boolean } | { kind: 'none'; dry: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom('used' as const, 'reserve' as const), k: fc.integer({ min: 0, max: 30 }), dry: fc.boolean() }),
  fc.record({ kind: fc.constant('none' as const), dry: fc.boolean() }),
);
const licenseArb = fc.record({
  quantity: fc.integer({ min: 0, max: 20 }),
  used: fc.option(fc.integer({ min: 0, max: 25 }), { nil: undefined }),
  active: fc.boolean(),
});

test('Pay-per-Use equals the reference model', () => {
  fc.assert(
    fc.property(fc.array(licenseArb, { maxLength: 4 }), fc.array(opArb, { minLength: 1, maxLength: 30 }), (licenses, ops) => {
      const assets = buildAssets({
        modules: [{ number: 'M-P', licensingModel: 'PayPerUse', templates: [{ number: 'T-Q', licenseType: 'QUANTITY' }] }],
        licenses: licenses.map((l, i) => ({
          number: `L${i}`,
          template: 'T-Q',
          props: { quantity: String(l.quantity), active: String(l.active), ...(l.used === undefined ? {} : { usedQuantity: String(l.used) }) },
        })),
      });
      const active = licenses.map((l, i) => ({ ...l, number: `L${i}` })).filter((l) => l.active);
      let remaining = active.reduce((sum, l) => sum + l.quantity - (l.used ?? 0), 0);
      let booked = 0;
      let state: RuntimeState = fresh();

      for (const op of ops) {
        const before = remaining;
        let valid: boolean;
        let warn = false;
        let after = before;
        let body = 'productModuleNumber0=M-P';
        if (op.kind === 'used') {
          body += `&usedQuantity0=${op.k}`;
          warn = op.k > 0 && op.k > before;
          if (active.length > 0) after = before - op.k;
          valid = after > 0;
        } else if (op.kind === 'reserve') {
          body += `&reserveQuantity0=${op.k}`;
          valid = active.length > 0 && op.k <= before;
          if (valid) after = before - op.k;
        } else {
          valid = before > 0;
        }
        if (op.dry) body += '&dryRun=true';

        const outcome = validate(assets, state, request(body), { nowMs: NOW, ttlMs: DAY_MS });
        const answer = props(item(outcome.envelope, 'M-P'));
        expect(answer['valid']).toBe(String(valid));
        expect(answer['remainingQuantity']).toBe(String(after));
        expect(outcome.envelope.infos).toEqual(warn ? [USED_QUANTITY_EXCEEDS_REMAINING] : []);
        if (op.dry) expect(outcome.events).toEqual([]);
        else {
          remaining = after;
          booked += before - after;
        }
        state = applyEvents(state, outcome.events);

        // Where the usage went: only to active licenses; all of it; a license other than the
        // last one never goes beyond its own credits through the agent's bookings.
        const bookedTotal = Object.values(state.usedQuantity).reduce((a, b) => a + b, 0);
        expect(bookedTotal).toBe(booked);
        active.forEach((l, i) => {
          const mine = state.usedQuantity[l.number] ?? 0;
          if (i < active.length - 1 && mine > 0) expect((l.used ?? 0) + mine).toBeLessThanOrEqual(l.quantity);
        });
        for (const number of Object.keys(state.usedQuantity)) expect(active.some((l) => l.number === number)).toBe(true);
      }
    }),
    { numRuns: 300 },
  );
});
