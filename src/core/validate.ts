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
  type LicenseView,
  type ModelContext,
  type ModelResult,
} from './models/common.ts';
import { modelHandler, resolveLicensingModel } from './models/index.ts';
import { javaHashMapRanks, sortByJavaHashMap } from './models/property-order.ts';
import type { RuntimeEvent, RuntimeState } from './runtime.ts';
import { parseIso, toIso } from './time.ts';
import type { LicenseeAssets, ValidateOptions, ValidateOutcome, ValidateRequest } from './validate-types.ts';

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
    return { envelope: { infos, items: [] }, events: [] };
  }

  const licensee = assets.licensee;
  const licenseeActive = isActive(licensee);
  // An inactive licensee is read-only: nothing is created, booked or checked out for it.
  const write = !request.dryRun && licenseeActive;
  const mayCreateLicenses = licenseeActive && isActive(assets.product) && !boolProp(licensee, 'markedForTransfer');

  const items: WireItem[] = [];
  if (request.forOfflineUse) items.push(offlineLicenseeItem(licensee));
  const events: RuntimeEvent[] = [];
  for (const module of activeModules) {
    const stored = module.props['licensingModel'] ?? '';
    const model = resolveLicensingModel(stored);
    let result: ModelResult;
    if (model === undefined) {
      result = { properties: [['valid', 'false']], lists: [], warningLevel: 'RED', events: [], infos: [] };
    } else {
      const ctx = moduleContext(assets, runtime, module, request, nowMs, licenseeActive, mayCreateLicenses);
      try {
        result = modelHandler(model)(ctx);
      } catch (error) {
        if (!(error instanceof MalformedParameterError)) throw error;
        infos.push({ id: 'MalformedRequestException', type: 'ERROR', value: error.message });
        return { envelope: { infos, items: [] }, events: [] };
      }
    }
    if (!licenseeActive) {
      result = {
        ...result,
        properties: [['valid', 'false'], ...result.properties.filter(([name]) => name !== 'valid')],
        warningLevel: 'RED',
      };
    }
    if (write) events.push(...result.events);
    for (const info of result.infos) {
      if (!infos.some((known) => known.id === info.id && known.value === info.value)) infos.push(info);
    }
    items.push(moduleItem(module, model ?? stored, result));
  }

  const envelope: Envelope = { infos, items, ttl: toIso(ttlMs(items, nowMs + options.ttlMs)) };
  return { envelope, events };
}

/** ttl = now + ttlMs, but never later than a floating seat in the answer expires. */
function ttlMs(items: readonly WireItem[], latestMs: number): number {
  let ttl = latestMs;
  const visit = (properties: readonly Property[], lists: readonly WireList[]): void => {
    for (const [name, value] of properties) {
      if (name !== 'expirationTimestamp') continue;
      const ms = parseIso(value);
      if (ms !== undefined && ms < ttl) ttl = ms;
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
  licenseeActive: boolean,
  mayCreateLicenses: boolean,
): ModelContext {
  const templates = assets.templates.filter((t) => t.props['productModuleNumber'] === module.number);
  const templatesByNumber = new Map(templates.map((t) => [t.number, t]));
  const imported = assets.licenses.filter((l) => templatesByNumber.has(l.props['licenseTemplateNumber'] ?? ''));
  const templatesWithLicenses = new Set(imported.map((l) => l.props['licenseTemplateNumber'] ?? ''));

  const licenses: LicenseView[] = [];
  for (const license of imported) {
    const template = templatesByNumber.get(license.props['licenseTemplateNumber'] ?? '');
    if (template === undefined || !isActive(license)) continue;
    const defined = license.props['startDate'];
    const hasDefinedStart = defined !== undefined && defined.trim() !== '';
    const runtimeStart = hasDefinedStart ? undefined : runtime.startDates[license.number];
    licenses.push({
      number: license.number,
      props: license.props,
      template,
      startMs: parseIso(hasDefinedStart ? defined : runtimeStart),
      startDateMissing: !hasDefinedStart && runtimeStart === undefined,
      agentCreated: false,
    });
  }
  // A license the agent created stands in for its template only while the import has none of its own.
  for (const template of templates) {
    const created = runtime.createdLicenses[template.number];
    if (created === undefined || templatesWithLicenses.has(template.number)) continue;
    templatesWithLicenses.add(template.number);
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
    mayCreateLicenses,
    licenseeNumber: assets.licensee.number,
  };
}

/**
 * `productModuleNumber` first, then the rest in the cloud's HashMap order
 * (see models/property-order.ts); lists after properties.
 */
function moduleItem(module: Entity, licensingModel: string, result: ModelResult): WireItem {
  // Insertion order matters only inside a hash bucket; this one matches the samples
  // (warningLevel before expirationTimestamp, pricingPlanName before productModuleName).
  const properties: Property[] = [['warningLevel', result.warningLevel], ...result.properties];
  const name = module.props['name'];
  if (name !== undefined) properties.push(['productModuleName', name]);
  properties.push(['licensingModel', licensingModel]);
  const ranks = javaHashMapRanks([...properties.map(([key]) => key), ...result.lists.map((list) => list.name)]);
  return {
    type: 'ProductModuleValidation',
    properties: [['productModuleNumber', module.number], ...sortByJavaHashMap(properties, ranks, ([key]) => key)],
    lists: sortByJavaHashMap(result.lists.map(orderList), ranks, (list) => list.name),
  };
}

function orderList(list: WireList): WireList {
  const ranks = javaHashMapRanks(list.properties.map(([key]) => key));
  return { ...list, properties: sortByJavaHashMap(list.properties, ranks, ([key]) => key) };
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
