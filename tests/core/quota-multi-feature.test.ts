/**
 * Goal: Quota (§6.7) and Multi-Feature (§6.5) rules by example.
 * Method: validate built assets and read the item properties and lists.
 */
import { describe, expect, test } from 'bun:test';
import { buildAssets, fresh, item, list, ms, props, run, type LicenseSpec } from './helpers.ts';

const NOW = ms('2024-03-01T10:00:00Z');

describe('Quota', () => {
  const quota = (licenses: LicenseSpec[]) =>
    props(
      item(
        run(
          buildAssets({
            modules: [{ number: 'M-Q', licensingModel: 'Quota', templates: [{ number: 'T-Q', licenseType: 'QUANTITY', props: { quantity: '5' } }] }],
            licenses,
          }),
          fresh(),
          '',
          NOW,
        ).outcome.envelope,
        'M-Q',
      ),
    );

  test('-1 on any active license means unlimited', () => {
    expect(
      quota([
        { number: 'L1', template: 'T-Q', props: { quantity: '5' } },
        { number: 'L2', template: 'T-Q', props: { quantity: '-1' } },
      ]),
    ).toMatchObject({ valid: 'true', quota: '-1', warningLevel: 'GREEN' });
  });

  test('an inactive unlimited license does not count; zero quota is invalid and RED', () => {
    expect(quota([{ number: 'L1', template: 'T-Q', props: { quantity: '-1', active: 'false' } }])).toMatchObject({
      valid: 'false',
      quota: '0',
      warningLevel: 'RED',
    });
  });

  test('a negative quantity other than -1 counts as none: it neither adds up to unlimited nor makes the quota negative', () => {
    // 2 + -3 answered quota -1 (unlimited, valid); -2 + -3 answered quota -5.
    expect(
      quota([
        { number: 'L1', template: 'T-Q', props: { quantity: '2' } },
        { number: 'L2', template: 'T-Q', props: { quantity: '-3' } },
      ]),
    ).toMatchObject({ valid: 'true', quota: '2' });
    expect(
      quota([
        { number: 'L1', template: 'T-Q', props: { quantity: '-2' } },
        { number: 'L2', template: 'T-Q', props: { quantity: '-3' } },
      ]),
    ).toMatchObject({ valid: 'false', quota: '0', warningLevel: 'RED' });
  });

  test('a quota past 2^53 - 1 stays there, written in digits', () => {
    expect(
      quota([
        { number: 'L1', template: 'T-Q', props: { quantity: '9007199254740991' } },
        { number: 'L2', template: 'T-Q', props: { quantity: '99999999999999999999999' } },
      ]),
    ).toMatchObject({ valid: 'true', quota: '9007199254740991' });
  });

  test('quantity falls back to the template', () => {
    expect(quota([{ number: 'L1', template: 'T-Q' }])).toMatchObject({ valid: 'true', quota: '5' });
  });
});

describe('Multi-Feature', () => {
  const assets = buildAssets({
    modules: [
      {
        number: 'M-MF',
        licensingModel: 'MultiFeature',
        templates: [
          { number: 'F-A', licenseType: 'FEATURE', props: { name: 'Feature A' } },
          { number: 'F-B', licenseType: 'FEATURE', props: { name: 'Feature B', active: 'false', hidden: 'true', hideLicenses: 'true' } },
          { number: 'F-C', licenseType: 'FEATURE', props: { name: 'Feature C' } },
        ],
      },
    ],
    licenses: [
      { number: 'L-A', template: 'F-A', props: { active: 'false' } },
      { number: 'L-B', template: 'F-B' },
    ],
  });

  test('one list per FEATURE template; licenses of inactive or hidden templates count; inactive licenses do not', () => {
    const result = item(run(assets, fresh(), '', NOW).outcome.envelope, 'M-MF');
    expect(result.lists.map((l) => l.name).sort()).toEqual(['F-A', 'F-B', 'F-C']);
    expect(props(list(result, 'F-A'))).toEqual({ valid: 'false', featureName: 'Feature A' });
    expect(props(list(result, 'F-B'))).toEqual({ valid: 'true', featureName: 'Feature B' });
    expect(props(list(result, 'F-C'))).toEqual({ valid: 'false', featureName: 'Feature C' });
  });

  test('no item-level valid, always GREEN', () => {
    expect(props(item(run(assets, fresh(), '', NOW).outcome.envelope, 'M-MF'))).toEqual({
      productModuleNumber: 'M-MF',
      productModuleName: 'Module M-MF',
      licensingModel: 'MultiFeature',
      warningLevel: 'GREEN',
    });
  });
});
