/**
 * Goal: the validate parameter parser (tuned for the hot path) follows the
 * rules of its file comment for any input, duplicates and odd keys included.
 * Method: differential. fast-check draws pair lists from a vocabulary of
 * tricky keys (indexed and un-indexed module parameters, suffixes that are
 * themselves digits, reserved names, `__proto__`, repeats) and compares the
 * parser with a model written the plain way: regular expressions, one rule
 * per step, maps and spreads (the parser's previous implementation).
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import { MODULE_PARAMETERS, parseValidateParameters } from '../../src/core/params.ts';
import type { ModuleParameters, ValidateRequest } from '../../src/core/validate-types.ts';

const RESERVED = new Set(['productNumber', 'licenseeName', 'licenseeSecret', 'vendorNumber', 'dryRun', 'forOfflineUse']);

function model(pairs: Array<[string, string]>, deprecatedGet: boolean): ValidateRequest {
  const first = new Map<string, string>();
  for (const [key, value] of pairs) if (!first.has(key)) first.set(key, value);
  const moduleByIndex = new Map<string, string>();
  for (const [key, value] of first) {
    const match = /^productModuleNumber(\d*)$/.exec(key);
    if (match && value !== '') moduleByIndex.set(match[1]!, value);
  }
  const paramsByIndex = new Map<string, ModuleParameters>([...moduleByIndex.keys()].map((index) => [index, {}]));
  let dryRun = false;
  let forOfflineUse = false;
  const licenseeProperties: Record<string, string> = {};
  for (const [key, value] of first) {
    if (key === 'dryRun') dryRun = value.trim().toLowerCase() === 'true';
    if (key === 'forOfflineUse') forOfflineUse = value.trim().toLowerCase() === 'true';
    if (RESERVED.has(key) || /^productModuleNumber\d*$/.test(key)) continue;
    if (MODULE_PARAMETERS.has(key)) {
      const implicit = paramsByIndex.get('');
      if (implicit) implicit[key] = value;
      continue;
    }
    // The longest digit suffix that names a module owns the key.
    const digits = /\d+$/.exec(key)?.[0] ?? '';
    let owned = false;
    for (let length = digits.length; length > 0 && !owned; length--) {
      if (length === key.length) continue;
      const params = paramsByIndex.get(key.slice(key.length - length));
      if (params) {
        params[key.slice(0, key.length - length)] = value;
        owned = true;
      }
    }
    if (owned) continue;
    const stem = key.slice(0, key.length - digits.length);
    if (stem !== key && MODULE_PARAMETERS.has(stem)) continue;
    if (value !== '') licenseeProperties[key] = value;
  }
  const modules = new Map<string, ModuleParameters>();
  for (const [index, moduleNumber] of moduleByIndex) {
    modules.set(moduleNumber, { ...paramsByIndex.get(index), ...(modules.get(moduleNumber) ?? {}) });
  }
  return { dryRun, forOfflineUse, modules, licenseeProperties, deprecatedGet };
}

const KEYS = [
  'productModuleNumber', 'productModuleNumber0', 'productModuleNumber1', 'productModuleNumber10', 'productModuleNumber01',
  'productModuleNumberX', 'sessionId', 'sessionId0', 'sessionId1', 'sessionId10', 'sessionId01', 'action0', 'action1',
  'usedQuantity', 'usedQuantity0', 'param10', 'param1', 'x1', '1', '0', 'dryRun', 'forOfflineUse', 'productNumber',
  'licenseeName', 'email', '__proto__', '__proto__0', 'toString', 'toString0', 'constructor1', 'nodeSecret2',
];
const VALUES = ['', 'A', 'B', 'true', ' TRUE ', 'false', '3', 'x y'];
const pairs = fc.array(fc.tuple(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES)), { maxLength: 24 });

/** Comparable form: module order and every module's parameters as own entries (key order aside). */
const shape = (r: ValidateRequest) => ({
  ...r,
  modules: [...r.modules].map(([number, params]) => [number, Object.fromEntries(Object.entries(params).sort())]),
  licenseeProperties: Object.fromEntries(Object.entries(r.licenseeProperties).sort()),
});

test('the parser agrees with the plain model of the rules on any pair list', () => {
  fc.assert(
    fc.property(pairs, fc.boolean(), (list, get) => {
      expect(shape(parseValidateParameters(list.map(([k, v]) => [k, v]), get))).toEqual(shape(model(list.map(([k, v]) => [k, v]), get)));
    }),
    { numRuns: 5000 },
  );
});

test('more than 16 pairs (the Set path for repeated keys) agree too', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES)), { minLength: 17, maxLength: 60 }), (list) => {
      expect(shape(parseValidateParameters(list.map(([k, v]) => [k, v]), false))).toEqual(shape(model(list.map(([k, v]) => [k, v]), false)));
    }),
    { numRuns: 1000 },
  );
});
