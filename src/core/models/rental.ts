/**
 * Rental (`Rental`, legacy `FeatureWithTimeVolume`), API spec §6.3: one list
 * per FEATURE license (an "instance"), each valid while the TIMEVOLUME
 * licenses that name it as parent feature last, chained like Subscription.
 */
import type { WireList } from '../envelope.ts';
import type { RuntimeEvent } from '../runtime.ts';
import { intProp } from '../entities.ts';
import { toIso } from '../time.ts';
import {
  DAY_MS,
  chainTimeVolumes,
  currentSpan,
  ofType,
  worstWarningLevel,
  type LicenseView,
  type ModelContext,
  type ModelResult,
  type WarningLevel,
} from './common.ts';

/** Both spellings occur in the documentation (API spec §9 item 2). */
function parentFeature(view: LicenseView): string | undefined {
  return view.props['parentfeature'] ?? view.props['parentFeature'];
}

export function validateRental(ctx: ModelContext): ModelResult {
  const events: RuntimeEvent[] = [];
  const yellowDays = intProp(ctx.module, 'yellowThreshold') ?? 0;
  const redDays = intProp(ctx.module, 'redThreshold') ?? 0;
  const timeVolumes = ofType(ctx.licenses, 'TIMEVOLUME');
  const lists: WireList[] = [];
  const levels: WarningLevel[] = [];
  for (const feature of ofType(ctx.licenses, 'FEATURE')) {
    const children = timeVolumes.filter((view) => parentFeature(view) === feature.number);
    const span = currentSpan(chainTimeVolumes(ctx, children, events), ctx);
    let level: WarningLevel;
    if (span === undefined) level = 'RED';
    else {
      const remainingMs = span.endMs - ctx.nowMs;
      // "remaining > threshold" flips when now reaches end − threshold.
      for (const days of [yellowDays, redDays]) if (span.endMs - days * DAY_MS > ctx.nowMs) ctx.changesAt(span.endMs - days * DAY_MS);
      level = remainingMs > yellowDays * DAY_MS ? 'GREEN' : remainingMs > redDays * DAY_MS ? 'YELLOW' : 'RED';
    }
    levels.push(level);
    lists.push({
      name: feature.number,
      properties: [
        ['valid', span ? 'true' : 'false'],
        ...(span ? ([['expires', toIso(span.endMs)]] as const) : []),
        ['warningLevel', level],
        ['expirationWarningLevel', level.toLowerCase()],
      ],
      lists: [],
    });
  }
  // No instance at all means nothing is usable: RED.
  return { properties: [], lists, warningLevel: worstWarningLevel(levels, 'RED'), events, infos: [] };
}
