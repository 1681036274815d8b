/**
 * Goal: Floating rules (API spec §6.4) by example — capacity, extension,
 * expiry, check-in, imported `sessionId_` properties, pruning, parameter
 * errors, warning levels, dryRun.
 * Method: validate built assets with a manual clock; state through applyEvents.
 */
import { describe, expect, test } from 'bun:test';
import { applyEvents } from '../../src/core/runtime.ts';
import { LAST_FOUR_DIGIT_YEAR_MS, toIso } from '../../src/core/time.ts';
import { validate } from '../../src/core/validate.ts';
import { DAY_MS, buildAssets, fresh, item, ms, props, request, run, type LicenseSpec } from './helpers.ts';

const NOW = ms('2024-03-01T10:00:00Z');
const VALIDITY_MS = 600_000;

function floating(licenses: LicenseSpec[] = [{ number: 'L1', template: 'T-F', props: { maxSessions: '2' } }], moduleProps: Record<string, string> = { maxCheckoutValidity: '600' }) {
  return buildAssets({
    modules: [
      { number: 'M-F', licensingModel: 'Floating', props: moduleProps, templates: [{ number: 'T-F', licenseType: 'FLOATING', props: { maxSessions: '2' } }] },
    ],
    licenses,
  });
}

const checkOut = (id: string, extra = '') => `productModuleNumber0=M-F&sessionId0=${id}&action0=checkOut${extra}`;
const checkIn = (id: string) => `productModuleNumber0=M-F&sessionId0=${id}&action0=checkIn`;
const answer = (outcome: { envelope: Parameters<typeof item>[0] }) => props(item(outcome.envelope, 'M-F'));

describe('Floating', () => {
  test('check-outs up to the summed maxSessions of active licenses, then valid=false', () => {
    const assets = floating([
      { number: 'L1', template: 'T-F', props: { maxSessions: '2' } },
      { number: 'L2', template: 'T-F', props: { maxSessions: '1' } },
      { number: 'L3', template: 'T-F', props: { maxSessions: '10', active: 'false' } },
    ]);
    let state = fresh();
    for (const id of ['a', 'b', 'c']) {
      const step = run(assets, state, checkOut(id), NOW);
      expect(answer(step.outcome)).toMatchObject({ valid: 'true', expirationTimestamp: toIso(NOW + VALIDITY_MS) });
      state = step.state;
    }
    const full = run(assets, state, checkOut('d'), NOW);
    expect(answer(full.outcome)['valid']).toBe('false');
    expect(answer(full.outcome)['expirationTimestamp']).toBeUndefined();
    expect(full.outcome.events).toEqual([]);
  });

  test('checking out an open session again extends it from now, keeping its first check-out time', () => {
    const assets = floating();
    const first = run(assets, fresh(), checkOut('a'), NOW);
    const again = run(assets, first.state, checkOut('a'), NOW + 60_000);
    expect(answer(again.outcome)['expirationTimestamp']).toBe(toIso(NOW + 60_000 + VALIDITY_MS));
    expect(again.state.sessions['M-F']).toEqual(new Map([['a', { checkedOutMs: NOW, expiresMs: NOW + 60_000 + VALIDITY_MS }]]));
  });

  test('an expired session frees its seat exactly at its expiry, and is pruned on the next write', () => {
    const assets = floating([{ number: 'L1', template: 'T-F', props: { maxSessions: '1' } }]);
    const first = run(assets, fresh(), checkOut('a'), NOW);
    expect(answer(run(assets, first.state, checkOut('b'), NOW + VALIDITY_MS - 1).outcome)['valid']).toBe('false');
    const later = run(assets, first.state, checkOut('b'), NOW + VALIDITY_MS);
    expect(answer(later.outcome)['valid']).toBe('true');
    expect(later.outcome.events.map((e) => e.type)).toEqual(['sessionCheckedOut', 'sessionExpired']);
    expect([...(later.state.sessions['M-F']?.keys() ?? [])]).toEqual(['b']);
  });

  test('maxCheckoutValidityN overrides the module setting', () => {
    const { outcome } = run(floating(), fresh(), checkOut('a', '&maxCheckoutValidity0=30'), NOW);
    expect(answer(outcome)['expirationTimestamp']).toBe(toIso(NOW + 30_000));
    expect(outcome.envelope.ttl).toBe(toIso(NOW + 30_000));
  });

  test('a validity past year 9999, per call or the module\'s, ends the session at 9999-12-31T23:59:59.999Z', () => {
    // 2^53 - 1 seconds: its milliseconds are no date at all (toISOString threw, a 500). Capped, not
    // refused: a refusal would depend on the clock, and error answers are reused without a ttl.
    const lastSecond = Math.floor((LAST_FOUR_DIGIT_YEAR_MS - NOW) / 1000);
    for (const [moduleValidity, override] of [
      ['600', '&maxCheckoutValidity0=9007199254740991'],
      ['600', `&maxCheckoutValidity0=${lastSecond + 1}`],
      ['9007199254740991', ''],
    ] as const) {
      const step = run(floating(undefined, { maxCheckoutValidity: moduleValidity }), fresh(), checkOut('a', override), NOW);
      expect(answer(step.outcome)).toMatchObject({ valid: 'true', expirationTimestamp: '9999-12-31T23:59:59.999Z' });
      expect(step.state.sessions['M-F']?.get('a')).toEqual({ checkedOutMs: NOW, expiresMs: LAST_FOUR_DIGIT_YEAR_MS });
    }
    expect(answer(run(floating(), fresh(), checkOut('a', `&maxCheckoutValidity0=${lastSecond}`), NOW).outcome)['expirationTimestamp']).toBe(
      toIso(NOW + lastSecond * 1000),
    );
  });

  test('a module without maxCheckoutValidity uses 300 seconds', () => {
    const { outcome } = run(floating(undefined, {}), fresh(), checkOut('a'), NOW);
    expect(answer(outcome)['expirationTimestamp']).toBe(toIso(NOW + 300_000));
  });

  test('checkIn frees the seat and answers valid=false without expirationTimestamp', () => {
    const assets = floating([{ number: 'L1', template: 'T-F', props: { maxSessions: '1' } }]);
    const out = run(assets, fresh(), checkOut('a'), NOW);
    const back = run(assets, out.state, checkIn('a'), NOW + 1000);
    expect(answer(back.outcome)).toMatchObject({ valid: 'false' });
    expect(answer(back.outcome)['expirationTimestamp']).toBeUndefined();
    expect(back.outcome.events).toEqual([{ type: 'sessionCheckedIn', moduleNumber: 'M-F', sessionId: 'a' }]);
    expect(answer(run(assets, back.state, checkOut('b'), NOW + 2000).outcome)['valid']).toBe('true');
  });

  test('checkIn of an unknown session changes nothing', () => {
    const { outcome } = run(floating(), fresh(), checkIn('nobody'), NOW);
    expect(answer(outcome)['valid']).toBe('false');
    expect(outcome.events).toEqual([]);
  });

  test('imported sessionId_ properties hold seats until checkout time + maxCheckoutValidity', () => {
    const assets = floating([
      { number: 'L1', template: 'T-F', props: { maxSessions: '1', sessionId_cloud: toIso(NOW - 100_000) } },
    ]);
    expect(answer(run(assets, fresh(), checkOut('b'), NOW).outcome)['valid']).toBe('false');
    expect(answer(run(assets, fresh(), checkOut('b'), NOW - 100_000 + VALIDITY_MS).outcome)['valid']).toBe('true');
    // The same id checked out again is an extension.
    const extended = run(assets, fresh(), checkOut('cloud'), NOW);
    expect(answer(extended.outcome)['valid']).toBe('true');
    expect(extended.state.sessions['M-F']?.get('cloud')).toEqual({ checkedOutMs: NOW - 100_000, expiresMs: NOW + VALIDITY_MS });
  });

  test('an over-full pool (more imported sessions than seats) does not extend them', () => {
    const assets = floating([
      { number: 'L1', template: 'T-F', props: { maxSessions: '1', sessionId_x: toIso(NOW - 1000), sessionId_y: toIso(NOW - 2000) } },
    ]);
    const refused = run(assets, fresh(), checkOut('x'), NOW);
    expect(answer(refused.outcome)['valid']).toBe('false');
    expect(refused.outcome.events).toEqual([]);
    // Once y has run out the pool is at capacity again and x may be extended.
    const later = run(assets, fresh(), checkOut('x'), NOW - 2000 + VALIDITY_MS);
    expect(answer(later.outcome)['valid']).toBe('true');
  });

  test('checking in an imported session frees its seat for good', () => {
    const assets = floating([
      { number: 'L1', template: 'T-F', props: { maxSessions: '1', sessionId_cloud: toIso(NOW - 100_000) } },
    ]);
    const back = run(assets, fresh(), checkIn('cloud'), NOW);
    expect(answer(back.outcome)['valid']).toBe('false');
    const next = run(assets, back.state, checkOut('b'), NOW + 1000);
    expect(answer(next.outcome)['valid']).toBe('true');
    // The masking entry survives pruning while the imported session would still be open.
    expect(next.outcome.events.map((e) => e.type)).toEqual(['sessionCheckedOut']);
    const afterImportedExpiry = run(assets, next.state, checkIn('b'), NOW - 100_000 + VALIDITY_MS);
    expect(afterImportedExpiry.outcome.events).toContainEqual({ type: 'sessionExpired', moduleNumber: 'M-F', sessionId: 'cloud' });
    expect(afterImportedExpiry.state.sessions).toEqual({});
  });

  test('without an action nothing is checked out: valid=false, no events', () => {
    const assets = floating();
    const open = run(assets, fresh(), checkOut('a'), NOW).state;
    for (const body of ['', 'productModuleNumber0=M-F', 'productModuleNumber0=M-F&sessionId0=a']) {
      const { outcome } = run(assets, open, body, NOW + 1000);
      expect(answer(outcome)['valid']).toBe('false');
      expect(answer(outcome)['expirationTimestamp']).toBeUndefined();
      expect(outcome.events).toEqual([]);
    }
  });

  test('no active license: valid=false and RED', () => {
    const { outcome } = run(floating([]), fresh(), checkOut('a'), NOW);
    expect(answer(outcome)).toMatchObject({ valid: 'false', warningLevel: 'RED' });
    expect(outcome.events).toEqual([]);
  });

  test('warning levels: 80 % YELLOW, a full small pool YELLOW, a full pool of 10+ RED', () => {
    const pool = (size: number) => floating([{ number: 'L1', template: 'T-F', props: { maxSessions: String(size) } }]);
    const levels = (size: number) => {
      let state = fresh();
      const seen: string[] = [];
      for (let i = 0; i < size; i++) {
        const step = run(pool(size), state, checkOut(`s${i}`), NOW);
        seen.push(answer(step.outcome)['warningLevel']!);
        state = step.state;
      }
      return seen;
    };
    expect(levels(5)).toEqual(['GREEN', 'GREEN', 'GREEN', 'YELLOW', 'YELLOW']);
    expect(levels(10).slice(6)).toEqual(['GREEN', 'YELLOW', 'YELLOW', 'RED']);
  });

  test('dryRun gives the same answer and records nothing', () => {
    const assets = floating();
    const dry = validate(assets, fresh(), request(`dryRun=true&${checkOut('a')}`), { nowMs: NOW, ttlMs: DAY_MS });
    const real = validate(assets, fresh(), request(checkOut('a')), { nowMs: NOW, ttlMs: DAY_MS });
    expect(dry.events).toEqual([]);
    expect(dry.envelope).toEqual(real.envelope);
    expect(applyEvents(fresh(), real.events).sessions['M-F']?.get('a')).toBeDefined();
  });

  test('malformed action, missing sessionId or a bad override reject the request', () => {
    for (const body of [
      'productModuleNumber0=M-F&sessionId0=a&action0=checkout',
      'productModuleNumber0=M-F&action0=checkOut',
      `${checkOut('a')}&maxCheckoutValidity0=0`,
      `${checkOut('a')}&maxCheckoutValidity0=ten`,
      // Would replace the prototype of the state's session map instead of adding a session.
      checkOut('__proto__'),
    ]) {
      const { outcome } = run(floating(), fresh(), body, NOW);
      expect(outcome.envelope.items).toEqual([]);
      expect(outcome.envelope.infos.map((i) => [i.id, i.type])).toEqual([['MalformedRequestException', 'ERROR']]);
      expect(outcome.events).toEqual([]);
    }
  });
});
