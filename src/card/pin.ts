/**
 * Where the smart card's user PIN comes from: `--card.pin-file=<path>` (the
 * file's first line) or else the environment variable `NLA_CARD_PIN`.
 * There is no built-in default PIN. The PIN is never logged and never part
 * of an error message.
 */
import { readFileSync, statSync } from 'node:fs';
import { CardError } from './types.ts';

export const PIN_ENV = 'NLA_CARD_PIN';
/** OpenPGP cards take PW1 of 6 to 127 bytes (VERIFY's data field). */
const PIN_BYTES_MIN = 6;
const PIN_BYTES_MAX = 127;

export interface PinSource {
  /** --card.pin-file */
  pinFile?: string;
  env: Record<string, string | undefined>;
}

export interface CardPin {
  pin: string;
  /** Where it came from, for messages ("--card.pin-file /etc/nla/pin", "NLA_CARD_PIN"). */
  source: string;
  /** Set when the PIN file is readable by group or others. */
  warning?: string;
}

/** Reads the PIN; throws CardError('pin_missing') naming `purpose` when none is configured or it is unusable. */
export function readCardPin(source: PinSource, purpose: string): CardPin {
  if (source.pinFile !== undefined) {
    let text: string;
    let mode: number;
    try {
      text = readFileSync(source.pinFile, 'utf8');
      mode = statSync(source.pinFile).mode;
    } catch (error) {
      throw new CardError('pin_missing', `${purpose}: cannot read the PIN file ${source.pinFile} (--card.pin-file): ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`);
    }
    const pin = text.split(/\r?\n/, 1)[0] ?? '';
    const where = `--card.pin-file ${source.pinFile}`;
    checkPin(pin, where, purpose);
    const result: CardPin = { pin, source: where };
    if ((mode & 0o077) !== 0) result.warning = `the PIN file ${source.pinFile} is readable by other users: chmod 600 it`;
    return result;
  }
  const pin = source.env[PIN_ENV];
  if (pin === undefined || pin === '') {
    throw new CardError(
      'pin_missing',
      `${purpose}: the smart card's user PIN is needed; set the environment variable ${PIN_ENV} or give --card.pin-file=<file> (first line: the PIN)`,
    );
  }
  checkPin(pin, PIN_ENV, purpose);
  return { pin, source: PIN_ENV };
}

function checkPin(pin: string, where: string, purpose: string): void {
  const bytes = Buffer.byteLength(pin, 'utf8');
  if (bytes < PIN_BYTES_MIN || bytes > PIN_BYTES_MAX) {
    // Refused before it reaches the card: a malformed PIN would cost one of the card's three tries.
    throw new CardError('pin_missing', `${purpose}: the PIN from ${where} must have ${PIN_BYTES_MIN} to ${PIN_BYTES_MAX} characters`);
  }
}
