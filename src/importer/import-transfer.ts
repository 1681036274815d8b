/**
 * Imports a set of transfer files into the asset store: all files of one
 * export, streamed, inside ONE store transaction, so the database ends up
 * with the whole export applied or unchanged (docs/transfer-format.md,
 * "Import").
 *
 * Memory does not grow with the size of the export: one item is held at a
 * time; what must be remembered across items lives in the store itself.
 * Every definition written by this import carries the import's id
 * (`importMark`, a random number): a second occurrence of a number is found by
 * reading the store, and so are the stale definitions the import removes at
 * the end. Only product-level definitions (products, modules, templates —
 * a handful) are also kept in small in-memory maps.
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
import { randomInt } from 'node:crypto';
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
import type { StoredCheckpoint } from '../card/checkpoint.ts';
import type { CardBinding } from '../card/open.ts';
import { serialMatches } from '../card/types.ts';
import type { AssetStore, ImportRecord, ImportTransaction, StoreMeta } from '../store/asset-store.ts';
import { FORMAT_VERSION, HEADER, mayFollow, TRANSFER_FILE_LIKE, transferFileName, transferFileNumber } from '../transfer/format.ts';
import {
  ImportCardError,
  ImportConflictError,
  MAX_REPORTED_CONFLICTS,
  TransferInputError,
  type ImportConflict,
} from './errors.ts';
import { readTransferFile, type TransferItem } from './transfer-file.ts';

/**
 * The field every definition written by an import carries, next to kind,
 * number and props: a random number identifying that import run (a number,
 * not a UUID, to keep millions of records small).
 */
export const IMPORT_MARK = 'importMark';
type MarkedEntity = Entity & { [IMPORT_MARK]?: number };

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
  onProgress?: (progress: ImportProgress) => void;
  /** A conflict overridden by `force`, or a forbidden character accepted by it. */
  onWarning?: (message: string) => void;
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
    files.push({ n, path, display, bytes: statSync(path).size });
  }
  if (files.length === 0) {
    throw new TransferInputError(displayDirectory, 0, 0, `no transfer files ({n}_netlicensing-assets.xml) found`);
  }
  return files.sort((a, b) => a.n - b.n);
}

function parseHeader(item: TransferItem, file: TransferFileRef): TransferHeaderInfo {
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
  };
  if (Number.isNaN(Date.parse(header.createdAt))) fail(`header createdAt is not a date: "${header.createdAt}"`);
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
    if (given === 3) header.vendorCredentials = { user: user!, salt: salt!, hash: hash! };
  }
  return header;
}

/** Walks a JSON array of strings without building it (it can list a million licensees). */
function* licenseeListEntries(json: string): Generator<string, boolean> {
  const element = /\s*"((?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*)"\s*(,|\])/y;
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

function countLicenseeList(json: string): number | undefined {
  const entries = licenseeListEntries(json);
  let count = 0;
  for (;;) {
    const next = entries.next();
    if (next.done) return next.value ? count : undefined;
    count++;
  }
}

/** Reads the header of every file and checks that they form one complete export. */
export function readHeaders(files: TransferFileRef[], displayDirectory: string): TransferHeaderInfo[] {
  const headers: TransferHeaderInfo[] = [];
  for (const file of files) {
    let header: TransferHeaderInfo | undefined;
    readTransferFile(file.path, file.display, {
      header: (item) => (header = parseHeader(item, file)),
      entity: () => undefined,
    }, { headerOnly: true });
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

export function importTransferFiles(store: AssetStore, options: ImportOptions, plan = planImport(options)): ImportSummary {
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
  const binding = bindingConflict(store.meta(), options.card);
  if (binding) conflict(binding);
  // Without --force, a binding conflict is refused before minutes of parsing.
  if (binding && !options.force) throw new ImportConflictError(refused, conflictTotal);

  return store.importTransaction((tx) => {
    // Kinds the database had before: only those can have stale definitions to sweep.
    const hadBefore = new Set(ENTITY_KINDS.filter((kind) => hasAny(tx.entities(kind))));
    const state = new ImportRun(tx, options, conflict, header, files[0]!);
    let bytesBefore = 0;
    let collectAt = COLLECT_EVERY_BYTES;
    files.forEach((file, i) => {
      readTransferFile(
        file.path,
        file.display,
        {
          header: (item) => {
            const again = parseHeader(item, file);
            const expected = headers[i]!;
            if (again.exportId !== expected.exportId || again.files !== expected.files || again.licenseesJson !== expected.licenseesJson) {
              throw new TransferInputError(file.display, item.line, item.column, 'the file changed while it was being imported');
            }
          },
          entity: (item) => state.entity(item, file),
        },
        {
          ...(options.chunkBytes === undefined ? {} : { chunkBytes: options.chunkBytes }),
          onChunk: (bytesRead) => {
            const done = bytesBefore + bytesRead;
            if (done >= collectAt) {
              collectAt = done + COLLECT_EVERY_BYTES;
              collectGarbage();
            }
            options.onProgress?.({ bytesRead: done, totalBytes, entities: state.total });
          },
        },
      );
      bytesBefore += file.bytes;
    });
    state.finishRequestedLicensees();
    if (conflictTotal > 0 && !options.force) throw new ImportConflictError(refused, conflictTotal);
    const removed = state.sweep(hadBefore);

    const meta = tx.meta();
    const record: ImportRecord = {
      exportId: header.exportId,
      createdAt: header.createdAt,
      sourceHost: header.sourceHost,
      importedAt: new Date(options.nowMs).toISOString(),
      files: files.length,
      entities: state.total,
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

    const summary: ImportSummary = {
      exportId: header.exportId,
      createdAt: header.createdAt,
      sourceHost: header.sourceHost,
      files,
      bytes: totalBytes,
      entities: state.counts,
      removed,
      licenseesRequested: header.licenseeCount ?? 0,
      forced,
      forcedTotal: options.force ? conflictTotal : 0,
    };
    if (header.cardSerial !== undefined) summary.cardSerial = header.cardSerial;
    return summary;
  });
}

/**
 * The importer allocates several times the file size in short-lived strings.
 * JavaScriptCore sizes its heap by the allocation rate and collects lazily,
 * so without help the heap (and the process's memory) drifts upwards with
 * the size of the export; a collection every few dozen MiB keeps it flat
 * (measured: peak RSS at 1M licensees 978 → 701 MB, no loss of speed).
 */
const COLLECT_EVERY_BYTES = 32 * 1024 * 1024;

function collectGarbage(): void {
  Bun.gc(true);
}

function hasAny(entities: Iterable<Entity>): boolean {
  const iterator = entities[Symbol.iterator]();
  const first = iterator.next();
  iterator.return?.(); // closes the cursor
  return first.done !== true;
}

function whereOf(item: TransferItem, file: TransferFileRef): string {
  return `${file.display}:${item.line}:${item.column}`;
}

/** The state of one import while items stream past. */
class ImportRun {
  /** 47 random bits: two imports sharing a mark is practically impossible. */
  readonly importMark = randomInt(1, 2 ** 47);
  readonly counts = zeroCounts();
  total = 0;
  private previous: EntityKind | undefined;
  /** Product-level definitions of this export (few): for order and reference checks. */
  private readonly products = new Set<string>();
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
    private readonly tx: ImportTransaction,
    private readonly options: ImportOptions,
    private readonly conflict: (c: ImportConflict) => void,
    private readonly header: TransferHeaderInfo,
    private readonly firstFile: TransferFileRef,
  ) {
    this.requested = licenseeListEntries(header.licenseesJson ?? '[]');
  }

  private marked(entity: Entity | undefined): boolean {
    return (entity as MarkedEntity | undefined)?.[IMPORT_MARK] === this.importMark;
  }

  entity(item: TransferItem, file: TransferFileRef): void {
    // Messages are built only on failure: this runs once per entity, millions of times.
    const fail = (reason: string): never => {
      throw new TransferInputError(file.display, item.line, item.column, reason);
    };
    const kind = item.type;
    if (!isEntityKind(kind)) return fail(`unknown item type "${kind}"`);
    const props = item.props;
    const number = props['number'];
    if (number === undefined || number === '') return fail(`a ${kind} without a number property`);
    const label = () => `${kind} "${number}"`;
    if (FORBIDDEN_NUMBER_CHARACTERS.test(number)) {
      if (!this.options.force) fail(`${label()}: numbers must not contain "," or ";" (--force accepts them)`);
      this.options.onWarning?.(`${label()} (${whereOf(item, file)}): number contains "," or ";", accepted because of --force`);
    }
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
        if (parent !== undefined && !this.marked(this.tx.get('Licensee', parent))) {
          fail(`${label()}: its licensee "${parent}" is not in this export`);
        }
        break;
    }

    const old = this.tx.get(kind, number);
    if (old !== undefined) {
      if (this.marked(old)) fail(`${label()} appears twice in this export`);
      this.compare(old, props, kind, number, () => whereOf(item, file), parentProperty);
    }

    switch (kind) {
      case 'Product':
        this.products.add(number);
        break;
      case 'ProductModule':
        this.blockModules.add(number);
        break;
      case 'LicenseTemplate':
        this.templateProduct.set(number, this.product!);
        break;
      default:
        break;
    }
    const entity: MarkedEntity = { kind, number, props, [IMPORT_MARK]: this.importMark };
    if (item.lists.length > 0) entity.lists = item.lists;
    this.tx.put(entity);
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
   * Removes definitions this export no longer has: modules and templates of
   * exported products, licenses and API keys of exported licensees, and
   * vendor-wide API keys. Runs over each kind the database had before the
   * import (one cursor per kind); the stale numbers are collected first
   * because the store must not be written while a cursor iterates.
   */
  sweep(hadBefore: ReadonlySet<EntityKind>): KindCounts {
    const removed = zeroCounts();
    const tx = this.tx;
    const removedModules = new Set<string>();
    const licenseeExported = (number: string | undefined) => number !== undefined && this.marked(tx.get('Licensee', number));
    const sweepKind = (kind: EntityKind, stale: (entity: Entity) => boolean): string[] => {
      if (!hadBefore.has(kind)) return [];
      const numbers: string[] = [];
      for (const entity of tx.entities(kind)) if (!this.marked(entity) && stale(entity)) numbers.push(entity.number);
      for (const number of numbers) tx.remove(kind, number);
      removed[kind] += numbers.length;
      return numbers;
    };
    for (const number of sweepKind('ProductModule', (m) => this.products.has(m.props['productNumber'] ?? ''))) {
      removedModules.add(number);
    }
    sweepKind('LicenseTemplate', (t) => {
      const module = t.props['productModuleNumber'] ?? '';
      return removedModules.has(module) || this.marked(tx.get('ProductModule', module));
    });
    sweepKind('License', (l) => licenseeExported(l.props['licenseeNumber']));
    sweepKind('Token', (t) => t.props['licenseeNumber'] === undefined || licenseeExported(t.props['licenseeNumber']));
    return removed;
  }
}
