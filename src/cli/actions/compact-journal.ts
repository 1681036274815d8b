/**
 * `--action=compact-journal [--keep-days=90]`: folds the journal's entries older than
 * --keep-days days into its base (service/compact-journal.ts, store/journal-fold.ts). Run with
 * the agent stopped (it takes the serving agent's lock; exit 4 while one serves), e.g. next to
 * the nightly import. Exit 0 when folded or when nothing was old enough, 5 when the journal does
 * not verify (nothing folded), 6 for a card-bound database without a card checkpoint.
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
          'nothing folded: this database is bound to a smart card but holds no card checkpoint; start the agent with its card once (it seals one), then compact',
          EXIT.card,
        );
      }
      const { result, keptEntries, sealedSeq } = outcome;
      const base = result.base;
      const sealed = sealedSeq === undefined ? '' : ` (card-bound: up to entry ${sealedSeq}, the newest the card sealed)`;
      if (result.folded === 0) {
        io.stdout(`journal: nothing to fold: no entry older than ${keepDays} day${keepDays === 1 ? '' : 's'}${sealed}; ${keptEntries} entries kept\n`);
      } else {
        io.stdout(
          `journal: folded ${result.folded} entries; entries 1–${base!.throughSeq} are now the base ` +
            `(the runtime state of ${base!.licensees} licensees), ${keptEntries} entries kept${sealed}\n`,
        );
      }
      if (result.recordsDeleted > 0) {
        io.stdout(`journal records deleted: ${result.recordsDeleted} (their space is reused by the database; --action=backup writes a compacted copy)\n`);
      }
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
};
