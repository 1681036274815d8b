/**
 * `--action=compact-journal [--keep-days=90]`: folds the journal's entries older than
 * --keep-days days into its base (service/compact-journal.ts, store/journal-fold.ts). Run with
 * the agent stopped (it takes the serving agent's lock; exit 4 while one serves), e.g. next to
 * the nightly import. Exit 0 when folded or when nothing was old enough, 5 when the journal does
 * not verify (nothing folded), 6 for a card-bound database without a valid card checkpoint.
 */
import { join } from 'node:path';
import { compactJournal } from '../../service/compact-journal.ts';
import { openAssetStore, RuntimeWriterTakenError } from '../../store/asset-store.ts';
import { damagedDatabaseAdvice } from '../../store/errors.ts';
import type { ActionDef } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { parseWholeNumber } from '../option-values.ts';

/** Longest --keep-days: 100 years, so that the cut-off stays a valid date. */
const KEEP_DAYS_MAX = 36_500;

export const compactJournalAction: ActionDef = {
  name: 'compact-journal',
  summary: 'fold journal entries older than --keep-days into its base',
  async run({ cwd, io, options, clock }) {
    const keepDays = parseWholeNumber(options.keepDays);
    if (keepDays === undefined || keepDays > KEEP_DAYS_MAX) {
      throw new CliError(`--keep-days must be whole days from 0 to ${KEEP_DAYS_MAX}, got "${options.keepDays}"`, EXIT.usage);
    }
    const path = join(cwd, 'database');
    const nowMs = clock.nowMs();
    const store = openAssetStore(path);
    try {
      let outcome;
      try {
        outcome = compactJournal(store, { keepDays, nowMs, describe: `pid ${process.pid}, compact-journal since ${new Date(nowMs).toISOString()}` });
      } catch (error) {
        if (error instanceof RuntimeWriterTakenError) {
          throw new CliError(`${error.message}; stop it, then compact the journal`, EXIT.conflict, { cause: error });
        }
        throw error;
      }
      if (outcome.status === 'unverified') {
        for (const problem of outcome.report.problems) io.stderr(`problem: ${problem}\n`);
        io.stderr(`nothing folded: the journal does not verify. ${damagedDatabaseAdvice(path, { verifying: true })}\n`);
        return EXIT.store;
      }
      if (outcome.status === 'card_unsealed') {
        throw new CliError(
          `nothing folded: ${outcome.problem}; start the agent with its card once (it seals a checkpoint), then compact`,
          EXIT.card,
        );
      }
      const { promoted, waiting, fold, keptEntries, sealedSeq } = outcome;
      const lines: string[] = [];
      if (promoted) lines.push(`journal: the fold through entry ${promoted.base.throughSeq}, sealed by the card, is now the base`);
      if (waiting) {
        lines.push(
          `journal: the fold through entry ${waiting.throughSeq} waits for the card to seal it: start the agent with its card once, ` +
            'then run compact-journal again (nothing else was done)',
        );
      }
      if (fold !== undefined && fold.folded === 0) {
        const limit = sealedSeq === undefined ? '' : ` up to entry ${sealedSeq}, the newest the card sealed`;
        lines.push(`journal: nothing to fold: no entry older than ${keepDays} day${keepDays === 1 ? '' : 's'}${limit}`);
      } else if (fold?.pending !== undefined) {
        lines.push(
          `journal: folded ${fold.folded} entries into a fold through entry ${fold.pending.throughSeq} (the runtime state of ${fold.pending.licensees} licensees); ` +
            "card-bound: it becomes the base at the next compact-journal, once the agent's next start has had the card seal it",
        );
      } else if (fold?.base !== undefined) {
        lines.push(`journal: folded ${fold.folded} entries; entries 1–${fold.base.throughSeq} are now the base (the runtime state of ${fold.base.licensees} licensees)`);
      }
      lines.push(`journal: ${keptEntries} entries kept after the base (fold markers included)`);
      const deleted = (promoted?.recordsDeleted ?? 0) + (fold?.recordsDeleted ?? 0);
      if (deleted > 0) lines.push(`journal records deleted: ${deleted} (their space is reused by the database; --action=backup writes a compacted copy)`);
      io.stdout(`${lines.join('\n')}\n`);
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
};
