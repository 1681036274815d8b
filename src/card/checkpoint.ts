/**
 * Anti-rollback and anti-clone checkpoints sealed by the smart card.
 *
 * A checkpoint is the card's signature over (database id, checkpoint
 * sequence, journal head seq + hash, clock high-water mark, card serial,
 * card signature counter). The card's signature counter goes up by exactly
 * one per signature and can never be lowered, so the newest checkpoint a
 * database holds must carry the card's current counter. On startup:
 *
 *   card counter == stored counter  → ok: this database is the newest state the card sealed
 *   card counter  > stored counter  → rollback_detected: the card signed later states this
 *                                      database does not have (restored snapshot/backup, or a
 *                                      clone of the agent used the card)
 *   card counter  < stored counter,
 *   or bad signature / other key     → foreign_card: not the card that sealed this database
 *   system clock < high-water mark   → clock_rollback_detected
 *
 * Crash safety: a crash after the card signed but before the signature was
 * stored leaves the card one ahead. Before signing, the attempt is written
 * durably as `pending`; at startup a card exactly `lostSignatureTolerance`
 * (default 1) or fewer ahead is accepted when a pending attempt with that
 * counter exists. Pending attempts are unsigned, so an attacker who edits
 * the database can use this to roll back at most that many checkpoints
 * (docs/smart-card.md, "What is guaranteed").
 *
 * `Checkpointer` makes one checkpoint at a time against the store;
 * `CheckpointBatcher` lets many writes share one signature (group commit),
 * or seals periodically in relaxed mode.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import type { Clock } from '../platform/clock.ts';
import { CardError, type Card, type CardErrorCode, type CardIdentity, type CardPublicKey } from './types.ts';

export const CHECKPOINT_FORMAT = 'nla-checkpoint/1';
/** Journal hash of an empty journal (the store's GENESIS_HASH). */
export const EMPTY_JOURNAL_HASH = '0'.repeat(64);
export const DEFAULT_CLOCK_TOLERANCE_MS = 5 * 60_000;

/** What the agent asks the card to seal. */
export interface CheckpointInput {
  databaseId: string;
  /** Checkpoint sequence number, one more than the previous checkpoint of this database. */
  seq: number;
  /** Journal head covered by this checkpoint: its sequence number … */
  journalSeq: number;
  /** … and its chained hash (hex SHA-256). */
  journalHash: string;
  /** Highest wall-clock time (ms since epoch) this database has seen. */
  clockHighWaterMs: number;
}

/** Everything in a signed payload. */
export interface CheckpointFields extends CheckpointInput {
  cardManufacturer: string;
  cardSerial: string;
  /** The card's signature counter value *after* this signature. */
  cardCounter: number;
}

export interface SignedCheckpoint {
  /** Canonical text that was signed (see encodeCheckpointPayload). */
  payload: string;
  /** Card signature over SHA-256(payload), base64. */
  signature: string;
  cardCounter: number;
}

/** An attempt written before the card signs it; unsigned. */
export interface PendingCheckpoint {
  payload: string;
  cardCounter: number;
}

/** The record the store keeps (one meta value), replaced atomically on every change. */
export interface StoredCheckpoint extends SignedCheckpoint {
  /** Attempts since the sealed one, oldest first; cleared when the next checkpoint is sealed. */
  pending?: PendingCheckpoint[];
}

const PENDING_KEEP = 4;
const FIELD_ORDER = [
  ['database', 'databaseId'],
  ['seq', 'seq'],
  ['journal-seq', 'journalSeq'],
  ['journal-hash', 'journalHash'],
  ['clock-high-water-ms', 'clockHighWaterMs'],
  ['card-manufacturer', 'cardManufacturer'],
  ['card-serial', 'cardSerial'],
  ['card-counter', 'cardCounter'],
] as const;
const NUMERIC = new Set<string>(['seq', 'journalSeq', 'clockHighWaterMs', 'cardCounter']);

/** Canonical payload: a header line, then `key=value` lines in fixed order. */
export function encodeCheckpointPayload(fields: CheckpointFields): string {
  const lines: string[] = [CHECKPOINT_FORMAT];
  for (const [key, prop] of FIELD_ORDER) {
    const value = fields[prop];
    if (NUMERIC.has(prop)) {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new TypeError(`checkpoint field ${key} must be a non-negative integer, got ${String(value)}`);
      }
    } else if (typeof value !== 'string' || value === '' || /[\r\n=]/.test(value)) {
      throw new TypeError(`checkpoint field ${key} must be a non-empty single-line string`);
    }
    lines.push(`${key}=${String(value)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Strict inverse of encodeCheckpointPayload; throws on anything else. */
export function decodeCheckpointPayload(payload: string): CheckpointFields {
  const lines = payload.split('\n');
  if (lines.pop() !== '' || lines[0] !== CHECKPOINT_FORMAT || lines.length !== FIELD_ORDER.length + 1) {
    throw new Error('not a checkpoint payload of format nla-checkpoint/1');
  }
  const out: Record<string, string | number> = {};
  FIELD_ORDER.forEach(([key, prop], i) => {
    const line = lines[i + 1]!;
    const prefix = `${key}=`;
    if (!line.startsWith(prefix)) throw new Error(`checkpoint payload line ${i + 2}: expected ${key}=`);
    const raw = line.slice(prefix.length);
    if (NUMERIC.has(prop)) {
      if (!/^(0|[1-9][0-9]*)$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
        throw new Error(`checkpoint payload line ${i + 2}: ${key} is not an integer`);
      }
      out[prop] = Number(raw);
    } else {
      out[prop] = raw;
    }
  });
  const fields = out as unknown as CheckpointFields;
  if (encodeCheckpointPayload(fields) !== payload) throw new Error('checkpoint payload is not in canonical form');
  return fields;
}

/** Whether `signature` is the card key's signature over `payload`. */
export function verifyCheckpointSignature(checkpoint: { payload: string; signature: string }, publicKey: CardPublicKey): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(publicKey.spkiBase64, 'base64'), format: 'der', type: 'spki' });
    const data = Buffer.from(checkpoint.payload, 'utf8');
    const signature = Buffer.from(checkpoint.signature, 'base64');
    if (publicKey.algorithm === 'rsa') return cryptoVerify('sha256', data, key, signature);
    return cryptoVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    return false;
  }
}

function fieldsFor(input: CheckpointInput, identity: CardIdentity, cardCounter: number): CheckpointFields {
  return { ...input, cardManufacturer: identity.manufacturer, cardSerial: identity.serial, cardCounter };
}

/**
 * Signs one checkpoint with `card`. The payload names the counter value the
 * signature will leave on the card (current + 1): the exclusive card
 * connection guarantees no other signature comes in between, and a
 * `publicKey` given here is used to check the signature before returning.
 */
export async function createCheckpoint(
  card: Card,
  input: CheckpointInput,
  options: { publicKey?: CardPublicKey } = {},
): Promise<SignedCheckpoint> {
  const identity = await card.identity();
  const before = await card.signatureCounter();
  const payload = encodeCheckpointPayload(fieldsFor(input, identity, before + 1));
  const signature = Buffer.from(await card.sign(new TextEncoder().encode(payload))).toString('base64');
  const checkpoint = { payload, signature, cardCounter: before + 1 };
  if (options.publicKey && !verifyCheckpointSignature(checkpoint, options.publicKey)) {
    throw new CardError('card_failure', "the card's signature does not verify with the bound public key: was the card's key replaced?");
  }
  return checkpoint;
}

// ---------------------------------------------------------------------------
// Startup verification

export interface StartupContext {
  databaseId: string;
  /** Current wall-clock time (from the injected Clock). */
  nowMs: number;
  /** Hash of journal entry `seq` (seq 0: the empty-journal hash), undefined when there is none. */
  journalHashAt(seq: number): string | undefined;
  /** A clock this much behind the high-water mark is still accepted (NTP steps, default 5 min). */
  clockToleranceMs?: number;
  /** Card counter steps ahead accepted when matched by a pending attempt (default 1; 0 = none). */
  lostSignatureTolerance?: number;
}

/** Where the next checkpoint continues from (give it to `Checkpointer`). */
export interface CheckpointBase {
  seq: number;
  cardCounter: number;
  clockHighWaterMs: number;
}

export type StartupVerdict =
  | {
      status: 'ok';
      /** The newest sealed checkpoint. */
      checkpoint: CheckpointFields;
      base: CheckpointBase;
      /** True when an interrupted checkpoint (card signed, signature not stored) was accepted. */
      recovered: boolean;
      message: string;
    }
  | {
      status: 'rollback_detected';
      reason: 'card_ahead' | 'journal_mismatch' | 'no_checkpoint' | 'unreadable';
      storedCounter?: number;
      cardCounter?: number;
      message: string;
      advice: string;
    }
  | {
      status: 'foreign_card';
      reason: 'card_behind' | 'bad_signature' | 'key_changed' | 'serial_mismatch' | 'other_database';
      storedCounter?: number;
      cardCounter?: number;
      message: string;
      advice: string;
    }
  | {
      status: 'clock_rollback_detected';
      highWaterMs: number;
      nowMs: number;
      checkpoint: CheckpointFields;
      base: CheckpointBase;
      message: string;
      advice: string;
    };

const ADVICE_ROLLBACK =
  'If this database was restored from a backup or VM snapshot, put back the newest copy (the one that last ran with this card) and start again. ' +
  'Otherwise ask the vendor for a fresh export bound to this card and import it into an empty working directory (move the old database/ away first); ' +
  'the agent then starts a new database on this card. Re-importing into this database is refused, as it would accept the rolled-back state.';
const ADVICE_FOREIGN =
  'Insert the card this database was bound to. If that card was lost, replaced, reset or had its signature key re-generated, ' +
  'ask the vendor for a fresh export bound to the card you have and import it into an empty working directory.';

/**
 * Decides whether this database may run with this card. Reads the card's
 * identity, public key and counter; writes nothing. After `ok` (or a
 * clock verdict the operator has fixed), the caller makes a new checkpoint
 * at once, so that any older copy of the database is now detectably behind.
 */
export async function verifyStartup(
  card: Card,
  stored: StoredCheckpoint | undefined,
  publicKey: CardPublicKey,
  context: StartupContext,
): Promise<StartupVerdict> {
  const identity = await card.identity();
  const cardKey = await card.publicKey();
  const cardCounter = await card.signatureCounter();
  const tolerance = context.lostSignatureTolerance ?? 1;

  if (!stored) {
    return {
      status: 'rollback_detected',
      reason: 'no_checkpoint',
      cardCounter,
      message: 'this database is bound to a smart card but holds no card checkpoint: it was altered, or its import did not finish',
      advice: ADVICE_ROLLBACK,
    };
  }
  if (cardKey.spkiBase64 !== publicKey.spkiBase64) {
    return {
      status: 'foreign_card',
      reason: 'key_changed',
      cardCounter,
      message: `the signature key on card ${identity.serial} is not the key this database was bound to (another card with the same serial, or the key was re-generated)`,
      advice: ADVICE_FOREIGN,
    };
  }
  if (!verifyCheckpointSignature(stored, publicKey)) {
    return {
      status: 'foreign_card',
      reason: 'bad_signature',
      cardCounter,
      message: "the database's newest checkpoint was not signed by the bound card's key: the database was altered or belongs to another card",
      advice: ADVICE_FOREIGN,
    };
  }
  let sealed: CheckpointFields;
  try {
    sealed = decodeCheckpointPayload(stored.payload);
  } catch (error) {
    return {
      status: 'rollback_detected',
      reason: 'unreadable',
      cardCounter,
      message: `the database's checkpoint cannot be read: ${(error as Error).message}`,
      advice: ADVICE_ROLLBACK,
    };
  }
  if (sealed.databaseId !== context.databaseId) {
    return {
      status: 'foreign_card',
      reason: 'other_database',
      message: `the checkpoint was sealed for database ${sealed.databaseId}, this database is ${context.databaseId}: its card state was copied from another database`,
      advice: ADVICE_FOREIGN,
    };
  }
  if (sealed.cardSerial !== identity.serial || sealed.cardManufacturer !== identity.manufacturer) {
    return {
      status: 'foreign_card',
      reason: 'serial_mismatch',
      message: `the database was sealed by card ${sealed.cardManufacturer}:${sealed.cardSerial}, but card ${identity.manufacturer}:${identity.serial} is inserted`,
      advice: ADVICE_FOREIGN,
    };
  }

  let base: CheckpointBase = { seq: sealed.seq, cardCounter: sealed.cardCounter, clockHighWaterMs: sealed.clockHighWaterMs };
  let recovered = false;
  if (cardCounter < sealed.cardCounter) {
    return {
      status: 'foreign_card',
      reason: 'card_behind',
      storedCounter: sealed.cardCounter,
      cardCounter,
      message:
        `card ${identity.serial} has made ${cardCounter} signatures, but this database holds a checkpoint it sealed as signature ${sealed.cardCounter}: ` +
        'a card counter never goes back, so this is not the card that sealed the database (or the card was reset)',
      advice: ADVICE_FOREIGN,
    };
  }
  if (cardCounter > sealed.cardCounter) {
    const attempt = (stored.pending ?? [])
      .map((p) => ({ p, fields: safeDecode(p.payload) }))
      .find(({ p, fields }) => p.cardCounter === cardCounter && fields?.cardCounter === cardCounter && fields.databaseId === context.databaseId);
    const acceptable =
      attempt?.fields !== undefined &&
      cardCounter - sealed.cardCounter <= tolerance &&
      context.journalHashAt(attempt.fields.journalSeq) === attempt.fields.journalHash;
    if (!acceptable) {
      const extra = cardCounter - sealed.cardCounter;
      return {
        status: 'rollback_detected',
        reason: 'card_ahead',
        storedCounter: sealed.cardCounter,
        cardCounter,
        message:
          `rollback detected: card ${identity.serial} has made ${extra} signature${extra === 1 ? '' : 's'} after the newest checkpoint in this database ` +
          `(card counter ${cardCounter}, database checkpoint ${sealed.cardCounter}). This database is older than what the card has seen: ` +
          'it was restored from a backup or snapshot, or a copy (clone) of this agent used the card, or another program signed with it',
        advice: ADVICE_ROLLBACK,
      };
    }
    recovered = true;
    base = { seq: attempt.fields!.seq, cardCounter, clockHighWaterMs: Math.max(base.clockHighWaterMs, attempt.fields!.clockHighWaterMs) };
  }

  if (context.journalHashAt(sealed.journalSeq) !== sealed.journalHash) {
    return {
      status: 'rollback_detected',
      reason: 'journal_mismatch',
      storedCounter: sealed.cardCounter,
      cardCounter,
      message:
        `the journal no longer contains the state sealed by the card (entry ${sealed.journalSeq} is missing or different): ` +
        'the runtime history was truncated or rewritten',
      advice: ADVICE_ROLLBACK,
    };
  }

  const toleranceMs = context.clockToleranceMs ?? DEFAULT_CLOCK_TOLERANCE_MS;
  if (context.nowMs < base.clockHighWaterMs - toleranceMs) {
    const behindMs = base.clockHighWaterMs - context.nowMs;
    return {
      status: 'clock_rollback_detected',
      highWaterMs: base.clockHighWaterMs,
      nowMs: context.nowMs,
      checkpoint: sealed,
      base,
      message:
        `the system clock (${new Date(context.nowMs).toISOString()}) is ${formatDuration(behindMs)} behind the latest time this database has seen ` +
        `(${new Date(base.clockHighWaterMs).toISOString()}); the clock was set back`,
      advice: 'Set the system clock to the correct time (enable NTP) and start again. Trial and subscription periods cannot be extended by setting the clock back.',
    };
  }

  return {
    status: 'ok',
    checkpoint: sealed,
    base,
    recovered,
    message: recovered
      ? `card ${identity.serial}: the previous run stopped while the card was signing checkpoint ${base.seq}; continuing from card counter ${cardCounter}`
      : `card ${identity.serial}: database matches the card (checkpoint ${sealed.seq}, card counter ${cardCounter})`,
  };
}

function safeDecode(payload: string): CheckpointFields | undefined {
  try {
    return decodeCheckpointPayload(payload);
  } catch {
    return undefined;
  }
}

function formatDuration(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  if (hours < 72) return `${hours} h`;
  return `${Math.round(hours / 24)} days`;
}

// ---------------------------------------------------------------------------
// Running: one checkpoint at a time

/** What the checkpointer needs from the store. */
export interface CheckpointPersistence {
  /** The journal head as durably committed right now. */
  journalHead(): { seq: number; hash: string };
  /** Durably replaces the stored checkpoint record (one LMDB meta value; resolves once synced). */
  save(record: StoredCheckpoint): Promise<void>;
}

export interface CheckpointerOptions {
  card: Card;
  publicKey: CardPublicKey;
  databaseId: string;
  persistence: CheckpointPersistence;
  clock: Clock;
  /** The stored record and the base from `verifyStartup` (ok). */
  stored: StoredCheckpoint;
  base: CheckpointBase;
}

export class Checkpointer {
  private stored: StoredCheckpoint;
  private base: CheckpointBase;
  /** Signatures sent to the card whose answer never arrived (card pulled mid-command). */
  private unanswered = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private sealedJournalSeq: number;

  constructor(private readonly options: CheckpointerOptions) {
    this.stored = options.stored;
    this.base = options.base;
    this.sealedJournalSeq = decodeCheckpointPayload(options.stored.payload).journalSeq;
  }

  /** Journal seq covered by the newest sealed checkpoint. */
  get sealedSeq(): number {
    return this.sealedJournalSeq;
  }

  get clockHighWaterMs(): number {
    return this.base.clockHighWaterMs;
  }

  /** The card's signature counter as of the newest checkpoint (or the startup verification). */
  get cardCounter(): number {
    return this.base.cardCounter;
  }

  /** Sequence number of the newest checkpoint of this database. */
  get checkpointSeq(): number {
    return this.base.seq;
  }

  /** Seals the journal head as it is when the call starts. Calls run one after another. */
  checkpoint(): Promise<CheckpointFields> {
    const run = this.chain.then(() => this.checkpointNow());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async checkpointNow(): Promise<CheckpointFields> {
    const { card, persistence, clock, databaseId, publicKey } = this.options;
    const head = persistence.journalHead();
    const identity = await card.identity();
    const counter = await card.signatureCounter();
    const low = this.base.cardCounter;
    if (counter < low || counter > low + this.unanswered) {
      throw new CardError(
        'card_used_elsewhere',
        `card ${identity.serial} shows signature counter ${counter}, but this agent expected ${this.unanswered > 0 ? `${low} to ${low + this.unanswered}` : low}: ` +
          'another copy of this agent or another program used the card; the agent stops (restart it to run the startup check)',
      );
    }
    this.base = { ...this.base, cardCounter: counter };
    this.unanswered = 0;
    const fields: CheckpointFields = {
      databaseId,
      seq: this.base.seq + 1,
      journalSeq: head.seq,
      journalHash: head.hash,
      clockHighWaterMs: Math.max(this.base.clockHighWaterMs, clock.nowMs()),
      cardManufacturer: identity.manufacturer,
      cardSerial: identity.serial,
      cardCounter: counter + 1,
    };
    const payload = encodeCheckpointPayload(fields);
    const pending = [...(this.stored.pending ?? []), { payload, cardCounter: fields.cardCounter }].slice(-PENDING_KEEP);
    this.stored = { ...this.stored, pending };
    await persistence.save(this.stored);
    this.base = { ...this.base, seq: fields.seq };

    let signatureBytes: Uint8Array;
    try {
      signatureBytes = await card.sign(new TextEncoder().encode(payload));
    } catch (error) {
      // The command may have reached the card before it was pulled: the counter may be one higher.
      if (error instanceof CardError && (error.code === 'card_removed' || error.code === 'timeout' || error.code === 'card_failure')) {
        this.unanswered += 1;
      }
      throw error;
    }
    const signed: StoredCheckpoint = { payload, signature: Buffer.from(signatureBytes).toString('base64'), cardCounter: fields.cardCounter };
    if (!verifyCheckpointSignature(signed, publicKey)) {
      throw new CardError('card_used_elsewhere', "the card's signature does not verify with the bound public key: the card's key was replaced");
    }
    const after = await card.signatureCounter();
    if (after !== fields.cardCounter) {
      throw new CardError(
        'card_used_elsewhere',
        `card signature counter is ${after} after signing checkpoint ${fields.seq}, expected ${fields.cardCounter}: another program signed in between`,
      );
    }
    await persistence.save(signed);
    this.stored = signed;
    this.base = { seq: fields.seq, cardCounter: fields.cardCounter, clockHighWaterMs: fields.clockHighWaterMs };
    this.sealedJournalSeq = fields.journalSeq;
    return fields;
  }
}

// ---------------------------------------------------------------------------
// Batching

export type BatcherMode = 'strict' | 'relaxed';

/**
 * Failures after which no checkpoint may be attempted again while running:
 * the card was used elsewhere; the PIN that worked at start is rejected now
 * (another attempt would use up the card's tries: the PIN was changed
 * elsewhere, or the card swapped); the counter is full.
 */
export const FATAL_CODES: ReadonlySet<CardErrorCode> = new Set(['card_used_elsewhere', 'wrong_pin', 'pin_blocked', 'counter_exhausted']);

export interface CheckpointBatcherOptions {
  /**
   * strict: `sealed(seq)` resolves only after a checkpoint covering `seq` is
   * signed and stored; concurrent writes share one signature.
   * relaxed: `sealed(seq)` resolves at once; a checkpoint is made every
   * `intervalMs` while there are unsealed writes.
   */
  mode: BatcherMode;
  /**
   * strict: least time between the starts of two checkpoints (bounds card
   * wear and counter use under load; writes wait up to this long).
   * relaxed: the checkpoint period.
   */
  intervalMs: number;
  /** Seal even without writes this often, to keep the clock high-water mark fresh (0 = never). */
  heartbeatMs?: number;
  clock: Clock;
  /** Called once when checkpointing can never succeed again (FATAL_CODES); the agent must stop. */
  onFatal?: (error: CardError) => void;
  /** Told about every checkpoint attempt: for metrics (latency, counter) and the card's health. */
  onCheckpoint?: (outcome: CheckpointOutcome) => void;
}

/** One checkpoint attempt as `onCheckpoint` reports it; `durationMs` is measured with performance.now(). */
export type CheckpointOutcome =
  | { ok: true; fields: CheckpointFields; durationMs: number }
  | { ok: false; error: unknown; durationMs: number };

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for checkpoints. Writers call `await batcher.sealed(seq)`
 * with the journal seq their (durable) write produced.
 */
export class CheckpointBatcher {
  private waiters: Waiter[] = [];
  private running: Promise<void> | undefined;
  private timer: Timer | undefined;
  private lastStartMs = Number.NEGATIVE_INFINITY;
  private highestRequested: number;
  private fatal: CardError | undefined;
  private closed = false;
  private heartbeat: Timer | undefined;
  /** Checkpoints made, and failures (for logs and benchmarks). */
  readonly stats = { checkpoints: 0, failures: 0 };

  constructor(
    private readonly checkpointer: Checkpointer,
    private readonly options: CheckpointBatcherOptions,
  ) {
    this.highestRequested = checkpointer.sealedSeq;
    if (options.heartbeatMs && options.heartbeatMs > 0) {
      this.heartbeat = setInterval(() => {
        if (!this.running && !this.timer) this.schedule(true);
      }, options.heartbeatMs);
      this.heartbeat.unref?.();
    }
  }

  get sealedSeq(): number {
    return this.checkpointer.sealedSeq;
  }

  /**
   * strict: resolves when a checkpoint covering journal entry `seq` is
   * sealed; rejects with the CardError of a failed checkpoint (the write
   * itself is durable; the next write retries the card).
   * relaxed: resolves immediately and makes sure a checkpoint follows
   * within `intervalMs`.
   */
  sealed(seq: number): Promise<void> {
    if (this.fatal) return Promise.reject(this.fatal);
    if (this.closed) return Promise.reject(new CardError('card_failure', 'the checkpoint batcher is closed'));
    if (seq <= this.checkpointer.sealedSeq) return Promise.resolve();
    this.highestRequested = Math.max(this.highestRequested, seq);
    if (this.options.mode === 'relaxed') {
      this.schedule(false);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.schedule(false);
    });
  }

  /** Seals everything written so far, now (shutdown, tests). */
  async flush(): Promise<void> {
    if (this.fatal) throw this.fatal;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.running;
    if (this.highestRequested > this.checkpointer.sealedSeq) await this.runOnce();
  }

  /**
   * Makes a checkpoint now, even when nothing is unsealed (startup seal,
   * re-checking a card that came back). Rejects with the card's error.
   */
  async sealNow(): Promise<void> {
    if (this.fatal) throw this.fatal;
    if (this.closed) throw new CardError('card_failure', 'the checkpoint batcher is closed');
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.running?.catch(() => undefined);
    await this.runOnce();
  }

  /** Flushes, then stops timers; later `sealed` calls reject. */
  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    try {
      if (!this.fatal) await this.flush();
    } finally {
      this.closed = true;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private schedule(force: boolean): void {
    if (this.timer || this.running || this.closed || this.fatal) return;
    if (!force && this.highestRequested <= this.checkpointer.sealedSeq) return;
    const now = this.options.clock.nowMs();
    const wait = this.options.mode === 'relaxed' ? this.options.intervalMs : Math.max(0, this.lastStartMs + this.options.intervalMs - now);
    const fire = () => {
      this.timer = undefined;
      void this.runOnce().catch(() => undefined);
    };
    if (wait <= 0 && this.options.mode === 'strict') {
      // Start on the next turn so writes of this turn join the same signature.
      this.timer = setTimeout(fire, 0);
    } else {
      this.timer = setTimeout(fire, wait);
    }
  }

  private report(outcome: CheckpointOutcome): void {
    try {
      this.options.onCheckpoint?.(outcome);
    } catch {
      // An observer's failure must not turn a sealed checkpoint into a failed one.
    }
  }

  private runOnce(): Promise<void> {
    if (this.running) return this.running;
    this.lastStartMs = this.options.clock.nowMs();
    const run = (async () => {
      const startedMs = performance.now();
      try {
        const fields = await this.checkpointer.checkpoint();
        this.stats.checkpoints += 1;
        this.report({ ok: true, fields, durationMs: performance.now() - startedMs });
        const sealed = this.checkpointer.sealedSeq;
        const done = this.waiters.filter((w) => w.seq <= sealed);
        this.waiters = this.waiters.filter((w) => w.seq > sealed);
        for (const w of done) w.resolve();
      } catch (error) {
        this.stats.failures += 1;
        this.report({ ok: false, error, durationMs: performance.now() - startedMs });
        const failed = this.waiters;
        this.waiters = [];
        for (const w of failed) w.reject(error);
        if (error instanceof CardError && FATAL_CODES.has(error.code)) {
          this.fatal = error;
          this.options.onFatal?.(error);
        }
        throw error;
      } finally {
        this.running = undefined;
        // Writes that arrived during the signature wait for the next one.
        if (this.waiters.length > 0 || (this.options.mode === 'relaxed' && this.highestRequested > this.checkpointer.sealedSeq)) {
          this.schedule(false);
        }
      }
    })();
    this.running = run;
    return run;
  }
}
