/**
 * Subscription (`Subscription`, legacy `TimeVolume`), API spec §6.2:
 * cumulative TIMEVOLUME licenses, optionally a free automatic evaluation
 * that starts on the first validation.
 */
import type { Property } from '../envelope.ts';
import type { RuntimeEvent } from '../runtime.ts';
import { toIso } from '../time.ts';
import {
  chainTimeVolumes,
  createAutomaticLicense,
  currentSpan,
  isAutomatic,
  isFree,
  ofType,
  templateType,
  timeUsedWarningLevel,
  type ModelContext,
  type ModelResult,
} from './common.ts';

export function validateSubscription(ctx: ModelContext): ModelResult {
  const events: RuntimeEvent[] = [];
  const licenses = [...ctx.licenses];
  for (const template of ctx.templates) {
    if (templateType(template) !== 'TIMEVOLUME' || !isAutomatic(template) || !isFree(template)) continue;
    const created = createAutomaticLicense(ctx, template, events);
    if (created) licenses.push(created);
  }
  const span = currentSpan(chainTimeVolumes(ctx, ofType(licenses, 'TIMEVOLUME'), events), ctx);
  const properties: Property[] = [['valid', span ? 'true' : 'false']];
  if (span) properties.push(['expires', toIso(span.endMs)]);
  return { properties, lists: [], warningLevel: timeUsedWarningLevel(span, ctx), events, infos: [] };
}
