/**
 * `--action=verify-database`: checks the journal's hash chain and that every
 * counter equals the replay of the journal. Exit 0 when sound, 5 otherwise.
 */
import { join } from 'node:path';
import { verifyDatabase } from '../../service/verify-database.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import type { ActionDef } from '../actions.ts';
import { EXIT } from '../exit-codes.ts';

export const verifyDatabaseAction: ActionDef = {
  name: 'verify-database',
  summary: 'check the journal hash chain and recompute every counter from it',
  async run({ cwd, io }) {
    const store = openAssetStore(join(cwd, 'database'));
    try {
      const report = verifyDatabase(store);
      const t = report.totals;
      io.stdout(
        `journal entries: ${report.entries}\nlicensees with runtime state: ${report.licensees}\n` +
          `used quantity: ${t.usedQuantity}\nopen floating sessions: ${t.sessions}\n` +
          `licenses started by the agent: ${t.createdLicenses}\nstart dates set by the agent: ${t.startDates}\n` +
          `node secrets registered: ${t.nodeSecrets}\n`,
      );
      if (report.ok) {
        io.stdout('database verified: journal chain intact, every counter matches its replay\n');
        return EXIT.ok;
      }
      for (const problem of report.problems) io.stderr(`problem: ${problem}\n`);
      io.stderr('database verification FAILED: restore a backup or re-import (see README, "Backup and restore")\n');
      return EXIT.store;
    } finally {
      await store.close();
    }
  },
};
