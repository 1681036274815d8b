/**
 * Goal: Rental rules (API spec §6.3) — one list per FEATURE license, chained
 * TIMEVOLUME children, yellow/red thresholds in days, worst level on the item.
 * Method: validate built assets at chosen distances before expiry.
 */
import { describe, expect, test } from 'bun:test';
import { DAY_MS, buildAssets, fresh, item, list, ms, props, run, type LicenseSpec } from './helpers.ts';

const START = '2024-01-01T00:00:00Z';
const EXPIRY = ms(START) + 30 * DAY_MS;

function rental(licenses: LicenseSpec[], moduleProps: Record<string, string> = { yellowThreshold: '7', redThreshold: '2' }) {
  return buildAssets({
    modules: [
      {
        number: 'M-R',
        licensingModel: 'Rental',
        props: moduleProps,
        templates: [
          { number: 'T-DEV', licenseType: 'FEATURE' },
          { number: 'T-30', licenseType: 'TIMEVOLUME', props: { timeVolume: '30' } },
        ],
      },
    ],
    licenses,
  });
}

const device = (number: string, extra: LicenseSpec[] = []): LicenseSpec[] => [
  { number, template: 'T-DEV' },
  { number: `${number}-TV`, template: 'T-30', props: { timeVolume: '30', parentfeature: number, startDate: START } },
  ...extra,
];

describe('Rental', () => {
  test('expiration warning level follows the thresholds (days left)', () => {
    const assets = rental(device('DEV-1'));
    const at = (now: number) => props(list(item(run(assets, fresh(), '', now).outcome.envelope, 'M-R'), 'DEV-1'));
    expect(at(EXPIRY - 7 * DAY_MS - 1)).toEqual({ valid: 'true', expires: '2024-01-31T00:00:00.000Z', warningLevel: 'GREEN', expirationWarningLevel: 'green' });
    expect(at(EXPIRY - 7 * DAY_MS)).toMatchObject({ valid: 'true', warningLevel: 'YELLOW', expirationWarningLevel: 'yellow' });
    expect(at(EXPIRY - 2 * DAY_MS - 1)).toMatchObject({ valid: 'true', warningLevel: 'YELLOW', expirationWarningLevel: 'yellow' });
    expect(at(EXPIRY - 2 * DAY_MS)).toMatchObject({ valid: 'true', warningLevel: 'RED', expirationWarningLevel: 'red' });
    expect(at(EXPIRY)).toEqual({ valid: 'false', warningLevel: 'RED', expirationWarningLevel: 'red' });
  });

  test('thresholds default to 0 days: green until it expires', () => {
    const assets = rental(device('DEV-1'), {});
    const at = (now: number) => props(list(item(run(assets, fresh(), '', now).outcome.envelope, 'M-R'), 'DEV-1'));
    expect(at(EXPIRY - 1)['expirationWarningLevel']).toBe('green');
    expect(at(EXPIRY)['expirationWarningLevel']).toBe('red');
  });

  test('item level: no valid, the worst list level as warningLevel', () => {
    const assets = rental([...device('DEV-1'), { number: 'DEV-2', template: 'T-DEV' }]);
    const result = item(run(assets, fresh(), '', ms('2024-01-05T00:00:00Z')).outcome.envelope, 'M-R');
    expect(props(result)['valid']).toBeUndefined();
    expect(props(result)['warningLevel']).toBe('RED');
    expect(props(list(result, 'DEV-1'))['valid']).toBe('true');
    expect(props(list(result, 'DEV-2'))).toEqual({ valid: 'false', warningLevel: 'RED', expirationWarningLevel: 'red' });
  });

  test('children chain per feature; both parentFeature spellings; other features are not affected', () => {
    const assets = rental([
      ...device('DEV-1', [{ number: 'DEV-1-MORE', template: 'T-30', props: { timeVolume: '30', parentFeature: 'DEV-1', startDate: '2024-01-15T00:00:00Z' } }]),
      ...device('DEV-2'),
    ]);
    const result = item(run(assets, fresh(), '', ms('2024-01-05T00:00:00Z')).outcome.envelope, 'M-R');
    expect(props(list(result, 'DEV-1'))['expires']).toBe('2024-03-01T00:00:00.000Z');
    expect(props(list(result, 'DEV-2'))['expires']).toBe('2024-01-31T00:00:00.000Z');
    expect(props(result)['warningLevel']).toBe('GREEN');
  });

  test('inactive FEATURE licenses get no list; no instance at all is RED without lists', () => {
    const assets = rental([{ number: 'DEV-1', template: 'T-DEV', props: { active: 'false' } }]);
    const result = item(run(assets, fresh(), '', ms('2024-01-05T00:00:00Z')).outcome.envelope, 'M-R');
    expect(result.lists).toEqual([]);
    expect(props(result)['warningLevel']).toBe('RED');
  });

  test('a TIMEVOLUME child without startDate starts at first use', () => {
    const assets = rental([
      { number: 'DEV-1', template: 'T-DEV' },
      { number: 'DEV-1-TV', template: 'T-30', props: { timeVolume: '30', parentfeature: 'DEV-1' } },
    ]);
    const { outcome } = run(assets, fresh(), '', ms('2024-02-01T00:00:00Z'));
    expect(outcome.events).toEqual([{ type: 'startDateSet', licenseNumber: 'DEV-1-TV', startDate: '2024-02-01T00:00:00.000Z' }]);
    expect(props(list(item(outcome.envelope, 'M-R'), 'DEV-1'))['expires']).toBe('2024-03-02T00:00:00.000Z');
  });
});
