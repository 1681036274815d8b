/**
 * Goal: Floating behaves like a tiny reference model for ANY sequence of
 * check-outs, check-ins, plain validations, dry runs and clock advances,
 * with or without sessions imported from the cloud, and never gives out more
 * seats than the licenses allow.
 * Method: fast-check generates pools, validities and operation sequences;
 * each step runs validate on the state so far and applies its events; the
 * reference is a map session id → expiry. Answers, ttl and the live seats
 * derived from the real state are compared with the reference at every step.
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import { applyEvents, applyEventsInPlace, type RuntimeState } from '../../src/core/runtime.ts';
import { toIso } from '../../src/core/time.ts';
import { validate } from '../../src/core/validate.ts';
import { DAY_MS, buildAssets, fresh, item, ms, props, request } from './helpers.ts';

const START = ms('2024-01-01T00:00:00Z');
const IDS = ['a', 'b', 'c', 'd', 'e', 'f'];

type Op =
  | { kind: 'checkOut'; id: string; override: number | undefined; dry: boolean }
  | { kind: 'checkIn'; id: string; dry: boolean }
  | { kind: 'plain'; dry: boolean }
  | { kind: 'advance'; ms: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('checkOut' as const), id: fc.constantFrom(...IDS), override: fc.option(fc.integer({ min: 1, max: 200 }), { nil: undefined }), dry: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('checkIn' as const), id: fc.constantFrom(...IDS), dry: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('plain' as const), dry: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 150_000 }) }) },
);

const scenarioArb = fc.record({
  seats: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 0, maxLength: 2 }),
  validitySeconds: fc.integer({ min: 1, max: 120 }),
  // Sessions the cloud had at export: id → check-out time before START.
  imported: fc.dictionary(fc.constantFrom(...IDS), fc.integer({ min: 0, max: 200_000 }), { maxKeys: 3 }),
  ops: fc.array(opArb, { minLength: 1, maxLength: 40 }),
});

// Copied states (applyEvents) are walked in full every time; states changed in place, as the
// runtime writer keeps them, carry what is known of their order and take the short walk
// (runtime.ts, SessionTableOrder): both must equal the reference.
for (const inPlace of [false, true]) test(`Floating equals the reference model and never exceeds capacity (states ${inPlace ? 'changed in place' : 'copied'})`, () => {
  fc.assert(
    fc.property(scenarioArb, ({ seats, validitySeconds, imported, ops }) => {
      const capacity = seats.reduce((a, b) => a + b, 0);
      const importedProps = Object.fromEntries(Object.entries(imported).map(([id, ago]) => [`sessionId_${id}`, toIso(START - ago)]));
      const assets = buildAssets({
        modules: [{ number: 'M-F', licensingModel: 'Floating', props: { maxCheckoutValidity: String(validitySeconds) }, templates: [{ number: 'T-F', licenseType: 'FLOATING' }] }],
        licenses: seats.map((n, i) => ({ number: `L${i}`, template: 'T-F', props: { maxSessions: String(n), ...(i === 0 ? importedProps : {}) } })),
      });
      const importedExpiry = new Map(Object.entries(imported).map(([id, ago]) => [id, START - ago + validitySeconds * 1000]));
      // The reference only holds sessions when a license exists to carry the imported property.
      const reference = new Map(seats.length > 0 ? importedExpiry : []);
      let state: RuntimeState = fresh();
      let now = START;

      for (const op of ops) {
        if (op.kind === 'advance') {
          now += op.ms;
          continue;
        }
        const liveCount = [...reference.values()].filter((expires) => expires > now).length;
        let expectValid = false;
        let expectExpiry: number | undefined;
        const next = new Map(reference);
        let body = 'productModuleNumber0=M-F';
        if (op.kind === 'checkOut') {
          body += `&sessionId0=${op.id}&action0=checkOut${op.override ? `&maxCheckoutValidity0=${op.override}` : ''}`;
          const expires = now + (op.override ?? validitySeconds) * 1000;
          const live = (reference.get(op.id) ?? -Infinity) > now;
          if (live ? liveCount <= capacity : liveCount < capacity) {
            expectValid = true;
            expectExpiry = expires;
            next.set(op.id, expires);
          }
        } else if (op.kind === 'checkIn') {
          body += `&sessionId0=${op.id}&action0=checkIn`;
          next.delete(op.id);
        }
        if (op.dry) body += '&dryRun=true';

        const outcome = validate(assets, state, request(body), { nowMs: now, ttlMs: DAY_MS });
        const answer = props(item(outcome.envelope, 'M-F'));
        expect(answer['valid']).toBe(expectValid ? 'true' : 'false');
        expect(answer['expirationTimestamp']).toBe(expectExpiry === undefined ? undefined : toIso(expectExpiry));
        expect(outcome.envelope.ttl).toBe(toIso(Math.min(now + DAY_MS, expectExpiry ?? Infinity)));
        if (op.dry || op.kind === 'plain') expect(outcome.events).toEqual([]);
        else {
          reference.clear();
          for (const [id, expires] of next) reference.set(id, expires);
        }
        if (inPlace) applyEventsInPlace(state, outcome.events);
        else state = applyEvents(state, outcome.events);

        // The seats the real state holds: imported sessions, overridden by runtime entries.
        const held = new Map(seats.length > 0 ? importedExpiry : []);
        for (const [id, session] of state.sessions['M-F'] ?? []) held.set(id, session.expiresMs);
        const liveHeld = [...held].filter(([, expires]) => expires > now).map(([id]) => id).sort();
        const liveReference = [...reference].filter(([, expires]) => expires > now).map(([id]) => id).sort();
        expect(liveHeld).toEqual(liveReference);
        // Imported sessions may exceed a pool the vendor shrank; the agent itself never adds beyond it.
        const importedLive = seats.length > 0 ? [...importedExpiry.values()].filter((e) => e > now).length : 0;
        expect(liveHeld.length).toBeLessThanOrEqual(Math.max(capacity, importedLive));
        // After a write only live entries, or entries masking a live imported session, remain.
        if (!op.dry && op.kind !== 'plain') {
          for (const [id, session] of state.sessions['M-F'] ?? []) {
            const masks = (importedExpiry.get(id) ?? -Infinity) > now && seats.length > 0;
            expect(session.expiresMs > now || masks || id === op.id).toBe(true);
          }
        }
      }
    }),
    { numRuns: 300 },
  );
});
