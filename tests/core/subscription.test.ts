/**
 * Goal: Subscription rules (API spec §6.2) — cumulative chaining, gaps,
 * calendar months and month ends, expiry boundary, warning levels, start on
 * first use, the free automatic evaluation.
 * Method: validate built assets with fixed clocks; state through applyEvents.
 */
import { describe, expect, test } from 'bun:test';
import { validate } from '../../src/core/validate.ts';
import { DAY_MS, buildAssets, fresh, item, ms, props, request, run, type LicenseSpec, type TemplateSpec } from './helpers.ts';

function subscription(licenses: LicenseSpec[], templates?: TemplateSpec[]) {
  return buildAssets({
    modules: [
      {
        number: 'M-SUB',
        licensingModel: 'Subscription',
        templates: templates ?? [
          { number: 'T-DAYS', licenseType: 'TIMEVOLUME', props: { timeVolume: '30', price: '10.00' } },
          { number: 'T-MONTH', licenseType: 'TIMEVOLUME', props: { timeVolume: '1', timeVolumePeriod: 'MONTH', price: '10.00' } },
        ],
      },
    ],
    licenses,
  });
}

const result = (assets: ReturnType<typeof subscription>, now: number) => props(item(run(assets, fresh(), '', now).outcome.envelope, 'M-SUB'));

describe('Subscription', () => {
  test('a license bought before expiry extends after the expiry, not from its purchase date', () => {
    const assets = subscription([
      { number: 'L1', template: 'T-DAYS', props: { timeVolume: '30', startDate: '2024-01-01T00:00:00Z' } },
      { number: 'L2', template: 'T-DAYS', props: { timeVolume: '10', startDate: '2024-01-20T00:00:00Z' } },
    ]);
    expect(result(assets, ms('2024-02-05T00:00:00Z'))).toMatchObject({ valid: 'true', expires: '2024-02-10T00:00:00.000Z' });
  });

  test('a license bought after expiry starts a new period at its own startDate', () => {
    const assets = subscription([
      { number: 'L1', template: 'T-DAYS', props: { timeVolume: '30', startDate: '2024-01-01T00:00:00Z' } },
      { number: 'L2', template: 'T-DAYS', props: { timeVolume: '10', startDate: '2024-03-01T00:00:00Z' } },
    ]);
    const gap = result(assets, ms('2024-02-15T00:00:00Z'));
    expect(gap).toMatchObject({ valid: 'false', warningLevel: 'RED' });
    expect(gap['expires']).toBeUndefined();
    expect(result(assets, ms('2024-03-05T00:00:00Z'))).toMatchObject({ valid: 'true', expires: '2024-03-11T00:00:00.000Z' });
  });

  test('gracePeriod on a license or module changes nothing: invalid from the expiry instant on', () => {
    // docs/semantics.md, Subscription: the cloud's grace-period length is undocumented (spec §9 item 7).
    const assets = buildAssets({
      modules: [
        {
          number: 'M-SUB',
          licensingModel: 'Subscription',
          props: { gracePeriod: 'true' },
          templates: [{ number: 'T-DAYS', licenseType: 'TIMEVOLUME', props: { timeVolume: '30', price: '10.00' } }],
        },
      ],
      licenses: [{ number: 'L1', template: 'T-DAYS', props: { timeVolume: '30', startDate: '2024-01-01T00:00:00Z', gracePeriod: 'true' } }],
    });
    expect(result(assets, ms('2024-01-30T23:59:59.999Z'))).toMatchObject({ valid: 'true', expires: '2024-01-31T00:00:00.000Z' });
    expect(result(assets, ms('2024-01-31T00:00:00.000Z'))).toMatchObject({ valid: 'false', warningLevel: 'RED' });
  });

  test('license order in the definitions does not matter, start order does', () => {
    const assets = subscription([
      { number: 'L2', template: 'T-DAYS', props: { timeVolume: '10', startDate: '2024-01-20T00:00:00Z' } },
      { number: 'L1', template: 'T-DAYS', props: { timeVolume: '30', startDate: '2024-01-01T00:00:00Z' } },
    ]);
    expect(result(assets, ms('2024-02-05T00:00:00Z'))['expires']).toBe('2024-02-10T00:00:00.000Z');
  });

  test('months are calendar months; a month end clamps and the clamp carries on when chaining', () => {
    const oneLicense = subscription([
      { number: 'L1', template: 'T-MONTH', props: { timeVolume: '2', timeVolumePeriod: 'MONTH', startDate: '2024-01-31T10:00:00Z' } },
    ]);
    expect(result(oneLicense, ms('2024-02-10T00:00:00Z'))['expires']).toBe('2024-03-31T10:00:00.000Z');
    const chained = subscription([
      { number: 'L1', template: 'T-MONTH', props: { timeVolume: '1', timeVolumePeriod: 'MONTH', startDate: '2024-01-31T10:00:00Z' } },
      { number: 'L2', template: 'T-MONTH', props: { timeVolume: '1', timeVolumePeriod: 'MONTH', startDate: '2024-02-01T10:00:00Z' } },
    ]);
    expect(result(chained, ms('2024-02-10T00:00:00Z'))['expires']).toBe('2024-03-29T10:00:00.000Z');
  });

  test('the cloud data point: 3 MONTH from 2024-09-19T04:30:26.004Z expires 2024-12-19T04:30:26.004Z', () => {
    const assets = subscription([
      { number: 'LN2TD47QY', template: 'T-MONTH', props: { timeVolume: '3', timeVolumePeriod: 'MONTH', startDate: '2024-09-19T04:30:26.004Z' } },
    ]);
    expect(result(assets, ms('2024-10-01T00:00:00Z'))['expires']).toBe('2024-12-19T04:30:26.004Z');
  });

  test('a startDate that does not parse: the license gives nothing and is not restarted', () => {
    const assets = subscription([{ number: 'L1', template: 'T-DAYS', props: { timeVolume: '30', startDate: 'yesterday' } }]);
    const { outcome } = run(assets, fresh(), '', ms('2024-01-01T00:00:00Z'));
    expect(outcome.events).toEqual([]);
    expect(props(item(outcome.envelope, 'M-SUB'))['valid']).toBe('false');
  });

  test('WEEK and YEAR periods', () => {
    const assets = subscription([
      { number: 'L1', template: 'T-DAYS', props: { timeVolume: '2', timeVolumePeriod: 'WEEK', startDate: '2024-01-01T00:00:00Z' } },
      { number: 'L2', template: 'T-DAYS', props: { timeVolume: '1', timeVolumePeriod: 'YEAR', startDate: '2024-01-02T00:00:00Z' } },
    ]);
    expect(result(assets, ms('2024-01-03T00:00:00Z'))['expires']).toBe('2025-01-15T00:00:00.000Z');
  });

  test('a volume that would end after year 9999 (a vendor\'s "forever") ends at 9999-12-31T23:59:59.999Z', () => {
    // 100000000 DAY once threw from toISOString (a 500 for every validate of the licensee), a
    // large MONTH or YEAR count made Date.UTC give NaN (never valid); 9999 YEAR from 2024 wrote the year +012023.
    for (const [timeVolume, timeVolumePeriod] of [['100000000', 'DAY'], ['9007199254740991', 'WEEK'], ['9007199254740991', 'MONTH'], ['9999', 'YEAR']]) {
      const assets = subscription([{ number: 'L1', template: 'T-DAYS', props: { timeVolume: timeVolume!, timeVolumePeriod: timeVolumePeriod!, startDate: '2024-01-01T00:00:00Z' } }]);
      expect(result(assets, ms('2024-02-05T00:00:00Z'))).toMatchObject({ valid: 'true', expires: '9999-12-31T23:59:59.999Z', warningLevel: 'GREEN' });
    }
    // A chain that reached the cap stays there when a later license is added.
    const chained = subscription([
      { number: 'L1', template: 'T-DAYS', props: { timeVolume: '9999', timeVolumePeriod: 'YEAR', startDate: '2024-01-01T00:00:00Z' } },
      { number: 'L2', template: 'T-DAYS', props: { timeVolume: '30', startDate: '2024-01-02T00:00:00Z' } },
    ]);
    expect(result(chained, ms('2024-02-05T00:00:00Z'))).toMatchObject({ valid: 'true', expires: '9999-12-31T23:59:59.999Z' });
  });

  test('valid up to, not including, the expiry instant', () => {
    const assets = subscription([{ number: 'L1', template: 'T-DAYS', props: { timeVolume: '30', startDate: '2024-01-01T00:00:00Z' } }]);
    const end = ms('2024-01-31T00:00:00Z');
    expect(result(assets, end - 1)['valid']).toBe('true');
    expect(result(assets, end)['valid']).toBe('false');
    expect(result(assets, ms('2024-01-01T00:00:00Z') - 1)['valid']).toBe('false');
  });

  test('warning level: GREEN below 80 % of the period used, YELLOW from 80 %', () => {
    const assets = subscription([{ number: 'L1', template: 'T-DAYS', props: { timeVolume: '10', startDate: '2024-01-01T00:00:00Z' } }]);
    const start = ms('2024-01-01T00:00:00Z');
    expect(result(assets, start + 8 * DAY_MS - 1)['warningLevel']).toBe('GREEN');
    expect(result(assets, start + 8 * DAY_MS)['warningLevel']).toBe('YELLOW');
    expect(result(assets, start + 10 * DAY_MS)['warningLevel']).toBe('RED');
  });

  test('inactive licenses do not count; no license is invalid and RED', () => {
    const assets = subscription([
      { number: 'L1', template: 'T-DAYS', props: { active: 'false', timeVolume: '30', startDate: '2024-01-01T00:00:00Z' } },
    ]);
    expect(result(assets, ms('2024-01-05T00:00:00Z'))).toEqual({
      productModuleNumber: 'M-SUB',
      valid: 'false',
      productModuleName: 'Module M-SUB',
      warningLevel: 'RED',
      licensingModel: 'Subscription',
    });
  });

  test('a license without startDate starts at the first non-dry validation', () => {
    const assets = subscription([{ number: 'L1', template: 'T-DAYS', props: { timeVolume: '30' } }]);
    const now = ms('2024-05-01T08:00:00Z');
    const dry = validate(assets, fresh(), request('dryRun=true'), { nowMs: now, ttlMs: DAY_MS });
    expect(dry.events).toEqual([]);
    expect(props(item(dry.envelope, 'M-SUB'))['expires']).toBe('2024-05-31T08:00:00.000Z');
    const first = run(assets, fresh(), '', now + DAY_MS);
    expect(first.outcome.events).toEqual([{ type: 'startDateSet', licenseNumber: 'L1', startDate: '2024-05-02T08:00:00.000Z' }]);
    const later = run(assets, first.state, '', now + 5 * DAY_MS);
    expect(later.outcome.events).toEqual([]);
    expect(props(item(later.outcome.envelope, 'M-SUB'))['expires']).toBe('2024-06-01T08:00:00.000Z');
  });

  test('a runtime start date never overrides one the definition has', () => {
    const assets = subscription([{ number: 'L1', template: 'T-DAYS', props: { timeVolume: '30', startDate: '2024-01-01T00:00:00Z' } }]);
    const state = { ...fresh(), startDates: { L1: '2024-01-20T00:00:00.000Z' } };
    const answer = validate(assets, state, request(), { nowMs: ms('2024-01-25T00:00:00Z'), ttlMs: DAY_MS });
    expect(props(item(answer.envelope, 'M-SUB'))['expires']).toBe('2024-01-31T00:00:00.000Z');
  });

  test('a free automatic template gives an evaluation that starts at the first validation', () => {
    const templates: TemplateSpec[] = [
      { number: 'T-EVAL', licenseType: 'TIMEVOLUME', props: { automatic: 'true', price: '0', timeVolume: '7' } },
      { number: 'T-PAID-AUTO', licenseType: 'TIMEVOLUME', props: { automatic: 'true', price: '5.00', timeVolume: '100' } },
    ];
    const assets = subscription([], templates);
    const now = ms('2024-01-01T00:00:00Z');
    const first = run(assets, fresh(), '', now);
    expect(first.outcome.events.map((e) => e.type)).toEqual(['licenseCreated']);
    expect(props(item(first.outcome.envelope, 'M-SUB'))).toMatchObject({ valid: 'true', expires: '2024-01-08T00:00:00.000Z' });
    expect(run(assets, first.state, '', now + 3 * DAY_MS).outcome.events).toEqual([]);
  });

  test('legacy TimeVolume answers as Subscription', () => {
    const assets = subscription([]);
    assets.modules[0]!.props['licensingModel'] = 'TimeVolume';
    expect(result(assets, ms('2024-01-01T00:00:00Z'))['licensingModel']).toBe('Subscription');
  });
});
