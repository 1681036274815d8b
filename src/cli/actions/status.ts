/**
 * `--action=status`: the database at a glance, for a terminal — version,
 * database files, schema, last import, licensees, floating seats, booked
 * quantities, journal, clock drift and card mode. Opens the database
 * read-only, so it works while the agent runs (LMDB readers in another
 * process see the last committed state). Exit 5 when there is no database.
 */
import { join } from 'node:path';
import { formatBytes, formatDuration } from '../../server/ops/status-page.ts';
import { cardModeText, createStatusReader, formatMode, inspectDatabaseFiles } from '../../service/status.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import type { ActionDef } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { versionText } from '../run.ts';

function table(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([key]) => key.length));
  return rows.map(([key, value]) => `${`${key}:`.padEnd(width + 2)}${value}\n`).join('');
}

export const statusAction: ActionDef = {
  name: 'status',
  summary: 'print the state of the database (works while the agent runs)',
  async run({ cwd, io, clock }) {
    const path = join(cwd, 'database');
    const files = inspectDatabaseFiles(path);
    if (!files) {
      throw new CliError(`no database in ${path}: run --action=import-assets in this working directory first`, EXIT.store);
    }
    const store = openAssetStore(path, { readOnly: true });
    try {
      const nowMs = clock.nowMs();
      const snapshot = await createStatusReader(store).snapshot(nowMs);
      const { definitions: defs, runtime } = snapshot;
      const modules = [...defs.modules.values()].sort((a, b) => a.number.localeCompare(b.number));
      const floating = modules.filter((m) => m.licensingModel === 'Floating');
      const ppu = modules.filter((m) => m.licensingModel === 'PayPerUse');
      const seats = floating.reduce((sum, m) => sum + m.floatingCapacity, 0);
      const last = snapshot.lastImport;

      const rows: [string, string][] = [
        ['agent', versionText()],
        ['database', `${path} (${formatBytes(files.sizeBytes)})`],
        ['files', files.files.map((f) => `${f.name} ${formatMode(f.mode)} ${formatBytes(f.sizeBytes)}`).join(', ')],
        ['permissions', files.loose.length === 0 ? 'owner-only' : `WARNING readable by others: ${files.loose.join(', ')}`],
        ['schema version', String(snapshot.schemaVersion)],
        ['database id', snapshot.databaseId],
        [
          'last import',
          last
            ? `export ${last.exportId} at ${last.importedAt} from ${last.sourceHost} (${last.entities} entities in ${last.files} file(s), exported ${last.createdAt})`
            : 'none (run --action=import-assets)',
        ],
        ['licensees', `${defs.counts.licensees} (${runtime.licenseesWithState} with runtime state)`],
        ['products', `${defs.counts.products} with ${defs.counts.modules} module(s), ${defs.counts.licenses} license(s), ${defs.counts.apiKeys} API key(s)`],
        ['floating sessions', `${runtime.seatsInUseTotal} in use of ${seats} seat(s)`],
      ];
      for (const m of floating) rows.push([`  ${m.number}`, `${runtime.seatsInUse.get(m.number) ?? 0} of ${m.floatingCapacity}`]);
      rows.push(['used quantities', `${runtime.quantityBookedTotal} booked by the agent`]);
      for (const m of ppu) {
        const booked = runtime.quantityBooked.get(m.number) ?? 0;
        rows.push([`  ${m.number}`, `${m.quantityUsedImported + booked} of ${m.quantityTotal} used (${booked} booked by the agent)`]);
      }
      const unplaced = runtime.quantityBooked.get('');
      if (unplaced) rows.push(['  (unknown license)', `${unplaced} booked on licenses no longer imported`]);
      rows.push([
        'journal',
        `${snapshot.journal.length} entries${snapshot.journal.lastEntryAtMs !== undefined ? `, newest ${new Date(snapshot.journal.lastEntryAtMs).toISOString()}` : ''}` +
          (snapshot.journal.folded === undefined
            ? ''
            : `; entries 1–${snapshot.journal.folded.throughSeq} folded into its base ${new Date(snapshot.journal.folded.atMs).toISOString()}`),
      ]);
      const pending = store.pendingJournalEntries();
      if (pending > 0) {
        rows.push([
          'journal file',
          `${pending} more entries in runtime.wal, not counted above: a running agent brings them into the database within ` +
            'milliseconds; after a crash the next start (or import) applies them',
        ]);
      }
      if (snapshot.clockDriftMs !== undefined) {
        const behind = snapshot.clockDriftMs < 0 ? ' — WARNING: the system clock is behind a time the agent has answered at' : '';
        rows.push(['clock drift', `${formatDuration(snapshot.clockDriftMs)} (system clock minus the newest time the database has seen)${behind}`]);
      }
      rows.push(['card mode', cardModeText(snapshot.card)]);
      io.stdout(table(rows));
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
};
