/**
 * Try & Buy (`TryAndBuy`, legacy `TimeLimitedEvaluation`), API spec §6.1: a
 * TIMEVOLUME trial that starts on the first validation, and a FEATURE
 * license that makes the module valid for good.
 */
import type { Property } from '../envelope.ts';
import type { RuntimeEvent } from '../runtime.ts';
import { toIso } from '../time.ts';
import {
  bool,
  chainTimeVolumes,
  createAutomaticLicense,
  currentSpan,
  isAutomatic,
  ofType,
  templateType,
  type ModelContext,
  type ModelResult,
  type WarningLevel,
} from './common.ts';

export function validateTryAndBuy(ctx: ModelContext): ModelResult {
  const events: RuntimeEvent[] = [];
  const timeVolumeTemplates = ctx.templates.filter((t) => templateType(t) === 'TIMEVOLUME');
  // The trial template is the automatic TIMEVOLUME one; a module whose trial is not flagged automatic still has one.
  const trialTemplate = timeVolumeTemplates.find(isAutomatic) ?? timeVolumeTemplates[0];
  const licenses = [...ctx.licenses];
  if (trialTemplate !== undefined) {
    const created = createAutomaticLicense(ctx, trialTemplate, events);
    if (created) licenses.push(created);
  }

  const featureAcquired = ofType(licenses, 'FEATURE').length > 0;
  const spans = chainTimeVolumes(ctx, ofType(licenses, 'TIMEVOLUME'), events);
  const trial = currentSpan(spans, ctx);
  // When the trial is over, report the end of the most recent trial period that has begun.
  const shown = trial ?? spans.filter((s) => s.startMs <= ctx.nowMs).at(-1);

  const properties: Property[] = [];
  let warningLevel: WarningLevel;
  if (featureAcquired) {
    properties.push(['evaluation', 'false'], ['valid', 'true']);
    warningLevel = 'GREEN';
  } else {
    properties.push(['evaluation', 'true'], ['valid', bool(trial !== undefined)]);
    if (shown) properties.push(['evaluationExpires', toIso(shown.endMs)]);
    warningLevel = trial ? 'YELLOW' : 'RED';
  }
  return { properties, lists: [], warningLevel, events, infos: [] };
}
