/**
 * How the runtime journal is stored: one record per group commit.
 *
 * The chain has one link per group commit (runtime-writer.ts): the link is
 * SHA-256 (hex) of the previous link followed by each entry's text, and the
 * text of an entry is the JSON of `[seq, atMs, licenseeNumber, events]`.
 * Since schema 3 the group is stored as that text, in one record keyed by the
 * group's first sequence number:
 *
 *     prevHash (64 hex) + hash (64 hex) + entry texts joined by "\n"
 *
 * So a group commit hashes and stores the same text, encoded once, with one
 * put, instead of encoding and putting every entry on its own (the serving
 * thread's share of a durable write). JSON never contains a raw newline, so
 * the separator is unambiguous; JSON.parse then JSON.stringify gives the text
 * back exactly (its values are strings, integers, arrays and plain objects),
 * which is what verify-database re-hashes.
 *
 * Schema 1 and 2 databases stored one msgpack object per entry, keyed by its
 * sequence number, with its group's links; they are read as groups of one
 * (their chain verifies unchanged), and new groups are appended after them.
 */
import type { RuntimeEvent } from '../core/runtime.ts';

/**
 * The licensee number of a fold marker entry (journal-fold.ts). U+001F cannot occur in XML text,
 * so no imported licensee has this number.
 */
export const JOURNAL_FOLD_MARKER = '\u001fjournal folded';

/**
 * The one event of a fold marker entry: the journal's entries up to `throughSeq` were folded into
 * a snapshot of every licensee's runtime state with SHA-256 `snapshotDigest`. Not a change of any
 * licensee's state; in the chain so that the card's next checkpoint seals the snapshot too.
 */
export interface JournalFoldedEvent {
  type: 'journalFolded';
  throughSeq: number;
  /** The chain link of entry `throughSeq`'s group: what the first entry kept links to. */
  throughHash: string;
  snapshotDigest: string;
  licensees: number;
}

export type JournalEvent = RuntimeEvent | JournalFoldedEvent;

export interface JournalEntry {
  seq: number;
  atMs: number;
  licenseeNumber: string;
  /** RuntimeEvents, but for a fold marker's entry (runtimeEventsOf). */
  events: JournalEvent[];
  /** The chain link before this entry's group. */
  prevHash: string;
  /** The link of this entry's group (every entry of a group has the same). */
  hash: string;
}

export type JournalEntryBody = Omit<JournalEntry, 'hash' | 'prevHash'>;

/**
 * Journal entries, in order, grouped by their chain link: the entries of one group commit share
 * their previous link and their own (runtime-writer.ts). What verify-database checks and
 * compact-journal folds, a group at a time.
 */
export function* groupsOf(entries: Iterable<JournalEntry>): Iterable<JournalEntry[]> {
  let group: JournalEntry[] = [];
  for (const entry of entries) {
    const first = group[0];
    if (first !== undefined && (entry.prevHash !== first.prevHash || entry.hash !== first.hash)) {
      yield group;
      group = [];
    }
    group.push(entry);
  }
  if (group.length > 0) yield group;
}

/** The runtime events of an entry: none for a fold marker's (JOURNAL_FOLD_MARKER). */
export function runtimeEventsOf(entry: JournalEntryBody): readonly RuntimeEvent[] {
  return entry.licenseeNumber === JOURNAL_FOLD_MARKER ? [] : (entry.events as RuntimeEvent[]);
}

/** A stored journal record: a group's text (schema 3), or one entry (schemas 1 and 2). */
export type JournalRecord = string | JournalEntry;

const HASH_CHARS = 64;

/** The link before the journal's first entry. */
export const GENESIS_HASH = '0'.repeat(HASH_CHARS);

function entryText(entry: JournalEntryBody): string {
  return JSON.stringify([entry.seq, entry.atMs, entry.licenseeNumber, entry.events]);
}

function sha256Hex(text: string): string {
  // One hash per group commit: Bun's one-shot hash (no hasher object).
  return Bun.CryptoHasher.hash('sha256', text, 'hex');
}

function chainLink(prevHash: string, texts: readonly string[]): string {
  return sha256Hex(prevHash + texts.join(''));
}

/** The chain link of a group of entries after the link `prevHash`. */
export function journalHash(prevHash: string, entries: readonly JournalEntryBody[]): string {
  return chainLink(prevHash, entries.map(entryText));
}

/** The record that stores a group commit's entries (consecutive sequence numbers), and its link. */
export function journalGroupRecord(prevHash: string, entries: readonly JournalEntryBody[]): { hash: string; record: string } {
  const texts = entries.map(entryText);
  const hash = chainLink(prevHash, texts);
  return { hash, record: prevHash + hash + texts.join('\n') };
}

/** The entries a stored record holds, in sequence order. */
export function entriesOfRecord(record: JournalRecord): JournalEntry[] {
  if (typeof record !== 'string') return [record];
  const { prevHash, hash } = journalRecordHead(record);
  return record
    .slice(2 * HASH_CHARS)
    .split('\n')
    .map((text) => {
      const [seq, atMs, licenseeNumber, events] = JSON.parse(text) as [number, number, string, JournalEvent[]];
      return { seq, atMs, licenseeNumber, events, prevHash, hash };
    });
}

/** The chain links a group record (schema 3) starts with: the one before its group, and its own. */
export function journalRecordHead(record: string): { prevHash: string; hash: string } {
  return { prevHash: record.slice(0, HASH_CHARS), hash: record.slice(HASH_CHARS, 2 * HASH_CHARS) };
}

/** Whether a group record's own link is the hash of its previous link and its entry texts. */
export function journalRecordIsIntact(record: string): boolean {
  const { prevHash, hash } = journalRecordHead(record);
  return chainLink(prevHash, record.slice(2 * HASH_CHARS).split('\n')) === hash;
}
