/**
 * Parsing of the validate parameters (API spec §4.1) from the decoded
 * name/value pairs of the form body or query string. Pure.
 *
 * - `productModuleNumberN` names module N; every other key ending in the same
 *   decimal suffix N is a parameter of that module (stored without the
 *   suffix; models read only the ones they know, the rest is ignored).
 * - The un-indexed form (`productModuleNumber=M&sessionId=…`) is one implicit
 *   module whose parameters are the un-indexed known module parameters.
 * - `dryRun`, `forOfflineUse` are flags; `licenseeSecret` is the deprecated
 *   Licensee Secret (§4.4); `productNumber`, `licenseeName`, `vendorNumber`
 *   are reserved too; none of them is a licensee property.
 * - Known module parameters with no module to go to are dropped; every other
 *   key is a licensee custom property (used only by licensee auto-create).
 * - A key given twice counts once: the first value wins (as Java's getFirst).
 */
import type { ModuleParameters, ValidateRequest } from './validate-types.ts';

const RESERVED_TOP_LEVEL = new Set(['productNumber', 'licenseeName', 'licenseeSecret', 'vendorNumber', 'dryRun', 'forOfflineUse']);

/** Parameter names the licensing models read (API spec §4.1 table). */
export const MODULE_PARAMETERS = new Set([
  'sessionId',
  'action',
  'maxCheckoutValidity',
  'nodeSecret',
  'usedQuantity',
  'reserveQuantity',
]);

const MODULE_NUMBER_KEY = 'productModuleNumber';
/** Index of the un-indexed implicit module; cannot clash with a decimal suffix. */
const IMPLICIT = '';

function isTrue(value: string): boolean {
  return value.trim().toLowerCase() === 'true';
}

// Digit tests by char code: this runs for every parameter of every validate, and the
// regular expressions it replaced (/^\d+$/, /\d+$/) were a measurable part of a request.
function isDigitAt(text: string, at: number): boolean {
  const code = text.charCodeAt(at);
  return code >= 48 && code <= 57;
}

/** Non-empty and only ASCII digits (what /^\d+$/ accepts). */
function isDigits(text: string): boolean {
  if (text.length === 0) return false;
  for (let at = 0; at < text.length; at++) if (!isDigitAt(text, at)) return false;
  return true;
}

/** Where the run of ASCII digits that ends `text` starts (text.length when it ends in none). */
function trailingDigitsStart(text: string): number {
  let at = text.length;
  while (at > 0 && isDigitAt(text, at - 1)) at--;
  return at;
}

/** `productModuleNumber` or `productModuleNumber<digits>`. */
function isModuleNumberKey(key: string): boolean {
  return key.startsWith(MODULE_NUMBER_KEY) && (key.length === MODULE_NUMBER_KEY.length || isDigits(key.slice(MODULE_NUMBER_KEY.length)));
}

export function parseValidateParameters(pairs: Array<[string, string]>, deprecatedGet: boolean): ValidateRequest {
  // Runs on every decided validate, with a handful of fresh strings: plain arrays and a few
  // Map operations rather than copies through intermediate Maps and spreads (those were half
  // its time: 0.92 -> 0.46 µs for a check-out's pairs, microbenchmark).
  const first = firstValues(pairs);

  // Module indices in the order the client named them, with the parameters found for each.
  const indices: string[] = [];
  const moduleNumbers: string[] = [];
  const paramsByIndex = new Map<string, ModuleParameters>();
  for (const [key, value] of first) {
    if (!key.startsWith(MODULE_NUMBER_KEY) || value === '') continue;
    const suffix = key.slice(MODULE_NUMBER_KEY.length);
    const index = suffix === '' ? IMPLICIT : isDigits(suffix) ? suffix : undefined;
    // Keys are unique here, and so are the indices they name.
    if (index === undefined) continue;
    indices.push(index);
    moduleNumbers.push(value);
    paramsByIndex.set(index, {});
  }

  let dryRun = false;
  let forOfflineUse = false;
  let licenseeSecret: string | undefined;
  const licenseeProperties: Record<string, string> = {};
  let indexLengths: number[] | undefined;
  for (const [key, value] of first) {
    if (key === 'dryRun') dryRun = isTrue(value);
    else if (key === 'forOfflineUse') forOfflineUse = isTrue(value);
    else if (key === 'licenseeSecret' && value !== '') licenseeSecret = value;
    if (RESERVED_TOP_LEVEL.has(key) || isModuleNumberKey(key)) continue;
    if (MODULE_PARAMETERS.has(key)) {
      const implicit = paramsByIndex.get(IMPLICIT);
      if (implicit) implicit[key] = value;
      continue;
    }
    indexLengths ??= lengthsOf(indices);
    const owner = indexedOwner(key, paramsByIndex, indexLengths);
    if (owner) {
      owner.params[owner.stem] = value;
      continue;
    }
    const stem = key.slice(0, trailingDigitsStart(key));
    if (stem !== key && MODULE_PARAMETERS.has(stem)) continue;
    if (value !== '') licenseeProperties[key] = value;
  }

  // Two indices naming the same module merge; the earlier index's values win.
  const modules = new Map<string, ModuleParameters>();
  for (let i = 0; i < indices.length; i++) {
    const moduleNumber = moduleNumbers[i]!;
    const params = paramsByIndex.get(indices[i]!)!;
    const earlier = modules.get(moduleNumber);
    if (earlier === undefined) modules.set(moduleNumber, params);
    else for (const name of Object.keys(params)) if (!Object.hasOwn(earlier, name)) earlier[name] = params[name]!;
  }
  return licenseeSecret === undefined
    ? { dryRun, forOfflineUse, modules, licenseeProperties, deprecatedGet }
    : { dryRun, forOfflineUse, modules, licenseeProperties, deprecatedGet, licenseeSecret };
}

/** The pairs with each key's first value only (as Java's getFirst), in order of first appearance. */
function firstValues(pairs: Array<[string, string]>): Array<[string, string]> {
  // Few pairs (every real client): compare keys directly; many: a Set keeps it linear.
  if (pairs.length <= 16) {
    let unique = true;
    for (let i = 1; i < pairs.length && unique; i++) {
      for (let j = 0; j < i; j++) {
        if (pairs[i]![0] === pairs[j]![0]) {
          unique = false;
          break;
        }
      }
    }
    if (unique) return pairs;
  }
  const seen = new Set<string>();
  const first: Array<[string, string]> = [];
  for (const pair of pairs) {
    if (seen.has(pair[0])) continue;
    seen.add(pair[0]);
    first.push(pair);
  }
  return first;
}

/**
 * The module a suffixed key belongs to. With a stem that itself ends in
 * digits (`param1` for module 0 is sent as `param10`) the longest suffix that
 * names a module wins. Only suffixes as long as a named index are looked up
 * (`indexLengths`, longest first): trying every suffix of a key that ends in
 * 65,000 digits hashed 65,000 substrings of it, ~100 ms for one request.
 */
export function indexedOwner(
  key: string,
  paramsByIndex: Map<string, ModuleParameters>,
  indexLengths: readonly number[],
): { stem: string; params: ModuleParameters } | undefined {
  const digits = key.length - trailingDigitsStart(key);
  for (const length of indexLengths) {
    // A suffix of digits only, after a stem of at least one character.
    if (length > digits || length >= key.length) continue;
    const at = key.length - length;
    const params = paramsByIndex.get(key.slice(at));
    if (params) return { stem: key.slice(0, at), params };
  }
  return undefined;
}

/** The distinct lengths of the numbered module indices, longest first. */
export function lengthsOf(indices: readonly string[]): number[] {
  const lengths: number[] = [];
  for (const index of indices) if (index !== IMPLICIT && !lengths.includes(index.length)) lengths.push(index.length);
  return lengths.sort((a, b) => b - a);
}
