/**
 * `--action=import-assets [--input=<dir>] [--force] [--without-card]`:
 * imports the transfer files `{n}_netlicensing-assets.xml` of one export into
 * `<cwd>/database` (created when missing), all or nothing. Format, merge
 * rules and what --force overrides: docs/transfer-format.md.
 *
 * Smart card (docs/smart-card.md, "Integration"): a card-bound export is
 * imported with its card (PIN from NLA_CARD_PIN or --card.pin-file) and
 * binds the database to it with a first card checkpoint; an import into a
 * bound database first verifies it with the bound card (a rolled-back
 * database must not be re-imported into). Card I/O happens before the
 * import's first transaction.
 *
 * stdout gets the summary (for scripts); progress goes to stderr, and only
 * when stderr is a terminal.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ENTITY_KINDS } from '../../core/entities.ts';
import { bindDatabase, verifyDatabase } from '../../card/database.ts';
import { openBoundCard, openCard } from '../../card/open.ts';
import { readCardPin } from '../../card/pin.ts';
import { CardError, serialMatches, type Card } from '../../card/types.ts';
import { ImportCardError, ImportConflictError, TransferInputError } from '../../importer/errors.ts';
import type { ReadThread } from '../../importer/read-batches.ts';
import {
  importTransferFiles,
  planImport,
  startImportReader,
  type ImportOptions,
  type ImportProgress,
  type ImportSummary,
  type KindCounts,
} from '../../importer/import-transfer.ts';
import { claimImport, openAssetStore, removeFailedFirstImport, servingAgent, StagedImportError } from '../../store/asset-store.ts';
import { runtimeJournalLogging } from './runtime-writer-claim.ts';
import type { Logger } from '../../platform/log.ts';
import type { ActionContext, ActionDef, CliIo } from '../actions.ts';
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

export function summaryText(summary: ImportSummary, seconds: number, boundSerial?: string): string {
  const binding =
    boundSerial !== undefined
      ? `bound to smart card ${boundSerial}`
      : summary.cardSerial === undefined
        ? 'without card'
        : `without card (export bound to card ${summary.cardSerial})`;
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
    let created = false;
    let card: Card | undefined;
    let reader: ReadThread | undefined;
    let importLock: { release(): void } | undefined;
    let directoryMade = false;
    try {
      // Files and headers are checked before the database is created.
      const plan = planImport(importOptions);
      // The reader thread (large imports) starts now: its start-up overlaps opening the card and the database.
      reader = startImportReader(plan);
      const header = plan.headers[0]!;
      log.info(`importing export ${header.exportId}: ${plan.files.length} file(s), ${sizeText(plan.totalBytes)} from ${options.input}`);
      const bindTo = header.cardSerial !== undefined && !options.withoutCard ? header.cardSerial : undefined;
      const exportContext = `export ${header.exportId} is bound to smart card ${bindTo ?? ''}`;
      const withoutCardHint = ' (to run this host without a card, ask for an export made with --without-card)';
      // The PIN is asked for before anything is created (and before libpcsclite is loaded).
      let pin = bindTo === undefined ? undefined : withCardContext(() => cardPin(options, io, log, exportContext), exportContext, withoutCardHint);
      // Held until the end: whatever this import creates, no other import has used (claimImport).
      directoryMade = !existsSync(databasePath);
      importLock = claimImport(databasePath, `import-assets, pid ${process.pid}, since ${new Date(startMs).toISOString()}`);
      // Decided under the lock: a database another import created before it is not this one's to remove.
      // Set before the open, which may fail after creating files.
      created = !existsSync(join(databasePath, 'data.mdb'));
      const store = openAssetStore(databasePath, { create: true, nowMs: startMs, ...runtimeJournalLogging(log) });
      let summary: ImportSummary;
      let boundSerial: string | undefined;
      try {
        const meta = store.meta();
        const bound = meta.cardBinding;
        let cardOption: ImportOptions['card'];
        if (bound && bindTo !== undefined && !serialMatches(bindTo, { ...bound, reader: '' })) {
          throw new CliError(
            `this database is bound to smart card ${bound.serial}, but export ${header.exportId} is bound to card ${bindTo}: ` +
              `import it into an empty working directory (or re-export it for card ${bound.serial})`,
            EXIT.card,
          );
        }
        if (bound && (bindTo !== undefined || options.force)) {
          // A re-import (or, with --force, unbinding) must not accept a rolled-back database.
          const context = `this database is bound to smart card ${bound.serial}`;
          pin ??= await withCardContextAsync(async () => cardPin(options, io, log, context), context);
          card = await withCardContextAsync(async () => {
            try {
              return await openBoundCard(bound, { pin: pin! });
            } catch (error) {
              // The agent serving this database holds its card for itself (not scdaemon, as the card layer guesses).
              const serving = error instanceof CardError && error.code === 'card_in_use' ? servingAgent(databasePath) : undefined;
              if (serving === undefined) throw error;
              throw new CardError(
                'card_in_use',
                `the agent serving this database (${serving}) holds its smart card: stop it, import, and start it again`,
                { cause: error },
              );
            }
          }, context);
          const verdict = await withCardContextAsync(() => verifyDatabase(card!, store, bound, clock.nowMs()), context);
          log.info(verdict.message);
          if (bindTo !== undefined) cardOption = { binding: bound };
        } else if (bindTo !== undefined && !bound) {
          if (meta.lastImport !== undefined && !options.force) {
            // A database made without card stays so, unless the operator says otherwise.
            throw new ImportConflictError(
              [
                {
                  kind: 'Database',
                  number: '',
                  reason: `the database runs without a smart card, export ${header.exportId} binds it to card ${bindTo} (--force binds the database to that card; to keep it without a card, import an export made with --without-card)`,
                  where: '',
                },
              ],
              1,
            );
          }
          card = await withCardContextAsync(() => openCard({ serial: bindTo, pin: pin! }), exportContext, withoutCardHint);
          const { binding, checkpoint } = await withCardContextAsync(() => bindDatabase(card!, store, clock.nowMs()), exportContext);
          cardOption = { binding, checkpoint };
        }
        summary = importTransferFiles(
          store,
          { ...importOptions, nowMs: clock.nowMs(), ...(cardOption ? { card: cardOption } : {}), ...(reader ? { startedReader: reader } : {}) },
          plan,
        );
        boundSerial = cardOption?.binding.serial;
      } finally {
        progress.finish();
        await card?.close().catch(() => undefined);
        await store.close();
      }
      const seconds = (clock.nowMs() - startMs) / 1000;
      log.debug(`import ${summary.exportId} committed (files parsed ${summary.readThread === 'worker' ? 'on a reader thread' : 'inline'})`);
      io.stdout(summaryText(summary, seconds, boundSerial));
      return EXIT.ok;
    } catch (error) {
      // Not handed to the import (it failed before): the reader thread ends with it.
      reader?.stop();
      // A first import that fails leaves no half-made database behind (under its lock, in an order
      // that is safe for an import starting meanwhile: removeFailedFirstImport).
      if (created) removeFailedFirstImport(databasePath, { removeDirectory: directoryMade });
      if (error instanceof TransferInputError) throw new CliError(error.message, EXIT.input, { cause: error });
      if (error instanceof ImportConflictError) throw new CliError(error.message, EXIT.conflict, { cause: error });
      if (error instanceof ImportCardError) throw new CliError(error.message, EXIT.card, { cause: error });
      // Another import runs, or took over, or definitions changed meanwhile: nothing of this one was applied.
      if (error instanceof StagedImportError) throw new CliError(`import refused: ${error.message}`, EXIT.store, { cause: error });
      throw error;
    } finally {
      importLock?.release();
    }
  },
};

/** The PIN (never logged); a warning when its file is readable by others. */
function cardPin(options: ActionContext['options'], io: CliIo, log: Logger, purpose: string): string {
  const { pin, warning } = readCardPin({ ...(options.cardPinFile === undefined ? {} : { pinFile: options.cardPinFile }), env: io.env }, purpose);
  if (warning) log.warn(warning);
  return pin;
}

/** Card errors get what was being done in front (and a hint behind); the code stays. */
function rethrowWithContext(error: unknown, context: string, hint = ''): never {
  if (error instanceof CardError) {
    const message = error.message.startsWith(context) ? error.message : `${context}: ${error.message}`;
    throw new CardError(error.code, `${message}${hint}`, { cause: error, details: error.details });
  }
  throw error;
}

function withCardContext<T>(action: () => T, context: string, hint?: string): T {
  try {
    return action();
  } catch (error) {
    return rethrowWithContext(error, context, hint);
  }
}

async function withCardContextAsync<T>(action: () => Promise<T>, context: string, hint?: string): Promise<T> {
  try {
    return await action();
  } catch (error) {
    return rethrowWithContext(error, context, hint);
  }
}
