/**
 * Goal: the instants the agent reads from definitions and writes into answers stay within what
 * every client can hold (years 0001–9999, C#'s DateTime), and impossible dates are not read as
 * other days (docs/semantics.md, "No instant the agent answers lies after 9999-12-31").
 * Method: parseIso and addPeriod directly; validate with built assets for the ttl and a start date.
 */
import { describe, expect, test } from 'bun:test';
import { addPeriod, LAST_FOUR_DIGIT_YEAR_MS, parseIso } from '../../src/core/time.ts';
import { DAY_MS, buildAssets, fresh, item, ms, props, run } from './helpers.ts';

describe('parseIso', () => {
  test('reads the forms the API accepts, a zone-less time as UTC', () => {
    expect(parseIso('2024-02-29T10:00:00Z')).toBe(Date.UTC(2024, 1, 29, 10));
    expect(parseIso('2024-02-29T10:00:00.123Z')).toBe(Date.UTC(2024, 1, 29, 10, 0, 0, 123));
    expect(parseIso('2024-02-29T12:00:00+02:00')).toBe(Date.UTC(2024, 1, 29, 10));
    expect(parseIso('2024-02-29T12:00+0200')).toBe(Date.UTC(2024, 1, 29, 10));
    expect(parseIso('2024-02-29T10:00:00')).toBe(Date.UTC(2024, 1, 29, 10));
    expect(parseIso(' 2024-02-29 ')).toBe(Date.UTC(2024, 1, 29));
    expect(parseIso('2000-02-29')).toBe(Date.UTC(2000, 1, 29));
    expect(parseIso('0001-01-01T00:00:00Z')).toBe(Date.parse('0001-01-01T00:00:00Z'));
    expect(parseIso('9999-12-31T23:59:59.999Z')).toBe(LAST_FOUR_DIGIT_YEAR_MS);
  });

  test('a day the month does not have, or an hour, minute or second out of range, is no date', () => {
    // Date.parse rolled 2024-02-30 over into March 1st.
    for (const text of ['2024-02-30', '2023-02-29', '1900-02-29', '2024-04-31', '2024-13-01', '2024-00-10', '2024-01-00', '2024-01-01T24:00:00Z', '2024-01-01T10:60:00Z', '2024-01-01T10:00:60Z']) {
      expect(parseIso(text), text).toBeUndefined();
    }
  });

  test('an instant outside years 0001–9999 once its zone is applied is no date', () => {
    for (const text of ['0000-01-01T00:00:00Z', '0001-01-01T00:00:00+00:01', '9999-12-31T23:59:59.999-00:01', '+275760-09-13T00:00:00.000Z', '10000-01-01']) {
      expect(parseIso(text), text).toBeUndefined();
    }
  });

  test('anything else is undefined, never NaN', () => {
    for (const text of [undefined, '', ' ', 'garbage', '2024-1-1', '2024-01-01T10', `2024-01-01${' '.repeat(100_000)}x`]) {
      expect(parseIso(text)).toBeUndefined();
    }
  });
});

describe('addPeriod', () => {
  test('ends at 9999-12-31T23:59:59.999Z at the latest, for every period and for counts Date.UTC cannot take', () => {
    const start = Date.UTC(2024, 0, 1);
    for (const period of ['DAY', 'WEEK', 'MONTH', 'YEAR'] as const) {
      for (const count of [100_000_000, Number.MAX_SAFE_INTEGER]) expect(addPeriod(start, count, period)).toBe(LAST_FOUR_DIGIT_YEAR_MS);
    }
    expect(addPeriod(start, 7975, 'YEAR')).toBe(Date.UTC(9999, 0, 1));
  });
});

describe('answers near the end of year 9999', () => {
  const assets = buildAssets({
    modules: [{ number: 'M', licensingModel: 'TryAndBuy', templates: [{ number: 'T', licenseType: 'TIMEVOLUME', props: { timeVolume: '30', automatic: 'true' } }] }],
    licenses: [{ number: 'L', template: 'T', props: { timeVolume: '30', startDate: '0000-01-01T00:00:00Z' } }],
  });

  test('the ttl is never after 9999-12-31T23:59:59.999Z (it was +010000-01-01T12:00:00.000Z)', () => {
    const { outcome } = run(assets, fresh(), 'productModuleNumber=M', ms('9999-12-31T12:00:00Z'), DAY_MS);
    expect(outcome.envelope.ttl).toBe('9999-12-31T23:59:59.999Z');
  });

  test('a license starting in year 0000 is one without a start date that parses: no evaluationExpires in year 0000', () => {
    const answer = props(item(run(assets, fresh(), 'productModuleNumber=M', ms('2024-06-01T00:00:00Z')).outcome.envelope, 'M'));
    expect(answer['evaluationExpires']).toBeUndefined();
    expect(answer['valid']).toBe('false');
  });
});
