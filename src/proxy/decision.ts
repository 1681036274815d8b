/**
 * What run-agent needs to know about validate requests and answers, without
 * I/O: whether a request changes counters (then a cached answer must not
 * stand in for it), the key and lifetime of a cached answer, and the
 * "decision" of an answer (status and per-module `valid`) that a replay
 * compares with the upstream's to find conflicts.
 */
import { createHash } from 'node:crypto';
import type { Envelope } from '../core/envelope.ts';
import { parseValidateParameters } from '../core/params.ts';
import { EnvelopeFormatError, parseJsonEnvelope } from '../export/json-envelope.ts';
import type { WireFormat } from '../server/negotiate.ts';
import type { ReplayDecision } from '../store/asset-store.ts';

/** Module parameters that consume or release something on every call. */
const COUNTER_PARAMETERS = ['usedQuantity', 'reserveQuantity', 'action'] as const;

/**
 * True when the request asks to change a counter (Pay-per-Use quantities,
 * Floating check-out/check-in). Trial starts and node-secret registration
 * happen once, so a repeated identical request after them changes nothing.
 */
export function changesCounters(pairs: Array<[string, string]>): boolean {
  const request = parseValidateParameters(pairs, false);
  if (request.dryRun) return false;
  for (const params of request.modules.values()) {
    for (const name of COUNTER_PARAMETERS) {
      const value = params[name];
      if (value === undefined) continue;
      if (name === 'action' || !/^0*$/.test(value.trim())) return true;
    }
  }
  return false;
}

/**
 * Key of a cached validate answer: licensee, wire format and the parameters
 * (first value of each key wins, as in parseValidateParameters; order
 * ignored). Credentials are not part of it: a cached answer is served only
 * after the caller was authenticated locally.
 */
export function answerCacheKey(licenseeNumber: string, format: WireFormat, pairs: Array<[string, string]>): string {
  const first = new Map<string, string>();
  for (const [key, value] of pairs) if (!first.has(key)) first.set(key, value);
  const canonical = JSON.stringify([licenseeNumber, format, [...first].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
  return createHash('sha256').update(canonical).digest('hex');
}

const XML_TTL = /<(?:[A-Za-z_][\w.-]*:)?netlicensing\b[^>]*?\sttl="([^"]+)"/;
const JSON_TTL = /"ttl"\s*:\s*"([^"]+)"/;

/** The answer's `ttl` (ms since epoch), or undefined when it has none ("do not cache"). */
export function answerTtlMs(body: string, format: WireFormat): number | undefined {
  const match = (format === 'xml' ? XML_TTL : JSON_TTL).exec(body);
  if (!match) return undefined;
  const ms = Date.parse(match[1]!);
  return Number.isFinite(ms) ? ms : undefined;
}

/** The decision of an envelope the agent rendered itself. */
export function decisionOfEnvelope(status: number, envelope: Envelope): ReplayDecision {
  const valid: Record<string, string> = {};
  for (const item of envelope.items) {
    if (item.type !== 'ProductModuleValidation') continue;
    const props = new Map(item.properties);
    const module = props.get('productModuleNumber');
    const value = props.get('valid');
    if (module !== undefined && value !== undefined) valid[module] = value;
  }
  return { status, valid };
}

/** The decision of an upstream JSON answer; an unreadable body decides nothing beyond its status. */
export function decisionOfJsonAnswer(status: number, body: string): ReplayDecision {
  const valid: Record<string, string> = {};
  try {
    for (const item of parseJsonEnvelope(body).items) {
      if (item.type !== 'ProductModuleValidation') continue;
      const module = item.props['productModuleNumber'];
      const value = item.props['valid'];
      if (module !== undefined && value !== undefined) valid[module] = value;
    }
  } catch (error) {
    if (!(error instanceof EnvelopeFormatError)) throw error;
  }
  return { status, valid };
}

/**
 * Why the upstream's answer to a replayed request contradicts what the agent
 * answered offline, or undefined when it agrees: a different status, or a
 * module the agent judged that the upstream judges differently (or omits).
 * Other differences (remaining quantities, timestamps, ttl) are expected
 * after an outage and are not conflicts.
 */
export function conflictBetween(local: ReplayDecision, upstream: ReplayDecision): string | undefined {
  if (local.status !== upstream.status) {
    return `the agent answered HTTP ${local.status}, the upstream answers HTTP ${upstream.status}`;
  }
  const differences: string[] = [];
  for (const [module, valid] of Object.entries(local.valid)) {
    const theirs = upstream.valid[module];
    if (theirs === undefined) differences.push(`module ${module}: not in the upstream answer`);
    else if (theirs !== valid) differences.push(`module ${module}: the agent answered valid=${valid}, the upstream valid=${theirs}`);
  }
  return differences.length === 0 ? undefined : differences.join('; ');
}
