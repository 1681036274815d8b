/**
 * The validate call, pure: from one licensee's definitions, the agent's
 * runtime state and the parsed request, the response envelope plus the
 * runtime events that must be persisted before it is sent.
 *
 * Product-level rules live here (active modules, inactive licensee, offline
 * item, ttl, infos, item layout); each licensing model's rules live in
 * `models/`. The decisions are documented in docs/semantics.md.
 */
import { boolProp, isActive, type Entity } from './entities.ts';
import type { Envelope, Info, Property, WireItem, WireList } from './envelope.ts';
import {
  MalformedParameterError,
  STORED_ID_CHARS_MAX,
  type LicenseView,
  type ModelContext,
  type ModelResult,
} from './models/common.ts';
import { modelHandler, resolveLicensingModel } from './models/index.ts';
import { javaHashMapOrder } from './models/property-order.ts';
import { ownEntry, type RuntimeEvent, type RuntimeState } from './runtime.ts';
import { LAST_FOUR_DIGIT_YEAR_MS, parseIso, toIso } from './time.ts';
import type { LicenseeAssets, ValidateOptions, ValidateOutcome, ValidateRequest } from './validate-types.ts';

/** The cloud's info for a Licensee Secret that does not match (API spec §1.6, §4.4). */
export const LICENSEE_SECRET_MISMATCH: Info = { id: 'licenseeSecretMismatch', type: 'ERROR', value: 'Licensee secret mismatch' };

export const METHOD_IS_DEPRECATED: Info = {
  id: 'methodIsDeprecated',
  type: 'WARNING',
  value: "'GET' method for licensee validate is deprecated, use 'POST' instead",
};

/** Licensee properties that are not custom ones, left out of the offline Licensee item. */
const LICENSEE_STANDARD_PROPERTIES = new Set([
  'id',
  'number',
  'licenseeNumber',
  'active',
  'name',
  'productNumber',
  'inUse',
  'vendorNumber',
  'licenseeSecret',
  'markedForTransfer',
  'aliases',
  'warningLevel',
  'warningLevelSummary',
]);

export function validate(
  assets: LicenseeAssets,
  runtime: RuntimeState,
  request: ValidateRequest,
  options: ValidateOptions,
): ValidateOutcome {
  const { nowMs } = options;
  const infos: Info[] = request.deprecatedGet ? [METHOD_IS_DEPRECATED] : [];
  const activeModules = assets.modules.filter(isActive);
  if (activeModules.length === 0) {
    infos.push({
      id: 'NotFoundException',
      type: 'ERROR',
      value: `Product '${assets.product.number}' has no active product modules`,
    });
    return { envelope: { infos, items: [] }, events: [], stableUntilMs: Number.POSITIVE_INFINITY };
  }

  const licensee = assets.licensee;
  const licenseeActive = isActive(licensee);
  // An inactive licensee is read-only: nothing is created, booked or checked out for it.
  const write = !request.dryRun && licenseeActive;
  const mayCreateLicenses = licenseeActive && isActive(assets.product) && !boolProp(licensee, 'markedForTransfer');

  const items: WireItem[] = [];
  if (request.forOfflineUse) items.push(offlineLicenseeItem(licensee));
  const events: RuntimeEvent[] = [];
  let stableUntilMs = Number.POSITIVE_INFINITY;
  const changesAt = (ms: number): void => {
    if (ms < stableUntilMs) stableUntilMs = ms;
  };
  const reuse = options.reuseModuleResults !== false;
  let secretBinding: string | undefined;
  for (const module of activeModules) {
    const params = request.modules.get(module.number);
    const secret = licenseeSecretCheck(assets, module, runtime, request);
    if (secret === 'bind') {
      // Bound, it lives in the runtime state, the journal and the status page, as a session id does.
      if (request.licenseeSecret!.length > STORED_ID_CHARS_MAX) {
        infos.push({ id: 'MalformedRequestException', type: 'ERROR', value: `Parameter 'licenseeSecret' is longer than ${STORED_ID_CHARS_MAX} characters` });
        return { envelope: { infos, items: [] }, events: [], stableUntilMs: Number.POSITIVE_INFINITY };
      }
      secretBinding = request.licenseeSecret;
    }
    const secretMatches = secret !== 'mismatch';
    // Only a module the request gives no parameters can be answered from an earlier decision
    // (and not under a Licensee Secret mismatch, which changes the answer: below).
    const reusable = reuse && secretMatches && (params === undefined || isEmpty(params));
    const known = reusable ? reusableModuleResult(assets, module, runtime, nowMs, licenseeActive, mayCreateLicenses) : undefined;
    if (known) {
      changesAt(known.untilMs);
      mergeInfos(infos, known.infos);
      items.push(known.item);
      continue;
    }
    const stored = module.props['licensingModel'] ?? '';
    const model = resolveLicensingModel(stored);
    let result: ModelResult;
    let moduleUntilMs = Number.POSITIVE_INFINITY;
    const moduleChangesAt = (ms: number): void => {
      if (ms < moduleUntilMs) moduleUntilMs = ms;
      changesAt(ms);
    };
    let ctx: ModelContext | undefined;
    if (model === undefined) {
      result = { properties: [['valid', 'false']], lists: [], warningLevel: 'RED', events: [], infos: [] };
    } else {
      // Under a Licensee Secret mismatch the module is decided without the request's parameters
      // for it: the answer shows the state as it is, not a booking or check-out that is not made.
      const decidedOn = secretMatches ? request : withoutModuleParameters(request);
      ctx = moduleContext(assets, runtime, module, decidedOn, nowMs, moduleChangesAt, licenseeActive, mayCreateLicenses);
      try {
        result = modelHandler(model)(ctx);
      } catch (error) {
        if (!(error instanceof MalformedParameterError)) throw error;
        infos.push({ id: 'MalformedRequestException', type: 'ERROR', value: error.message });
        return { envelope: { infos, items: [] }, events: [], stableUntilMs: Number.POSITIVE_INFINITY };
      }
    }
    // An inactive licensee, or a Licensee Secret that does not match: nothing is valid, and
    // nothing is created, booked or checked out (the model's answer is kept otherwise).
    if (!licenseeActive || !secretMatches) {
      result = {
        ...result,
        properties: [['valid', 'false'], ...result.properties.filter(([name]) => name !== 'valid')],
        warningLevel: 'RED',
      };
    }
    if (write && secretMatches) events.push(...result.events);
    if (!secretMatches) mergeInfos(infos, [LICENSEE_SECRET_MISMATCH]);
    mergeInfos(infos, result.infos);
    const item = moduleItem(module, model ?? stored, result);
    items.push(item);
    // A decision with events is never reused: its events carry this moment (e.g. a trial start).
    if (reusable && result.events.length === 0 && moduleUntilMs > nowMs) {
      rememberModuleResult(assets, module, ctx, {
        runtime,
        licenseeActive,
        mayCreateLicenses,
        fromMs: nowMs,
        untilMs: moduleUntilMs,
        item,
        infos: result.infos,
      });
    }
  }

  // The binding comes first: it is what the rest of the request was decided under.
  if (write && secretBinding !== undefined) events.unshift({ type: 'licenseeSecretBound', secret: secretBinding });
  const envelope: Envelope = { infos, items, ttl: toIso(Math.min(nowMs + options.ttlMs, ttlCapMs(items))) };
  return { envelope, events, stableUntilMs };
}

/**
 * The deprecated Licensee Secret (API spec §4.4; choices in docs/semantics.md): the product's
 * `licenseeSecretMode`, or else the module's (its legacy place).
 * - DISABLED (or none, or an unknown value): the request's secret is ignored.
 * - PREDEFINED: it must equal the licensee's `licenseeSecret` property (none there: none given).
 * - CLIENT: the licensee's secret is its imported `licenseeSecret`, or else the one the agent
 *   bound; while it has none, a request that gives one binds it ('bind'), one that gives none
 *   passes; once it has one, the request must give the same.
 */
function licenseeSecretCheck(assets: LicenseeAssets, module: Entity, runtime: RuntimeState, request: ValidateRequest): 'match' | 'mismatch' | 'bind' {
  const mode = (assets.product.props['licenseeSecretMode'] || module.props['licenseeSecretMode'] || '').trim().toUpperCase();
  if (mode !== 'PREDEFINED' && mode !== 'CLIENT') return 'match';
  const given = request.licenseeSecret ?? '';
  const imported = assets.licensee.props['licenseeSecret'] ?? '';
  if (mode === 'PREDEFINED') return given === imported ? 'match' : 'mismatch';
  const held = imported !== '' ? imported : (runtime.licenseeSecret ?? '');
  if (held === '') return given === '' ? 'match' : 'bind';
  return given === held ? 'match' : 'mismatch';
}

function withoutModuleParameters(request: ValidateRequest): ValidateRequest {
  return { ...request, modules: new Map() };
}

function mergeInfos(infos: Info[], more: readonly Info[]): void {
  for (const info of more) {
    if (!infos.some((known) => known.id === info.id && known.value === info.value)) infos.push(info);
  }
}

function isEmpty(params: Record<string, string>): boolean {
  for (const _ in params) return false;
  return true;
}

/**
 * Module results reused between requests. Validating a licensee decides every module of its
 * product, and a request usually changes one (a check-out) or none: the others' decisions are
 * taken again from the last request, which on a three-module product was most of the core's
 * time. A decision is reused only while everything it was made from is the same:
 * - the definitions: entries hang off the LicenseeAssets object, which an import replaces;
 * - no parameters for the module, in both requests;
 * - the licensee's runtime state object (the runtime writer keeps one per licensee and
 *   replaces it on a reload) and the values the module's decision read from it
 *   (`runtimeReads`: everything ModelContext and the models read; a module with open
 *   floating sessions is never reused, since every validation may expire one);
 * - the licensee and product flags; and time: from the decision until the first instant it
 *   reported through changesAt (the same contract the server's answer reuse relies on).
 * Pure memoisation, weakly held by the definitions; an entry holds the runtime state object it
 * was decided on, so at most one per module of each licensee in the definitions cache.
 */
interface ReusableModuleResult {
  runtime: RuntimeState;
  /** Where the decision read the runtime state: this module's templates and licenses. */
  templateNumbers: readonly string[];
  licenseNumbers: readonly string[];
  /** What it read there, in the order of `runtimeReads`. */
  reads: readonly unknown[];
  licenseeActive: boolean;
  mayCreateLicenses: boolean;
  fromMs: number;
  untilMs: number;
  /** What the decision adds to the answer: its item and its infos. */
  item: WireItem;
  infos: readonly Info[];
}

const MODULE_RESULTS = new WeakMap<LicenseeAssets, Map<string, ReusableModuleResult>>();

/**
 * The runtime values a module's decision reads — ModelContext: agent-created licenses of its
 * templates, start dates the agent set on its licenses; the models: used quantities of its
 * licenses (Pay-per-Use), its node secrets (Node-Locked, append-only, so their count), its
 * floating sessions (not reusable when there are any, see above). Licenses come after
 * templates: which licenses there are depends on the created ones.
 */
function runtimeReads(runtime: RuntimeState, moduleNumber: string, templateNumbers: readonly string[], licenseNumbers: readonly string[]): unknown[] {
  const reads: unknown[] = [ownEntry(runtime.nodeSecrets, moduleNumber)?.length ?? 0];
  for (const number of templateNumbers) reads.push(ownEntry(runtime.createdLicenses, number));
  for (const number of licenseNumbers) reads.push(ownEntry(runtime.startDates, number), ownEntry(runtime.usedQuantity, number));
  return reads;
}

function reusableModuleResult(
  assets: LicenseeAssets,
  module: Entity,
  runtime: RuntimeState,
  nowMs: number,
  licenseeActive: boolean,
  mayCreateLicenses: boolean,
): ReusableModuleResult | undefined {
  const known = MODULE_RESULTS.get(assets)?.get(module.number);
  if (
    known === undefined ||
    known.runtime !== runtime ||
    known.licenseeActive !== licenseeActive ||
    known.mayCreateLicenses !== mayCreateLicenses ||
    nowMs < known.fromMs ||
    nowMs >= known.untilMs ||
    ownEntry(runtime.sessions, module.number) !== undefined
  ) {
    return undefined;
  }
  const reads = runtimeReads(runtime, module.number, known.templateNumbers, known.licenseNumbers);
  for (let i = 0; i < reads.length; i++) if (reads[i] !== known.reads[i]) return undefined;
  return known;
}

function rememberModuleResult(
  assets: LicenseeAssets,
  module: Entity,
  ctx: ModelContext | undefined,
  entry: Omit<ReusableModuleResult, 'templateNumbers' | 'licenseNumbers' | 'reads'>,
): void {
  if (ownEntry(entry.runtime.sessions, module.number) !== undefined) return;
  const templateNumbers = ctx ? ctx.templates.map((template) => template.number) : [];
  const licenseNumbers = ctx ? ctx.licenses.map((view) => view.number) : [];
  const reads = runtimeReads(entry.runtime, module.number, templateNumbers, licenseNumbers);
  let perModule = MODULE_RESULTS.get(assets);
  if (perModule === undefined) MODULE_RESULTS.set(assets, (perModule = new Map()));
  perModule.set(module.number, { ...entry, templateNumbers, licenseNumbers, reads });
}

/**
 * The latest ttl an answer with these items may carry: ttl = now + ttlMs, but
 * never later than a floating seat in the answer expires, nor than the last
 * instant an answer can name (a clock within ttlMs of year 10000).
 */
export function ttlCapMs(items: readonly WireItem[]): number {
  let ttl = LAST_FOUR_DIGIT_YEAR_MS;
  const visit = (properties: readonly Property[], lists: readonly WireList[]): void => {
    for (const [name, value] of properties) {
      if (name !== 'expirationTimestamp') continue;
      // Always written by toIso (models/floating.ts): the canonical UTC form Date.parse reads exactly.
      const ms = Date.parse(value);
      if (ms < ttl) ttl = ms;
    }
    for (const list of lists) visit(list.properties, list.lists);
  };
  for (const item of items) visit(item.properties, item.lists);
  return ttl;
}

function moduleContext(
  assets: LicenseeAssets,
  runtime: RuntimeState,
  module: Entity,
  request: ValidateRequest,
  nowMs: number,
  changesAt: (ms: number) => void,
  licenseeActive: boolean,
  mayCreateLicenses: boolean,
): ModelContext {
  const { templates, imported, importedTemplateNumbers } = moduleDefinitions(assets, module);
  // Copied only when an agent-created license adds a template (rare): this runs per module per request.
  let templatesWithLicenses: ReadonlySet<string> = importedTemplateNumbers;

  const licenses: LicenseView[] = [];
  for (const { license, template, hasDefinedStart, definedStartMs } of imported) {
    if (hasDefinedStart) {
      licenses.push({ number: license.number, props: license.props, template, startMs: definedStartMs, startDateMissing: false, agentCreated: false });
      continue;
    }
    const runtimeStart = ownEntry(runtime.startDates, license.number);
    licenses.push({
      number: license.number,
      props: license.props,
      template,
      startMs: parseIso(runtimeStart),
      startDateMissing: runtimeStart === undefined,
      agentCreated: false,
    });
  }
  // A license the agent created stands in for its template only while the import has none of its own.
  for (const template of templates) {
    const created = ownEntry(runtime.createdLicenses, template.number);
    if (created === undefined || templatesWithLicenses.has(template.number)) continue;
    templatesWithLicenses = new Set([...templatesWithLicenses, template.number]);
    licenses.push({
      number: created.number,
      props: {
        number: created.number,
        active: 'true',
        licenseTemplateNumber: template.number,
        licenseeNumber: assets.licensee.number,
        startDate: created.startDate,
      },
      template,
      startMs: parseIso(created.startDate),
      startDateMissing: false,
      agentCreated: true,
    });
  }

  return {
    module,
    templates,
    licenses: licenseeActive ? licenses : [],
    templatesWithLicenses,
    params: request.modules.get(module.number) ?? {},
    runtime,
    nowMs,
    changesAt,
    mayCreateLicenses,
    licenseeNumber: assets.licensee.number,
  };
}

/** What moduleContext derives from the definitions alone. */
interface ModuleDefinitions {
  /** The module's templates, in definition order. */
  templates: Entity[];
  /** Its ACTIVE imported licenses, with their template and their own startDate, parsed (undefined: unparsable). */
  imported: { license: Entity; template: Entity; hasDefinedStart: boolean; definedStartMs: number | undefined }[];
  /** Templates with an imported license in any state (LMB-689). */
  importedTemplateNumbers: ReadonlySet<string>;
}

// Definitions change only with an import, which yields new LicenseeAssets objects (the
// server's definitions cache keeps one per licensee): what depends on them alone is
// derived once per assets object. Pure memoisation; weakly held, so never stale or leaking.
const MODULE_DEFINITIONS = new WeakMap<LicenseeAssets, Map<string, ModuleDefinitions>>();

function moduleDefinitions(assets: LicenseeAssets, module: Entity): ModuleDefinitions {
  let perModule = MODULE_DEFINITIONS.get(assets);
  if (perModule === undefined) MODULE_DEFINITIONS.set(assets, (perModule = new Map()));
  const known = perModule.get(module.number);
  if (known) return known;
  const templates = assets.templates.filter((t) => t.props['productModuleNumber'] === module.number);
  const templatesByNumber = new Map(templates.map((t) => [t.number, t]));
  const ofModule = assets.licenses.filter((l) => templatesByNumber.has(l.props['licenseTemplateNumber'] ?? ''));
  const imported: ModuleDefinitions['imported'] = [];
  for (const license of ofModule) {
    const template = templatesByNumber.get(license.props['licenseTemplateNumber'] ?? '');
    if (template === undefined || !isActive(license)) continue;
    const defined = license.props['startDate'];
    const hasDefinedStart = defined !== undefined && defined.trim() !== '';
    imported.push({ license, template, hasDefinedStart, definedStartMs: hasDefinedStart ? parseIso(defined) : undefined });
  }
  const derived: ModuleDefinitions = {
    templates,
    imported,
    importedTemplateNumbers: new Set(ofModule.map((l) => l.props['licenseTemplateNumber'] ?? '')),
  };
  perModule.set(module.number, derived);
  return derived;
}

/**
 * `productModuleNumber` first, then the rest in the cloud's HashMap order
 * (see models/property-order.ts); lists after properties.
 */
function moduleItem(module: Entity, licensingModel: string, result: ModelResult): WireItem {
  // Insertion order matters only inside a hash bucket; this one matches the samples
  // (warningLevel before expirationTimestamp, pricingPlanName before productModuleName).
  const properties: Property[] = [['warningLevel', result.warningLevel]];
  for (const property of result.properties) properties.push(property);
  const name = module.props['name'];
  if (name !== undefined) properties.push(['productModuleName', name]);
  properties.push(['licensingModel', licensingModel]);
  // One HashMap holds the properties and the lists: order both by the ranks of all their names.
  const names: string[] = [];
  for (const property of properties) names.push(property[0]);
  for (const list of result.lists) names.push(list.name);
  const ordered: Property[] = [['productModuleNumber', module.number]];
  const lists: WireList[] = [];
  for (const index of javaHashMapOrder(names)) {
    if (index < properties.length) ordered.push(properties[index]!);
    else lists.push(orderList(result.lists[index - properties.length]!));
  }
  return { type: 'ProductModuleValidation', properties: ordered, lists };
}

function orderList(list: WireList): WireList {
  const order = javaHashMapOrder(list.properties.map(([key]) => key));
  return { ...list, properties: order.map((index) => list.properties[index]!) };
}

/** forOfflineUse: the licensee number under both names clients look for, plus its custom properties. */
function offlineLicenseeItem(licensee: Entity): WireItem {
  const properties: Property[] = [
    ['licenseeNumber', licensee.number],
    ['number', licensee.number],
  ];
  for (const [name, value] of Object.entries(licensee.props)) {
    if (!LICENSEE_STANDARD_PROPERTIES.has(name) && value !== '') properties.push([name, value]);
  }
  return { type: 'Licensee', properties, lists: [] };
}
