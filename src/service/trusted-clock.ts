/**
 * A clock that never runs backwards across restarts: time as the licensing
 * models see it is max(system clock, high-water mark). The high-water mark
 * starts at the newest time the database has seen (last journal entry, last
 * import) and follows the system clock up.
 *
 * Why: setting the system clock back must not restart expired trials, lengthen
 * subscriptions or keep floating sessions alive. A clock set back is detected
 * (beyond `toleranceMs`, to ignore NTP slew) and reported once per episode;
 * the agent keeps serving with the high-water mark as "now". The price: after
 * an accidental jump far into the future, time stands still at that mark until
 * the real clock catches up (documented in README, "Clock").
 */
import type { Clock } from '../platform/clock.ts';

export interface ClockRollback {
  systemMs: number;
  highWaterMs: number;
}

export interface TrustedClock extends Clock {
  /** The newest time seen so far. */
  highWaterMs(): number;
  /** How far the system clock is behind the high-water mark right now (0 when it is not). */
  driftMs(): number;
}

export function createTrustedClock(
  system: Clock,
  initialHighWaterMs: number,
  options: { toleranceMs?: number; onRollback?: (event: ClockRollback) => void } = {},
): TrustedClock {
  const toleranceMs = options.toleranceMs ?? 5_000;
  let highWater = initialHighWaterMs;
  let inRollback = false;
  return {
    nowMs() {
      const systemMs = system.nowMs();
      if (systemMs >= highWater) {
        highWater = systemMs;
        inRollback = false;
        return systemMs;
      }
      if (highWater - systemMs > toleranceMs && !inRollback) {
        inRollback = true;
        options.onRollback?.({ systemMs, highWaterMs: highWater });
      }
      return highWater;
    },
    highWaterMs: () => highWater,
    driftMs: () => Math.max(0, highWater - system.nowMs()),
  };
}

/** The trusted clock for a database: starts at the newest time its journal or last import has seen. */
export function trustedClockForStore(
  store: { journalHead(): { seq: number }; journal(fromSeq?: number): Iterable<{ atMs: number }>; meta(): { lastImport?: { importedAt: string } } },
  system: Clock,
  onRollback?: (event: ClockRollback) => void,
): TrustedClock {
  const head = store.journalHead().seq;
  let lastJournalMs = 0;
  if (head > 0) for (const entry of store.journal(head)) lastJournalMs = entry.atMs;
  const importedMs = Date.parse(store.meta().lastImport?.importedAt ?? '') || 0;
  return createTrustedClock(system, Math.max(lastJournalMs, importedMs), onRollback ? { onRollback } : {});
}
