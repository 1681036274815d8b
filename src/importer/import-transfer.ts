/**
 * Imports a set of transfer files into the asset store: all files of one
 * export, streamed into the store's spare definitions generation in many
 * small transactions, then switched to in ONE small transaction — the
 * commit point — so the database ends up with the whole export applied or
 * unchanged (docs/transfer-format.md, "Import"), and a server running
 * meanwhile keeps serving the previous definitions and writing its runtime
 * state between two batches.
 *
 * Memory does not grow with the size of the export: a batch of items (a few
 * MiB of input) is held at a time; what must be remembered across items
 * lives in the staging generation itself. A second occurrence of a number is
 * found there (it is staged already); after the last file, the definitions
 * of the served generation that the import keeps are carried over into the
 * staging generation, page by page. Only product-level definitions
 * (products, modules, templates — a handful) are also kept in small
 * in-memory sets.
 *
 * Merge rules: definitions are replaced; runtime state is never touched;
 * licenses and API keys of an exported licensee that the export no longer
 * has are removed, as are modules and templates of an exported product;
 * entities of licensees outside the export stay. A change of parent, of a
 * module's licensing model or of a template's license type, and a change of
 * the database's card binding (bound ↔ without card), are conflicts:
 * refused unless `force`. The card itself (opening it, the binding
 * checkpoint, the rollback check of a bound database) is the import
 * action's part; it hands the binding in as `ImportOptions.card`.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  ENTITY_KINDS,
  FORBIDDEN_NUMBER_CHARACTERS,
  isEntityKind,
  PARENT_PROPERTY,
  REQUIRED_PROPERTIES,
  type Entity,
  type EntityKind,
} from '../core/entities.ts';
import { looksLikeHashedKey } from '../store/layout.ts';
import { parseIso } from '../core/time.ts';
import type { StoredCheckpoint } from '../card/checkpoint.ts';
import type { CardBinding } from '../card/open.ts';
import { serialMatches } from '../card/types.ts';
import type { AssetStore, ImportRecord, StagingTransaction, StoreMeta } from '../store/asset-store.ts';
import { FORMAT_VERSION, HEADER, mayFollow, TRANSFER_FILE_LIKE, transferFileName, transferFileNumber } from '../transfer/format.ts';
import {
  ImportCardError,
  ImportConflictError,
  MAX_REPORTED_CONFLICTS,
  TransferInputError,
  type ImportConflict,
} from './errors.ts';
import {
  COLLECT_EVERY_BYTES,
  readBatchesInline,
  readBatchesInWorker,
  startReadThread,
  type ReadBatch,
  type ReadBatchesOptions,
  type ReadThread,
} from './read-batches.ts';
import { forEachTokenItem, readTransferFile, type TransferItem } from './transfer-file.ts';

/**
 * A field that definitions written by imports of earlier versions carry
 * (the id of the import that wrote them); dropped when they are carried over.
 */
const LEGACY_IMPORT_MARK = 'importMark';

export interface TransferFileRef {
  n: number;
  path: string;
  /** How messages name the file (relative to what the user typed). */
  display: string;
  bytes: number;
}

export interface TransferHeaderInfo {
  formatVersion: string;
  exportId: string;
  createdAt: string;
  sourceHost: string;
  cardSerial?: string;
  file: number;
  files: number;
  /** File 1 only: the raw JSON array of requested licensee numbers. */
  licenseesJson?: string;
  licenseeCount?: number;
  vendorCredentials?: { user: string; salt: string; hash: string };
  line: number;
  column: number;
  /** Hex SHA-256 of the header's canonical encoding (transfer-file.ts): tells whether a file changed after planning. */
  contentHash: string;
}

export interface ImportProgress {
  bytesRead: number;
  totalBytes: number;
  entities: number;
}

export interface ImportOptions {
  /** Directory holding the transfer files. */
  directory: string;
  /** How to show that directory in messages (what the user typed); defaults to `directory`. */
  displayDirectory?: string;
  force: boolean;
  /** --without-card: import a card-bound export into a database without card. */
  withoutCard: boolean;
  /**
   * The card a card-bound export is imported with (the caller opened and,
   * for a bound database, verified it): the database is bound to it, and
   * `checkpoint` (when binding anew) becomes its first card checkpoint.
   */
  card?: { binding: CardBinding; checkpoint?: StoredCheckpoint };
  /** The import time recorded in the database (ms since epoch). */
  nowMs: number;
  chunkBytes?: number;
  /** Input bytes per staging transaction (default 1 MiB): bounds how long a server's writes wait for the import. */
  batchBytes?: number;
  /**
   * Where the files are parsed: on a worker thread (parsing and writing then
   * overlap; an error if none can be started), inline, or (default) on a
   * worker for imports of WORKER_MIN_BYTES or more, inline when no worker
   * can be started. Both read the same batches.
   */
  readThread?: 'worker' | 'inline';
  /** A reader thread started ahead (startImportReader): used when the files are read on a worker; stopped in any case. */
  startedReader?: ReadThread;
  /** Served definitions per carry-over transaction (default 4096). */
  carryOverPage?: number;
  onProgress?: (progress: ImportProgress) => void;
  /** Called after each committed staging transaction, outside any transaction (progress, tests). */
  onBatch?: (batch: ImportBatch) => void;
  /** Called once the switch to the new definitions has committed, before the old ones are cleared (tests). */
  onSwitched?: () => void;
  /** A conflict overridden by `force`, or a forbidden character accepted by it. */
  onWarning?: (message: string) => void;
}

export interface ImportBatch {
  /** `entities`: items of the export; `carry-over`: served definitions the import keeps. */
  phase: 'entities' | 'carry-over';
  /** Staging transactions committed so far (both phases). */
  batches: number;
}

export type KindCounts = Record<EntityKind, number>;

export interface ImportSummary {
  exportId: string;
  createdAt: string;
  sourceHost: string;
  cardSerial?: string;
  files: TransferFileRef[];
  bytes: number;
  /** Entities written, per kind. */
  entities: KindCounts;
  /** Stale definitions removed, per kind. */
  removed: KindCounts;
  licenseesRequested: number;
  /** Conflicts that `force` overrode (first MAX_REPORTED_CONFLICTS) and how many there were. */
  forced: ImportConflict[];
  forcedTotal: number;
  /** Where the files were parsed (see ImportOptions.readThread). */
  readThread: 'worker' | 'inline';
}

const zeroCounts = (): KindCounts => Object.fromEntries(ENTITY_KINDS.map((k) => [k, 0])) as KindCounts;

/** Finds `{n}_netlicensing-assets.xml` in a directory; complete-set checks happen after the headers are read. */
export function findTransferFiles(directory: string, displayDirectory = directory): TransferFileRef[] {
  let names: string[];
  try {
    if (!statSync(directory).isDirectory()) throw new Error('not a directory');
    names = readdirSync(directory);
  } catch (error) {
    throw new TransferInputError(displayDirectory, 0, 0, `cannot read the input directory: ${(error as Error).message}`);
  }
  const files: TransferFileRef[] = [];
  for (const name of names) {
    if (!TRANSFER_FILE_LIKE.test(name)) continue;
    const display = join(displayDirectory, name);
    const n = transferFileNumber(name);
    if (n === undefined) {
      throw new TransferInputError(display, 0, 0, `not a valid transfer file name: use {n}_netlicensing-assets.xml with n = 1, 2, … (no leading zeros)`);
    }
    const path = join(directory, name);
    let bytes: number;
    try {
      const stat = statSync(path);
      if (!stat.isFile()) throw new Error('not a regular file');
      bytes = stat.size;
    } catch (error) {
      // A dangling symlink, a directory or a device under a transfer file's name: the input's fault.
      throw new TransferInputError(display, 0, 0, `cannot read the transfer file: ${(error as Error).message}`);
    }
    files.push({ n, path, display, bytes });
  }
  if (files.length === 0) {
    throw new TransferInputError(displayDirectory, 0, 0, `no transfer files ({n}_netlicensing-assets.xml) found`);
  }
  return files.sort((a, b) => a.n - b.n);
}

function parseHeader(item: TransferItem, file: TransferFileRef, contentHash: string): TransferHeaderInfo {
  const fail = (reason: string): never => {
    throw new TransferInputError(file.display, item.line, item.column, reason);
  };
  const props = item.props;
  const required = (name: string): string => {
    const value = props[name];
    if (value === undefined || value === '') fail(`the TransferHeader has no ${name}`);
    return value!;
  };
  const formatVersion = required(HEADER.formatVersion);
  if (formatVersion !== FORMAT_VERSION) {
    fail(`transfer format version ${formatVersion} is not supported (this agent reads version ${FORMAT_VERSION}); use a matching agent version`);
  }
  const integer = (name: string): number => {
    const text = required(name);
    if (!/^[1-9]\d{0,8}$/.test(text)) fail(`header ${name} must be a positive integer, got "${text}"`);
    return Number(text);
  };
  const header: TransferHeaderInfo = {
    formatVersion,
    exportId: required(HEADER.exportId),
    createdAt: required(HEADER.createdAt),
    sourceHost: required(HEADER.sourceHost),
    file: integer(HEADER.file),
    files: integer(HEADER.files),
    line: item.line,
    column: item.column,
    contentHash,
  };
  // The form the export writes (toISOString): Date.parse alone took "1" for a date.
  if (!EXPORT_TIME.test(header.createdAt) || parseIso(header.createdAt) === undefined) {
    fail(`header createdAt is not an ISO-8601 time with a zone (as 2026-11-29T12:00:00.000Z): "${header.createdAt.slice(0, 80)}"`);
  }
  const cardSerial = props[HEADER.cardSerial];
  const withoutCard = props[HEADER.withoutCard];
  if (cardSerial !== undefined && withoutCard !== undefined) fail('the header has both cardSerial and withoutCard');
  if (cardSerial !== undefined) {
    if (cardSerial === '') fail('header cardSerial is empty');
    header.cardSerial = cardSerial;
  } else if (withoutCard !== 'true') {
    fail('the header needs cardSerial or withoutCard=true');
  }
  if (header.file !== file.n) fail(`the header says this is file ${header.file}, but the file is named ${transferFileName(file.n)}`);
  if (header.file > header.files) fail(`the header says file ${header.file} of ${header.files}`);
  if (file.n === 1) {
    const json = required(HEADER.licensees);
    const count = countLicenseeList(json);
    if (count === undefined) fail('header licensees must be a JSON array of licensee numbers');
    header.licenseesJson = json;
    header.licenseeCount = count!;
    const user = props[HEADER.vendorUser];
    const salt = props[HEADER.vendorSalt];
    const hash = props[HEADER.vendorHash];
    const given = [user, salt, hash].filter((v) => v !== undefined && v !== '').length;
    if (given !== 0 && given !== 3) fail('header vendorUser, vendorSalt and vendorHash must be given together');
    if (given === 3) {
      // As the export writes them (platform/credentials.ts): anything else replaced working credentials with none that match.
      if (!/^[0-9a-f]{32}$/.test(salt!) || !/^[0-9a-f]{64}$/.test(hash!)) fail('header vendorSalt and vendorHash must be 32 and 64 hexadecimal digits (a salt of 16 bytes, a hash of 32)');
      header.vendorCredentials = { user: user!, salt: salt!, hash: hash! };
    }
  }
  return header;
}

/** The characters of a JSON string between its quotes (RFC 8259), as a regular expression source. */
const JSON_STRING_CONTENT = String.raw`(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*`;

/** Walks a JSON array of strings without building it (it can list a million licensees). */
function* licenseeListEntries(json: string): Generator<string, boolean> {
  const element = new RegExp(String.raw`\s*"(${JSON_STRING_CONTENT})"\s*(,|\])`, 'y');
  const open = /\s*\[\s*/y;
  if (!open.test(json)) return false;
  element.lastIndex = open.lastIndex;
  if (json[element.lastIndex] === ']') return /^\s*$/.test(json.slice(element.lastIndex + 1));
  for (;;) {
    const match = element.exec(json);
    if (!match) return false;
    const raw = match[1]!;
    yield raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
    if (match[2] === ']') return /^\s*$/.test(json.slice(element.lastIndex));
  }
}

/**
 * The number of entries of the header's licensee list, or undefined when it
 * is not a JSON array of strings. The same grammar as licenseeListEntries,
 * matched without capturing: a million match arrays and strings would only
 * be garbage here (the import walks the list once more as the Licensee
 * items come).
 */
function countLicenseeList(json: string): number | undefined {
  const element = new RegExp(String.raw`\s*"${JSON_STRING_CONTENT}"\s*[,\]]`, 'y');
  const open = /\s*\[\s*/y;
  if (!open.test(json)) return undefined;
  element.lastIndex = open.lastIndex;
  if (json[element.lastIndex] === ']') return /^\s*$/.test(json.slice(element.lastIndex + 1)) ? 0 : undefined;
  for (let count = 1; ; count++) {
    if (!element.test(json)) return undefined;
    if (json[element.lastIndex - 1] === ']') return /^\s*$/.test(json.slice(element.lastIndex)) ? count : undefined;
  }
}

/** Reads the header of every file and checks that they form one complete export. */
export function readHeaders(files: TransferFileRef[], displayDirectory: string): TransferHeaderInfo[] {
  const headers: TransferHeaderInfo[] = [];
  for (const file of files) {
    let header: TransferHeaderInfo | undefined;
    readTransferFile(file.path, file.display, { header: (item, contentHash) => (header = parseHeader(item, file, contentHash)) }, { headerOnly: true });
    if (!header) throw new TransferInputError(file.display, 0, 0, 'no TransferHeader item (is this a transfer file?)');
    headers.push(header);
  }
  const first = files[0]!;
  if (first.n !== 1) {
    throw new TransferInputError(join(displayDirectory, transferFileName(1)), 0, 0, `missing: the input directory has ${files.map((f) => transferFileName(f.n)).join(', ')} but not file 1`);
  }
  const one = headers[0]!;
  files.forEach((file, i) => {
    const header = headers[i]!;
    const fail = (reason: string): never => {
      throw new TransferInputError(file.display, header.line, header.column, reason);
    };
    if (header.exportId !== one.exportId) {
      fail(`belongs to export ${header.exportId}, but ${first.display} to export ${one.exportId}: the input directory mixes two exports`);
    }
    if (header.files !== one.files) fail(`says the export has ${header.files} files, ${first.display} says ${one.files}`);
    for (const name of ['createdAt', 'sourceHost', 'cardSerial'] as const) {
      if (header[name] !== one[name]) fail(`header ${name} differs from ${first.display}'s`);
    }
    if (file.n > one.files) fail(`is not part of export ${one.exportId}, which has ${one.files} files`);
  });
  for (let n = 1; n <= one.files; n++) {
    if (files[n - 1]?.n !== n) {
      throw new TransferInputError(join(displayDirectory, transferFileName(n)), 0, 0, `missing: export ${one.exportId} has ${one.files} files`);
    }
  }
  return headers;
}

/**
 * A card-bound export needs its card; the card must be the export's. The binding is the
 * vendor's choice made at export time, so --without-card cannot lift it: a host that shall
 * run without a card needs an export made --without-card.
 */
function checkCardBinding(header: TransferHeaderInfo, options: Pick<ImportOptions, 'withoutCard' | 'card'>): void {
  const card = options.card;
  if (header.cardSerial !== undefined && (options.withoutCard || !card)) {
    throw new ImportCardError(
      `export ${header.exportId} is bound to smart card ${header.cardSerial}; importing it needs that card ` +
        '(import-assets opens it). To run this host without a card, ask for an export made with --without-card',
    );
  }
  if (card && header.cardSerial === undefined) {
    throw new ImportCardError(`export ${header.exportId} is not bound to a smart card; import it without one`);
  }
  if (card && header.cardSerial !== undefined && !serialMatches(header.cardSerial, { ...card.binding, reader: '' })) {
    throw new ImportCardError(
      `export ${header.exportId} is bound to smart card ${header.cardSerial}, but the card given is ${card.binding.serial}`,
    );
  }
}

/** The database's card binding compared with this import's. */
function bindingConflict(meta: StoreMeta, card: ImportOptions['card']): ImportConflict | undefined {
  const conflict = (reason: string): ImportConflict => ({ kind: 'Database', number: '', reason, where: '' });
  if (meta.cardSerial !== undefined && card === undefined) {
    return conflict(`the database is bound to smart card ${meta.cardSerial}, this import runs without a card (--force rebinds it to no card)`);
  }
  if (meta.cardSerial !== undefined && card !== undefined && meta.cardBinding?.applicationId !== card.binding.applicationId) {
    return conflict(`the database is bound to smart card ${meta.cardSerial}, this import to card ${card.binding.serial} (--force rebinds it)`);
  }
  if (meta.cardSerial === undefined && meta.lastImport !== undefined && card !== undefined) {
    return conflict(`the database runs without a smart card, this import binds it to card ${card.binding.serial} (--force binds it)`);
  }
  return undefined;
}

/** An export's createdAt: a date, a time, and a zone (`Z` as the export writes it, or an offset). */
const EXPORT_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

/** How far an export's createdAt may be after this host's clock (two clocks that disagree a little). */
const EXPORT_CLOCK_SKEW_MS = 24 * 60 * 60 * 1000;

/**
 * An export dated after this host's clock (beyond EXPORT_CLOCK_SKEW_MS): one of the two clocks is
 * wrong, and once imported it would make every later, correct export look older (refused as a
 * roll-back, olderExportConflict). Refused without --force.
 */
function futureExportConflict(header: TransferHeaderInfo, nowMs: number): ImportConflict | undefined {
  const createdMs = parseIso(header.createdAt)!;
  if (createdMs <= nowMs + EXPORT_CLOCK_SKEW_MS) return undefined;
  return {
    kind: 'Database',
    number: '',
    reason:
      `export ${header.exportId} was created ${header.createdAt}, after this host's clock (${new Date(nowMs).toISOString()}): ` +
      "the export workstation's clock or this host's is wrong, and once imported every later export would be refused as older (--force imports it all the same)",
    where: '',
  };
}

/**
 * An export made before the one already imported would roll the definitions back (a top-up, a
 * new license, a changed quota gone): a stale file left in an import directory, say. Refused
 * without --force. The same export again, or a newer one, is no conflict.
 */
function olderExportConflict(meta: StoreMeta, header: TransferHeaderInfo): ImportConflict | undefined {
  const last = meta.lastImport;
  if (last === undefined || last.exportId === header.exportId) return undefined;
  const lastMs = Date.parse(last.createdAt);
  const thisMs = Date.parse(header.createdAt);
  if (!(thisMs < lastMs)) return undefined;
  return {
    kind: 'Database',
    number: '',
    reason:
      `export ${header.exportId} was created ${header.createdAt}, before export ${last.exportId} (${last.createdAt}) that the database holds: ` +
      'importing it would roll the definitions back (--force imports it all the same)',
    where: '',
  };
}

/** What the files say before anything is written: the files, their headers, the card check. */
export interface ImportPlan {
  files: TransferFileRef[];
  headers: TransferHeaderInfo[];
  totalBytes: number;
}

/**
 * Finds the files and reads their headers (cheap: the first item of each);
 * fails early on an incomplete or mixed set. Whether a card-bound export
 * may be imported (its card, or --without-card) is checked by
 * importTransferFiles, after the caller had the chance to open the card.
 */
export function planImport(options: Pick<ImportOptions, 'directory' | 'displayDirectory'>): ImportPlan {
  const displayDirectory = options.displayDirectory ?? options.directory;
  const files = findTransferFiles(options.directory, displayDirectory);
  const headers = readHeaders(files, displayDirectory);
  return { files, headers, totalBytes: files.reduce((sum, f) => sum + f.bytes, 0) };
}

/**
 * Starts the reader thread an import of `plan` will read on (undefined when
 * it reads inline), so that the thread's start-up overlaps what the caller
 * does before importTransferFiles (opening the database and the card). Pass
 * it as ImportOptions.startedReader: importTransferFiles stops it.
 */
export function startImportReader(plan: ImportPlan, readThread?: ImportOptions['readThread']): ReadThread | undefined {
  return readsOnWorker(plan.totalBytes, readThread) ? startReadThread() : undefined;
}

function readsOnWorker(totalBytes: number, readThread: ImportOptions['readThread']): boolean {
  return readThread === 'worker' || (readThread === undefined && totalBytes >= WORKER_MIN_BYTES);
}

export function importTransferFiles(store: AssetStore, options: ImportOptions, plan = planImport(options)): ImportSummary {
  try {
    return importPlanned(store, options, plan);
  } finally {
    // A reader thread started ahead and not read with (an earlier error, or inline reading).
    options.startedReader?.stop();
  }
}

function importPlanned(store: AssetStore, options: ImportOptions, plan: ImportPlan): ImportSummary {
  const { files, headers, totalBytes } = plan;
  const header = headers[0]!;

  const forced: ImportConflict[] = [];
  const refused: ImportConflict[] = [];
  let conflictTotal = 0;
  const conflict = (c: ImportConflict) => {
    conflictTotal++;
    if (options.force) {
      if (forced.length < MAX_REPORTED_CONFLICTS) forced.push(c);
      options.onWarning?.(`conflict overridden by --force: ${c.kind === 'Database' ? 'database' : `${c.kind} "${c.number}"`} (${c.where}): ${c.reason}`);
    } else if (refused.length < MAX_REPORTED_CONFLICTS) {
      refused.push(c);
    }
  };
  checkCardBinding(header, options);
  const meta = store.meta();
  const binding = bindingConflict(meta, options.card);
  if (binding) conflict(binding);
  const older = olderExportConflict(meta, header);
  if (older) conflict(older);
  const future = futureExportConflict(header, options.nowMs);
  if (future) conflict(future);
  // Without --force, these are refused before minutes of parsing.
  if ((binding || older || future) && !options.force) throw new ImportConflictError(refused, conflictTotal);

  const staged = store.beginStagedImport({ nowMs: options.nowMs });
  try {
    let batches = 0;
    const batch = <T>(phase: ImportBatch['phase'], action: (tx: StagingTransaction) => T): T => {
      const result = staged.batch(action);
      batches++;
      options.onBatch?.({ phase, batches });
      return result;
    };
    // Kinds the served generation has: only those need a look for conflicts and a carry-over pass.
    const servedKinds = staged.batch((tx) => new Set(ENTITY_KINDS.filter((kind) => tx.servedHasAny(kind))));
    const run = new ImportRun(options, conflict, header, files[0]!, servedKinds);

    // Items arrive in batches of about 1 MiB of input and are checked and staged in one transaction
    // each: the write lock is held for the writes only, never for the parsing.
    const fileStart: number[] = [];
    let offset = 0;
    for (const file of files) {
      fileStart.push(offset);
      offset += file.bytes;
    }
    let collectAt = COLLECT_EVERY_BYTES;
    const readOptions: ReadBatchesOptions = {
      batchBytes: options.batchBytes ?? DEFAULT_BATCH_BYTES,
      ...(options.chunkBytes === undefined ? {} : { chunkBytes: options.chunkBytes }),
      onChunk: (index, bytesRead) => {
        const done = fileStart[index]! + bytesRead;
        if (done >= collectAt) {
          collectAt = done + COLLECT_EVERY_BYTES;
          collectGarbage();
        }
        options.onProgress?.({ bytesRead: done, totalBytes, entities: run.total });
      },
    };
    const consume = (read: ReadBatch) => {
      const file = files[read.file]!;
      // The header was read and checked when planning: unchanged content is all that matters now.
      if (read.header && read.header.contentHash !== headers[read.file]!.contentHash) {
        throw new TransferInputError(file.display, read.header.line, read.header.column, 'the file changed while it was being imported');
      }
      if (read.tokens === '') return;
      batch('entities', (tx) => forEachTokenItem(read.tokens, (item) => run.entity(item, file, tx)));
    };
    const readFiles = files.map((file) => ({ path: file.path, display: file.display }));
    const wantWorker = readsOnWorker(totalBytes, options.readThread);
    const readThread = wantWorker && readBatchesInWorker(readFiles, readOptions, consume, options.startedReader) ? 'worker' : 'inline';
    if (readThread === 'inline') {
      if (options.readThread === 'worker') throw new Error('the transfer-file reader thread could not be started');
      readBatchesInline(readFiles, readOptions, consume);
    }
    run.finishRequestedLicensees();
    if (conflictTotal > 0 && !options.force) throw new ImportConflictError(refused, conflictTotal);
    const removed = run.carryOver((action) => batch('carry-over', action), options.carryOverPage ?? DEFAULT_CARRY_OVER_PAGE);

    const summary: ImportSummary = {
      exportId: header.exportId,
      createdAt: header.createdAt,
      sourceHost: header.sourceHost,
      files,
      bytes: totalBytes,
      entities: run.counts,
      removed,
      licenseesRequested: header.licenseeCount ?? 0,
      forced,
      forcedTotal: options.force ? conflictTotal : 0,
      readThread,
    };
    if (header.cardSerial !== undefined) summary.cardSerial = header.cardSerial;

    // The commit point: one small transaction switches to the staged definitions and records the import.
    staged.commit((tx) => {
      const meta = tx.meta();
      const record: ImportRecord = {
        exportId: header.exportId,
        createdAt: header.createdAt,
        sourceHost: header.sourceHost,
        importedAt: new Date(options.nowMs).toISOString(),
        files: files.length,
        entities: run.total,
      };
      if (header.cardSerial !== undefined) record.cardSerial = header.cardSerial;
      const next: StoreMeta = { ...meta, withoutCard: options.card === undefined, lastImport: record };
      if (options.card) {
        next.cardSerial = options.card.binding.serial;
        next.cardBinding = options.card.binding;
        if (options.card.checkpoint) tx.setCardCheckpoint(options.card.checkpoint);
      } else {
        delete next.cardSerial;
        delete next.cardBinding;
        tx.setCardCheckpoint(undefined);
      }
      // Credentials are replaced when the export carries them; an export without keeps the stored ones.
      if (header.vendorCredentials) next.vendorCredentials = header.vendorCredentials;
      tx.setMeta(next);
    });
    options.onSwitched?.();
    staged.cleanup();
    return summary;
  } catch (error) {
    staged.abort();
    throw error;
  }
}

/**
 * Input per staging transaction. Larger batches sync less often (one
 * fdatasync per batch); smaller ones keep a serving agent's runtime writes
 * waiting for a shorter time (a batch of 1 MiB, ~1,900 entities, held the
 * write lock for ~12 ms: a 10k-licensee import, 21 batches, 254 ms) and keep LMDB's dirty pages and the batch in
 * memory small. `ImportOptions.batchBytes` overrides it (tests, measurements).
 */
const DEFAULT_BATCH_BYTES = 1024 * 1024;
/**
 * Imports from this size on are read on a worker thread, smaller ones inline.
 * A reader thread takes 15–32 ms to start (measured here); the threshold
 * itself was set by judgement, not tuned by measurement.
 */
const WORKER_MIN_BYTES = 8 * 1024 * 1024;
const DEFAULT_CARRY_OVER_PAGE = 4096;

function collectGarbage(): void {
  Bun.gc(true);
}

function whereOf(item: TransferItem, file: TransferFileRef): string {
  return `${file.display}:${item.line}:${item.column}`;
}

/**
 * The served kinds in the order of the carry-over: kinds that can be stale
 * first, while the staging generation holds only the export's licensees
 * (a license is stale when its licensee is in the export), then the kinds
 * that are only replaced.
 */
const CARRY_OVER_ORDER: readonly EntityKind[] = ['ProductModule', 'LicenseTemplate', 'License', 'Token', 'Product', 'Licensee'];

/** The state of one import while items stream past. */
class ImportRun {
  readonly counts = zeroCounts();
  total = 0;
  private previous: EntityKind | undefined;
  /** Product-level definitions of this export (few): for order and reference checks. */
  private readonly products = new Set<string>();
  private readonly modules = new Set<string>();
  private readonly blockModules = new Set<string>();
  private readonly templateProduct = new Map<string, string>();
  private product: string | undefined;
  private licensee: string | undefined;
  private licenseeProduct: string | undefined;

  /**
   * The header's licensee list, walked in step with the Licensee items: the
   * export lists exactly its licensees, in item order, so both directions are
   * checked without remembering any licensee.
   */
  private readonly requested: Generator<string, boolean>;

  constructor(
    private readonly options: ImportOptions,
    private readonly conflict: (c: ImportConflict) => void,
    private readonly header: TransferHeaderInfo,
    private readonly firstFile: TransferFileRef,
    /** Kinds the served generation holds (others cannot conflict). */
    private readonly servedKinds: ReadonlySet<EntityKind>,
  ) {
    this.requested = licenseeListEntries(header.licenseesJson ?? '[]');
  }

  entity(item: TransferItem, file: TransferFileRef, tx: StagingTransaction): void {
    // Messages are built only on failure: this runs once per entity, millions of times.
    const fail = (reason: string): never => {
      throw new TransferInputError(file.display, item.line, item.column, reason);
    };
    const kind = item.type;
    if (!isEntityKind(kind)) return fail(`unknown item type "${kind}"`);
    const props = item.props;
    const number = props['number'];
    if (number === undefined || number === '') return fail(`a ${kind} without a number property`);
    // A number is quoted whole up to 200 characters: one of a million made a million-character message line.
    const label = () => `${kind} "${number.length > 200 ? `${number.slice(0, 200)}…" (${number.length} characters)` : `${number}"`}`;
    if (FORBIDDEN_NUMBER_CHARACTERS.test(number)) {
      if (!this.options.force) fail(`${label()}: numbers must not contain "," or ";" (--force accepts them)`);
      this.options.onWarning?.(`${label()} (${whereOf(item, file)}): number contains "," or ";", accepted because of --force`);
    }
    // The runtime state is keyed by entity numbers, and JavaScript (msgpack's decoding too) keeps
    // '__proto__' apart from other keys: a booking on such a license was stored under another key.
    if (number === '__proto__') fail(`${label()}: "__proto__" cannot be an entity number in the agent; give the ${kind} another number in NetLicensing`);
    // The database keys a number longer than 480 bytes by "#sha256:" and its hash: this one would share that key.
    if (looksLikeHashedKey(number)) fail(`${label()}: numbers of the form "#sha256:<64 hex digits>" are reserved in the agent; give the ${kind} another number in NetLicensing`);
    const required = REQUIRED_PROPERTIES[kind];
    for (let i = 0; i < required.length; i++) {
      const value = props[required[i]!];
      if (value === undefined || value === '') fail(`${label()} has no ${required[i]} property`);
    }
    if (!mayFollow(this.previous, kind)) {
      fail(
        `${label()} may not follow a ${this.previous ?? 'TransferHeader'}: the order is products (each followed by ` +
          'its modules, then its templates), licensees (each followed by its licenses), tokens',
      );
    }
    const parentProperty = PARENT_PROPERTY[kind];
    const parent = parentProperty === undefined ? undefined : props[parentProperty];
    switch (kind) {
      case 'Product':
        this.product = number;
        this.blockModules.clear();
        break;
      case 'ProductModule':
        if (parent !== this.product) {
          fail(`${label()} belongs to product "${parent}" but does not follow Product "${parent}" (it follows "${this.product}")`);
        }
        break;
      case 'LicenseTemplate':
        if (!this.blockModules.has(parent!)) fail(`${label()}: its product module "${parent}" is not in this product's block`);
        break;
      case 'Licensee': {
        if (!this.products.has(parent!)) fail(`${label()}: its product "${parent}" is not in this export`);
        const expected = this.requested.next();
        if (expected.done === true) fail(`${label()} is not in the header's licensees list`);
        if (expected.value !== number) {
          fail(`${label()} comes where the header's licensees list has "${String(expected.value)}" (licensees follow the list's order)`);
        }
        this.licensee = number;
        this.licenseeProduct = parent;
        break;
      }
      case 'License': {
        if (parent !== this.licensee) {
          fail(`${label()} is not after its Licensee "${parent}" (each licensee is followed by its licenses)`);
        }
        const template = props['licenseTemplateNumber']!;
        if (this.templateProduct.get(template) !== this.licenseeProduct) {
          fail(`${label()}: license template "${template}" is not a template of product "${this.licenseeProduct}" in this export`);
        }
        break;
      }
      case 'Token':
        // While items are staged, the staging generation holds the export's licensees only.
        if (parent !== undefined && !tx.isStaged('Licensee', parent)) {
          fail(`${label()}: its licensee "${parent}" is not in this export`);
        }
        break;
    }

    const entity: Entity = { kind, number, props };
    if (item.lists.length > 0) entity.lists = item.lists;
    // Staging refuses a number it holds already: a number twice in the export.
    if (!tx.stage(entity)) fail(`${label()} appears twice in this export`);
    if (this.servedKinds.has(kind)) {
      const old = tx.served(kind, number);
      if (old !== undefined) this.compare(old, props, kind, number, () => whereOf(item, file), parentProperty);
    }

    switch (kind) {
      case 'Product':
        this.products.add(number);
        break;
      case 'ProductModule':
        this.blockModules.add(number);
        this.modules.add(number);
        break;
      case 'LicenseTemplate':
        this.templateProduct.set(number, this.product!);
        break;
      default:
        break;
    }
    this.counts[kind]++;
    this.total++;
    this.previous = kind;
  }

  private compare(
    old: Entity,
    props: Record<string, string>,
    kind: EntityKind,
    number: string,
    where: () => string,
    parentProperty: string | undefined,
  ): void {
    const report = (reason: string) => this.conflict({ kind, number, reason, where: where() });
    if (parentProperty !== undefined && old.props[parentProperty] !== props[parentProperty]) {
      const from = old.props[parentProperty];
      const to = props[parentProperty];
      report(
        `its ${parentProperty} changes from ${from === undefined ? '(none)' : `"${from}"`} to ${to === undefined ? '(none)' : `"${to}"`}` +
          ' (runtime state stays with the old parent)',
      );
    }
    if (kind === 'ProductModule' && old.props['licensingModel'] !== props['licensingModel']) {
      report(`its licensingModel changes from ${old.props['licensingModel']} to ${props['licensingModel']}`);
    }
    if (kind === 'LicenseTemplate' && old.props['licenseType'] !== props['licenseType']) {
      report(`its licenseType changes from ${old.props['licenseType']} to ${props['licenseType']}`);
    }
  }

  /** Every licensee the header requested must have come (in order, see `entity`). */
  finishRequestedLicensees(): void {
    const next = this.requested.next();
    if (next.done !== true) {
      throw new TransferInputError(
        this.firstFile.display,
        this.header.line,
        this.header.column,
        `the header requests licensee "${next.value}", which is not in the export`,
      );
    }
  }

  /**
   * Copies the served definitions this import keeps into the staging
   * generation, page by page (one transaction each), and counts the stale
   * ones it leaves behind: modules and templates of exported products,
   * licenses and API keys of exported licensees, and vendor-wide API keys
   * that the export no longer has; and the licenses of any licensee whose
   * template goes (the cloud deletes a template's licenses with it, and a
   * license without its template would be a dangling reference that
   * verify-database reports as damage). Definitions the export has are
   * staged already and are skipped: the export's version replaces them.
   */
  carryOver(batch: <T>(action: (tx: StagingTransaction) => T) => T, pageSize: number): KindCounts {
    const removed = zeroCounts();
    const removedModules = new Set<string>();
    const removedTemplates = new Set<string>();
    for (const kind of CARRY_OVER_ORDER) {
      if (!this.servedKinds.has(kind)) continue;
      let after: string | undefined;
      let more = true;
      while (more) {
        more = batch((tx) => {
          // Served definitions the export has are staged already: the export's version replaces them.
          const page = tx.servedNotStaged(kind, after, pageSize);
          for (const served of page.entities) {
            if (this.stale(served, tx, removedModules, removedTemplates)) {
              removed[kind]++;
              if (kind === 'ProductModule') removedModules.add(served.number);
              if (kind === 'LicenseTemplate') removedTemplates.add(served.number);
              continue;
            }
            tx.stage(withoutLegacyMark(served), { aliasesYield: true });
          }
          after = page.last;
          return page.last !== undefined;
        });
      }
    }
    return removed;
  }

  /** Whether a served definition that the export does not have goes (see carryOver). */
  private stale(entity: Entity, tx: StagingTransaction, removedModules: ReadonlySet<string>, removedTemplates: ReadonlySet<string>): boolean {
    const props = entity.props;
    switch (entity.kind) {
      case 'ProductModule':
        return this.products.has(props['productNumber'] ?? '');
      case 'LicenseTemplate': {
        const module = props['productModuleNumber'] ?? '';
        return removedModules.has(module) || this.modules.has(module);
      }
      case 'License':
        // Runs after the template pass (its removals are known) and before the Licensee pass: staged licensees are the export's.
        if (removedTemplates.has(props['licenseTemplateNumber'] ?? '')) return true;
        return props['licenseeNumber'] !== undefined && tx.isStaged('Licensee', props['licenseeNumber']);
      case 'Token':
        return props['licenseeNumber'] === undefined || tx.isStaged('Licensee', props['licenseeNumber']);
      default:
        return false;
    }
  }
}

function withoutLegacyMark(entity: Entity): Entity {
  if (!(LEGACY_IMPORT_MARK in entity)) return entity;
  const { [LEGACY_IMPORT_MARK]: _mark, ...rest } = entity as Entity & { [LEGACY_IMPORT_MARK]?: unknown };
  return rest;
}
