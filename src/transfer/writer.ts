/**
 * Writes an export as transfer files `{n}_netlicensing-assets.xml`
 * (format: docs/transfer-format.md). Entities are streamed: memory does not
 * grow with the size of the export.
 *
 * Each file is written to a hidden temporary file with owner-only
 * permissions, fsynced, and only then given its final name, one file after
 * the other: a crash never leaves a half-written `{n}_netlicensing-assets.xml`
 * (at worst stray hidden temporaries), but may leave part of the new set
 * (`1_` without `2_`, or with --force a new `1_` beside an old `2_`), which the
 * importer refuses (every header names its export and the file count).
 *
 * The number of files N is known only at the end, but every header carries
 * it: the writer reserves a fixed-width slot for it and patches it in place
 * before the fsync. The digest hashes the header (from its content)
 * separately from the entity items (their bytes as written) for the same
 * reason (format.ts, `fileDigest`).
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { PARENT_PROPERTY, type Entity, type EntityKind, type EntityList } from '../core/entities.ts';
import { escapeAttribute, escapeText } from '../wire/xml.ts';
import {
  CanonicalHasher,
  CONTEXT_NAMESPACE,
  DEFAULT_MAX_FILE_BYTES,
  DIGEST,
  DIGEST_TYPE,
  FILES_DIGITS_RESERVED,
  fileDigest,
  FORMAT_VERSION,
  HEADER,
  HEADER_TYPE,
  mayFollow,
  TRANSFER_FILE_LIKE,
  transferFileName,
  XML_UNREPRESENTABLE,
} from './format.ts';
import type { TransferEntities, TransferHeader, TransferWriteOptions, TransferWriteResult } from './types.ts';

export { DEFAULT_MAX_FILE_BYTES } from './format.ts';

/** The entities or the header cannot be written as a valid transfer file (a bug in the caller). */
export class TransferWriteError extends Error {
  override name = 'TransferWriteError';
}

/** The output directory already holds transfer files and `overwrite` was not given. */
export class TransferFilesExistError extends Error {
  override name = 'TransferFilesExistError';
  constructor(
    readonly directory: string,
    readonly files: string[],
  ) {
    super(`${directory} already holds transfer files (${files.join(', ')}); remove them or overwrite them explicitly`);
  }
}

const PREAMBLE = `<?xml version="1.0" encoding="UTF-8"?>\n<netlicensing xmlns="${CONTEXT_NAMESPACE}">\n<infos/>\n<items>\n`;
const CLOSING = '</items>\n</netlicensing>\n';
/** Bytes the digest item and the closing tags can take (items count up to 15 digits). */
const CLOSING_RESERVE = Buffer.byteLength(digestItemText('9'.repeat(15), '0'.repeat(64)) + CLOSING);
const WRITE_BUFFER_CHARS = 1 << 20;

type Property = readonly [name: string, value: string];

interface OpenFile {
  n: number;
  tempPath: string;
  fd: number;
  bytes: number;
  /** Entity items written (the header and digest are not counted here). */
  entities: number;
  pending: string;
  /** SHA-256 of the bytes from the header's end tag to the last entity item's end tag. */
  body: Hash;
  /** Byte offset of the `files` property line in the file. */
  filesOffset: number;
  bodyHash?: Buffer;
}

function assertWritable(value: string, what: string): void {
  if (XML_UNREPRESENTABLE.test(value)) {
    throw new TransferWriteError(`${what} contains a character XML 1.0 cannot represent`);
  }
}

function propertyLine(indent: string, name: string, value: string): string {
  return `${indent}<property name="${escapeAttribute(name)}">${escapeText(value)}</property>\n`;
}

function digestItemText(items: string, sha256: string): string {
  return (
    `  <item type="${DIGEST_TYPE}">\n` +
    propertyLine('    ', DIGEST.items, items) +
    propertyLine('    ', DIGEST.sha256, sha256) +
    '  </item>\n'
  );
}

function filesLine(files: number): string {
  const digits = String(files);
  if (digits.length > FILES_DIGITS_RESERVED) throw new TransferWriteError(`too many files (${files})`);
  // The padding is whitespace between elements: not part of the data, not part of the digest.
  return `${propertyLine('    ', HEADER.files, digits).slice(0, -1)}${' '.repeat(FILES_DIGITS_RESERVED - digits.length)}\n`;
}

/** Header properties of file n, in file order; `files` is last and patched at the end. */
function headerProperties(header: TransferHeader, n: number, files: number): Property[] {
  const props: Property[] = [
    [HEADER.formatVersion, FORMAT_VERSION],
    [HEADER.exportId, header.exportId],
    [HEADER.createdAt, header.createdAt],
    [HEADER.sourceHost, header.sourceHost],
    header.cardSerial === undefined ? [HEADER.withoutCard, 'true'] : [HEADER.cardSerial, header.cardSerial],
  ];
  // The licensee list and the vendor credentials are carried by file 1 only (they may be large).
  if (n === 1) {
    props.push([HEADER.licensees, JSON.stringify(header.licensees)]);
    if (header.vendorCredentials) {
      props.push(
        [HEADER.vendorUser, header.vendorCredentials.user],
        [HEADER.vendorSalt, header.vendorCredentials.salt],
        [HEADER.vendorHash, header.vendorCredentials.hash],
      );
    }
  }
  props.push([HEADER.file, String(n)], [HEADER.files, String(files)]);
  return props;
}

function validateHeader(header: TransferHeader): void {
  const required: [string, string | undefined][] = [
    ['exportId', header.exportId],
    ['createdAt', header.createdAt],
    ['sourceHost', header.sourceHost],
  ];
  for (const [name, value] of required) {
    if (typeof value !== 'string' || value === '') throw new TransferWriteError(`header ${name} is empty`);
    assertWritable(value, `header ${name}`);
  }
  if (header.cardSerial !== undefined) {
    if (header.cardSerial === '') throw new TransferWriteError('header cardSerial is empty');
    assertWritable(header.cardSerial, 'header cardSerial');
  }
  if (!Array.isArray(header.licensees) || header.licensees.some((l) => typeof l !== 'string')) {
    throw new TransferWriteError('header licensees must be an array of licensee numbers');
  }
  const credentials = header.vendorCredentials;
  if (credentials) {
    for (const [name, value] of Object.entries(credentials)) {
      if (typeof value !== 'string' || value === '') throw new TransferWriteError(`vendor credential ${name} is empty`);
      assertWritable(value, `vendor credential ${name}`);
    }
  }
}

/** Refuses a string XML 1.0 cannot carry; `what` names it (built only on failure). */
function checkWritable(value: string, entity: Entity, what: () => string): void {
  if (XML_UNREPRESENTABLE.test(value)) {
    throw new TransferWriteError(`${entity.kind} "${entity.number}": ${what()} contains a character XML 1.0 cannot represent`);
  }
}

function listText(list: EntityList, indent: string, entity: Entity): string {
  checkWritable(list.name, entity, () => 'a list name');
  let out = `${indent}<list name="${escapeAttribute(list.name)}">\n`;
  const inner = `${indent}  `;
  for (const name in list.props) {
    const value = list.props[name]!;
    checkWritable(name, entity, () => `a property name in list ${list.name}`);
    checkWritable(value, entity, () => `property ${name} of list ${list.name}`);
    out += propertyLine(inner, name, value);
  }
  for (const child of list.lists ?? []) out += listText(child, inner, entity);
  return `${out}${indent}</list>\n`;
}

/** One entity as an item (`number` first when the properties lack it). */
function entityText(entity: Entity): string {
  let out = `  <item type="${entity.kind}">\n`;
  if (entity.props['number'] === undefined) out += propertyLine('    ', 'number', entity.number);
  for (const name in entity.props) {
    const value = entity.props[name]!;
    checkWritable(name, entity, () => 'a property name');
    checkWritable(value, entity, () => `property ${name}`);
    out += propertyLine('    ', name, value);
  }
  for (const list of entity.lists ?? []) out += listText(list, '    ', entity);
  return `${out}  </item>\n`;
}

/**
 * Feeds the digest an item's text as written: the bytes run from just after
 * the previous end tag (the header's or the previous item's), so each item
 * contributes the newline before it and its text up to its end tag's `>`.
 */
function hashEntityText(text: string, hash: Hash): void {
  hash.update('\n', 'utf8');
  hash.update(text.slice(0, -1), 'utf8'); // every item text ends with the newline after `</item>`
}

/**
 * Checks the order rules of docs/transfer-format.md ("Order") as entities
 * stream past; remembers only the current product block and licensee.
 */
class OrderCheck {
  private previous: EntityKind | undefined;
  private product: string | undefined;
  private readonly blockModules = new Set<string>();
  private readonly products = new Set<string>();
  private licensee: string | undefined;
  private licenseeIndex = 0;

  /** `licensees`: the header's list, which must name the Licensee items in their order. */
  constructor(private readonly licensees: readonly string[]) {}

  check(entity: Entity): void {
    const { kind, number } = entity;
    if (typeof number !== 'string' || number === '') throw new TransferWriteError(`a ${kind} has no number`);
    const owner = `${kind} "${number}"`;
    if (XML_UNREPRESENTABLE.test(number)) throw new TransferWriteError(`${owner}: the number contains a character XML 1.0 cannot represent`);
    if (entity.props['number'] !== undefined && entity.props['number'] !== number) {
      throw new TransferWriteError(`${owner}: property number is "${entity.props['number']}"`);
    }
    if (!mayFollow(this.previous, kind)) {
      throw new TransferWriteError(`${owner} may not follow a ${this.previous ?? 'header'} (transfer order)`);
    }
    const parentProperty = PARENT_PROPERTY[kind];
    const parent = parentProperty === undefined ? undefined : entity.props[parentProperty];
    switch (kind) {
      case 'Product':
        if (this.products.has(number)) throw new TransferWriteError(`${owner} appears twice`);
        this.products.add(number);
        this.product = number;
        this.blockModules.clear();
        break;
      case 'ProductModule':
        if (parent !== this.product) throw new TransferWriteError(`${owner} does not follow its product "${parent}"`);
        this.blockModules.add(number);
        break;
      case 'LicenseTemplate':
        if (parent === undefined || !this.blockModules.has(parent)) {
          throw new TransferWriteError(`${owner} does not follow its product module "${parent}"`);
        }
        break;
      case 'Licensee':
        if (parent === undefined || !this.products.has(parent)) {
          throw new TransferWriteError(`${owner}: its product "${parent}" is not in the export`);
        }
        if (this.licensees[this.licenseeIndex] !== number) {
          throw new TransferWriteError(`${owner} is not the next licensee of the header's list ("${this.licensees[this.licenseeIndex] ?? '(end)'}")`);
        }
        this.licenseeIndex++;
        this.licensee = number;
        break;
      case 'License':
        if (parent !== this.licensee) throw new TransferWriteError(`${owner} does not follow its licensee "${parent}"`);
        break;
      case 'Token':
        break;
    }
    this.previous = kind;
  }

  finish(): void {
    if (this.licenseeIndex < this.licensees.length) {
      throw new TransferWriteError(`the header lists licensee "${this.licensees[this.licenseeIndex]}", which the entities do not contain`);
    }
  }
}

/** Lists the transfer files (and badly numbered look-alikes) in a directory. */
function existingTransferFiles(directory: string): string[] {
  return readdirSync(directory)
    .filter((name) => TRANSFER_FILE_LIKE.test(name))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
}

export async function writeTransferFiles(
  header: TransferHeader,
  entities: TransferEntities,
  options: TransferWriteOptions,
): Promise<TransferWriteResult> {
  validateHeader(header);
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  if (!Number.isSafeInteger(maxFileBytes) || maxFileBytes <= 0) {
    throw new TransferWriteError(`maxFileBytes must be a positive integer, got ${maxFileBytes}`);
  }
  const directory = options.directory;
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const before = existingTransferFiles(directory);
  if (before.length > 0 && !options.overwrite) throw new TransferFilesExistError(directory, before);

  const tag = `${process.pid}.${randomBytes(6).toString('hex')}`;
  const done: OpenFile[] = [];
  let current: OpenFile | undefined;
  const order = new OrderCheck(header.licensees);
  let entityCount = 0;

  const flush = (file: OpenFile) => {
    if (file.pending.length === 0) return;
    writeSync(file.fd, file.pending);
    file.pending = '';
  };
  const append = (file: OpenFile, text: string, bytes = Buffer.byteLength(text)) => {
    file.pending += text;
    file.bytes += bytes;
    if (file.pending.length >= WRITE_BUFFER_CHARS) flush(file);
  };
  const openNext = (): OpenFile => {
    const n = done.length + 1;
    const tempPath = join(directory, `.${transferFileName(n)}.${tag}.tmp`);
    const fd = openSync(tempPath, 'wx', 0o600);
    fchmodSync(fd, 0o600);
    const file: OpenFile = {
      n,
      tempPath,
      fd,
      bytes: 0,
      entities: 0,
      pending: '',
      body: createHash('sha256'),
      filesOffset: 0,
    };
    append(file, PREAMBLE);
    append(file, `  <item type="${HEADER_TYPE}">\n`);
    for (const [name, value] of headerProperties(header, n, 1)) {
      if (name === HEADER.files) {
        file.filesOffset = file.bytes;
        append(file, filesLine(1));
      } else {
        append(file, propertyLine('    ', name, value));
      }
    }
    // The header item ends with `</item>` and a newline: the digest's byte range starts at that newline.
    append(file, '  </item>\n');
    return file;
  };
  const closeBody = (file: OpenFile) => {
    flush(file);
    file.bodyHash = file.body.digest();
    done.push(file);
  };

  try {
    for await (const entity of entities) {
      order.check(entity);
      current ??= openNext();
      const text = entityText(entity);
      const bytes = Buffer.byteLength(text);
      if (current.entities > 0 && current.bytes + bytes + CLOSING_RESERVE > maxFileBytes) {
        closeBody(current);
        current = openNext();
      }
      hashEntityText(text, current.body);
      append(current, text, bytes);
      current.entities++;
      entityCount++;
    }
    order.finish();
    current ??= openNext();
    closeBody(current);
    current = undefined;

    const total = done.length;
    let bytes = 0;
    for (const file of done) {
      // Patch the reserved `files` slot (same byte length), then append the digest and close.
      writeSync(file.fd, filesLine(total), file.filesOffset);
      const headerHasher = new CanonicalHasher();
      headerHasher.beginItem(HEADER_TYPE);
      for (const [name, value] of headerProperties(header, file.n, total)) headerHasher.property(name, value);
      headerHasher.endItem();
      const sha256 = fileDigest(headerHasher.digest(), file.bodyHash!);
      const tail = digestItemText(String(file.entities + 1), sha256) + CLOSING;
      writeSync(file.fd, tail, file.bytes);
      file.bytes += Buffer.byteLength(tail);
      bytes += file.bytes;
      fsyncSync(file.fd);
      closeSync(file.fd);
      file.fd = -1;
    }

    const finals = done.map((file) => join(directory, transferFileName(file.n)));
    if (options.overwrite) {
      done.forEach((file, i) => renameSync(file.tempPath, finals[i]!));
      const keep = new Set(done.map((file) => transferFileName(file.n)));
      for (const name of existingTransferFiles(directory)) {
        if (!keep.has(name)) unlinkSync(join(directory, name));
      }
    } else {
      // link() fails if the name exists: a file that appeared meanwhile is never replaced.
      const linked: string[] = [];
      try {
        done.forEach((file, i) => {
          linkSync(file.tempPath, finals[i]!);
          linked.push(finals[i]!);
        });
      } catch (error) {
        for (const path of linked) unlinkSync(path);
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new TransferFilesExistError(directory, existingTransferFiles(directory));
        }
        throw error;
      }
      for (const file of done) unlinkSync(file.tempPath);
    }
    syncDirectory(directory);
    return { files: finals, entities: entityCount, bytes };
  } catch (error) {
    for (const file of current ? [...done, current] : done) {
      if (file.fd >= 0) closeSync(file.fd);
      try {
        unlinkSync(file.tempPath);
      } catch {
        // already renamed or never created
      }
    }
    throw error;
  }
}

/** Makes the renames durable (POSIX: a directory entry is persisted by fsyncing the directory). */
function syncDirectory(directory: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(directory, 'r');
    fsyncSync(fd);
  } catch {
    // Some platforms (Windows) cannot fsync a directory; the files themselves are synced.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
