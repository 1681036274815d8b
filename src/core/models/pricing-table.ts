/**
 * Pricing Table (`PricingTable`), API spec §6.9: plans are license templates
 * carrying a `skus` JSON object; the module's `skudef` JSON lists the SKUs.
 * A FEATURE plan is active while an active license of it exists, a
 * TIMEVOLUME plan while its licenses' chained time volume lasts.
 *
 * When several plans are active, the most expensive one wins, and among
 * equally priced ones the one defined last. The SKU lists show the winning
 * plan's values. A broken `skudef` or `skus` never fails the validation
 * (LMB-785): it reads as "no SKUs" / "no values".
 */
import type { Entity } from '../entities.ts';
import type { Property, WireList } from '../envelope.ts';
import type { RuntimeEvent } from '../runtime.ts';
import {
  bool,
  chainTimeVolumes,
  currentSpan,
  parseQuota,
  templateType,
  timeUsedWarningLevel,
  type ModelContext,
  type ModelResult,
  type TimeSpan,
  type WarningLevel,
} from './common.ts';

export interface SkuDefinition {
  number: string;
  name: string;
  type: string;
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `{"skudef":[{number,name,type}]}`; a bare array is accepted too. */
export function parseSkuDefinitions(text: string | undefined): SkuDefinition[] {
  const parsed = parseJson(text);
  const entries = Array.isArray(parsed) ? parsed : isRecord(parsed) && Array.isArray(parsed['skudef']) ? parsed['skudef'] : [];
  const skus: SkuDefinition[] = [];
  for (const entry of entries as unknown[]) {
    if (!isRecord(entry) || typeof entry['number'] !== 'string' || entry['number'] === '') continue;
    const number = entry['number'];
    const name = typeof entry['name'] === 'string' ? entry['name'] : number;
    const type = typeof entry['type'] === 'string' ? entry['type'].toUpperCase() : 'FEATURE';
    skus.push({ number, name, type });
  }
  return skus;
}

/** A plan's SKU values, as strings ("true"/"false" for features, counts for quotas). */
export function parsePlanSkus(text: string | undefined): Map<string, string> {
  const parsed = parseJson(text);
  const values = new Map<string, string>();
  if (!isRecord(parsed)) return values;
  for (const [sku, value] of Object.entries(parsed)) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') values.set(sku, String(value));
  }
  return values;
}

function price(template: Entity): number {
  const value = Number.parseFloat(template.props['price'] ?? '0');
  return Number.isFinite(value) ? value : 0;
}

interface ActivePlan {
  template: Entity;
  index: number;
  span: TimeSpan | undefined;
}

function skuList(sku: SkuDefinition, values: Map<string, string> | undefined): WireList {
  const value = values?.get(sku.number);
  if (sku.type === 'QUOTA') {
    const quota = String(parseQuota(value) ?? 0);
    const valid = quota === '-1' || Number(quota) > 0;
    return {
      name: sku.number,
      properties: [
        ['valid', bool(valid)],
        ['quota', quota],
        ['name', sku.name],
        ['type', sku.type],
      ],
      lists: [],
    };
  }
  return {
    name: sku.number,
    properties: [
      ['valid', bool(value === 'true')],
      ['name', sku.name],
      ['type', sku.type],
    ],
    lists: [],
  };
}

export function validatePricingTable(ctx: ModelContext): ModelResult {
  const events: RuntimeEvent[] = [];
  const active: ActivePlan[] = [];
  ctx.templates.forEach((template, index) => {
    const licenses = ctx.licenses.filter((view) => view.template.number === template.number);
    if (licenses.length === 0) return;
    if (templateType(template) === 'TIMEVOLUME') {
      const span = currentSpan(chainTimeVolumes(ctx, licenses, events), ctx);
      if (span) active.push({ template, index, span });
    } else {
      active.push({ template, index, span: undefined });
    }
  });
  const winner = active.reduce<ActivePlan | undefined>(
    (best, plan) =>
      best === undefined || price(plan.template) > price(best.template) || (price(plan.template) === price(best.template) && plan.index > best.index)
        ? plan
        : best,
    undefined,
  );

  const properties: Property[] = [['valid', bool(winner !== undefined)]];
  let warningLevel: WarningLevel = 'RED';
  if (winner) {
    const type = templateType(winner.template);
    properties.push(
      ['pricingPlanId', winner.template.number],
      ['pricingPlanName', winner.template.props['name'] ?? winner.template.number],
      ['activePricingPlans', active.map((plan) => plan.template.number).join(',')],
      ['pricingPlanType', type],
    );
    warningLevel = type === 'TIMEVOLUME' ? timeUsedWarningLevel(winner.span, ctx) : 'GREEN';
  }
  const values = winner ? parsePlanSkus(winner.template.props['skus']) : undefined;
  const lists = parseSkuDefinitions(ctx.module.props['skudef']).map((sku) => skuList(sku, values));
  return { properties, lists, warningLevel, events, infos: [] };
}
