/**
 * Licensing model registry: maps a module's `licensingModel` string (modern
 * or legacy, API spec §3.8) to the model's validation. Anything else (e.g.
 * the undocumented `Discount`) is unsupported and validated as not licensed
 * rather than failing the whole request (LMB-785).
 */
import type { ModelHandler } from './common.ts';
import { validateFloating } from './floating.ts';
import { validateMultiFeature } from './multi-feature.ts';
import { validateNodeLocked } from './node-locked.ts';
import { validatePayPerUse } from './pay-per-use.ts';
import { validatePricingTable } from './pricing-table.ts';
import { validateQuota } from './quota.ts';
import { validateRental } from './rental.ts';
import { validateSubscription } from './subscription.ts';
import { validateTryAndBuy } from './try-and-buy.ts';

export const LICENSING_MODELS = [
  'TryAndBuy',
  'Subscription',
  'Rental',
  'Floating',
  'MultiFeature',
  'PayPerUse',
  'Quota',
  'NodeLocked',
  'PricingTable',
] as const;
export type LicensingModelName = (typeof LICENSING_MODELS)[number];

/** The modern model name for a stored `licensingModel` value, or undefined when unsupported. */
export function resolveLicensingModel(stored: string | undefined): LicensingModelName | undefined {
  switch (stored?.trim()) {
    case 'TryAndBuy':
    case 'TimeLimitedEvaluation':
      return 'TryAndBuy';
    case 'Subscription':
    case 'TimeVolume':
      return 'Subscription';
    case 'Rental':
    case 'FeatureWithTimeVolume':
      return 'Rental';
    case 'Floating':
      return 'Floating';
    case 'MultiFeature':
      return 'MultiFeature';
    case 'PayPerUse':
      return 'PayPerUse';
    case 'Quota':
      return 'Quota';
    case 'NodeLocked':
      return 'NodeLocked';
    case 'PricingTable':
      return 'PricingTable';
    default:
      return undefined;
  }
}

export function modelHandler(model: LicensingModelName): ModelHandler {
  switch (model) {
    case 'TryAndBuy':
      return validateTryAndBuy;
    case 'Subscription':
      return validateSubscription;
    case 'Rental':
      return validateRental;
    case 'Floating':
      return validateFloating;
    case 'MultiFeature':
      return validateMultiFeature;
    case 'PayPerUse':
      return validatePayPerUse;
    case 'Quota':
      return validateQuota;
    case 'NodeLocked':
      return validateNodeLocked;
    case 'PricingTable':
      return validatePricingTable;
    default: {
      const unreachable: never = model;
      throw new Error(`no handler for licensing model ${String(unreachable)}`);
    }
  }
}
