/**
 * The only file that imports `saxes`: reads one XML file synchronously in
 * fixed-size chunks and reports namespace-resolved element events, so that
 * memory stays flat however large the file is.
 *
 * Hardening, all reported as TransferInputError with file, line and column:
 *   - bytes are decoded with a fatal UTF-8 decoder in streaming mode; an
 *     invalid sequence is located to the character;
 *   - a DOCTYPE is refused outright (no entity declarations, hence no entity
 *     expansion; saxes itself knows only the five predefined entities);
 *   - an encoding declaration other than UTF-8 is refused;
 *   - only XML 1.0 is read (a declaration of another version is refused);
 *   - a file that ends before the root element is closed is "truncated";
 *   - a read error names the file.
 *
 * It also hashes a range of the file's raw bytes between two parse
 * positions (the transfer digest, docs/transfer-format.md): the handlers
 * mark the range, the reader maps the positions to byte offsets once per
 * chunk and feeds the bytes to SHA-256 as they stream past.
 *
 * Synchronous and stepwise on purpose: the reader (read-batches.ts, on the
 * importing thread or a worker) steps chunk by chunk and hands the items over
 * in batches, which the importer writes in synchronous LMDB transactions
 * (src/importer/import-transfer.ts).
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { SaxesParser } from 'saxes';
import { TransferInputError } from './errors.ts';

/** An attribute as reported: its value and namespace (empty for unprefixed attributes). */
export interface XmlAttribute {
  readonly value: string;
  readonly uri: string;
}
export type XmlAttributes = Readonly<Record<string, XmlAttribute>>;

export interface XmlEvents {
  /** A start tag (also for `<a/>`, which is followed by `close`). */
  open(uri: string, local: string, attributes: XmlAttributes): void;
  close(): void;
  /** Character data: text and CDATA sections, possibly in several pieces. */
  text(text: string): void;
}

/** Where the parser is: line 1-based, column 1-based (just after the last event's markup). */
export interface XmlPosition {
  readonly line: number;
  readonly column: number;
}

/** The parse position, and the raw-byte hash a handler can steer from its events. */
export interface XmlSource extends XmlPosition {
  /** The hashed range starts just after the markup of the current event. */
  startHash(): void;
  /** The hashed range extends to just after the markup of the current event. */
  extendHash(): void;
  /** SHA-256 of the file's bytes in the range (empty when never extended); ends hashing. */
  hashDigest(): Buffer;
  /**
   * The longest run of text without markup accepted from now on (TEXT_RUN_CHARS_MAX until
   * changed): a handler that expects one long value raises it while reading that value.
   */
  textRunCharsMax: number;
}

/** Thrown by a handler to stop reading early: `step` then returns false (and readXmlFile returns normally). */
/** The longest run of text between two tags the reader holds (see charsSinceEvent); above any property value's bound. */
export const TEXT_RUN_CHARS_MAX = 4 * 1024 * 1024;

export class StopReading extends Error {
  override name = 'StopReading';
}

export interface ReadXmlOptions {
  /** Bytes per read; the default is 256 KiB. */
  chunkBytes?: number;
  /** Called after each chunk with the number of bytes read from this file so far. */
  onChunk?: (bytesRead: number) => void;
}

export const DEFAULT_CHUNK_BYTES = 256 * 1024;

/** A file being parsed chunk by chunk: `step` until it returns false, `close` in any case. */
export interface XmlFileReader {
  /** Reads and parses the next chunk (handlers run meanwhile); false once the document is complete. */
  step(): boolean;
  /** Closes the file; idempotent. */
  close(): void;
  /** Bytes read from the file so far. */
  bytesRead(): number;
  /** The most raw bytes held at once for hashing (bounded by the bytes between two parser events; tests). */
  keptBytesMax(): number;
}

/**
 * Parses `path`, calling the handlers `makeEvents` returns. `displayName` is
 * how the file is named in error messages.
 */
export function readXmlFile(
  path: string,
  displayName: string,
  makeEvents: (source: XmlSource) => XmlEvents,
  options: ReadXmlOptions = {},
): void {
  const reader = openXmlFile(path, displayName, makeEvents, options);
  try {
    while (reader.step());
  } finally {
    reader.close();
  }
}

/** Opens `path` for stepwise parsing (see readXmlFile). */
export function openXmlFile(
  path: string,
  displayName: string,
  makeEvents: (source: XmlSource) => XmlEvents,
  options: ReadXmlOptions = {},
): XmlFileReader {
  // Always XML 1.0, whatever a declaration says (a 1.1 declaration is refused below as well).
  const parser = new SaxesParser({ xmlns: true, position: true, defaultXMLVersion: '1.0', forceXMLVersion: true });
  const fail = (reason: string): never => {
    throw new TransferInputError(displayName, parser.line, parser.column + 1, reason);
  };
  let closing = false;
  parser.on('error', (error) => {
    const reason = error.message.replace(/^\d+:\d+: /, '');
    fail(closing ? `the file ends early (truncated?): ${reason}` : reason);
  });
  parser.on('doctype', () => fail('DOCTYPE declarations are not allowed in transfer files (no entity expansion)'));
  parser.on('xmldecl', (decl) => {
    // XML 1.1 admits characters such as U+0001–U+0008 (as character references) that 1.0 forbids
    // and the reader's item tokens rely on never meeting (transfer-file.ts, ITEM_START).
    if (decl.version !== undefined && decl.version !== '1.0') {
      fail(`XML version "${decl.version}" is not supported: transfer files are XML 1.0`);
    }
    if (decl.encoding !== undefined && !/^utf-?8$/i.test(decl.encoding)) {
      fail(`encoding "${decl.encoding}" is not supported: transfer files are UTF-8`);
    }
  });

  // ---- Raw-byte hashing (XmlSource). Char positions are saxes's stream
  // positions (UTF-16 units of all text written so far); a position is mapped
  // to a byte offset with the text of the chunk it lies in.
  let text = '';
  /** Chars written to the parser before `text`. */
  let textStartChar = 0;
  /** File offset of the byte after `text`'s last character. */
  let textEndByte = 0;
  /** Raw bytes from `keptFrom` up to `chunkFrom`, then the chunk being parsed. */
  let kept: Uint8Array = new Uint8Array(0);
  let keptFrom = 0;
  let keptMax = 0;
  let chunk: Uint8Array = new Uint8Array(0);
  let chunkFrom = 0;
  /**
   * The running hash: every byte from the range's start up to the latest parser event
   * (`hashedTo`). The range ends at the latest extendHash, whose state `committed` keeps. Bytes
   * after it count only if a later extendHash takes them in: hashing them at once (instead of
   * keeping them until then) keeps no more than the bytes since the latest event. Kept until the
   * next item closed, they were copied again with every chunk: one item of 15 properties of 1 MB
   * took 1.99 s and 223 MB to import, now 0.92 s and 149 MB; 40 MB of comments between two items
   * 6.7 s and 440 MB, now 0.9 s and 97 MB (docs/transfer-format.md).
   */
  let hash: Hash | undefined;
  let committed: Hash | undefined;
  /** Positions marked by the handlers and not yet mapped to bytes. */
  let startAt: number | undefined;
  let endAt: number | undefined;
  /** Where the parser was after its latest event (markup, text, a comment), not yet mapped to bytes. */
  let lastEventAt: number | undefined;
  /** Bytes before this offset are hashed (or outside the range); -1: the range has not started. */
  let hashedTo = -1;

  const byteAt = (charPosition: number): number =>
    textEndByte - Buffer.byteLength(text.slice(charPosition - textStartChar), 'utf8');
  const hashBytes = (from: number, to: number) => {
    if (to <= from) return;
    if (from < chunkFrom) hash!.update(kept.subarray(from - keptFrom, Math.min(to, chunkFrom) - keptFrom));
    if (to > chunkFrom) hash!.update(chunk.subarray(Math.max(from, chunkFrom) - chunkFrom, to - chunkFrom));
  };
  /** Maps the marked positions (all inside `text`) to bytes: hashes up to the end mark, keeps that state, hashes on to the latest event. */
  const settle = () => {
    if (startAt !== undefined) {
      hashedTo = byteAt(startAt);
      startAt = undefined;
    }
    if (hashedTo < 0) return;
    if (endAt !== undefined) {
      const to = byteAt(endAt);
      endAt = undefined;
      hashBytes(hashedTo, to);
      hashedTo = to;
      committed = hash!.copy();
    }
    if (lastEventAt !== undefined) {
      // Never before the end mark: it is set by an event's handler, and this after the handler ran.
      const to = byteAt(lastEventAt);
      lastEventAt = undefined;
      hashBytes(hashedTo, to);
      hashedTo = Math.max(hashedTo, to);
    }
  };
  const source: XmlSource = {
    get line() {
      return parser.line;
    },
    get column() {
      return parser.column + 1;
    },
    startHash() {
      hash = createHash('sha256');
      committed = undefined;
      startAt = parser.position;
      endAt = undefined;
    },
    extendHash() {
      endAt = parser.position;
    },
    textRunCharsMax: TEXT_RUN_CHARS_MAX,
    hashDigest() {
      settle();
      const digest = (committed ?? createHash('sha256')).digest();
      hash = undefined;
      committed = undefined;
      hashedTo = -1;
      return digest;
    },
  };

  const events = makeEvents(source);
  // Characters written since the parser last reported something: saxes keeps a run of text in
  // memory until the next markup, so a file with none for gigabytes would take that much.
  let charsSinceEvent = 0;
  /** After a handler ran: text since markup starts again, and the bytes so far need not be kept (see `hash`). */
  const handled = () => {
    charsSinceEvent = 0;
    lastEventAt = parser.position;
  };
  parser.on('opentag', (tag) => (events.open(tag.uri, tag.local, tag.attributes), handled()));
  parser.on('closetag', () => (events.close(), handled()));
  parser.on('text', (piece) => (events.text(piece), handled()));
  parser.on('cdata', (piece) => (events.text(piece), handled()));
  // No data (and not markup that ends a run of text), but the bytes before them need not be kept any longer.
  parser.on('comment', () => (lastEventAt = parser.position));
  parser.on('processinginstruction', () => (lastEventAt = parser.position));

  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const buffer = Buffer.allocUnsafe(chunkBytes);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new TransferInputError(displayName, 0, 0, `cannot open: ${(error as Error).message}`);
  }
  let open = true;
  let done = false;
  let bytesRead = 0;
  /** Bytes at the end of the read so far that the decoder holds back (an incomplete sequence). */
  let carried = new Uint8Array(0);

  const writeText = (next: string, endByte: number) => {
    textStartChar += text.length;
    text = next;
    textEndByte = endByte;
    parser.write(next);
    charsSinceEvent += next.length;
    if (charsSinceEvent > source.textRunCharsMax) fail(`more than ${source.textRunCharsMax} characters without markup (no value of a transfer file is that long)`);
    if (hash !== undefined) settle();
  };

  /** Keeps the raw bytes a later chunk may still need (from the hashed end, or the decoder's held-back tail). */
  const keep = () => {
    const from = hashedTo >= 0 ? hashedTo : textEndByte;
    const oldPart = from < chunkFrom ? kept.subarray(from - keptFrom) : new Uint8Array(0);
    const newPart = chunk.subarray(Math.max(from, chunkFrom) - chunkFrom);
    kept = oldPart.length === 0 ? new Uint8Array(newPart) : Buffer.concat([oldPart, newPart]); // copies: the buffer is reused
    keptFrom = from;
    if (kept.length > keptMax) keptMax = kept.length;
    chunk = new Uint8Array(0);
    chunkFrom = bytesRead;
  };

  const finish = () => {
    let rest: string;
    try {
      rest = decoder.decode();
    } catch {
      fail('the file ends inside a UTF-8 sequence (truncated?)');
    }
    writeText(rest!, bytesRead);
    closing = true;
    parser.close();
  };

  const step = (): boolean => {
    if (done) return false;
    try {
      let n: number;
      try {
        n = readSync(fd, buffer, 0, chunkBytes, null);
      } catch (error) {
        throw new TransferInputError(displayName, 0, 0, `cannot read: ${(error as Error).message}`);
      }
      if (n === 0) {
        done = true;
        finish();
        return false;
      }
      chunk = buffer.subarray(0, n);
      chunkFrom = bytesRead;
      let decoded: string;
      try {
        decoded = decoder.decode(chunk, { stream: true });
      } catch {
        const joined = Buffer.concat([carried, chunk]);
        const bad = firstInvalidUtf8(joined);
        // Let the parser consume the valid part, so the position points at the bad byte.
        parser.write(new TextDecoder().decode(joined.subarray(0, bad)));
        fail(`invalid UTF-8 byte sequence (byte offset ${bytesRead - carried.length + bad})`);
      }
      // A short chunk may end a sequence the previous one began: look at both.
      const tail = n >= 4 ? chunk : Buffer.concat([carried, chunk]);
      carried = new Uint8Array(tail.subarray(tail.length - incompleteTailLength(tail))); // a copy: the buffer is reused
      bytesRead += n;
      writeText(decoded!, bytesRead - carried.length);
      keep();
      options.onChunk?.(bytesRead);
      return true;
    } catch (error) {
      if (error instanceof StopReading) {
        done = true;
        return false;
      }
      done = true;
      throw error;
    }
  };

  return {
    step,
    close() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
    bytesRead: () => bytesRead,
    keptBytesMax: () => keptMax,
  };
}

/** Length of a UTF-8 sequence from its first byte; 0 for a byte that cannot start one. */
function sequenceLength(byte: number): number {
  if (byte < 0x80) return 1;
  if (byte >= 0xc2 && byte <= 0xdf) return 2;
  if (byte >= 0xe0 && byte <= 0xef) return 3;
  if (byte >= 0xf0 && byte <= 0xf4) return 4;
  return 0;
}

/** Bytes at the end that start a sequence the chunk does not complete (0–3). */
function incompleteTailLength(bytes: Uint8Array): number {
  const end = bytes.length;
  for (let i = end - 1; i >= 0 && i >= end - 3; i--) {
    const byte = bytes[i]!;
    if ((byte & 0xc0) !== 0x80) {
      const need = sequenceLength(byte);
      return need > end - i ? end - i : 0;
    }
  }
  return 0;
}

/**
 * Index of the first byte that is not part of a valid UTF-8 sequence (an
 * incomplete sequence at the very end counts as valid: more bytes may come),
 * or bytes.length.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    const length = sequenceLength(lead);
    if (length === 0) return i;
    if (length === 1) {
      i++;
      continue;
    }
    // Allowed range of the second byte excludes overlongs and surrogates (RFC 3629).
    const low = lead === 0xe0 ? 0xa0 : lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xed ? 0x9f : lead === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k < length; k++) {
      if (i + k >= bytes.length) return bytes.length;
      const byte = bytes[i + k]!;
      if (k === 1 ? byte < low || byte > high : (byte & 0xc0) !== 0x80) return i;
    }
    i += length;
  }
  return bytes.length;
}
