/**
 * Quota (`Quota`), API spec §6.7: the sum of the active QUANTITY licenses'
 * `quantity`, or −1 (unlimited) when any of them is −1.
 */
import { bool, licenseInt, ofType, type ModelContext, type ModelResult } from './common.ts';

export function validateQuota(ctx: ModelContext): ModelResult {
  const quantities = ofType(ctx.licenses, 'QUANTITY').map((view) => licenseInt(view, 'quantity') ?? 0);
  const quota = quantities.includes(-1) ? -1 : quantities.reduce((sum, q) => sum + q, 0);
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
