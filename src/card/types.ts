/**
 * The smart-card contract the rest of the agent sees: a `Card` that can tell
 * its serial, its public key and its signature counter, and sign a message
 * with a key that never leaves the card. Implemented by `PcscCard` (a real
 * OpenPGP card over PC/SC) and `FakeCard` (in-process, for unit tests).
 *
 * Also the one error type of the card layer, `CardError`, whose `code` the
 * CLI maps to exit code 6 and whose message is written for an operator.
 */

export type CardErrorCode =
  /** libpcsclite is not installed / cannot be loaded. */
  | 'pcsc_unavailable'
  /** The PC/SC daemon (pcscd) is not running or stopped while in use. */
  | 'no_service'
  /** pcscd runs but knows no card reader. */
  | 'no_reader'
  /** Readers exist but no card is inserted. */
  | 'no_card'
  /** A card is present but has no OpenPGP application. */
  | 'not_openpgp'
  /** More than one OpenPGP card is present and no serial says which one to use. */
  | 'ambiguous_card'
  /** The card present is not the one this database is bound to. */
  | 'wrong_card'
  /** Another program (often gpg-agent's scdaemon) holds the card exclusively. */
  | 'card_in_use'
  /** The PIN was rejected; the retries left are in the message. Never retried automatically. */
  | 'wrong_pin'
  /** The PIN retry counter is at zero: the card refuses to sign until reset with the admin PIN. */
  | 'pin_blocked'
  /** The card was pulled (or reset by another program) during or between operations. */
  | 'card_removed'
  /** The card has no signature key, or one the agent cannot use. */
  | 'no_signing_key'
  /** The signature counter reached its 3-byte maximum: the card cannot checkpoint any more. */
  | 'counter_exhausted'
  /**
   * The card made signatures this agent did not make while it was running
   * (a clone of the agent, or another program, used the card): the agent stops.
   */
  | 'card_used_elsewhere'
  /** A card call did not complete in time (the card or pcscd hangs). */
  | 'timeout'
  /** No PIN was configured (NLA_CARD_PIN or --card.pin-file) for a card that needs one. */
  | 'pin_missing'
  /**
   * Startup verification: the database is older than what the card has
   * sealed (restored backup/snapshot, or a clone used the card).
   */
  | 'rollback_detected'
  /** Startup verification: the inserted card (or its key) is not the one that sealed this database. */
  | 'foreign_card'
  /** Startup verification: the system clock is behind the newest time the card sealed. */
  | 'clock_rollback_detected'
  /** Anything else the card or PC/SC reported (status word or PC/SC code in the message). */
  | 'card_failure';

export class CardError extends Error {
  /** Machine-readable extras, e.g. `{ retriesLeft }` for wrong_pin, `{ expected, found }` for wrong_card. */
  readonly details: Record<string, unknown>;

  constructor(
    readonly code: CardErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options);
    this.name = 'CardError';
    this.details = options?.details ?? {};
  }
}

/** Signature algorithms the agent can verify; what the card's key attributes say. */
export type CardAlgorithm = 'rsa' | 'ecdsa-p256' | 'ecdsa-p384';

export interface CardPublicKey {
  algorithm: CardAlgorithm;
  /** DER SubjectPublicKeyInfo, base64: what the store keeps and `node:crypto` reads. */
  spkiBase64: string;
}

export interface CardIdentity {
  /**
   * Serial number as GnuPG prints it ("Serial number" of `gpg --card-status`):
   * 8 upper-case hex digits from the application identifier.
   */
  serial: string;
  /** Manufacturer id from the application identifier, 4 upper-case hex digits. */
  manufacturer: string;
  /** The whole application identifier (AID), 32 upper-case hex digits. */
  applicationId: string;
  /** Reader the card sits in ("fake" for the fake card). */
  reader: string;
}

/** Largest value of the 3-byte digital-signature counter (OpenPGP card spec, DO 93). */
export const SIGNATURE_COUNTER_MAX = 0xffffff;

export interface Card {
  /** Serial, manufacturer and AID; read once at connect, cheap afterwards. */
  identity(): Promise<CardIdentity>;
  /** The signature key's public half (GENERATE ASYMMETRIC KEY PAIR, read mode). */
  publicKey(): Promise<CardPublicKey>;
  /**
   * The card's digital-signature counter: the number of signatures made with
   * the current signature key. The card increments it by exactly one per
   * signature and nothing can lower it except generating or importing a new
   * signature key (which also changes the public key).
   */
  signatureCounter(): Promise<number>;
  /**
   * Signs SHA-256(message) with the on-card signature key and returns the
   * signature (RSA PKCS#1 v1.5, or ECDSA as r‖s). Increments the counter by one.
   */
  sign(message: Uint8Array): Promise<Uint8Array>;
  /**
   * Talks to the card once (one APDU on a real card) to find out whether it
   * is still there; reconnects when it was pulled and put back. Optional:
   * cards without it are assumed present until a checkpoint fails.
   */
  probe?(): Promise<void>;
  close(): Promise<void>;
}

/** Canonical serial text: upper-case hex, no separators. */
export function normalizeSerial(serial: string): string {
  return serial.replace(/[\s:-]/g, '').toUpperCase();
}

/**
 * Whether `wanted` (as an operator typed it) names this card: the 8-digit
 * serial, manufacturer + serial (12 digits, "0006:12345678" style), or the full AID.
 */
export function serialMatches(wanted: string, identity: CardIdentity): boolean {
  const w = normalizeSerial(wanted);
  return (
    w === identity.serial ||
    w === `${identity.manufacturer}${identity.serial}` ||
    w === identity.applicationId
  );
}
