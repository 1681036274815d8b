/**
 * The transfer-file format, shared by the writer (src/transfer/writer.ts) and
 * the importer (src/importer/): names, constants and the canonical encoding
 * behind the per-file digest. The format itself is specified in
 * docs/transfer-format.md; change both together.
 *
 * Pure: no I/O. node:crypto is used only for SHA-256.
 */
import { createHash, type Hash } from 'node:crypto';
import type { EntityKind } from '../core/entities.ts';

/**
 * Bumped whenever a reader of the previous version would misread a file.
 * 2: the digest covers the entity items' raw bytes (1: their parse events).
 */
export const FORMAT_VERSION = '2';

export const CONTEXT_NAMESPACE = 'http://netlicensing.labs64.com/schema/context';

/** Item types that are not entities: first and last item of every file. */
export const HEADER_TYPE = 'TransferHeader';
export const DIGEST_TYPE = 'TransferDigest';

/** Default split size of the writer: large enough for ~150k licensees per file, small enough to copy. */
export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;

/** `{n}_netlicensing-assets.xml`, n = 1..N without leading zeros (seed manual). */
export const TRANSFER_FILE_SUFFIX = '_netlicensing-assets.xml';
/** Anything that looks like a transfer file, including badly numbered ones (`01_…`, `0_…`). */
export const TRANSFER_FILE_LIKE = /^(\d+)_netlicensing-assets\.xml$/;

export function transferFileName(n: number): string {
  return `${n}${TRANSFER_FILE_SUFFIX}`;
}

/** The file number of a well-formed transfer file name, or undefined. */
export function transferFileNumber(name: string): number | undefined {
  const match = TRANSFER_FILE_LIKE.exec(name);
  if (!match || !/^[1-9]\d*$/.test(match[1]!)) return undefined;
  const n = Number(match[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Header property names (docs/transfer-format.md, "Header"). */
export const HEADER = {
  formatVersion: 'formatVersion',
  exportId: 'exportId',
  createdAt: 'createdAt',
  sourceHost: 'sourceHost',
  cardSerial: 'cardSerial',
  withoutCard: 'withoutCard',
  licensees: 'licensees',
  file: 'file',
  files: 'files',
  vendorUser: 'vendorUser',
  vendorSalt: 'vendorSalt',
  vendorHash: 'vendorHash',
} as const;

/** Digest item property names. */
export const DIGEST = {
  items: 'items',
  sha256: 'sha256',
} as const;

/**
 * The writer reserves this many digits for `files` so that it can patch the
 * header in place once it knows how many files the export has.
 */
export const FILES_DIGITS_RESERVED = 9;

/**
 * Where each entity kind may appear, as a phase number. Within the whole
 * export (all files concatenated) phases never go back, except that a new
 * Product starts a new product block (phase 0 again while still in the
 * product section). See docs/transfer-format.md, "Order".
 */
export const KIND_PHASE: Record<EntityKind, number> = {
  Product: 0,
  ProductModule: 1,
  LicenseTemplate: 2,
  Licensee: 3,
  License: 4,
  Token: 5,
};

/**
 * Whether `next` may follow `previous` (undefined: first entity). Parent
 * relations (a License after *its* Licensee) are checked by the caller.
 */
export function mayFollow(previous: EntityKind | undefined, next: EntityKind): boolean {
  const before = previous === undefined ? -1 : KIND_PHASE[previous];
  switch (next) {
    case 'Product':
      return before <= KIND_PHASE.LicenseTemplate;
    case 'ProductModule':
      return before === KIND_PHASE.Product || before === KIND_PHASE.ProductModule;
    case 'LicenseTemplate':
      return before === KIND_PHASE.ProductModule || before === KIND_PHASE.LicenseTemplate;
    case 'Licensee':
      return before <= KIND_PHASE.License;
    case 'License':
      return before === KIND_PHASE.Licensee || before === KIND_PHASE.License;
    case 'Token':
      return true;
  }
}

const DIGEST_DOMAIN = 'netlicensing-agent transfer digest v2\n';

/** Pending canonical text is hashed in pieces of about this many UTF-16 code units. */
const FLUSH_CHARS = 64 * 1024;

/**
 * Streams the canonical encoding of an item into a SHA-256 (used for the
 * header item, docs/transfer-format.md, "Digest"). The encoding is a text, hashed as
 * UTF-8: U+0001 type U+0000 starts an item, U+0002 name U+0000 value U+0000
 * is a property, U+0003 name U+0000 starts a list, U+0004 ends a list,
 * U+0005 ends an item. XML 1.0 cannot carry U+0000–U+0008 in any form, so
 * no name or value can be mistaken for structure; whitespace between
 * elements never enters. Writer and reader make the same calls in document
 * order.
 */
export class CanonicalHasher {
  private readonly hash: Hash = createHash('sha256');
  private pending = '';

  beginItem(type: string): void {
    this.pending += '\u0001' + type + '\u0000';
  }

  property(name: string, value: string): void {
    this.pending += '\u0002' + name + '\u0000' + value + '\u0000';
  }

  beginList(name: string): void {
    this.pending += '\u0003' + name + '\u0000';
  }

  endList(): void {
    this.pending += '\u0004';
  }

  endItem(): void {
    this.pending += '\u0005';
    if (this.pending.length >= FLUSH_CHARS) this.flush();
  }

  /** The raw SHA-256 of everything fed so far; the hasher cannot be used afterwards. */
  digest(): Buffer {
    this.flush();
    return this.hash.digest();
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.hash.update(this.pending, 'utf8');
    this.pending = '';
  }
}

/**
 * The value of a file's TransferDigest `sha256` property from the hash of
 * the header's canonical encoding and the hash of the entity items' bytes
 * (from just after the header's end tag to just after the last entity
 * item's end tag). The header is hashed apart, from its content, so that
 * the writer can fill in its `files` count after writing the entities.
 */
export function fileDigest(headerHash: Buffer, bodyHash: Buffer): string {
  return createHash('sha256').update(DIGEST_DOMAIN).update(headerHash).update(bodyHash).digest('hex');
}

/** Characters XML 1.0 cannot carry in any form (not even as a character reference). */
export const XML_UNREPRESENTABLE =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
