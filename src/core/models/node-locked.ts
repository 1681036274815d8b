/**
 * Node-Locked (`NodeLocked`), API spec §6.8: `nodeSecretN` must be one of
 * the secrets stored for the licensee (PREDEFINED), or is bound on first
 * sight while the stored count is below the total quota (CLIENT).
 *
 * Stored secrets = `nodeSecret<i>` properties of the active licenses (secrets
 * of inactive licenses do not count, per the changelog) ∪ the secrets the
 * agent registered for this module.
 */
import type { RuntimeEvent } from '../runtime.ts';
import {
  bool,
  capacityWarningLevel,
  licenseInt,
  ofType,
  type ModelContext,
  type ModelResult,
} from './common.ts';

export type NodeSecretMode = 'PREDEFINED' | 'CLIENT';

/** Without a configured mode, secrets bind on first use (the model's common use: hardware ids). */
export function nodeSecretMode(text: string | undefined): NodeSecretMode {
  return text?.trim().toUpperCase() === 'PREDEFINED' ? 'PREDEFINED' : 'CLIENT';
}

const NODE_SECRET_PROPERTY = /^nodeSecret\d+$/;

export function validateNodeLocked(ctx: ModelContext): ModelResult {
  const licenses = ofType(ctx.licenses, 'QUANTITY');
  const total = licenses.reduce((sum, view) => sum + Math.max(0, licenseInt(view, 'quota') ?? 0), 0);
  const stored = new Set<string>();
  for (const view of licenses) {
    for (const [name, value] of Object.entries(view.props)) {
      if (NODE_SECRET_PROPERTY.test(name) && value !== '') stored.add(value);
    }
  }
  for (const secret of ctx.runtime.nodeSecrets[ctx.module.number] ?? []) stored.add(secret);

  const secret = ctx.params['nodeSecret'];
  const events: RuntimeEvent[] = [];
  let valid = false;
  if (secret !== undefined && secret !== '') {
    if (stored.has(secret)) valid = true;
    else if (nodeSecretMode(ctx.module.props['nodeSecretMode']) === 'CLIENT' && stored.size < total) {
      events.push({ type: 'nodeSecretRegistered', moduleNumber: ctx.module.number, secret });
      stored.add(secret);
      valid = true;
    }
  }
  return {
    properties: [['valid', bool(valid)]],
    lists: [],
    warningLevel: capacityWarningLevel(stored.size, total),
    events,
    infos: [],
  };
}
