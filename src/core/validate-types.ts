/**
 * The contract of the pure validation core: inputs, options and outcome.
 */
import type { Entity } from './entities.ts';
import type { Envelope } from './envelope.ts';
import type { RuntimeEvent, RuntimeState } from './runtime.ts';

/** A product with all its modules and their templates: what every licensee of the product shares. */
export interface ProductAssets {
  product: Entity;
  /** All modules of the product (active and inactive), in store order. */
  modules: Entity[];
  /** All license templates of those modules. */
  templates: Entity[];
}

/** Everything the core needs to validate one licensee, read from the store beforehand. */
export interface LicenseeAssets extends ProductAssets {
  licensee: Entity;
  /** The licensee's licenses as imported (definitions only; runtime changes are in RuntimeState). */
  licenses: Entity[];
}

/** Parameters for one product module (`productModuleNumberN` + `<param>N`, suffix removed). */
export type ModuleParameters = Record<string, string>;

export interface ValidateRequest {
  dryRun: boolean;
  forOfflineUse: boolean;
  /** Module number → its parameters, in the order the client named them. */
  modules: Map<string, ModuleParameters>;
  /** Top-level keys that are not validate parameters (licensee custom properties on auto-create). */
  licenseeProperties: Record<string, string>;
  /** The deprecated GET form adds the `methodIsDeprecated` warning. */
  deprecatedGet: boolean;
  /** The deprecated Licensee Secret (API spec §4.4), when the request gives a non-empty one. */
  licenseeSecret?: string;
}

export interface ValidateOptions {
  /** Current time, ms since epoch. */
  nowMs: number;
  /** How long a response may be cached by the client (cloud: vendor setting). */
  ttlMs: number;
  /** Reuse modules' earlier decisions where nothing they depend on changed (validate.ts); default true. */
  reuseModuleResults?: boolean;
}

export interface ValidateOutcome {
  /** The response: infos, items, ttl. */
  envelope: Envelope;
  /** State changes to persist before answering. Empty for dryRun and read-only calls. */
  events: RuntimeEvent[];
  /**
   * The same inputs give the same answer, except its ttl, at any time from
   * now until (excluding) this instant; +Infinity when time plays no part.
   * At or before now: the answer depends on the exact time.
   */
  stableUntilMs: number;
}
