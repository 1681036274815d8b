/**
 * What every licensing model shares: the context a model validates in, its
 * result, the view of a license with runtime changes merged in, time-volume
 * chaining, automatic (trial / evaluation) license creation and the warning
 * level helpers. Pure: the current time comes in through the context.
 */
import type { Entity } from '../entities.ts';
import type { Info, Property, WireList } from '../envelope.ts';
import { agentLicenseNumber, type RuntimeEvent, type RuntimeState } from '../runtime.ts';
import { addPeriod, parsePeriod, toIso } from '../time.ts';
import type { ModuleParameters } from '../validate-types.ts';

export type WarningLevel = 'GREEN' | 'YELLOW' | 'RED';

const WARNING_RANK: Record<WarningLevel, number> = { GREEN: 0, YELLOW: 1, RED: 2 };

export function worstWarningLevel(levels: readonly WarningLevel[], none: WarningLevel): WarningLevel {
  if (levels.length === 0) return none;
  return levels.reduce((a, b) => (WARNING_RANK[b] > WARNING_RANK[a] ? b : a));
}

export const DAY_MS = 86_400_000;

/** A license as validation sees it: definition plus what the agent changed at runtime. */
export interface LicenseView {
  number: string;
  /** The license's own properties (custom ones included: sessionId_*, nodeSecret*, usedQuantity). */
  props: Record<string, string>;
  template: Entity;
  /** Effective start: the definition's startDate, else the one the agent set. */
  startMs: number | undefined;
  /** True when neither the definition nor the runtime has a startDate (first use sets it). */
  startDateMissing: boolean;
  /** Created by the agent from an automatic template (not in the imported definitions). */
  agentCreated: boolean;
}

export interface ModelContext {
  module: Entity;
  /** This module's license templates, in definition order. */
  templates: Entity[];
  /** ACTIVE licenses of this module (imported + agent-created), in definition order. */
  licenses: LicenseView[];
  /** Templates that already have a license of any state (LMB-689: never create a second one). */
  templatesWithLicenses: ReadonlySet<string>;
  /** Parameters the client sent for this module (empty when none). */
  params: ModuleParameters;
  runtime: RuntimeState;
  nowMs: number;
  /**
   * Reports an instant at which this answer may change (a period starts or
   * ends, a session expires, a warning threshold is crossed). The earliest
   * one bounds how long an identical answer may be reused (see
   * ValidateOutcome.stableUntilMs); reporting `nowMs` means "depends on the
   * exact time, never reuse". Every comparison with `nowMs` must report its
   * boundary — tests/core/stable-until.test.ts checks the models against it.
   */
  changesAt(ms: number): void;
  /** Automatic licenses may be created (licensee and product active, licensee not marked for transfer). */
  mayCreateLicenses: boolean;
  licenseeNumber: string;
}

export interface ModelResult {
  /** Model-specific properties (`valid` and friends); the caller adds name, model and warning level. */
  properties: Property[];
  lists: WireList[];
  warningLevel: WarningLevel;
  /** State changes this answer assumes. The caller drops them for dryRun. */
  events: RuntimeEvent[];
  infos: Info[];
}

export type ModelHandler = (ctx: ModelContext) => ModelResult;

/**
 * A known module parameter with an unusable value. The whole request is then
 * answered with a `MalformedRequestException` error and nothing is changed.
 */
/**
 * The longest session id or node secret stored: UUIDs, host names, hardware hashes are far
 * shorter. Each one stored lives in the runtime state, the journal and the status page, so a
 * client may not make them as long as the body limit allows (64 KiB).
 */
export const STORED_ID_CHARS_MAX = 1024;

/** A value the agent stores (a session id, a node secret) within STORED_ID_CHARS_MAX. */
export function checkStoredId(moduleNumber: string, parameter: string, value: string | undefined): void {
  if (value !== undefined && value.length > STORED_ID_CHARS_MAX) {
    throw new MalformedParameterError(moduleNumber, parameter, `is longer than ${STORED_ID_CHARS_MAX} characters`);
  }
}

export class MalformedParameterError extends Error {
  constructor(moduleNumber: string, parameter: string, problem: string) {
    super(`Parameter '${parameter}' for product module '${moduleNumber}' ${problem}`);
    this.name = 'MalformedParameterError';
  }
}

/** License property, falling back to the template's (licenses copy them on creation). Empty = absent. */
export function licenseValue(view: Pick<LicenseView, 'props' | 'template'>, name: string): string | undefined {
  const own = view.props[name];
  if (own !== undefined && own.trim() !== '') return own;
  const inherited = view.template.props[name];
  return inherited !== undefined && inherited.trim() !== '' ? inherited : undefined;
}

export function parseInteger(text: string | undefined): number | undefined {
  if (text === undefined || !/^\s*-?\d+\s*$/.test(text)) return undefined;
  const value = Number.parseInt(text, 10);
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * A quota as answered (Quota's `quantity`, a Pricing Table QUOTA SKU): −1 is unlimited, another
 * negative number is none (0: it must not add up to −1 or below zero), and digits past 2^53 − 1
 * stay at 2^53 − 1, written in digits (String(1e23) is "1e+23", which clients read as 1 or refuse).
 * Anything that is not an integer: undefined.
 */
export function parseQuota(text: string | undefined): number | undefined {
  if (text === undefined || !/^\s*-?\d+\s*$/.test(text)) return undefined;
  const value = Number(text);
  if (value === -1) return -1;
  return value < 0 ? 0 : Math.min(value, Number.MAX_SAFE_INTEGER);
}

export function licenseInt(view: LicenseView, name: string): number | undefined {
  return parseInteger(licenseValue(view, name));
}

/** The license type comes from the template (licenses do not carry one). */
export function licenseType(view: LicenseView): string {
  return (view.template.props['licenseType'] ?? view.props['licenseType'] ?? '').trim().toUpperCase();
}

export function templateType(template: Entity): string {
  return (template.props['licenseType'] ?? '').trim().toUpperCase();
}

export function ofType(views: readonly LicenseView[], type: string): LicenseView[] {
  return views.filter((view) => licenseType(view) === type);
}

export function bool(value: boolean): string {
  return value ? 'true' : 'false';
}

/** A run of back-to-back time volumes: valid from startMs (inclusive) to endMs (exclusive). */
export interface TimeSpan {
  startMs: number;
  endMs: number;
}

/**
 * Cumulative chaining of TIMEVOLUME licenses (Subscription, Rental, Try & Buy,
 * Pricing Table): in start order, each license adds its time volume at
 * max(its start, end of the chain so far); a license starting after the chain
 * ended starts a new chain. Months are added one license at a time, so the
 * clamping of a month end carries on (Jan 31 + 1 MONTH = Feb 28, + 1 MONTH =
 * Mar 28), as repeated calendar addition does.
 *
 * A license without any startDate starts now; `events` receives the
 * `startDateSet` that makes this permanent.
 */
export function chainTimeVolumes(ctx: ModelContext, views: readonly LicenseView[], events: RuntimeEvent[]): TimeSpan[] {
  const entries: { startMs: number; volume: number; period: ReturnType<typeof parsePeriod> }[] = [];
  for (const view of views) {
    const volume = licenseInt(view, 'timeVolume');
    let startMs = view.startMs;
    if (startMs === undefined && view.startDateMissing) {
      startMs = ctx.nowMs;
      ctx.changesAt(ctx.nowMs);
      events.push({ type: 'startDateSet', licenseNumber: view.number, startDate: toIso(ctx.nowMs) });
    }
    if (startMs === undefined || volume === undefined || volume <= 0) continue;
    entries.push({ startMs, volume, period: parsePeriod(licenseValue(view, 'timeVolumePeriod')) });
  }
  entries.sort((a, b) => a.startMs - b.startMs);
  const spans: TimeSpan[] = [];
  for (const entry of entries) {
    const last = spans[spans.length - 1];
    if (last === undefined || entry.startMs > last.endMs) {
      spans.push({ startMs: entry.startMs, endMs: addPeriod(entry.startMs, entry.volume, entry.period) });
    } else {
      last.endMs = addPeriod(last.endMs, entry.volume, entry.period);
    }
  }
  return spans;
}

/**
 * The span that covers now (start inclusive, end exclusive). Reports every
 * future start and end of `spans` (callers also look at spans that have begun).
 */
export function currentSpan(spans: readonly TimeSpan[], ctx: Pick<ModelContext, 'nowMs' | 'changesAt'>): TimeSpan | undefined {
  const nowMs = ctx.nowMs;
  for (const span of spans) {
    if (span.startMs > nowMs) ctx.changesAt(span.startMs);
    if (span.endMs > nowMs) ctx.changesAt(span.endMs);
  }
  return spans.find((span) => span.startMs <= nowMs && nowMs < span.endMs);
}

/** Subscription / Pricing Table rule: time used < 80 % GREEN, ≥ 80 % YELLOW, expired (no span) RED. */
export function timeUsedWarningLevel(span: TimeSpan | undefined, ctx: Pick<ModelContext, 'nowMs' | 'changesAt'>): WarningLevel {
  if (span === undefined) return 'RED';
  const used = (ctx.nowMs - span.startMs) / (span.endMs - span.startMs);
  if (used >= 0.8) return 'YELLOW';
  // Turns YELLOW at 80 %; reported a millisecond early, as the division above rounds.
  ctx.changesAt(Math.floor(span.startMs + 0.8 * (span.endMs - span.startMs)) - 1);
  return 'GREEN';
}

/** Floating / Node-Locked rule (§6.4, §6.8). No capacity at all is RED. */
export function capacityWarningLevel(used: number, total: number): WarningLevel {
  if (total <= 0) return 'RED';
  if (used >= total) return total >= 10 ? 'RED' : 'YELLOW';
  return used / total >= 0.8 ? 'YELLOW' : 'GREEN';
}

/**
 * The license an automatic template gives on the first validation (Try & Buy
 * trial, Subscription evaluation). Created with startDate = now when the
 * template is active, creation is allowed and no license of that template
 * exists in any state (LMB-689). Returns the new license's view, or undefined.
 */
export function createAutomaticLicense(ctx: ModelContext, template: Entity, events: RuntimeEvent[]): LicenseView | undefined {
  if (!ctx.mayCreateLicenses || template.props['active'] === 'false') return undefined;
  if (ctx.templatesWithLicenses.has(template.number)) return undefined;
  const number = agentLicenseNumber(ctx.licenseeNumber, template.number);
  const startDate = toIso(ctx.nowMs);
  ctx.changesAt(ctx.nowMs);
  events.push({ type: 'licenseCreated', license: { number, templateNumber: template.number, startDate } });
  return {
    number,
    props: { number, active: 'true', licenseTemplateNumber: template.number, licenseeNumber: ctx.licenseeNumber, startDate },
    template,
    startMs: ctx.nowMs,
    startDateMissing: false,
    agentCreated: true,
  };
}

export function isAutomatic(template: Entity): boolean {
  return template.props['automatic'] === 'true';
}

/** Price "0", "0.00" or absent. */
export function isFree(template: Entity): boolean {
  const price = template.props['price'];
  if (price === undefined || price.trim() === '') return true;
  return Number.parseFloat(price) === 0;
}
