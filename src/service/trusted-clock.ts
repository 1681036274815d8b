/**
 * A clock that never runs backwards across restarts: time as the licensing
 * models see it is max(system clock, high-water mark). The high-water mark
 * starts at the newest time the database has seen (last journal entry, last
 * import, the clock mark a serving agent records: recordClockMarks) and
 * follows the system clock up.
 *
 * Why: setting the system clock back must not restart expired trials, lengthen
 * subscriptions or keep floating sessions alive. A clock set back is detected
 * (beyond `toleranceMs`, to ignore NTP slew) and reported once per episode;
 * the agent keeps serving from the high-water mark, which goes on with the
 * time that passes as the monotonic clock measures it (Clock.monotonicMs): a
 * clock kept behind does not stop time (it did before: licensing time stood at
 * the mark for as long as the clock stayed behind, and a trial never ended).
 * The price: after an accidental jump far into the future, licensing time
 * stays that far ahead until the real clock catches up (documented in README,
 * "Clock").
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
  const monotonic = () => system.monotonicMs?.() ?? 0;
  let highWater = initialHighWaterMs;
  /** The monotonic clock when highWater was last moved. */
  let highWaterAtMono = monotonic();
  let inRollback = false;
  return {
    nowMs() {
      const systemMs = system.nowMs();
      const mono = monotonic();
      // The mark, moved on by the whole milliseconds that have passed since (times stay integers, as
      // the card's checkpoints require; the fraction is carried to the next call). Never back.
      const elapsed = Math.max(0, Math.floor(mono - highWaterAtMono));
      const carried = highWater + elapsed;
      highWaterAtMono += elapsed;
      if (systemMs >= carried) {
        highWater = systemMs;
        highWaterAtMono = mono;
        inRollback = false;
        return systemMs;
      }
      highWater = carried;
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

/** What a database keeps of the times it has seen. */
export interface TimesSeen {
  journalHead(): { seq: number };
  journal(fromSeq?: number): Iterable<{ atMs: number }>;
  meta(): { lastImport?: { importedAt: string } };
  clockMark(): number;
}

/**
 * The newest time a database has seen: its journal's newest entry, its last import, and the clock
 * mark of the agent that served it last. Without the mark, validates that change nothing would leave
 * no trace: after a restart with the clock set back, an expired trial was valid again (the issue-6
 * review reproduced it with libfaketime).
 */
export function newestTimeSeen(store: TimesSeen): number {
  const head = store.journalHead().seq;
  let lastJournalMs = 0;
  if (head > 0) for (const entry of store.journal(head)) lastJournalMs = entry.atMs;
  const importedMs = Date.parse(store.meta().lastImport?.importedAt ?? '') || 0;
  return Math.max(lastJournalMs, importedMs, store.clockMark());
}

/** The trusted clock for a database: starts at the newest time it has seen. */
export function trustedClockForStore(store: TimesSeen, system: Clock, onRollback?: (event: ClockRollback) => void): TrustedClock {
  return createTrustedClock(system, newestTimeSeen(store), onRollback ? { onRollback } : {});
}

/** How often a serving agent records its clock's high-water mark (and once more when it stops). */
export const CLOCK_MARK_INTERVAL_MS = 60_000;

export interface ClockMarks {
  /** Records the mark one last time (the stop); resolves when it is durable or has failed. */
  stop(): Promise<void>;
}

/**
 * Records `clock`'s high-water mark in the store every `intervalMs` when it has moved, and at the
 * stop: a restart then starts no earlier than the newest time this agent answered at (up to one
 * interval less after a crash). A failed write is reported (`warn`) and tried again at the next interval.
 */
export function recordClockMarks(
  store: { recordClockMark(atMs: number): Promise<void> },
  clock: TrustedClock,
  options: { intervalMs?: number; warn?: (message: string) => void } = {},
): ClockMarks {
  let recorded = 0;
  let writing: Promise<void> = Promise.resolve();
  const record = () => {
    const mark = clock.highWaterMs();
    if (mark <= recorded) return writing;
    writing = writing
      .then(() => store.recordClockMark(mark))
      .then(
        () => void (recorded = Math.max(recorded, mark)),
        (error: unknown) => options.warn?.(`cannot record the clock's high-water mark: ${(error as Error).message}`),
      );
    return writing;
  };
  const timer = setInterval(record, options.intervalMs ?? CLOCK_MARK_INTERVAL_MS);
  timer.unref?.();
  return {
    stop() {
      clearInterval(timer);
      return record();
    },
  };
}
