/**
 * Goal: Pricing Table rules (API spec §6.9) by example — plan precedence,
 * TIMEVOLUME plans that expire, SKU lists, broken JSON tolerated.
 * Method: validate built assets and read item properties and SKU lists.
 */
import { describe, expect, test } from 'bun:test';
import { DAY_MS, buildAssets, fresh, item, list, ms, props, run, type LicenseSpec } from './helpers.ts';

const NOW = ms('2024-03-01T10:00:00Z');
const SKUDEF = JSON.stringify({
  skudef: [
    { number: 'USERS', name: 'Users', type: 'QUOTA' },
    { number: 'API', name: 'API access', type: 'FEATURE' },
  ],
});

function pricing(licenses: LicenseSpec[], skudef = SKUDEF) {
  return buildAssets({
    modules: [
      {
        number: 'M-PT',
        licensingModel: 'PricingTable',
        props: { skudef },
        templates: [
          { number: 'FREE', licenseType: 'FEATURE', props: { name: 'Free', automatic: 'true', skus: '{"USERS":"1","API":false}' } },
          { number: 'PRO', licenseType: 'TIMEVOLUME', props: { name: 'Pro', price: '20.00', timeVolume: '1', timeVolumePeriod: 'MONTH', skus: '{"USERS":"-1","API":true}' } },
          { number: 'TEAM', licenseType: 'FEATURE', props: { name: 'Team', price: '20.00', skus: '{"USERS":"10","API":"true"}' } },
          { number: 'BROKEN', licenseType: 'FEATURE', props: { name: 'Broken', price: '500', skus: '{not json' } },
        ],
      },
    ],
    licenses,
  });
}
const result = (licenses: LicenseSpec[], now = NOW, skudef?: string) => item(run(pricing(licenses, skudef), fresh(), '', now).outcome.envelope, 'M-PT');

describe('Pricing Table', () => {
  test('the most expensive active plan wins; all active plans are listed', () => {
    const r = result([
      { number: 'L-FREE', template: 'FREE' },
      { number: 'L-PRO', template: 'PRO', props: { timeVolume: '1', timeVolumePeriod: 'MONTH', startDate: '2024-02-15T00:00:00Z' } },
    ]);
    expect(props(r)).toMatchObject({ valid: 'true', pricingPlanId: 'PRO', pricingPlanName: 'Pro', activePricingPlans: 'FREE,PRO', pricingPlanType: 'TIMEVOLUME', warningLevel: 'GREEN' });
    expect(props(list(r, 'USERS'))).toEqual({ valid: 'true', quota: '-1', name: 'Users', type: 'QUOTA' });
    expect(props(list(r, 'API'))).toEqual({ valid: 'true', name: 'API access', type: 'FEATURE' });
  });

  test('equal price: the plan defined later wins', () => {
    const r = result([
      { number: 'L-PRO', template: 'PRO', props: { startDate: '2024-02-15T00:00:00Z' } },
      { number: 'L-TEAM', template: 'TEAM' },
    ]);
    expect(props(r)['pricingPlanId']).toBe('TEAM');
    expect(props(list(r, 'USERS'))['quota']).toBe('10');
  });

  test('an expired TIMEVOLUME plan is not active; the free plan takes over', () => {
    const r = result(
      [
        { number: 'L-FREE', template: 'FREE' },
        { number: 'L-PRO', template: 'PRO', props: { startDate: '2024-01-01T00:00:00Z' } },
      ],
      NOW,
    );
    expect(props(r)).toMatchObject({ pricingPlanId: 'FREE', activePricingPlans: 'FREE', pricingPlanType: 'FEATURE' });
    expect(props(list(r, 'API'))['valid']).toBe('false');
    expect(props(list(r, 'USERS'))).toMatchObject({ valid: 'true', quota: '1' });
  });

  test('a TIMEVOLUME plan near its end is YELLOW', () => {
    const r = result([{ number: 'L-PRO', template: 'PRO', props: { startDate: '2024-02-05T00:00:00Z' } }], ms('2024-03-01T00:00:00Z'));
    expect(props(r)['warningLevel']).toBe('YELLOW');
  });

  test('no active plan: invalid, RED, SKUs off with quota 0', () => {
    const r = result([{ number: 'L-TEAM', template: 'TEAM', props: { active: 'false' } }]);
    const p = props(r);
    expect(p).toMatchObject({ valid: 'false', warningLevel: 'RED' });
    expect(p['pricingPlanId']).toBeUndefined();
    expect(p['activePricingPlans']).toBeUndefined();
    expect(props(list(r, 'USERS'))).toEqual({ valid: 'false', quota: '0', name: 'Users', type: 'QUOTA' });
  });

  test('a QUOTA value past 2^53 - 1 stays there in digits; a negative one other than -1 is none', () => {
    // String(Number.parseInt('99999999999999999999999')) was '1e+23': JavaScript's parseInt reads 1, Java's refuses it.
    for (const [value, quota, valid] of [['99999999999999999999999', '9007199254740991', 'true'], ['9007199254740993', '9007199254740991', 'true'], ['-5', '0', 'false'], [' 7 ', '7', 'true']] as const) {
      const assets = buildAssets({
        modules: [{ number: 'M-PT', licensingModel: 'PricingTable', props: { skudef: SKUDEF }, templates: [{ number: 'BIG', licenseType: 'FEATURE', props: { name: 'Big', skus: JSON.stringify({ USERS: value }) } }] }],
        licenses: [{ number: 'L-BIG', template: 'BIG' }],
      });
      expect(props(list(item(run(assets, fresh(), '', NOW).outcome.envelope, 'M-PT'), 'USERS')), value).toEqual({ valid, quota, name: 'Users', type: 'QUOTA' });
    }
  });

  test('broken JSON never fails the validation', () => {
    const broken = result([{ number: 'L-B', template: 'BROKEN' }]);
    expect(props(broken)['pricingPlanId']).toBe('BROKEN');
    expect(props(list(broken, 'API'))['valid']).toBe('false');
    const noSkus = result([{ number: 'L-TEAM', template: 'TEAM' }], NOW + DAY_MS, 'nonsense');
    expect(noSkus.lists).toEqual([]);
    expect(props(noSkus)['valid']).toBe('true');
  });
});
