/**
 * A database and its smart card: binding a database to a card (the import
 * that binds), and the verification every later import and every start of
 * the server makes — is this the bound card, is this database the newest
 * state the card sealed, is the clock not set back (docs/smart-card.md,
 * "Startup verdict"). Every verdict but `ok` becomes a CardError whose
 * message says what happened and what to do.
 */
import {
  createCheckpoint,
  verifyStartup,
  type StartupVerdict,
  type StoredCheckpoint,
} from './checkpoint.ts';
import { readCardBinding, type CardBinding } from './open.ts';
import { CardError, type Card } from './types.ts';

/** What the card code needs from the store; `AssetStore` has all of it. */
export interface CardDatabase {
  meta(): { databaseId: string };
  journalHead(): { seq: number; hash: string };
  /** The head a serving agent may seal: what its own writer checkpointed (AssetStore.sealableJournalHead). */
  sealableJournalHead(): { seq: number; hash: string };
  journalHashAt(seq: number): string | undefined;
  cardCheckpoint(): StoredCheckpoint | undefined;
  saveCardCheckpoint(record: StoredCheckpoint): Promise<void>;
}

export interface VerifyOptions {
  /** Accepted lag of the system clock behind the sealed high-water mark (default 5 min). */
  clockToleranceMs?: number;
  /** See StartupContext.lostSignatureTolerance (default 1). */
  lostSignatureTolerance?: number;
}

export type OkVerdict = Extract<StartupVerdict, { status: 'ok' }>;

/**
 * Reads the card's identity and key and seals checkpoint 1 over the
 * database's journal head, before the import transaction stores both (no
 * card I/O inside a synchronous LMDB transaction). A crash before that
 * transaction leaves the database unbound and the card one signature ahead:
 * harmless, the import is simply run again.
 */
export async function bindDatabase(
  card: Card,
  db: Pick<CardDatabase, 'meta' | 'journalHead'>,
  nowMs: number,
): Promise<{ binding: CardBinding; checkpoint: StoredCheckpoint }> {
  const binding = await readCardBinding(card, nowMs);
  const head = db.journalHead();
  const checkpoint = await createCheckpoint(
    card,
    { databaseId: db.meta().databaseId, seq: 1, journalSeq: head.seq, journalHash: head.hash, clockHighWaterMs: nowMs },
    { publicKey: binding.publicKey },
  );
  return { binding, checkpoint };
}

/** The startup verdict for `db` with `card`; throws CardError (code = verdict status) unless ok. */
export async function verifyDatabase(
  card: Card,
  db: Pick<CardDatabase, 'meta' | 'journalHashAt' | 'cardCheckpoint'>,
  binding: CardBinding,
  nowMs: number,
  options: VerifyOptions = {},
): Promise<OkVerdict> {
  const verdict = await verifyStartup(card, db.cardCheckpoint(), binding.publicKey, {
    databaseId: db.meta().databaseId,
    nowMs,
    journalHashAt: (seq) => db.journalHashAt(seq),
    ...(options.clockToleranceMs === undefined ? {} : { clockToleranceMs: options.clockToleranceMs }),
    ...(options.lostSignatureTolerance === undefined ? {} : { lostSignatureTolerance: options.lostSignatureTolerance }),
  });
  if (verdict.status === 'ok') return verdict;
  const message = verdict.message.endsWith('.') ? verdict.message : `${verdict.message}.`;
  throw new CardError(verdict.status, `${message}\n${verdict.advice}`, {
    details: { reason: 'reason' in verdict ? verdict.reason : 'clock', verdict },
  });
}
