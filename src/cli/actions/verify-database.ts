/**
 * `--action=verify-database`: reads every record of the database (LMDB shows
 * a damaged page only when it is read), checks that the definitions refer to
 * each other as imports leave them, checks the journal's hash chain and that
 * every counter equals the replay of the journal. Exit 0 when sound, 5
 * otherwise. Run in a child process by the CLI (cli/crash-guard.ts), so that
 * damage that makes LMDB end the process is reported as damage too.
 */
import { join } from 'node:path';
import { ENTITY_KINDS } from '../../core/entities.ts';
import { sealedJournalSeqOf, sealedSeqIn, verifyDatabase } from '../../service/verify-database.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import { damagedDatabaseAdvice, StoreError } from '../../store/errors.ts';
import type { ActionDef } from '../actions.ts';
import { EXIT } from '../exit-codes.ts';

export const verifyDatabaseAction: ActionDef = {
  name: 'verify-database',
  summary: 'read every record, check the definitions, the journal hash chain and every counter against its replay',
  async run({ cwd, io }) {
    const path = join(cwd, 'database');
    const failed = (problems: string[]) => {
      for (const problem of problems) io.stderr(`problem: ${problem}\n`);
      io.stderr(`database verification FAILED: ${damagedDatabaseAdvice(path, { verifying: true })}\n`);
      return EXIT.store;
    };
    // First read-only: nothing is written to a damaged database (the open below applies the
    // runtime journal file's pending records when no agent serves the database).
    let reader;
    try {
      reader = openAssetStore(path, { readOnly: true });
    } catch (error) {
      // Damage found at open (LMDB's main tree, the meta record): what it is, then what to do.
      if (error instanceof StoreError && error.code === 'corrupt') {
        return failed([`the database cannot be opened: ${(error.cause as Error | undefined)?.message ?? error.message}`]);
      }
      throw error;
    }
    let integrity;
    try {
      integrity = reader.checkIntegrity();
    } finally {
      await reader.close();
    }
    const records = integrity.databases.reduce((sum, d) => sum + d.records, 0);
    const defs = integrity.definitions;
    io.stdout(
      `records read: ${records} in ${integrity.databases.length} sub-databases\n` +
        `definitions: ${ENTITY_KINDS.map((kind) => `${defs[kind]} ${kind}`).join(', ')}\n`,
    );
    // Unreadable records: nothing more is read, and nothing written (the journal check below may apply the journal file).
    if (integrity.unreadable.length > 0) return failed([...integrity.unreadable, ...integrity.inconsistent]);

    const store = openAssetStore(path);
    try {
      // A card-bound database: a journal base counts only once the card sealed it.
      const sealed = sealedJournalSeqOf(store);
      const report = verifyDatabase(store, 20, sealedSeqIn(sealed));
      if (sealed !== undefined && 'problem' in sealed) report.problems.unshift(`smart card: ${sealed.problem}`);
      const t = report.totals;
      const base = report.base;
      io.stdout(
        `journal entries: ${report.entries}` +
          (base === undefined ? '' : ` after its base (entries 1–${base.throughSeq}, folded ${new Date(base.foldedAtMs).toISOString()}: the state of ${base.licensees} licensees)`) +
          (report.pending === undefined ? '' : `; a fold through entry ${report.pending.throughSeq} waits for the card's seal`) +
          `\nlicensees with runtime state: ${report.licensees}\n` +
          `used quantity: ${t.usedQuantity}\nopen floating sessions: ${t.sessions}\n` +
          `licenses started by the agent: ${t.createdLicenses}\nstart dates set by the agent: ${t.startDates}\n` +
          `node secrets registered: ${t.nodeSecrets}\n`,
      );
      const problems = [...integrity.inconsistent, ...report.problems];
      if (problems.length > 0) return failed(problems);
      io.stdout('database verified: every record readable, definitions consistent, journal chain intact, every counter matches its replay\n');
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
};
