/**
 * The OpenPGP card application (spec v3.4), as far as the agent uses it:
 * SELECT, GET DATA (AID 4F, application related data 6E, security support
 * template 7A, PW status C4), VERIFY PW1, PSO:COMPUTE DIGITAL SIGNATURE and
 * reading the signature public key (GENERATE ASYMMETRIC KEY PAIR, P1=81).
 *
 * `OpenPgpSession` runs over any `transmit` function (PC/SC in production,
 * nothing else today) and turns status words into `CardError`s. The parsing
 * helpers are pure and also used by the virtual card in tests.
 */
import { createPublicKey, type webcrypto } from 'node:crypto';
import {
  concatBytes,
  encodeApdu,
  encodeTlv,
  findTlv,
  splitResponse,
  SW,
  swHex,
  toHex,
  type CommandApdu,
  type ResponseApdu,
} from './apdu.ts';
import { CardError, type CardAlgorithm, type CardPublicKey } from './types.ts';

/** RID of the FSFE + PIX prefix of the OpenPGP application (spec 4.2.1). */
export const OPENPGP_AID_PREFIX = Uint8Array.from([0xd2, 0x76, 0x00, 0x01, 0x24, 0x01]);

export const ALGO_ID = { rsa: 0x01, ecdh: 0x12, ecdsa: 0x13, eddsa: 0x16 } as const;
export const CURVE_OID = {
  'ecdsa-p256': Uint8Array.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
  'ecdsa-p384': Uint8Array.from([0x2b, 0x81, 0x04, 0x00, 0x22]),
} as const;

/** DER prefix of a PKCS#1 DigestInfo for SHA-256; the card adds the padding (RSA PSO:CDS input). */
export const SHA256_DIGEST_INFO_PREFIX = Uint8Array.from([
  0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
]);

export interface ParsedAid {
  applicationId: string;
  /** Spec version as "major.minor". */
  version: string;
  manufacturer: string;
  serial: string;
}

export function parseAid(aid: Uint8Array): ParsedAid {
  if (aid.length !== 16 || !OPENPGP_AID_PREFIX.every((b, i) => aid[i] === b)) {
    throw new CardError('not_openpgp', `the card's application identifier ${toHex(aid)} is not an OpenPGP one`);
  }
  return {
    applicationId: toHex(aid),
    version: `${aid[6]}.${aid[7]}`,
    manufacturer: toHex(aid.slice(8, 10)),
    serial: toHex(aid.slice(10, 14)),
  };
}

export interface PwStatus {
  /** false: PW1 (mode 81) must be verified again before every signature. */
  pw1ValidForSeveralSignatures: boolean;
  pw1Retries: number;
  resetCodeRetries: number;
  pw3Retries: number;
}

export function parsePwStatus(c4: Uint8Array): PwStatus {
  if (c4.length < 7) throw new CardError('card_failure', `PW status bytes too short (${toHex(c4)})`);
  return {
    pw1ValidForSeveralSignatures: c4[0] !== 0,
    pw1Retries: c4[4]!,
    resetCodeRetries: c4[5]!,
    pw3Retries: c4[6]!,
  };
}

export function parseAlgorithmAttributes(c1: Uint8Array): CardAlgorithm {
  const id = c1[0];
  if (id === ALGO_ID.rsa) return 'rsa';
  if (id === ALGO_ID.ecdsa) {
    // The OID may be followed by one import-format byte (spec 4.4.3.9).
    const oid = c1.slice(1);
    for (const [name, curve] of Object.entries(CURVE_OID) as [CardAlgorithm, Uint8Array][]) {
      const prefixMatches = curve.every((b, i) => oid[i] === b);
      if (prefixMatches && (oid.length === curve.length || oid.length === curve.length + 1)) return name;
    }
    throw new CardError('no_signing_key', `the card's signature key uses an unsupported curve (${toHex(c1)})`);
  }
  throw new CardError(
    'no_signing_key',
    `the card's signature key algorithm ${toHex(c1.slice(0, 1))} is not supported: use RSA or ECDSA NIST P-256/P-384`,
  );
}

/** Signature counter from the security support template (DO 7A, inner DO 93, 3 bytes). */
export function parseSignatureCounter(template: Uint8Array): number {
  const counter = findTlv(template, 0x93);
  if (!counter || counter.length === 0 || counter.length > 4) {
    throw new CardError('card_failure', `the card's security support template has no signature counter (${toHex(template)})`);
  }
  return counter.reduce((n, b) => n * 256 + b, 0);
}

/** Public key template 7F49 (RSA: 81 modulus, 82 exponent; EC: 86 point) → SPKI. */
export function publicKeyFromTemplate(template: Uint8Array, algorithm: CardAlgorithm): CardPublicKey {
  const inner = findTlv(template, 0x7f49) ?? template;
  let jwk: webcrypto.JsonWebKey;
  if (algorithm === 'rsa') {
    const n = findTlv(inner, 0x81);
    const e = findTlv(inner, 0x82);
    if (!n || !e) throw new CardError('no_signing_key', 'the card has no RSA signature key (empty public key template)');
    jwk = { kty: 'RSA', n: b64url(stripLeadingZeros(n)), e: b64url(stripLeadingZeros(e)) };
  } else {
    const point = findTlv(inner, 0x86);
    const size = algorithm === 'ecdsa-p256' ? 32 : 48;
    if (!point || point.length !== 1 + 2 * size || point[0] !== 0x04) {
      throw new CardError('no_signing_key', 'the card has no EC signature key (missing or compressed public point)');
    }
    jwk = {
      kty: 'EC',
      crv: algorithm === 'ecdsa-p256' ? 'P-256' : 'P-384',
      x: b64url(point.slice(1, 1 + size)),
      y: b64url(point.slice(1 + size)),
    };
  }
  const spki = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
  return { algorithm, spkiBase64: Buffer.from(spki).toString('base64') };
}

/** PSO:CDS input for SHA-256 of a message: DigestInfo for RSA, the bare hash for ECDSA. */
export function signatureInput(algorithm: CardAlgorithm, sha256: Uint8Array): Uint8Array {
  return algorithm === 'rsa' ? concatBytes(SHA256_DIGEST_INFO_PREFIX, sha256) : sha256;
}

function stripLeadingZeros(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.slice(i);
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

export type Transmit = (apdu: Uint8Array) => Promise<Uint8Array>;

/** Reads an ISO status word in the context of `what` and throws the matching CardError. */
function failure(what: string, sw: number): CardError {
  if (sw === SW.AUTH_METHOD_BLOCKED) {
    return new CardError('pin_blocked', `${what}: the card's user PIN is blocked (retry counter 0); unblock it with the admin PIN or reset code (gpg --card-edit, admin, passwd)`);
  }
  return new CardError('card_failure', `${what}: the card answered status ${swHex(sw)}`);
}

/**
 * One logical session with the OpenPGP application on one connected card.
 * Handles response chaining (61xx → GET RESPONSE) and wrong-Le retries (6Cxx).
 */
export class OpenPgpSession {
  constructor(private readonly transmit: Transmit) {}

  async command(command: CommandApdu): Promise<{ data: Uint8Array; sw: number }> {
    let response = await this.exchange(encodeApdu(command));
    if ((response.sw & 0xff00) === 0x6c00) {
      response = await this.exchange(encodeApdu({ ...command, le: response.sw & 0xff || 256 }));
    }
    const chunks: Uint8Array[] = [response.data];
    let guard = 0;
    while ((response.sw & 0xff00) === 0x6100 && guard++ < 256) {
      const le = response.sw & 0xff || 256;
      response = await this.exchange(encodeApdu({ cla: 0x00, ins: 0xc0, p1: 0, p2: 0, le }));
      chunks.push(response.data);
    }
    return { data: concatBytes(...chunks), sw: response.sw };
  }

  /** One APDU; an answer without a status word means the card went away mid-command. */
  private async exchange(apdu: Uint8Array): Promise<ResponseApdu> {
    const raw = await this.transmit(apdu);
    if (raw.length < 2) {
      throw new CardError('card_removed', 'the smart card gave no answer (removed during the command?); insert it again');
    }
    return splitResponse(raw);
  }

  async select(): Promise<void> {
    const { sw } = await this.command({ cla: 0, ins: 0xa4, p1: 0x04, p2: 0x00, data: OPENPGP_AID_PREFIX, le: 256 });
    if (sw === SW.FILE_NOT_FOUND || sw === SW.FUNCTION_NOT_SUPPORTED || sw === SW.INS_NOT_SUPPORTED) {
      throw new CardError('not_openpgp', 'the card has no OpenPGP application');
    }
    if (sw !== SW.OK) throw failure('SELECT of the OpenPGP application failed', sw);
  }

  async getData(tag: number): Promise<Uint8Array> {
    const { data, sw } = await this.command({ cla: 0, ins: 0xca, p1: (tag >> 8) & 0xff, p2: tag & 0xff, le: 256 });
    if (sw !== SW.OK) throw failure(`GET DATA ${tag.toString(16).padStart(4, '0').toUpperCase()} failed`, sw);
    return data;
  }

  /** Whether PW1 in `mode` (0x81 signing, 0x82 other) is currently verified; no retry is spent. */
  async isVerified(mode: 0x81 | 0x82): Promise<boolean> {
    const { sw } = await this.command({ cla: 0, ins: 0x20, p1: 0, p2: mode });
    return sw === SW.OK;
  }

  async verify(mode: 0x81 | 0x82, pin: string): Promise<void> {
    const { sw } = await this.command({ cla: 0, ins: 0x20, p1: 0, p2: mode, data: new TextEncoder().encode(pin) });
    if (sw === SW.OK) return;
    if ((sw & 0xfff0) === 0x63c0) {
      const left = sw & 0x0f;
      if (left === 0) throw failure('VERIFY PIN', SW.AUTH_METHOD_BLOCKED);
      throw new CardError(
        'wrong_pin',
        `the card rejected the PIN: ${left} ${left === 1 ? 'try' : 'tries'} left before the PIN is blocked; ` +
          'the agent does not retry, fix the configured PIN first',
        { details: { retriesLeft: left } },
      );
    }
    if (sw === SW.WRONG_LENGTH || sw === SW.WRONG_DATA) {
      throw new CardError('wrong_pin', `the card rejected the PIN format (status ${swHex(sw)}): the user PIN has at least 6 characters`);
    }
    throw failure('VERIFY PIN', sw);
  }

  /** PSO:COMPUTE DIGITAL SIGNATURE; needs PW1 mode 81 verified. */
  async computeSignature(input: Uint8Array): Promise<{ signature?: Uint8Array; sw: number }> {
    const { data, sw } = await this.command({ cla: 0, ins: 0x2a, p1: 0x9e, p2: 0x9a, data: input, le: 256 });
    return sw === SW.OK ? { signature: data, sw } : { sw };
  }

  /** GENERATE ASYMMETRIC KEY PAIR in read mode (P1=81) for the signature key (CRT B6). */
  async readSignaturePublicKey(): Promise<Uint8Array> {
    const command: CommandApdu = { cla: 0, ins: 0x47, p1: 0x81, p2: 0x00, data: Uint8Array.from([0xb6, 0x00]), le: 256 };
    let { data, sw } = await this.command(command);
    if (sw === SW.WRONG_LENGTH) {
      // Cards without response chaining want an extended Le for an RSA key.
      ({ data, sw } = await this.exchange(encodeApdu({ ...command, le: 65536 }, { extended: true })));
    }
    if (sw === SW.DATA_NOT_FOUND || sw === SW.CONDITIONS_NOT_SATISFIED) {
      throw new CardError('no_signing_key', 'the card has no signature key: generate one (gpg --card-edit, admin, generate)');
    }
    if (sw !== SW.OK) throw failure('reading the signature public key', sw);
    return data;
  }
}

/** Builds the application related data DO 6E from its parts (virtual card). */
export function applicationRelatedData(parts: {
  aid: Uint8Array;
  historical: Uint8Array;
  algorithm: Uint8Array;
  pwStatus: Uint8Array;
  fingerprints: Uint8Array;
}): Uint8Array {
  const extendedCapabilities = Uint8Array.from([0x74, 0x00, 0x00, 0x20, 0x08, 0x00, 0x00, 0xff, 0x00, 0x00]);
  const discretionary = concatBytes(
    encodeTlv(0xc0, extendedCapabilities),
    encodeTlv(0xc1, parts.algorithm),
    encodeTlv(0xc2, Uint8Array.from([ALGO_ID.rsa, 0x08, 0x00, 0x00, 0x20, 0x00])),
    encodeTlv(0xc3, Uint8Array.from([ALGO_ID.rsa, 0x08, 0x00, 0x00, 0x20, 0x00])),
    encodeTlv(0xc4, parts.pwStatus),
    encodeTlv(0xc5, parts.fingerprints),
  );
  return encodeTlv(
    0x6e,
    concatBytes(encodeTlv(0x4f, parts.aid), encodeTlv(0x5f52, parts.historical), encodeTlv(0x73, discretionary)),
  );
}
