/**
 * Node-Locked (`NodeLocked`), API spec §6.8: `nodeSecretN` must be one of
 * the secrets stored for the licensee (PREDEFINED), or is bound on first
 * sight while the stored count is below the total quota (CLIENT).
 *
 * Stored secrets = `nodeSecret<i>` properties of the active licenses (secrets
 * of inactive licenses do not count, per the changelog) ∪ the secrets the
 * agent registered for this module.
 */
import { ownEntry, type RuntimeEvent } from '../runtime.ts';
import {
  bool,
  checkStoredId,
  capacityWarningLevel,
  licenseInt,
  ofType,
  type LicenseView,
  type ModelContext,
  type ModelResult,
} from './common.ts';

export type NodeSecretMode = 'PREDEFINED' | 'CLIENT';

/** Without a configured mode, secrets bind on first use (the model's common use: hardware ids). */
export function nodeSecretMode(text: string | undefined): NodeSecretMode {
  return text?.trim().toUpperCase() === 'PREDEFINED' ? 'PREDEFINED' : 'CLIENT';
}

/** A license property that stores a node secret (`nodeSecret0`, `nodeSecret1`, …); the group is its index. */
export const NODE_SECRET_PROPERTY = /^nodeSecret(\d+)$/;

/**
 * The stored secrets of one licensee's module, kept between decisions: a site license for
 * thousands of machines would otherwise rebuild a set of thousands of secrets on every decided
 * validate (413 µs at 10,000 secrets, measured on this model), and every machine's first validate is one.
 * An entry stays valid while the module's licenses are the same property objects (definitions
 * never change in place: an import makes new ones) and the agent's list has only grown (events
 * only append to it, runtime.ts); the secrets appended since are added to it. It is keyed by that
 * list, which belongs to one licensee (or, before the first registration, by the first license's
 * properties), and is never changed by a decision itself: a dry run must not register anything.
 */
interface StoredSecrets {
  licenseProps: Record<string, string>[];
  registeredCount: number;
  secrets: Set<string>;
}
const STORED_SECRETS = new WeakMap<object, StoredSecrets>();

function sameLicenses(entry: StoredSecrets, licenses: readonly LicenseView[]): boolean {
  return entry.licenseProps.length === licenses.length && entry.licenseProps.every((props, i) => props === licenses[i]!.props);
}

function storedSecrets(licenses: readonly LicenseView[], registered: readonly string[] | undefined): ReadonlySet<string> {
  const key = registered ?? licenses[0]?.props;
  if (key === undefined) return new Set();
  let entry = STORED_SECRETS.get(key);
  if (entry === undefined || !sameLicenses(entry, licenses) || entry.registeredCount > (registered?.length ?? 0)) {
    const secrets = new Set<string>();
    for (const view of licenses) {
      for (const name in view.props) {
        const value = view.props[name]!;
        if (NODE_SECRET_PROPERTY.test(name) && value !== '') secrets.add(value);
      }
    }
    entry = { licenseProps: licenses.map((view) => view.props), registeredCount: 0, secrets };
    STORED_SECRETS.set(key, entry);
  }
  if (registered !== undefined) {
    for (let i = entry.registeredCount; i < registered.length; i++) entry.secrets.add(registered[i]!);
    entry.registeredCount = registered.length;
  }
  return entry.secrets;
}

export function validateNodeLocked(ctx: ModelContext): ModelResult {
  const licenses = ofType(ctx.licenses, 'QUANTITY');
  const total = licenses.reduce((sum, view) => sum + Math.max(0, licenseInt(view, 'quota') ?? 0), 0);
  const stored = storedSecrets(licenses, ownEntry(ctx.runtime.nodeSecrets, ctx.module.number));
  let storedCount = stored.size;

  const secret = ctx.params['nodeSecret'];
  checkStoredId(ctx.module.number, 'nodeSecret', secret);
  const events: RuntimeEvent[] = [];
  let valid = false;
  if (secret !== undefined && secret !== '') {
    if (stored.has(secret)) valid = true;
    else if (nodeSecretMode(ctx.module.props['nodeSecretMode']) === 'CLIENT' && storedCount < total) {
      events.push({ type: 'nodeSecretRegistered', moduleNumber: ctx.module.number, secret });
      storedCount += 1;
      valid = true;
    }
  }
  return {
    properties: [['valid', bool(valid)]],
    lists: [],
    warningLevel: capacityWarningLevel(storedCount, total),
    events,
    infos: [],
  };
}
