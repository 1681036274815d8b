/**
 * Test helpers for the validation core: builders for LicenseeAssets,
 * requests, a fixture reader that parses the official sample responses, and
 * comparisons of our items with theirs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHARED_FIXTURES } from '../helpers.ts';
import { SaxesParser } from 'saxes';
import type { Entity } from '../../src/core/entities.ts';
import type { Envelope, InfoType, Property, WireItem, WireList } from '../../src/core/envelope.ts';
import { parseValidateParameters } from '../../src/core/params.ts';
import { applyEvents, emptyRuntimeState, type RuntimeState } from '../../src/core/runtime.ts';
import { parseIso } from '../../src/core/time.ts';
import { validate } from '../../src/core/validate.ts';
import type { LicenseeAssets, ValidateOutcome, ValidateRequest } from '../../src/core/validate-types.ts';

export const FIXTURES = join(SHARED_FIXTURES, 'xml', 'wiki');
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export function ms(iso: string): number {
  const value = parseIso(iso);
  if (value === undefined) throw new Error(`bad timestamp in test: ${iso}`);
  return value;
}

function entity(kind: Entity['kind'], number: string, props: Record<string, string>): Entity {
  return { kind, number, props: { number, active: 'true', ...props } };
}

export interface TemplateSpec {
  number: string;
  licenseType: 'FEATURE' | 'TIMEVOLUME' | 'FLOATING' | 'QUANTITY';
  props?: Record<string, string>;
}

export interface ModuleSpec {
  number: string;
  licensingModel: string;
  name?: string;
  props?: Record<string, string>;
  templates: TemplateSpec[];
}

export interface LicenseSpec {
  number: string;
  template: string;
  props?: Record<string, string>;
}

export interface AssetsSpec {
  product?: Record<string, string>;
  licensee?: Record<string, string>;
  licenseeNumber?: string;
  modules: ModuleSpec[];
  licenses?: LicenseSpec[];
}

export function buildAssets(spec: AssetsSpec): LicenseeAssets {
  const productNumber = 'P-TEST';
  const licenseeNumber = spec.licenseeNumber ?? 'I-TEST';
  const modules: Entity[] = [];
  const templates: Entity[] = [];
  for (const module of spec.modules) {
    modules.push(
      entity('ProductModule', module.number, {
        name: module.name ?? `Module ${module.number}`,
        licensingModel: module.licensingModel,
        productNumber,
        ...module.props,
      }),
    );
    for (const template of module.templates) {
      templates.push(
        entity('LicenseTemplate', template.number, {
          name: `Template ${template.number}`,
          licenseType: template.licenseType,
          productModuleNumber: module.number,
          price: '0.00',
          currency: 'EUR',
          automatic: 'false',
          hidden: 'false',
          hideLicenses: 'false',
          ...template.props,
        }),
      );
    }
  }
  const licenses = (spec.licenses ?? []).map((license) =>
    entity('License', license.number, {
      licenseeNumber,
      licenseTemplateNumber: license.template,
      ...license.props,
    }),
  );
  return {
    product: entity('Product', productNumber, { name: 'Test product', licenseeAutoCreate: 'false', ...spec.product }),
    licensee: entity('Licensee', licenseeNumber, { productNumber, ...spec.licensee }),
    modules,
    templates,
    licenses,
  };
}

/** A request from a form body, e.g. `productModuleNumber0=M&usedQuantity0=3`. */
export function request(body = '', deprecatedGet = false): ValidateRequest {
  return parseValidateParameters([...new URLSearchParams(body)], deprecatedGet);
}

/** Runs validate and applies its events, as the server does. */
export function run(
  assets: LicenseeAssets,
  state: RuntimeState,
  body: string,
  nowMs: number,
  ttlMs = DAY_MS,
): { outcome: ValidateOutcome; state: RuntimeState } {
  const outcome = validate(assets, state, request(body), { nowMs, ttlMs });
  return { outcome, state: applyEvents(state, outcome.events) };
}

export function fresh(): RuntimeState {
  return emptyRuntimeState();
}

/** The one ProductModuleValidation item for `moduleNumber`. */
export function item(envelope: Envelope, moduleNumber: string): WireItem {
  const found = envelope.items.filter(
    (candidate) =>
      candidate.type === 'ProductModuleValidation' &&
      candidate.properties.some(([name, value]) => name === 'productModuleNumber' && value === moduleNumber),
  );
  if (found.length !== 1) throw new Error(`expected one item for ${moduleNumber}, found ${found.length}`);
  return found[0]!;
}

export function props(holder: { properties: readonly Property[] }): Record<string, string> {
  return Object.fromEntries(holder.properties);
}

export function list(holder: WireItem, name: string): WireList {
  const found = holder.lists.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no list ${name}`);
  return found;
}

// ---- official sample responses ----

export interface SampleEnvelope {
  ttl?: string;
  infos: { id: string; type: InfoType; value: string }[];
  items: WireItem[];
}

/** Parses a sample response (any prefix layout) into the Envelope shape; text is trimmed. */
export function readSample(file: string): SampleEnvelope {
  // subscription-validate-1.xml was copied from the wiki with U+00A0 inside its root tag, which no XML parser accepts.
  const xml = readFileSync(`${FIXTURES}/${file}`, 'utf8').replace(/\u00a0/g, ' ');
  const parser = new SaxesParser({ xmlns: true });
  const result: SampleEnvelope = { infos: [], items: [] };
  let currentItem: WireItem | undefined;
  const listStack: WireList[] = [];
  let text = '';
  let pending: { kind: 'property' | 'info'; name: string; type?: string } | undefined;
  parser.on('opentag', (tag) => {
    const attr = (name: string): string => {
      const value = tag.attributes[name];
      return typeof value === 'string' ? value : (value?.value ?? '');
    };
    text = '';
    switch (tag.local) {
      case 'netlicensing':
        if (attr('ttl') !== '') result.ttl = attr('ttl');
        break;
      case 'item':
        currentItem = { type: attr('type'), properties: [], lists: [] };
        break;
      case 'list':
        listStack.push({ name: attr('name'), properties: [], lists: [] });
        break;
      case 'property':
        pending = { kind: 'property', name: attr('name') };
        break;
      case 'info':
        pending = { kind: 'info', name: attr('id'), type: attr('type') };
        break;
    }
  });
  parser.on('text', (chunk) => {
    text += chunk;
  });
  parser.on('closetag', (tag) => {
    switch (tag.local) {
      case 'property': {
        const target = listStack.at(-1) ?? currentItem;
        target?.properties.push([pending?.name ?? '', text.trim()]);
        pending = undefined;
        break;
      }
      case 'info':
        result.infos.push({ id: pending?.name ?? '', type: (pending?.type ?? '').toUpperCase() as InfoType, value: text.trim() });
        pending = undefined;
        break;
      case 'list': {
        const done = listStack.pop();
        if (done) (listStack.at(-1) ?? currentItem)?.lists.push(done);
        break;
      }
      case 'item':
        if (currentItem) result.items.push(currentItem);
        currentItem = undefined;
        break;
    }
  });
  parser.write(xml).close();
  return result;
}

const TIMESTAMP_NAMES = new Set(['expires', 'evaluationExpires', 'expirationTimestamp']);

/** Same value, timestamps compared as instants (samples use zone offsets, we write UTC). */
function sameValue(name: string, actual: string | undefined, expected: string): boolean {
  if (actual === undefined) return false;
  if (TIMESTAMP_NAMES.has(name)) return parseIso(actual) === parseIso(expected);
  return actual === expected;
}

/**
 * Differences between our item and the sample's: every sample property must
 * be present with the same value; we may only add the names in `additions`
 * (e.g. `warningLevel`, which samples before 2021 lack). Lists likewise.
 */
export function itemDifferences(
  actual: { properties: readonly Property[]; lists: readonly WireList[] },
  expected: { properties: readonly Property[]; lists: readonly WireList[] },
  additions: readonly string[],
  path = 'item',
): string[] {
  const problems: string[] = [];
  const actualProps = new Map(actual.properties);
  const expectedNames = new Set(expected.properties.map(([name]) => name));
  for (const [name, value] of expected.properties) {
    if (!sameValue(name, actualProps.get(name), value)) {
      problems.push(`${path}.${name}: expected ${value}, got ${actualProps.get(name)}`);
    }
  }
  for (const [name, value] of actual.properties) {
    if (!expectedNames.has(name) && !additions.includes(name)) problems.push(`${path}.${name}: unexpected ${value}`);
  }
  const actualLists = new Map(actual.lists.map((l) => [l.name, l]));
  if (actual.lists.length !== expected.lists.length) {
    problems.push(`${path}: ${actual.lists.length} lists, expected ${expected.lists.length}`);
  }
  for (const expectedList of expected.lists) {
    const actualList = actualLists.get(expectedList.name);
    if (!actualList) problems.push(`${path}: missing list ${expectedList.name}`);
    else problems.push(...itemDifferences(actualList, expectedList, additions, `${path}/${expectedList.name}`));
  }
  return problems;
}
