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
 *   - a file that ends before the root element is closed is "truncated".
 *
 * Synchronous on purpose: the importer runs inside one synchronous LMDB
 * write transaction (src/store/asset-store.ts, importTransaction).
 */
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

/** Thrown by a handler to stop reading early; readXmlFile then returns normally. */
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

/**
 * Parses `path`, calling the handlers `makeEvents` returns. `displayName` is
 * how the file is named in error messages.
 */
export function readXmlFile(
  path: string,
  displayName: string,
  makeEvents: (position: XmlPosition) => XmlEvents,
  options: ReadXmlOptions = {},
): void {
  const parser = new SaxesParser({ xmlns: true, position: true });
  const position: XmlPosition = {
    get line() {
      return parser.line;
    },
    get column() {
      return parser.column + 1;
    },
  };
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
    if (decl.encoding !== undefined && !/^utf-?8$/i.test(decl.encoding)) {
      fail(`encoding "${decl.encoding}" is not supported: transfer files are UTF-8`);
    }
  });
  const events = makeEvents(position);
  parser.on('opentag', (tag) => events.open(tag.uri, tag.local, tag.attributes));
  parser.on('closetag', () => events.close());
  parser.on('text', (text) => events.text(text));
  parser.on('cdata', (text) => events.text(text));

  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const buffer = Buffer.allocUnsafe(chunkBytes);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new TransferInputError(displayName, 0, 0, `cannot open: ${(error as Error).message}`);
  }
  let bytesRead = 0;
  /** Bytes at the end of the previous chunk that the decoder holds back (an incomplete sequence). */
  let carried = new Uint8Array(0);
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, chunkBytes, null);
      if (n === 0) break;
      const chunk = buffer.subarray(0, n);
      let text: string;
      try {
        text = decoder.decode(chunk, { stream: true });
      } catch {
        const joined = Buffer.concat([carried, chunk]);
        const bad = firstInvalidUtf8(joined);
        // Let the parser consume the valid part, so the position points at the bad byte.
        parser.write(new TextDecoder().decode(joined.subarray(0, bad)));
        fail(`invalid UTF-8 byte sequence (byte offset ${bytesRead - carried.length + bad})`);
      }
      carried = new Uint8Array(chunk.subarray(n - incompleteTailLength(chunk))); // a copy: the buffer is reused
      bytesRead += n;
      parser.write(text!);
      options.onChunk?.(bytesRead);
    }
    let rest: string;
    try {
      rest = decoder.decode();
    } catch {
      fail('the file ends inside a UTF-8 sequence (truncated?)');
    }
    parser.write(rest!);
    closing = true;
    parser.close();
  } catch (error) {
    if (error instanceof StopReading) return;
    throw error;
  } finally {
    closeSync(fd);
  }
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
