/**
 * Goal: a license read shows the node secrets the agent registered where the cloud keeps them
 * (API spec §3.6: `nodeSecret0..nodeSecret{quota-1}` of the module's licenses), so that an export
 * made from this agent carries them: free slots first, license by license; a secret a license
 * already holds is not repeated; inactive licenses and other modules' licenses get none; what finds
 * no slot (a lowered quota) follows the last license's highest index instead of being lost.
 * Method: effectiveLicenses over built entities and a runtime state.
 */
import { describe, expect, test } from 'bun:test';
import type { Entity } from '../../src/core/entities.ts';
import { effectiveLicenses } from '../../src/core/present.ts';
import { emptyRuntimeState, type RuntimeState } from '../../src/core/runtime.ts';

const template = (number: string, module: string, props: Record<string, string> = {}): Entity => ({
  kind: 'LicenseTemplate',
  number,
  props: { number, active: 'true', productModuleNumber: module, licenseType: 'QUANTITY', ...props },
});
const license = (number: string, templateNumber: string, props: Record<string, string> = {}): Entity => ({
  kind: 'License',
  number,
  props: { number, active: 'true', licenseeNumber: 'L', licenseTemplateNumber: templateNumber, ...props },
});
const TEMPLATES = new Map([
  ['T-NODE', template('T-NODE', 'M-NODE', { quota: '2' })],
  ['T-OTHER', template('T-OTHER', 'M-OTHER', { quota: '5' })],
]);
const registered = (secrets: string[], module = 'M-NODE'): RuntimeState => ({ ...emptyRuntimeState(), nodeSecrets: { [module]: secrets } });
const secretsOf = (licenses: Entity[]) =>
  Object.fromEntries(licenses.map((l) => [l.number, Object.fromEntries(Object.entries(l.props).filter(([name]) => name.startsWith('nodeSecret')))]));

describe('registered node secrets on license reads', () => {
  test('free slots first, license by license; held secrets are not repeated; quota from the template', () => {
    const imported = [license('A', 'T-NODE', { nodeSecret1: 'cloud-1' }), license('B', 'T-NODE', { quota: '3' }), license('X', 'T-OTHER')];
    const out = effectiveLicenses('L', imported, registered(['cloud-1', 'n1', 'n2', 'n3']), (n) => TEMPLATES.get(n));
    expect(secretsOf(out)).toEqual({ A: { nodeSecret0: 'n1', nodeSecret1: 'cloud-1' }, B: { nodeSecret0: 'n2', nodeSecret1: 'n3' }, X: {} });
    // The imported entities themselves are not changed.
    expect(imported[0]!.props).toEqual({ number: 'A', active: 'true', licenseeNumber: 'L', licenseTemplateNumber: 'T-NODE', nodeSecret1: 'cloud-1' });
  });

  test('inactive licenses get none; past every slot (a lowered quota) after the last license’s highest index', () => {
    const imported = [license('A', 'T-NODE', { quota: '1', nodeSecret0: 'c' }), license('OFF', 'T-NODE', { active: 'false' }), license('B', 'T-NODE', { quota: '1', nodeSecret3: 'd' })];
    const out = effectiveLicenses('L', imported, registered(['n1', 'n2']), (n) => TEMPLATES.get(n));
    expect(secretsOf(out)).toEqual({ A: { nodeSecret0: 'c' }, OFF: {}, B: { nodeSecret0: 'n1', nodeSecret3: 'd', nodeSecret4: 'n2' } });
  });

  test('nothing registered, or no license of the module: the licenses as they are', () => {
    const imported = [license('A', 'T-NODE')];
    expect(effectiveLicenses('L', imported, emptyRuntimeState(), (n) => TEMPLATES.get(n))[0]).toBe(imported[0]!);
    expect(effectiveLicenses('L', imported, registered(['n1'], 'M-GONE'), (n) => TEMPLATES.get(n))[0]).toBe(imported[0]!);
  });
});
