/**
 * The runtime journal file, `<database>/runtime.wal`: where a counter change
 * becomes durable before LMDB holds it (a write-ahead log).
 *
 * Why a file of our own: an LMDB commit syncs twice (fdatasync of the data
 * file, then an O_DSYNC write of its meta page): 0.50–1.08 ms idle on the
 * 2-core test machine, ~1.4 ms under load. One O_DSYNC write of a 6,000-byte
 * record into this pre-written file took 0.15–0.31 ms (bench-validate prints
 * both, scripts/bench/commit-io.ts). The serving process appends each group commit's journal
 * record here and acknowledges it when the write returns; LMDB receives the
 * same changes later, in checkpoints (runtime-writer.ts), and this file's
 * records after LMDB's journal head are applied at the next open after a
 * crash (asset-store.ts, recoverRuntimeJournal).
 *
 * A record (little-endian):
 *
 *     0  magic "NLRJ"        4  payload bytes (u32)   8  CRC-32 of bytes 12..end
 *    12  format 1 (u32)     16  first seq (f64)      24  last seq (f64)
 *    32  payload: the database's mark (36 hex digits of SHA-256 of meta.databaseId),
 *        journal record bytes (u32), the journal record (UTF-8,
 *        journal-records.ts: prevHash + hash + entry texts), then the JSON of
 *        the extra records (the proxy's replay entries), or nothing
 *
 * Records are written one after another; when the writer has passed
 * `rewindAtBytes` and every record is in LMDB, it starts again at offset 0.
 * So the file holds the records after LMDB's journal head from the offset
 * LMDB stored with that head (`walResume`) on, or from 0 once the writer
 * rewound. A reader follows the sequence numbers: it stops at the first
 * record that is torn (CRC), stale (an older lap: its seq does not follow) or
 * absent, and each record must belong to the database (its id: two new
 * databases start from the same chain hash) and continue its hash chain.
 */
import { closeSync, constants, existsSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, write, writeSync } from 'node:fs';
import type { JournalHead } from './runtime-writer.ts';
import { journalRecordHead, journalRecordIsIntact } from './journal-records.ts';

const MAGIC = 0x4a524c4e; // "NLRJ" read as a little-endian u32
const FORMAT = 1;
const HEADER_BYTES = 32;
const ID_BYTES = 36;
/** Header, database id, journal record length. */
const PREFIX_BYTES = HEADER_BYTES + ID_BYTES + 4;
/** Offset of the first byte the CRC covers. */
const CRC_FROM = 12;

export const WAL_FILE = 'runtime.wal';

/** One extra record written with a group (key and value of the store's meta database). */
export interface WalExtra {
  key: string | number | (string | number)[];
  value: unknown;
}

/** A group commit as the journal file holds it. */
export interface WalGroup {
  /** meta.databaseId of the database the record belongs to (a record stores its mark, walMarkOf). */
  databaseId: string;
  firstSeq: number;
  lastSeq: number;
  /** The journal record (journal-records.ts). */
  record: string;
  extras: WalExtra[];
}

/** A record read back from the file, where it is. */
export interface WalGroupAt extends Omit<WalGroup, 'databaseId'> {
  offset: number;
  /** Offset just after the record. */
  end: number;
}

/** Written over a record's magic to void it (voidRecordAt): a reader then finds no record there. */
const VOID_BYTES = new Uint8Array(4);

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** What a record stores of the database id: fixed length, ASCII, whatever form the id has. */
function walMarkOf(databaseId: string): string {
  if (databaseId !== lastMark.id) lastMark = { id: databaseId, mark: Bun.CryptoHasher.hash('sha256', databaseId, 'hex').slice(0, ID_BYTES) };
  return lastMark.mark;
}
/** A process serves one database: its mark is computed once, not for every record. */
let lastMark = { id: '', mark: '' };

/** The bytes of one record. */
export function encodeWalGroup(group: WalGroup): Uint8Array {
  const extras = group.extras.length === 0 ? '' : JSON.stringify(group.extras);
  // UTF-8 needs at most 3 bytes per UTF-16 unit; the record is cut to its real length below.
  const bytes = new Uint8Array(PREFIX_BYTES + 3 * (group.record.length + extras.length));
  encoder.encodeInto(walMarkOf(group.databaseId), bytes.subarray(HEADER_BYTES, HEADER_BYTES + ID_BYTES));
  const recordBytes = encoder.encodeInto(group.record, bytes.subarray(PREFIX_BYTES)).written;
  const extrasBytes = encoder.encodeInto(extras, bytes.subarray(PREFIX_BYTES + recordBytes)).written;
  const out = bytes.subarray(0, PREFIX_BYTES + recordBytes + extrasBytes);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, out.byteLength - HEADER_BYTES, true);
  view.setUint32(12, FORMAT, true);
  view.setFloat64(16, group.firstSeq, true);
  view.setFloat64(24, group.lastSeq, true);
  view.setUint32(HEADER_BYTES + ID_BYTES, recordBytes, true);
  view.setUint32(8, Bun.hash.crc32(out.subarray(CRC_FROM)), true);
  return out;
}

/** A record as read back: the database's mark in place of its id, and its length in bytes. */
interface DecodedRecord extends Omit<WalGroup, 'databaseId'> {
  mark: string;
  byteLength: number;
}

/** The record `bytes` start with, or undefined where it is not whole and intact. */
function decodeWalRecord(bytes: Uint8Array): DecodedRecord | undefined {
  if (bytes.byteLength < PREFIX_BYTES) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC || view.getUint32(12, true) !== FORMAT) return undefined;
  const end = HEADER_BYTES + view.getUint32(4, true);
  if (end < PREFIX_BYTES || end > bytes.byteLength) return undefined;
  if (Bun.hash.crc32(bytes.subarray(CRC_FROM, end)) !== view.getUint32(8, true)) return undefined;
  const recordEnd = PREFIX_BYTES + view.getUint32(HEADER_BYTES + ID_BYTES, true);
  if (recordEnd > end) return undefined;
  try {
    const mark = decoder.decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + ID_BYTES));
    const record = decoder.decode(bytes.subarray(PREFIX_BYTES, recordEnd));
    const extrasText = decoder.decode(bytes.subarray(recordEnd, end));
    const extras = extrasText === '' ? [] : (JSON.parse(extrasText) as WalExtra[]);
    return { mark, firstSeq: view.getFloat64(16, true), lastSeq: view.getFloat64(24, true), record, extras, byteLength: end };
  } catch {
    return undefined;
  }
}

export class WalChainError extends Error {
  override name = 'WalChainError';
}

/**
 * The records of the journal file at `path` that follow LMDB's journal head
 * `after`, reading from `fromOffset` (LMDB's walResume) and from 0 where the
 * writer rewound. Throws WalChainError for an intact record with the next
 * sequence number that belongs to another database or does not continue the
 * hash chain (another history): applying it would invent changes.
 */
export function readWalGroupsAfter(path: string, databaseId: string, after: JournalHead, fromOffset: number): WalGroupAt[] {
  if (!existsSync(path)) return [];
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    // Reads one record (header, then payload) where it is, not the whole file: an open with
    // nothing to recover reads 32 bytes.
    const recordAt = (offset: number): (DecodedRecord & WalGroupAt) | undefined => {
      if (offset < 0 || offset + PREFIX_BYTES > size) return undefined;
      const header = new Uint8Array(HEADER_BYTES);
      readSync(fd, header, 0, HEADER_BYTES, offset);
      const view = new DataView(header.buffer);
      if (view.getUint32(0, true) !== MAGIC) return undefined;
      const payloadBytes = view.getUint32(4, true);
      if (offset + HEADER_BYTES + payloadBytes > size) return undefined;
      const bytes = new Uint8Array(HEADER_BYTES + payloadBytes);
      bytes.set(header);
      readSync(fd, bytes, HEADER_BYTES, payloadBytes, offset + HEADER_BYTES);
      const decoded = decodeWalRecord(bytes);
      return decoded && { ...decoded, offset, end: offset + decoded.byteLength };
    };
    const mark = walMarkOf(databaseId);
    const groups: WalGroupAt[] = [];
    let expectedSeq = after.seq + 1;
    let chainHash = after.hash;
    let offset = fromOffset;
    let rewound = fromOffset === 0;
    for (;;) {
      let group = recordAt(offset);
      if (group?.firstSeq !== expectedSeq && !rewound) {
        rewound = true;
        offset = 0;
        group = recordAt(0);
      }
      if (group === undefined || group.firstSeq !== expectedSeq) return groups;
      if (group.mark !== mark) throw new WalChainError(`${path} belongs to another database`);
      const { prevHash, hash } = journalRecordHead(group.record);
      if (prevHash !== chainHash || !journalRecordIsIntact(group.record)) {
        throw new WalChainError(
          `${path}: the record of journal entries ${group.firstSeq}-${group.lastSeq} at offset ${group.offset} does not continue ` +
            `this database's journal (chain hash ${prevHash.slice(0, 12)}…, the database ends at entry ${expectedSeq - 1} with ${chainHash.slice(0, 12)}…)`,
        );
      }
      groups.push(group);
      expectedSeq = group.lastSeq + 1;
      chainHash = hash;
      offset = group.end;
    }
  } finally {
    closeSync(fd);
  }
}

export interface RuntimeWalFile {
  /**
   * Writes `bytes` at `offset` through a descriptor opened with O_DSYNC:
   * resolves once the OS reported them on the device. Runs on a thread of
   * the runtime's pool; the calling thread goes on.
   */
  write(bytes: Uint8Array, offset: number): Promise<void>;
  /**
   * Makes the record at `offset` unreadable (zeroes its magic, O_DSYNC): after a write that
   * failed, its bytes may have reached the device all the same, and must not come back as a
   * change at the next open. Resolves at once where the file does not reach `offset`.
   */
  voidRecordAt(offset: number): Promise<void>;
  close(): void;
  readonly path: string;
}

export interface OpenWalOptions {
  /**
   * Bytes written as zeros when the file is created. Overwriting written blocks needs no
   * file-size or extent change, so O_DSYNC flushes data only: 0.15 ms per record against
   * 0.22 ms appending to a growing file (median of 400, 6 KB records, ext4). Where the disk
   * has no room for it, the file simply grows as records are written.
   */
  preallocateBytes: number;
  /** Test hook: makes a write fail as if the disk were full. */
  failWrites?: () => Error | undefined;
  /** Test hook: a write whose bytes reach the file and that fails all the same (an I/O error reported late). */
  failWritesAfterLanding?: () => Error | undefined;
}

export function openRuntimeWal(path: string, options: OpenWalOptions): RuntimeWalFile {
  const existed = existsSync(path);
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_DSYNC, 0o600);
  try {
    if (!existed || fstatSync(fd).size < options.preallocateBytes) preallocate(fd, options.preallocateBytes);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  let open = true;
  const writeAt = (bytes: Uint8Array, offset: number): Promise<void> => {
    const failure = options.failWrites?.();
    if (failure) return Promise.reject(failure);
    const lateFailure = options.failWritesAfterLanding?.();
    return new Promise<void>((resolve, reject) => {
      // A write that stops short (the disk filled up) is continued: the rest then fails with the cause (ENOSPC).
      const writeFrom = (from: number) =>
        write(fd, bytes, from, bytes.byteLength - from, offset + from, (error, written) => {
          if (error) reject(error);
          else if (written === 0) reject(new Error(`cannot write to ${path}: 0 of ${bytes.byteLength - from} bytes written`));
          else if (from + written < bytes.byteLength) writeFrom(from + written);
          else if (lateFailure) reject(lateFailure);
          else resolve();
        });
      writeFrom(0);
    });
  };
  return {
    path,
    write: writeAt,
    voidRecordAt(offset) {
      let size: number;
      try {
        size = fstatSync(fd).size;
      } catch (error) {
        return Promise.reject(error);
      }
      // Nothing of a record there (a write that failed at the end of a growing file): nothing to void.
      if (offset + VOID_BYTES.byteLength > size) return Promise.resolve();
      return writeAt(VOID_BYTES, offset);
    },
    close() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

function preallocate(fd: number, bytes: number): void {
  const size = fstatSync(fd).size;
  const chunk = new Uint8Array(1 << 20);
  try {
    for (let at = size; at < bytes; at += chunk.byteLength) writeSync(fd, chunk, 0, Math.min(chunk.byteLength, bytes - at), at);
    fdatasyncSync(fd);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOSPC') throw error;
    // No room for it: give the space back; records then grow the file.
    ftruncateSync(fd, size);
  }
}
