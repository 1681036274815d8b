/**
 * Goal: Floating's walk over the runtime sessions (models/floating.ts, walkSessions) gives what a
 * plain walk over every session gives, whether it takes the short walk of a table known to be in
 * expiry order or the full one, for ANY sequence of check-outs (in and out of expiry order),
 * check-ins, expirations, copies of the table and clock values (backwards too).
 * Method: fast-check generates operation sequences applied in place (as the runtime writer does);
 * after each one the walk at a random time is compared with the plain walk.
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import { walkSessions } from '../../src/core/models/floating.ts';
import { applyEventsInPlace, emptyRuntimeState, type RuntimeEvent, type RuntimeState, type SessionTable } from '../../src/core/runtime.ts';

const IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];

type Op =
  | { kind: 'checkOut'; id: string; expiresMs: number }
  | { kind: 'checkIn' | 'expire'; id: string }
  | { kind: 'copy' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('checkOut' as const), id: fc.constantFrom(...IDS), expiresMs: fc.integer({ min: 0, max: 100 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constantFrom('checkIn' as const, 'expire' as const), id: fc.constantFrom(...IDS) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('copy' as const) }) },
);

function plainWalk(table: SessionTable, nowMs: number) {
  const entries = [...table];
  const live = entries.filter(([, session]) => session.expiresMs > nowMs);
  return {
    live: live.length,
    earliestLiveExpiryMs: Math.min(...live.map(([, session]) => session.expiresMs)),
    expiredIds: entries.filter(([, session]) => session.expiresMs <= nowMs).map(([id]) => id),
  };
}

test('the walk equals a plain walk over every session, short or full', () => {
  fc.assert(
    fc.property(
      // Rising expiries mostly (one validity per module), with arbitrary ones mixed in.
      fc.array(fc.tuple(opArb, fc.integer({ min: -10, max: 110 }), fc.boolean()), { minLength: 1, maxLength: 60 }),
      (steps) => {
        let state: RuntimeState = emptyRuntimeState();
        let clock = 0;
        for (const [op, nowMs, rising] of steps) {
          let event: RuntimeEvent | undefined;
          if (op.kind === 'checkOut') {
            const expiresMs = rising ? (clock += 1) + 100 : op.expiresMs;
            event = { type: 'sessionCheckedOut', moduleNumber: 'M', sessionId: op.id, checkedOutMs: 0, expiresMs };
          } else if (op.kind === 'checkIn') event = { type: 'sessionCheckedIn', moduleNumber: 'M', sessionId: op.id };
          else if (op.kind === 'expire') event = { type: 'sessionExpired', moduleNumber: 'M', sessionId: op.id };
          else state = structuredClone(state); // a table loaded or copied: nothing known of its order
          if (event) applyEventsInPlace(state, [event]);
          const table = state.sessions['M'] ?? new Map();
          for (const at of [nowMs, nowMs + 50, nowMs - 50]) expect(walkSessions(table, at)).toEqual(plainWalk(table, at));
        }
      },
    ),
    { numRuns: 500 },
  );
});
