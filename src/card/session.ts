/**
 * The smart card while the offline server runs (docs/smart-card.md,
 * "Integration"): the startup verification and the startup seal, the
 * checkpoint batcher the validate path waits on, and the card's health.
 *
 * Health: a failed checkpoint (card pulled, reader gone, pcscd stopped)
 * makes the card unavailable: from then on writes are refused before they
 * are made (the validate path answers 503) while reads go on, and a
 * checkpoint is retried every `retryMs` until the card answers again, which
 * makes it available again. The readiness check also talks to the card
 * (at most once per `probeCacheMs`), so a card pulled while the agent is
 * idle shows on /ready and stops writes before the next one is made.
 * `card_used_elsewhere`, a PIN rejected after it worked at start, and a
 * full counter are fatal (FATAL_CODES): `onFatal`, and the server must stop.
 */
import type { Clock } from '../platform/clock.ts';
import { CheckpointBatcher, Checkpointer, FATAL_CODES, type BatcherMode, type CheckpointOutcome } from './checkpoint.ts';
import { verifyDatabase, type CardDatabase, type VerifyOptions } from './database.ts';
import type { CardBinding } from './open.ts';
import { CardError, type Card } from './types.ts';

/** Least time between two checkpoint starts (strict) / the checkpoint period (relaxed). */
export const DEFAULT_SEAL_INTERVAL_MS: Record<BatcherMode, number> = { strict: 1000, relaxed: 60_000 };
/** A checkpoint at least this often even without writes: fresh clock high-water mark, periodic counter check. */
export const DEFAULT_HEARTBEAT_MS = 3_600_000;
const DEFAULT_RETRY_MS = 1000;
const DEFAULT_PROBE_CACHE_MS = 1000;

export interface CardSessionOptions {
  card: Card;
  binding: CardBinding;
  db: CardDatabase;
  /** Wall clock (injected): the startup clock check and the high-water mark sealed in checkpoints. */
  clock: Clock;
  mode: BatcherMode;
  intervalMs: number;
  heartbeatMs?: number;
  /** How often a checkpoint is retried while the card is unavailable. */
  retryMs?: number;
  /** A readiness probe result is reused this long. */
  probeCacheMs?: number;
  verify?: VerifyOptions;
  /** Every sealed checkpoint: how long it took and the card counter it left (metrics). */
  onSealed?: (info: { durationMs: number; cardCounter: number; seq: number; journalSeq: number }) => void;
  /** The card became unavailable (with the reason) or available again (logs). */
  onAvailability?: (available: boolean, problem?: Error) => void;
  /** Checkpointing can never succeed again (the card was used elsewhere): the server must stop. */
  onFatal?: (error: CardError) => void;
}

/** What the validate path needs (service/validate-service.ts WriteSealing). */
export interface CardSealing {
  assertWritable(): void;
  sealed(journalSeq: number): Promise<void>;
}

export interface CardSession extends CardSealing {
  readonly serial: string;
  readonly mode: BatcherMode;
  /** The startup verdict's message (says when an interrupted checkpoint was recovered). */
  readonly startupMessage: string;
  /** Highest wall-clock time sealed so far: seeds the trusted clock. */
  clockHighWaterMs(): number;
  /** The card's signature counter as of the newest checkpoint. */
  cardCounter(): number;
  available(): boolean;
  /** For `readiness.replace({ name: 'card', run })`. */
  readiness(): Promise<{ ok: boolean; detail: string }>;
  /** Seals what is left (final checkpoint), stops timers, releases the card. Resolves with a warning if the final seal failed. */
  close(): Promise<string | undefined>;
}

/** The error a refused or unconfirmed write carries; its message is what the client sees. */
export class CardUnavailableError extends Error {
  constructor(readonly code: string, options?: { cause?: unknown }) {
    super(
      `The smart card that protects this agent's state is not available (${code}): changes cannot be confirmed now, retry later`,
      options,
    );
    this.name = 'CardUnavailableError';
  }
}

function codeOf(error: unknown): string {
  return error instanceof CardError ? error.code : 'checkpoint_failed';
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Verifies the database against the card (throws CardError with the
 * verdict's message and advice), then seals a startup checkpoint before
 * anything is served: from this moment every older copy of the database is
 * detectably behind the card.
 */
export async function startCardSession(options: CardSessionOptions): Promise<CardSession> {
  const { card, binding, db, clock, mode } = options;
  const verdict = await verifyDatabase(card, db, binding, clock.nowMs(), options.verify);
  const stored = db.cardCheckpoint();
  if (!stored) throw new CardError('rollback_detected', 'the database lost its card checkpoint during startup');
  const retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
  const probeCacheMs = options.probeCacheMs ?? DEFAULT_PROBE_CACHE_MS;

  let available = true;
  let problem: Error | undefined;
  let fatal: CardError | undefined;
  let closed = false;
  let retryTimer: Timer | undefined;
  let retrying = false;
  let lastProbeMs = Number.NEGATIVE_INFINITY;
  let probing: Promise<void> | undefined;

  const checkpointer = new Checkpointer({
    card,
    publicKey: binding.publicKey,
    databaseId: db.meta().databaseId,
    // What this agent's own writer checkpointed: entries another process appended to LMDB are
    // left for the next start's check of what follows the sealed entry (verify-database).
    persistence: { journalHead: () => db.sealableJournalHead(), save: (record) => db.saveCardCheckpoint(record) },
    clock,
    stored,
    base: verdict.base,
  });

  const markAvailable = () => {
    if (retryTimer) clearInterval(retryTimer);
    retryTimer = undefined;
    if (!available) {
      available = true;
      problem = undefined;
      options.onAvailability?.(true);
    }
  };
  const markUnavailable = (error: unknown) => {
    const first = available;
    available = false;
    problem = asError(error);
    if (first) options.onAvailability?.(false, problem);
    if (closed || fatal || retryTimer) return;
    if (error instanceof CardError && FATAL_CODES.has(error.code)) return;
    retryTimer = setInterval(() => {
      if (retrying || closed || fatal) return;
      retrying = true;
      void batcher
        .sealNow()
        .catch(() => undefined)
        .finally(() => {
          retrying = false;
        });
    }, retryMs);
  };

  const batcher = new CheckpointBatcher(checkpointer, {
    mode,
    intervalMs: options.intervalMs,
    heartbeatMs: options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    // Rate limiting and periods are about elapsed time, not the wall clock.
    clock: { nowMs: () => performance.now() },
    onCheckpoint: (outcome: CheckpointOutcome) => {
      if (outcome.ok) {
        markAvailable();
        options.onSealed?.({
          durationMs: outcome.durationMs,
          cardCounter: outcome.fields.cardCounter,
          seq: outcome.fields.seq,
          journalSeq: outcome.fields.journalSeq,
        });
      } else {
        markUnavailable(outcome.error);
      }
    },
    onFatal: (error) => {
      fatal = error;
      if (retryTimer) clearInterval(retryTimer);
      retryTimer = undefined;
      options.onFatal?.(error);
    },
  });

  try {
    await batcher.sealNow();
  } catch (error) {
    closed = true;
    if (retryTimer) clearInterval(retryTimer);
    await batcher.close().catch(() => undefined);
    throw error;
  }

  const session: CardSession = {
    serial: binding.serial,
    mode,
    startupMessage: verdict.message,
    clockHighWaterMs: () => checkpointer.clockHighWaterMs,
    cardCounter: () => checkpointer.cardCounter,
    available: () => available && !fatal,
    assertWritable() {
      if (fatal) throw new CardUnavailableError(fatal.code, { cause: fatal });
      if (!available) throw new CardUnavailableError(codeOf(problem), { cause: problem });
    },
    async sealed(journalSeq) {
      try {
        await batcher.sealed(journalSeq);
      } catch (error) {
        throw new CardUnavailableError(codeOf(error), { cause: error });
      }
    },
    async readiness() {
      const prefix = `card ${binding.serial}`;
      if (fatal) return { ok: false, detail: `${prefix}: ${fatal.message}` };
      if (available && card.probe && performance.now() - lastProbeMs >= probeCacheMs) {
        lastProbeMs = performance.now();
        probing ??= card.probe().then(
          () => undefined,
          (error: unknown) => markUnavailable(error),
        );
        await probing;
        probing = undefined;
      }
      if (!available) {
        return { ok: false, detail: `${prefix} is not available (${problem?.message ?? 'unknown'}); validate writes are refused until it answers again` };
      }
      return {
        ok: true,
        detail:
          `${prefix}: present, signature counter ${checkpointer.cardCounter}, ` +
          `checkpoint ${checkpointer.checkpointSeq} seals journal entry ${checkpointer.sealedSeq} (${mode} sealing)`,
      };
    },
    async close() {
      closed = true;
      if (retryTimer) clearInterval(retryTimer);
      retryTimer = undefined;
      let warning: string | undefined;
      const unsealed = db.sealableJournalHead().seq > checkpointer.sealedSeq;
      try {
        await batcher.close();
      } catch (error) {
        if (unsealed) {
          warning =
            `the final checkpoint failed (${asError(error).message}): journal entries after ${checkpointer.sealedSeq} are stored but not sealed ` +
            '(they are accepted at the next start; a restore of an older copy could drop them undetected)';
        }
      }
      await card.close().catch(() => undefined);
      return warning;
    },
  };
  return session;
}
