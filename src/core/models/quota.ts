/**
 * Quota (`Quota`), API spec §6.7: the sum of the active QUANTITY licenses'
 * `quantity`, or −1 (unlimited) when any of them is −1. Other negative quantities
 * count as 0, and the sum stays at 2^53 − 1 (parseQuota).
 */
import { bool, licenseValue, ofType, parseQuota, type ModelContext, type ModelResult } from './common.ts';

export function validateQuota(ctx: ModelContext): ModelResult {
  const quantities = ofType(ctx.licenses, 'QUANTITY').map((view) => parseQuota(licenseValue(view, 'quantity')) ?? 0);
  const quota = quantities.includes(-1) ? -1 : Math.min(quantities.reduce((sum, q) => sum + q, 0), Number.MAX_SAFE_INTEGER);
  const valid = quota > 0 || quota === -1;
  return {
    properties: [
      ['valid', bool(valid)],
      ['quota', String(quota)],
    ],
    lists: [],
    warningLevel: valid ? 'GREEN' : 'RED',
    events: [],
    infos: [],
  };
}
