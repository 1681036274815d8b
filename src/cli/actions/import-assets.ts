/**
 * `--action=import-assets [--input=<dir>] [--force] [--without-card]`:
 * imports the transfer files `{n}_netlicensing-assets.xml` of one export into
 * `<cwd>/database` (created when missing), all or nothing. Format, merge
 * rules and what --force overrides: docs/transfer-format.md.
 *
 * stdout gets the summary (for scripts); progress goes to stderr, and only
 * when stderr is a terminal.
 */
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ENTITY_KINDS } from '../../core/entities.ts';
import { ImportCardError, ImportConflictError, TransferInputError } from '../../importer/errors.ts';
import {
  importTransferFiles,
  planImport,
  type ImportOptions,
  type ImportProgress,
  type ImportSummary,
  type KindCounts,
} from '../../importer/import-transfer.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import type { ActionDef, CliIo } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';

const PROGRESS_INTERVAL_MS = 250;

function countsText(counts: KindCounts): string {
  const parts = ENTITY_KINDS.filter((kind) => counts[kind] > 0).map((kind) => `${counts[kind]} ${kind}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function summaryText(summary: ImportSummary, seconds: number): string {
  const binding = summary.cardSerial === undefined ? 'without card' : `without card (export bound to card ${summary.cardSerial})`;
  const lines = [
    `imported export ${summary.exportId} (created ${summary.createdAt} from ${summary.sourceHost})`,
    `files: ${summary.files.length} (${sizeText(summary.bytes)})`,
    `entities: ${countsText(summary.entities)}`,
    `removed: ${countsText(summary.removed)}`,
    `card: ${binding}`,
  ];
  if (summary.forcedTotal > 0) lines.push(`conflicts overridden by --force: ${summary.forcedTotal}`);
  lines.push(`time: ${seconds.toFixed(2)} s`);
  lines.push(
    `The transfer files may now be removed (they hold sensitive data): ${summary.files.map((f) => f.display).join(', ')}`,
  );
  return `${lines.join('\n')}\n`;
}

/** A one-line progress indicator, redrawn at most every PROGRESS_INTERVAL_MS; stderr, TTY only. */
function progressLine(io: CliIo, nowMs: () => number) {
  let lastMs = Number.NEGATIVE_INFINITY;
  let drawn = false;
  return {
    update(progress: ImportProgress) {
      if (!io.isTTY) return;
      const now = nowMs();
      if (now - lastMs < PROGRESS_INTERVAL_MS) return;
      lastMs = now;
      const percent = progress.totalBytes === 0 ? 100 : Math.floor((progress.bytesRead / progress.totalBytes) * 100);
      io.stderr(`\rimporting: ${percent}% (${progress.entities} entities)   `);
      drawn = true;
    },
    finish() {
      if (drawn) io.stderr('\r\u001b[K');
      drawn = false;
    },
  };
}

export const importAssetsAction: ActionDef = {
  name: 'import-assets',
  summary: 'import assets into the local database from the transfer files created with export-assets',
  async run({ options, io, log, cwd, clock }) {
    const startMs = clock.nowMs();
    const directory = resolve(cwd, options.input);
    const progress = progressLine(io, () => clock.nowMs());
    const importOptions: ImportOptions = {
      directory,
      displayDirectory: options.input,
      force: options.force,
      withoutCard: options.withoutCard,
      nowMs: startMs,
      onProgress: (p) => progress.update(p),
      onWarning: (message) => {
        progress.finish();
        log.warn(message);
      },
    };

    const databasePath = join(cwd, 'database');
    const databaseExisted = existsSync(databasePath);
    let created = false;
    try {
      // Files, headers and the card binding are checked before the database is created.
      const plan = planImport(importOptions);
      log.info(
        `importing export ${plan.headers[0]!.exportId}: ${plan.files.length} file(s), ${sizeText(plan.totalBytes)} from ${options.input}`,
      );
      const store = openAssetStore(databasePath, { create: true, nowMs: startMs });
      created = !databaseExisted;
      let summary: ImportSummary;
      try {
        summary = importTransferFiles(store, { ...importOptions, nowMs: clock.nowMs() }, plan);
      } finally {
        progress.finish();
        await store.close();
      }
      const seconds = (clock.nowMs() - startMs) / 1000;
      log.debug(`import ${summary.exportId} committed`);
      io.stdout(summaryText(summary, seconds));
      return EXIT.ok;
    } catch (error) {
      // A first import that fails leaves no half-made database behind.
      if (created) rmSync(databasePath, { recursive: true, force: true });
      if (error instanceof TransferInputError) throw new CliError(error.message, EXIT.input, { cause: error });
      if (error instanceof ImportConflictError) throw new CliError(error.message, EXIT.conflict, { cause: error });
      if (error instanceof ImportCardError) throw new CliError(error.message, EXIT.card, { cause: error });
      throw error;
    }
  },
};
