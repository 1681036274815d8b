/**
 * `--action=export-assets`: read the requested licensees and everything they
 * need from NetLicensing (or another agent) and write the transfer files
 * `{n}_netlicensing-assets.xml` into --output. Behaviour, options and exit
 * codes: docs/export.md.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Entity, EntityKind } from '../../core/entities.ts';
import { ENTITY_KINDS } from '../../core/entities.ts';
import { ExportConflictError, exportAssets, parseLicenseeList, type ExportProgress } from '../../export/export-assets.ts';
import {
  DEFAULT_RETRIES,
  DEFAULT_TIMEOUT_MS,
  NetLicensingRestClient,
  RemoteError,
  parseBaseUrl,
  type Credentials,
} from '../../export/netlicensing-rest.ts';
import { hashCredential } from '../../platform/credentials.ts';
import { TRANSFER_FILE_LIKE } from '../../transfer/format.ts';
import type { TransferHeader } from '../../transfer/types.ts';
import type { ActionDef, CliIo } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import type { CliOptions } from '../options.ts';
import { envInteger, nlicCredentials } from '../option-values.ts';

/** Environment overrides (documented in docs/export.md); the CLI has no options for them. */
export const ENV_TIMEOUT_MS = 'NLA_EXPORT_TIMEOUT_MS';
export const ENV_RETRIES = 'NLA_EXPORT_RETRIES';



function cardSerialFrom(options: CliOptions): string | undefined {
  if (options.serialNumber !== undefined && options.withoutCard) {
    throw new CliError('give either --serial-number or --without-card, not both', EXIT.usage);
  }
  if (options.withoutCard) return undefined;
  const serial = options.serialNumber?.trim();
  if (serial === undefined) {
    throw new CliError(
      'export-assets binds the export to a smart card: give --serial-number=<serial> (or --without-card)',
      EXIT.usage,
    );
  }
  if (serial === '') throw new CliError('--serial-number is empty', EXIT.usage);
  return serial;
}

/** The --output directory and the transfer files already in it (none when it does not exist yet: the writer creates it). */
function outputDirectoryFrom(cwd: string, output: string): { directory: string; existing: string[] } {
  const directory = resolve(cwd, output);
  if (!existsSync(directory)) return { directory, existing: [] };
  if (!statSync(directory).isDirectory()) throw new CliError(`--output ${directory} is not a directory`, EXIT.usage);
  const existing = readdirSync(directory)
    .filter((name) => TRANSFER_FILE_LIKE.test(name))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  return { directory, existing };
}

/** Draws "licensees 3/9, entities 41" in place on a terminal, at most every 100 ms within a phase; silent otherwise. */
function progressPrinter(io: CliIo, nowMs: () => number): { update(progress: ExportProgress): void; finish(): void } {
  let drawn = false;
  let lastMs = Number.NEGATIVE_INFINITY;
  let lastPhase = '';
  return {
    update(progress) {
      if (!io.isTTY) return;
      // A licenses phase reports once per licensee: thousands of lines a second without this.
      const now = nowMs();
      if (progress.phase === lastPhase && now - lastMs < 100) return;
      lastMs = now;
      lastPhase = progress.phase;
      const phase = progress.phase === 'done' ? 'fetched' : `fetching ${progress.phase}`;
      io.stderr(
        `\r\u001b[Kexport: ${phase} — licensees ${progress.licenseesDone}/${progress.licenseesTotal}, entities ${progress.entities}`,
      );
      drawn = true;
    },
    finish() {
      if (drawn) io.stderr('\r\u001b[K');
      drawn = false;
    },
  };
}

function summaryText(
  counts: Record<EntityKind, number>,
  files: string[],
  bytes: number,
  facts: { productNumber: string; licensees: string[]; host: string; cardSerial: string | undefined; skipped: string[] },
): string {
  const total = ENTITY_KINDS.reduce((sum, kind) => sum + counts[kind], 0);
  const binding = facts.cardSerial === undefined ? 'without card' : `bound to smart card ${facts.cardSerial}`;
  const lines = [
    `exported ${facts.licensees.length} licensee(s) of product ${facts.productNumber} from ${facts.host}, ${binding}`,
    `files written: ${files.length} (${bytes} bytes)`,
    ...files.map((file) => `  ${file}`),
    `entities: ${total}`,
    ...ENTITY_KINDS.map((kind) => `  ${kind}: ${counts[kind]}`),
  ];
  if (facts.skipped.length > 0) lines.push(`skipped (--force): ${facts.skipped.join(', ')}`);
  return `${lines.join('\n')}\n`;
}

export const exportAssetsAction: ActionDef = {
  name: 'export-assets',
  summary: 'export licensees and their assets from NetLicensing into transfer files',
  async run({ options, io, log, cwd, clock, signal }) {
    // Everything that can be checked locally is checked before the first request.
    let baseUrl: string;
    try {
      baseUrl = parseBaseUrl(options.coreBaseHost);
    } catch (error) {
      throw new CliError(`--core.base.host: ${(error as Error).message}`, EXIT.usage);
    }
    const credentials = nlicCredentials(options, 'export-assets needs NetLicensing credentials');
    if (options.licensees === undefined) {
      throw new CliError('export-assets needs --licensees=<number>[,<number>…]', EXIT.usage);
    }
    const requested = parseLicenseeList(options.licensees);
    if (requested.length === 0) throw new CliError('--licensees lists no licensee number', EXIT.usage);
    const cardSerial = cardSerialFrom(options);
    const { directory, existing } = outputDirectoryFrom(cwd, options.output);
    if (existing.length > 0 && !options.force) {
      throw new CliError(
        `${directory} already holds transfer files (${existing.join(', ')}); remove them or use --force to overwrite`,
        EXIT.conflict,
      );
    }
    const timeoutMs = envInteger(io.env, ENV_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, 1);
    const retries = envInteger(io.env, ENV_RETRIES, DEFAULT_RETRIES, 0);

    const client = new NetLicensingRestClient({
      baseUrl,
      credentials,
      timeoutMs,
      retries,
      signal,
      onRequest: ({ url, attempt }) => log.debug(`GET ${url}${attempt > 1 ? ` (attempt ${attempt})` : ''}`),
    });
    const progress = progressPrinter(io, () => clock.nowMs());
    const { entities, report } = exportAssets(client, {
      licensees: requested,
      force: options.force,
      onProgress: (p) => progress.update(p),
      onWarning: (message) => {
        progress.finish();
        log.warn(message);
      },
    });

    // Buffer first: conflicts can surface late, and no file may be written for a failed export.
    const collected: Entity[] = [];
    try {
      for await (const entity of entities) collected.push(entity);
    } catch (error) {
      progress.finish();
      if (error instanceof RemoteError) throw new CliError(error.message, EXIT.remote, { cause: error });
      if (error instanceof ExportConflictError) {
        const hint =
          error.problems.length > 0 && !options.force
            ? '\n(use --force to skip unknown or foreign licensees and accept "," or ";" in numbers)'
            : '';
        throw new CliError(`${error.message}${hint}`, error.onlyNotFound ? EXIT.remote : EXIT.conflict, { cause: error });
      }
      throw error;
    }
    progress.finish();
    if (report.ignored > 0) {
      log.debug(`${report.ignored} entities sent by the server did not belong to this export and were left out`);
    }

    const header: TransferHeader = {
      exportId: randomUUID(),
      createdAt: new Date(clock.nowMs()).toISOString(),
      sourceHost: baseUrl,
      licensees: report.licensees,
    };
    if (cardSerial !== undefined) header.cardSerial = cardSerial;
    if (credentials.kind === 'basic') {
      header.vendorCredentials = hashCredential(credentials.username, credentials.password);
    }

    // Loaded only now: a failed export never needs the writer.
    const { writeTransferFiles, TransferFilesExistError, TransferWriteError } = await import('../../transfer/writer.ts');
    let result: Awaited<ReturnType<typeof writeTransferFiles>>;
    try {
      result = await writeTransferFiles(header, collected, { directory, overwrite: options.force });
    } catch (error) {
      // Files that appeared while the export was running.
      if (error instanceof TransferFilesExistError) {
        throw new CliError(`${error.message} (use --force to overwrite)`, EXIT.conflict, { cause: error });
      }
      if (error instanceof TransferWriteError) {
        throw new CliError(`cannot write the transfer files: ${error.message}`, EXIT.internal, { cause: error });
      }
      const code = (error as NodeJS.ErrnoException).code;
      if (typeof code === 'string') {
        throw new CliError(`cannot write the transfer files to ${directory}: ${(error as Error).message}`, EXIT.internal, {
          cause: error,
        });
      }
      throw error;
    }
    io.stdout(
      summaryText(report.counts, result.files, result.bytes, {
        productNumber: report.productNumber ?? '',
        licensees: report.licensees,
        host: baseUrl,
        cardSerial,
        skipped: report.skipped.map((problem) => problem.number),
      }),
    );
    return EXIT.ok;
  },
};
