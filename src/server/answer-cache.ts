/**
 * Reuse of rendered read-only validate answers.
 *
 * Clients validate the same licensee with the same parameters again and
 * again; as long as nothing the answer depends on has changed, the agent
 * may send the bytes it rendered last time, with a fresh ttl. An entry is
 * used only when ALL of these still hold:
 *   - same request: method, wire format, licensee, query and body, byte for byte;
 *   - same definitions: the store's definitionsVersion (any import bumps it);
 *   - same runtime state: the licensee's runtime revision (every change of its
 *     state makes a new, never reused one; see store/runtime-writer.ts);
 *   - same time window: now lies in [computed at, stableUntilMs), the span the
 *     core guarantees the same answer in (core/validate.ts; tested in
 *     tests/core/stable-until.test.ts);
 * and never for answers that changed state, failed, or were signed.
 *
 * The ttl is the one thing that changes with time: entries keep the rendered
 * body split around it and splice in min(now + ttl, the answer's cap).
 */
import type { Envelope } from '../core/envelope.ts';
import { toIso } from '../core/time.ts';
import { ttlCapMs } from '../core/validate.ts';
import { createBoundedCache } from '../platform/bounded-cache.ts';
import { renderEnvelope, type WireFormat } from './negotiate.ts';

/**
 * Stands in for the ttl while rendering: plain characters that both renderers copy as they are.
 * A body that contains it more than once (a property value equal to it) is not split, nor cached.
 */
const TTL_SLOT = 'ttl-slot-5c0e8a1f9d';

export interface CachedAnswer {
  head: string;
  tail: string;
  ttlCapMs: number;
  /** The answer, for the operator metrics (ops/observer.ts) that count every validate. */
  envelope: Envelope;
  definitionsVersion: number;
  runtimeRevision: number;
  fromMs: number;
  untilMs: number;
}

/** A rendered answer: the body with a fresh ttl, and the parts an AnswerCache entry needs. */
export interface RenderedAnswer {
  body: string;
  parts?: { head: string; tail: string; ttlCapMs: number };
}

/** Renders `envelope` with its ttl, keeping the body split around the ttl where that is unambiguous. */
export function renderAnswer(envelope: Envelope, format: WireFormat): RenderedAnswer {
  if (envelope.ttl === undefined) return { body: renderEnvelope(envelope, format) };
  const templated = renderEnvelope({ ...envelope, ttl: TTL_SLOT }, format);
  const at = templated.indexOf(TTL_SLOT);
  if (at === -1 || templated.indexOf(TTL_SLOT, at + 1) !== -1) return { body: renderEnvelope(envelope, format) };
  const head = templated.slice(0, at);
  const tail = templated.slice(at + TTL_SLOT.length);
  return { body: head + envelope.ttl + tail, parts: { head, tail, ttlCapMs: ttlCapMs(envelope.items) } };
}

export interface AnswerCache {
  /** The body for `key`, with a ttl for `nowMs`, when the entry is still valid. */
  lookup(key: string, definitionsVersion: number, runtimeRevision: number, nowMs: number): { body: string; envelope: Envelope } | undefined;
  remember(key: string, answer: CachedAnswer): void;
  readonly size: number;
}

export function createAnswerCache(options: { ttlMs: number; entriesMax?: number }): AnswerCache {
  // Bounded, least recently used out first: a site whose working set is larger than the bound
  // keeps its busiest answers (clearing everything when full, as before, dropped them too).
  const entries = createBoundedCache<string, CachedAnswer>(options.entriesMax ?? 10_000);
  return {
    lookup(key, definitionsVersion, runtimeRevision, nowMs) {
      const entry = entries.get(key);
      if (
        entry === undefined ||
        entry.definitionsVersion !== definitionsVersion ||
        entry.runtimeRevision !== runtimeRevision ||
        nowMs < entry.fromMs ||
        nowMs >= entry.untilMs
      ) {
        return undefined;
      }
      const ttl = toIso(Math.min(nowMs + options.ttlMs, entry.ttlCapMs));
      return { body: entry.head + ttl + entry.tail, envelope: entry.envelope };
    },
    remember(key, answer) {
      entries.set(key, answer);
    },
    get size() {
      return entries.size;
    },
  };
}
