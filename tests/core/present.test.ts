/**
 * Goal: a license read shows the node secrets the agent registered where the cloud keeps them
 * (API spec §3.6: `nodeSecret0..nodeSecret{quota-1}` of the module's licenses), so that an export
 * made from this agent carries them: free slots first, license by license; a secret a license
 * already holds is not repeated; inactive licenses and other modules' licenses get none; what finds
 * no slot (a lowered quota) follows the last license's highest index instead of being lost.
 * Method: effectiveLicenses over built entities and a runtime state.
 */
import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
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

  test('an imported index past 2^32 holds its secret but places none after it (it wrote nodeSecret1e+22, or overwrote past 2^53)', () => {
    for (const index of ['9999999999999999999999', '9007199254740992']) {
      const imported = [license('A', 'T-NODE', { quota: '1', nodeSecret0: 'c', [`nodeSecret${index}`]: 'far' })];
      const out = effectiveLicenses('L', imported, registered(['far', 'n1', 'n2']), (n) => TEMPLATES.get(n));
      expect(secretsOf(out), index).toEqual({ A: { nodeSecret0: 'c', [`nodeSecret${index}`]: 'far', nodeSecret1: 'n1', nodeSecret2: 'n2' } });
    }
  });

  test('nothing registered, or no license of the module: the licenses as they are', () => {
    const imported = [license('A', 'T-NODE')];
    expect(effectiveLicenses('L', imported, emptyRuntimeState(), (n) => TEMPLATES.get(n))[0]).toBe(imported[0]!);
    expect(effectiveLicenses('L', imported, registered(['n1'], 'M-GONE'), (n) => TEMPLATES.get(n))[0]).toBe(imported[0]!);
  });
});

/**
 * The rule as first written (a search from slot 0 for every secret, O(secrets²)): the reference the
 * placement with moving cursors must agree with.
 */
function placedByTheRule(licenses: Entity[], secrets: string[]): Record<string, Record<string, string>> {
  const slots = licenses
    .filter((l) => l.props['active'] === 'true')
    .map((l) => {
      const used = new Map<number, string>();
      for (const [name, value] of Object.entries(l.props)) {
        const match = /^nodeSecret(\d+)$/.exec(name);
        if (match && value !== '') used.set(Number(match[1]), value);
      }
      const quota = Number(l.props['quota'] ?? TEMPLATES.get('T-NODE')!.props['quota']);
      return { number: l.number, used, quota };
    });
  const held = new Set(slots.flatMap((slot) => [...slot.used.values()]));
  for (const secret of secrets) {
    if (held.has(secret)) continue;
    held.add(secret);
    const free = slots.flatMap((slot) => Array.from({ length: slot.quota }, (_, at) => ({ slot, at }))).find(({ slot, at }) => !slot.used.has(at));
    if (free) free.slot.used.set(free.at, secret);
    else {
      const last = slots[slots.length - 1]!;
      last.used.set(Math.max(last.quota - 1, ...last.used.keys()) + 1, secret);
    }
  }
  const out: Record<string, Record<string, string>> = Object.fromEntries(licenses.map((l) => [l.number, {}]));
  for (const l of licenses) for (const [name, value] of Object.entries(l.props)) if (name.startsWith('nodeSecret')) out[l.number]![name] = value;
  for (const slot of slots) for (const [at, value] of slot.used) out[slot.number]![`nodeSecret${at}`] = value;
  return out;
}

describe('registered node secrets, any licenses and registrations', () => {
  test('placed exactly as the simple first-free-slot rule places them (fast-check, 300 runs)', () => {
    const licenseArb = fc.record({
      active: fc.boolean(),
      quota: fc.integer({ min: 0, max: 4 }),
      held: fc.array(fc.tuple(fc.integer({ min: 0, max: 6 }), fc.constantFrom('c1', 'c2', 'c3', 'n2', '')), { maxLength: 3 }),
    });
    fc.assert(
      fc.property(fc.array(licenseArb, { minLength: 1, maxLength: 4 }), fc.array(fc.constantFrom('n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'c1'), { maxLength: 14 }), (specs, secrets) => {
        const imported = specs.map((spec, i) => {
          const props: Record<string, string> = { quota: String(spec.quota), active: String(spec.active) };
          for (const [at, value] of spec.held) props[`nodeSecret${at}`] = value;
          return license(`N${i}`, 'T-NODE', props);
        });
        if (!imported.some((l) => l.props['active'] === 'true')) return;
        const out = effectiveLicenses('L', imported, registered(secrets), (n) => TEMPLATES.get(n));
        expect(secretsOf(out)).toEqual(placedByTheRule(imported, secrets));
      }),
      { numRuns: 300, seed: 14 },
    );
  });
});
