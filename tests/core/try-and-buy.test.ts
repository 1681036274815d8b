/**
 * Goal: Try & Buy rules (API spec §6.1) — trial start on the first non-dry
 * validation, LMB-689 (no second trial), purchase, expiry boundary, dryRun.
 * Method: validate against built assets with a fixed clock, carrying state
 * through applyEvents as the server would.
 */
import { describe, expect, test } from 'bun:test';
import { agentLicenseNumber } from '../../src/core/runtime.ts';
import { validate } from '../../src/core/validate.ts';
import { DAY_MS, buildAssets, fresh, item, ms, props, request, run, type LicenseSpec } from './helpers.ts';

const NOW = ms('2024-01-10T12:00:00Z');

function tryAndBuy(licenses: LicenseSpec[] = [], trialProps: Record<string, string> = {}) {
  return buildAssets({
    modules: [
      {
        number: 'M-TB',
        licensingModel: 'TryAndBuy',
        templates: [
          { number: 'T-TRIAL', licenseType: 'TIMEVOLUME', props: { automatic: 'true', hidden: 'true', timeVolume: '14', ...trialProps } },
          { number: 'T-BUY', licenseType: 'FEATURE', props: { price: '99.00' } },
        ],
      },
    ],
    licenses,
  });
}

describe('Try & Buy', () => {
  test('the first validation creates the trial license, later ones reuse it', () => {
    const assets = tryAndBuy();
    const first = run(assets, fresh(), '', NOW);
    expect(first.outcome.events).toEqual([
      {
        type: 'licenseCreated',
        license: { number: agentLicenseNumber('I-TEST', 'T-TRIAL'), templateNumber: 'T-TRIAL', startDate: '2024-01-10T12:00:00.000Z' },
      },
    ]);
    const expected = { valid: 'true', evaluation: 'true', evaluationExpires: '2024-01-24T12:00:00.000Z', warningLevel: 'YELLOW' };
    expect(props(item(first.outcome.envelope, 'M-TB'))).toMatchObject(expected);
    const later = run(assets, first.state, '', NOW + 5 * DAY_MS);
    expect(later.outcome.events).toEqual([]);
    expect(props(item(later.outcome.envelope, 'M-TB'))).toMatchObject(expected);
  });

  test('the trial ends exactly at evaluationExpires', () => {
    const assets = tryAndBuy();
    const { state } = run(assets, fresh(), '', NOW);
    const justBefore = props(item(run(assets, state, '', NOW + 14 * DAY_MS - 1).outcome.envelope, 'M-TB'));
    expect(justBefore['valid']).toBe('true');
    const atEnd = props(item(run(assets, state, '', NOW + 14 * DAY_MS).outcome.envelope, 'M-TB'));
    expect(atEnd).toMatchObject({ valid: 'false', evaluation: 'true', evaluationExpires: '2024-01-24T12:00:00.000Z', warningLevel: 'RED' });
  });

  test('a purchased FEATURE license makes it valid for good, without evaluation', () => {
    const assets = tryAndBuy([
      { number: 'L-TRIAL', template: 'T-TRIAL', props: { timeVolume: '14', startDate: '2023-01-01T00:00:00Z' } },
      { number: 'L-BUY', template: 'T-BUY' },
    ]);
    const { outcome } = run(assets, fresh(), '', NOW);
    const result = props(item(outcome.envelope, 'M-TB'));
    expect(result).toMatchObject({ valid: 'true', evaluation: 'false', warningLevel: 'GREEN' });
    expect(result['evaluationExpires']).toBeUndefined();
    expect(outcome.events).toEqual([]);
  });

  test('an inactive purchase does not count', () => {
    const assets = tryAndBuy([
      { number: 'L-TRIAL', template: 'T-TRIAL', props: { timeVolume: '14', startDate: '2023-01-01T00:00:00Z' } },
      { number: 'L-BUY', template: 'T-BUY', props: { active: 'false' } },
    ]);
    expect(props(item(run(assets, fresh(), '', NOW).outcome.envelope, 'M-TB'))).toMatchObject({ valid: 'false', evaluation: 'true' });
  });

  test('LMB-689: an inactive trial license is not re-created', () => {
    const assets = tryAndBuy([{ number: 'L-TRIAL', template: 'T-TRIAL', props: { active: 'false', startDate: '2024-01-09T00:00:00Z' } }]);
    const { outcome } = run(assets, fresh(), '', NOW);
    expect(outcome.events).toEqual([]);
    const result = props(item(outcome.envelope, 'M-TB'));
    expect(result).toMatchObject({ valid: 'false', evaluation: 'true', warningLevel: 'RED' });
    expect(result['evaluationExpires']).toBeUndefined();
  });

  test('an imported trial license supersedes the one the agent created', () => {
    const { state } = run(tryAndBuy(), fresh(), '', NOW);
    const reimported = tryAndBuy([{ number: 'L-TRIAL', template: 'T-TRIAL', props: { timeVolume: '30', startDate: '2024-01-01T00:00:00Z' } }]);
    const result = props(item(run(reimported, state, '', NOW).outcome.envelope, 'M-TB'));
    expect(result['evaluationExpires']).toBe('2024-01-31T00:00:00.000Z');
  });

  test('an imported trial without startDate starts now (startDateSet)', () => {
    const assets = tryAndBuy([{ number: 'L-TRIAL', template: 'T-TRIAL', props: { timeVolume: '14' } }]);
    const first = run(assets, fresh(), '', NOW);
    expect(first.outcome.events).toEqual([{ type: 'startDateSet', licenseNumber: 'L-TRIAL', startDate: '2024-01-10T12:00:00.000Z' }]);
    const later = run(assets, first.state, '', NOW + DAY_MS);
    expect(props(item(later.outcome.envelope, 'M-TB'))['evaluationExpires']).toBe('2024-01-24T12:00:00.000Z');
    expect(later.outcome.events).toEqual([]);
  });

  test('dryRun answers as if the trial started but records nothing', () => {
    const assets = tryAndBuy();
    const dry = validate(assets, fresh(), request('dryRun=true'), { nowMs: NOW, ttlMs: DAY_MS });
    expect(dry.events).toEqual([]);
    expect(props(item(dry.envelope, 'M-TB'))).toMatchObject({ valid: 'true', evaluationExpires: '2024-01-24T12:00:00.000Z' });
    // The trial really starts only with the first non-dry call.
    const real = run(assets, fresh(), '', NOW + 3 * DAY_MS);
    expect(props(item(real.outcome.envelope, 'M-TB'))['evaluationExpires']).toBe('2024-01-27T12:00:00.000Z');
  });

  test('an inactive trial template gives no trial', () => {
    const { outcome } = run(tryAndBuy([], { active: 'false' }), fresh(), '', NOW);
    expect(outcome.events).toEqual([]);
    expect(props(item(outcome.envelope, 'M-TB'))['valid']).toBe('false');
  });

  test('a trial template not flagged automatic is still the trial', () => {
    const { outcome } = run(tryAndBuy([], { automatic: 'false' }), fresh(), '', NOW);
    expect(outcome.events).toHaveLength(1);
    expect(props(item(outcome.envelope, 'M-TB'))['valid']).toBe('true');
  });

  test('legacy TimeLimitedEvaluation answers as TryAndBuy', () => {
    const assets = tryAndBuy();
    assets.modules[0]!.props['licensingModel'] = 'TimeLimitedEvaluation';
    expect(props(item(run(assets, fresh(), '', NOW).outcome.envelope, 'M-TB'))['licensingModel']).toBe('TryAndBuy');
  });
});
