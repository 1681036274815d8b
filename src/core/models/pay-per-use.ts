/**
 * Pay-per-Use (`PayPerUse`), API spec §6.6: credits in QUANTITY licenses,
 * written off after use (`usedQuantityN`, overdraft allowed) or reserved
 * before use (`reserveQuantityN`, only when enough credits remain).
 *
 * Remaining = Σ quantity − Σ imported usedQuantity − Σ usage the agent booked.
 * Usage is booked on the oldest license (definition order) that still has
 * credits; whatever exceeds all credits goes on the last license.
 */
import type { Info, Property } from '../envelope.ts';
import { ownEntry, type RuntimeEvent } from '../runtime.ts';
import {
  MalformedParameterError,
  bool,
  licenseInt,
  ofType,
  parseInteger,
  type LicenseView,
  type ModelContext,
  type ModelResult,
  type WarningLevel,
} from './common.ts';

export const USED_QUANTITY_EXCEEDS_REMAINING: Info = {
  id: 'usedQuantityExceedsRemaining',
  type: 'WARNING',
  value:
    'usedQuantity exceeds remaining quantity - use of more than remaining quantity returned by the validation call should be prevented by the client software',
};

function quantityParameter(ctx: ModelContext, name: string): number | undefined {
  const text = ctx.params[name];
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text) ? parseInteger(text) : undefined;
  if (value === undefined) {
    throw new MalformedParameterError(ctx.module.number, name, `must be a non-negative integer, got '${text}'`);
  }
  return value;
}

function usedOf(ctx: ModelContext, view: LicenseView): number {
  return (licenseInt(view, 'usedQuantity') ?? 0) + (ownEntry(ctx.runtime.usedQuantity, view.number) ?? 0);
}

/**
 * Splits `amount` over the licenses: oldest with credits first, the rest on the last one.
 * Refuses (`parameter`) a booking after which a license's quantity booked here would no longer be
 * a whole number JavaScript holds exactly (2^53 - 1): two bookings of 9007199254740991 made the
 * stored total inexact, and verify-database, as every card-bound start, refuses such a total.
 */
function book(ctx: ModelContext, licenses: readonly LicenseView[], amount: number, parameter: string): RuntimeEvent[] {
  const booked = new Map<string, number>();
  let rest = amount;
  for (const view of licenses) {
    if (rest === 0) break;
    const available = (licenseInt(view, 'quantity') ?? 0) - usedOf(ctx, view);
    if (available <= 0) continue;
    const take = Math.min(available, rest);
    booked.set(view.number, take);
    rest -= take;
  }
  const last = licenses[licenses.length - 1];
  if (rest > 0 && last !== undefined) booked.set(last.number, (booked.get(last.number) ?? 0) + rest);
  for (const [licenseNumber, quantity] of booked) {
    if (!Number.isSafeInteger((ownEntry(ctx.runtime.usedQuantity, licenseNumber) ?? 0) + quantity)) {
      throw new MalformedParameterError(ctx.module.number, parameter, `would make the quantity booked on license '${licenseNumber}' larger than ${Number.MAX_SAFE_INTEGER}`);
    }
  }
  return [...booked].map(([licenseNumber, quantity]) => ({ type: 'quantityUsed' as const, licenseNumber, quantity }));
}

export function validatePayPerUse(ctx: ModelContext): ModelResult {
  const used = quantityParameter(ctx, 'usedQuantity');
  const reserve = quantityParameter(ctx, 'reserveQuantity');
  if (used !== undefined && reserve !== undefined) {
    throw new MalformedParameterError(ctx.module.number, 'reserveQuantity', `cannot be combined with 'usedQuantity'`);
  }
  const licenses = ofType(ctx.licenses, 'QUANTITY');
  const total = licenses.reduce((sum, view) => sum + (licenseInt(view, 'quantity') ?? 0), 0);
  const before = total - licenses.reduce((sum, view) => sum + usedOf(ctx, view), 0);

  const infos: Info[] = [];
  let events: RuntimeEvent[] = [];
  let remaining = before;
  let valid: boolean;
  if (reserve !== undefined) {
    valid = licenses.length > 0 && reserve <= before;
    if (valid && reserve > 0) {
      events = book(ctx, licenses, reserve, 'reserveQuantity');
      remaining = before - reserve;
    }
  } else {
    const amount = used ?? 0;
    // Using nothing exceeds nothing, even when the credits are already overdrawn.
    if (amount > 0 && amount > before) infos.push(USED_QUANTITY_EXCEEDS_REMAINING);
    // With no license there is nothing to book the usage on.
    if (amount > 0 && licenses.length > 0) {
      events = book(ctx, licenses, amount, 'usedQuantity');
      remaining = before - amount;
    }
    valid = remaining > 0;
  }

  let warningLevel: WarningLevel;
  if (total <= 0 || remaining <= 0) warningLevel = 'RED';
  else warningLevel = (total - remaining) / total >= 0.8 ? 'YELLOW' : 'GREEN';
  const properties: Property[] = [
    ['valid', bool(valid)],
    ['remainingQuantity', String(remaining)],
  ];
  return { properties, lists: [], warningLevel, events, infos };
}
