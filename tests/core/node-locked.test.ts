/**
 * Goal: Node-Locked rules (API spec §6.8) by example — PREDEFINED matching,
 * CLIENT binding up to the quota, inactive licenses, warning levels, dryRun.
 * Method: validate built assets; state through applyEvents.
 */
import { describe, expect, test } from 'bun:test';
import { validate } from '../../src/core/validate.ts';
import { DAY_MS, buildAssets, fresh, item, ms, props, request, run, type LicenseSpec } from './helpers.ts';

const NOW = ms('2024-03-01T10:00:00Z');

function nodeLocked(mode: string | undefined, licenses: LicenseSpec[]) {
  return buildAssets({
    modules: [
      {
        number: 'M-N',
        licensingModel: 'NodeLocked',
        props: mode ? { nodeSecretMode: mode } : {},
        templates: [{ number: 'T-N', licenseType: 'QUANTITY', props: { quota: '1' } }],
      },
    ],
    licenses,
  });
}
const body = (secret: string) => `productModuleNumber0=M-N&nodeSecret0=${secret}`;
const answer = (outcome: { envelope: Parameters<typeof item>[0] }) => props(item(outcome.envelope, 'M-N'));

describe('Node-Locked', () => {
  test('PREDEFINED: only stored secrets of active licenses are valid, nothing is registered', () => {
    const assets = nodeLocked('PREDEFINED', [
      { number: 'L1', template: 'T-N', props: { quota: '3', nodeSecret0: 'alpha' } },
      { number: 'L2', template: 'T-N', props: { quota: '3', nodeSecret0: 'beta', active: 'false' } },
    ]);
    expect(answer(run(assets, fresh(), body('alpha'), NOW).outcome)['valid']).toBe('true');
    const unknown = run(assets, fresh(), body('gamma'), NOW);
    expect(answer(unknown.outcome)['valid']).toBe('false');
    expect(unknown.outcome.events).toEqual([]);
    expect(answer(run(assets, fresh(), body('beta'), NOW).outcome)['valid']).toBe('false');
  });

  test('CLIENT: new secrets bind until stored secrets reach the total quota; known ones stay valid', () => {
    const assets = nodeLocked('CLIENT', [
      { number: 'L1', template: 'T-N', props: { quota: '2', nodeSecret0: 'vendor-set' } },
      { number: 'L2', template: 'T-N', props: { quota: '1' } },
    ]);
    let state = fresh();
    for (const secret of ['one', 'two']) {
      const step = run(assets, state, body(secret), NOW);
      expect(answer(step.outcome)['valid']).toBe('true');
      expect(step.outcome.events).toEqual([{ type: 'nodeSecretRegistered', moduleNumber: 'M-N', secret }]);
      state = step.state;
    }
    const full = run(assets, state, body('three'), NOW);
    expect(answer(full.outcome)).toMatchObject({ valid: 'false', warningLevel: 'YELLOW' });
    expect(full.outcome.events).toEqual([]);
    const known = run(assets, state, body('one'), NOW);
    expect(answer(known.outcome)['valid']).toBe('true');
    expect(known.outcome.events).toEqual([]);
  });

  test('without nodeSecretMode the module binds like CLIENT', () => {
    const assets = nodeLocked(undefined, [{ number: 'L1', template: 'T-N', props: { quota: '1' } }]);
    expect(answer(run(assets, fresh(), body('x'), NOW).outcome)['valid']).toBe('true');
  });

  test('no nodeSecret parameter: valid=false, nothing registered', () => {
    const assets = nodeLocked('CLIENT', [{ number: 'L1', template: 'T-N', props: { quota: '1' } }]);
    const { outcome } = run(assets, fresh(), '', NOW);
    expect(answer(outcome)['valid']).toBe('false');
    expect(outcome.events).toEqual([]);
  });

  test('dryRun answers valid for a bindable secret without binding it', () => {
    const assets = nodeLocked('CLIENT', [{ number: 'L1', template: 'T-N', props: { quota: '1' } }]);
    const dry = validate(assets, fresh(), request(`dryRun=true&${body('x')}`), { nowMs: NOW, ttlMs: DAY_MS });
    expect(answer(dry)['valid']).toBe('true');
    expect(dry.events).toEqual([]);
  });

  test('warning level counts stored secrets against the quota (10 or more full = RED)', () => {
    const secrets = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`nodeSecret${i}`, `s${i}`]));
    const full = nodeLocked('PREDEFINED', [{ number: 'L1', template: 'T-N', props: { quota: '10', ...secrets } }]);
    expect(answer(run(full, fresh(), body('s0'), NOW).outcome)['warningLevel']).toBe('RED');
    const some = nodeLocked('PREDEFINED', [{ number: 'L1', template: 'T-N', props: { quota: '10', nodeSecret0: 'a' } }]);
    expect(answer(run(some, fresh(), body('a'), NOW).outcome)['warningLevel']).toBe('GREEN');
    expect(answer(run(nodeLocked('CLIENT', []), fresh(), body('a'), NOW).outcome)).toMatchObject({ valid: 'false', warningLevel: 'RED' });
  });
});
