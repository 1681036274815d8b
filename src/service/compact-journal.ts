/**
 * `--action=compact-journal`: folds the journal's entries older than a number of days into its
 * base (store/journal-fold.ts), so that the database stops growing with every counter change
 * and replays (verify-database, a card-bound start) stop growing with the days served.
 *
 * Nothing is folded from a journal that does not verify: the fold would seal whatever it holds.
 * A card-bound database folds in two steps (journal-fold.ts says why): a run makes a pending fold,
 * up to the entry the card's newest checkpoint seals at most; the agent's next start checks it and
 * seals its marker; the next run makes it the base, deletes what it folded, and folds on.
 */
import type { AssetStore, FoldResult, JournalBase } from '../store/asset-store.ts';
import { sealedJournalSeqOf, verifyDatabase, type VerifyReport } from './verify-database.ts';

export const DAY_MS = 86_400_000;

export interface CompactOptions {
  /** Entries newer than this many days stay in the journal. */
  keepDays: number;
  nowMs: number;
  /** Describes this process in the lock file, for an agent refused meanwhile. */
  describe: string;
}

export type CompactOutcome =
  | {
      status: 'compacted';
      /** A pending fold the card had sealed, now the base. */
      promoted?: { base: JournalBase; recordsDeleted: number };
      /** A pending fold whose marker the card has not sealed yet: nothing else was done. */
      waiting?: JournalBase;
      /** This run's fold (folded 0: nothing old enough); absent when waiting. */
      fold?: FoldResult;
      /** Entries the journal holds after the run (after the base). */
      keptEntries: number;
      /** Card-bound: the entry the card's newest checkpoint seals. */
      sealedSeq?: number;
    }
  | { status: 'unverified'; report: VerifyReport }
  | { status: 'card_unsealed'; problem: string };

export function compactJournal(store: AssetStore, options: CompactOptions): CompactOutcome {
  return store.exclusively(options.describe, (): CompactOutcome => {
    const sealed = sealedJournalSeqOf(store);
    if (sealed !== undefined && 'problem' in sealed) return { status: 'card_unsealed', problem: sealed.problem };
    const sealedSeq = sealed?.seq;
    const report = verifyDatabase(store, 20, sealedSeq);
    if (!report.ok) return { status: 'unverified', report };
    const kept = () => store.journalHead().seq - (store.journalBase()?.throughSeq ?? 0);
    const card = sealedSeq === undefined ? {} : { sealedSeq };

    let promoted: { base: JournalBase; recordsDeleted: number } | undefined;
    const pending = store.journalPendingFold();
    if (pending !== undefined) {
      // Without a card (a binding removed since) there is no seal to wait for.
      if (sealedSeq !== undefined && pending.markerSeq > sealedSeq) return { status: 'compacted', waiting: pending, keptEntries: kept(), ...card };
      promoted = store.promotePendingFold();
    }
    const fold = store.foldJournal(
      { throughSeqAtMost: Math.min(store.journalHead().seq, sealedSeq ?? Infinity), entriesBeforeMs: options.nowMs - options.keepDays * DAY_MS, atMs: options.nowMs },
      sealedSeq === undefined ? 'now' : 'pending',
    );
    return { status: 'compacted', ...(promoted ? { promoted } : {}), fold, keptEntries: kept(), ...card };
  });
}
