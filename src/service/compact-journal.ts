/**
 * `--action=compact-journal`: folds the journal's entries older than a number of days into its
 * base (store/journal-fold.ts), so that the database stops growing with every counter change
 * and replays (verify-database, a card-bound start) stop growing with the days served.
 *
 * Nothing is folded from a journal that does not verify: the fold would seal whatever it holds.
 * A card-bound database is folded only up to the entry its newest card checkpoint seals, which
 * the card's start-up check reads.
 */
import { decodeCheckpointPayload } from '../card/checkpoint.ts';
import type { AssetStore, FoldResult } from '../store/asset-store.ts';
import { verifyDatabase, type VerifyReport } from './verify-database.ts';

export const DAY_MS = 86_400_000;

export interface CompactOptions {
  /** Entries newer than this many days stay in the journal. */
  keepDays: number;
  nowMs: number;
  /** Describes this process in the lock file, for an agent refused meanwhile. */
  describe: string;
}

export type CompactOutcome =
  | { status: 'folded'; result: FoldResult; keptEntries: number; sealedSeq?: number }
  | { status: 'unverified'; report: VerifyReport }
  | { status: 'card_unsealed' };

export function compactJournal(store: AssetStore, options: CompactOptions): CompactOutcome {
  return store.exclusively(options.describe, (): CompactOutcome => {
    const report = verifyDatabase(store);
    if (!report.ok) return { status: 'unverified', report };
    const head = store.journalHead();
    let sealedSeq: number | undefined;
    if (store.meta().cardBinding !== undefined) {
      const checkpoint = store.cardCheckpoint();
      if (checkpoint === undefined) return { status: 'card_unsealed' };
      sealedSeq = decodeCheckpointPayload(checkpoint.payload).journalSeq;
    }
    const result = store.foldJournal({
      throughSeqAtMost: Math.min(head.seq, sealedSeq ?? head.seq),
      entriesBeforeMs: options.nowMs - options.keepDays * DAY_MS,
      atMs: options.nowMs,
    });
    const keptFrom = (result.base?.throughSeq ?? 0) + 1;
    const keptEntries = store.journalHead().seq - keptFrom + 1;
    return { status: 'folded', result, keptEntries, ...(sealedSeq === undefined ? {} : { sealedSeq }) };
  });
}
