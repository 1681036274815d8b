/**
 * A virtual OpenPGP card for tests and the card benchmark: it answers the
 * subset of OpenPGP card commands the agent uses, and plugs into a real
 * PC/SC stack through vpcd (the vsmartcard pcscd driver).
 *
 * vpcd listens on a TCP port per reader slot (reader.conf CHANNELID, slot n
 * on port+n); the virtual card connects to it as a client, and that
 * connection *is* the card being inserted: closing it pulls the card.
 * Frames in both directions: 2-byte big-endian length, then payload. A
 * one-byte payload from vpcd is a control code (00 power off, 01 power on,
 * 02 reset, 04 send ATR); anything longer is an APDU to answer.
 *
 * The card's persistent state (AID, key, PIN and its retry counter,
 * signature counter) lives in a plain object that survives pulling and
 * re-inserting the card, and can be written to a JSON file so that another
 * process (the benchmark's card) or a later test sees the same card.
 * Session state (selected application, verified PINs) is lost on power-off,
 * reset and removal, as on a real card.
 */
import { constants, createHash, createPrivateKey, generateKeyPairSync, privateEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'bun';
import {
  concatBytes,
  encodeTlv,
  fromHex,
  parseCommandApdu,
  SW,
  toHex,
  withStatus,
} from '../../src/card/apdu.ts';
import { ALGO_ID, applicationRelatedData, CURVE_OID, OPENPGP_AID_PREFIX, SHA256_DIGEST_INFO_PREFIX } from '../../src/card/openpgp.ts';

export type VirtualKeyAlgorithm = 'rsa2048' | 'ecdsa-p256';

/** Everything a real card keeps in its non-volatile memory. */
export interface VirtualCardState {
  /** 16-byte AID, hex. */
  aid: string;
  algorithm: VirtualKeyAlgorithm;
  /** Private key as JWK (so the state is plain JSON). */
  privateJwk: Record<string, string>;
  pin: string;
  pinRetries: number;
  signatureCounter: number;
  /** false: PW1 must be verified before every signature ("Signature PIN: forced"). */
  pw1ValidForSeveral: boolean;
}

export const VIRTUAL_CARD_DEFAULT_PIN = '123456';
const PIN_RETRIES_MAX = 3;
/** ATR of an OpenPGP card (historical bytes as in spec 6: extended Lc/Le and chaining supported). */
const HISTORICAL = fromHex('0031C573C001C0059000');
const ATR = (() => {
  const body = concatBytes(fromHex('3BDA18FF81B1FE751F03'), HISTORICAL);
  let tck = 0;
  for (const b of body.slice(1)) tck ^= b;
  return concatBytes(body, Uint8Array.from([tck]));
})();

/** Creates a fresh card: new key pair, counter as given (0 for a new key). */
export function createVirtualCardState(options: {
  /** 8 hex digits. */
  serial: string;
  /** 4 hex digits; FFFE is the spec's range for test cards. */
  manufacturer?: string;
  algorithm?: VirtualKeyAlgorithm;
  pin?: string;
  signatureCounter?: number;
  pw1ValidForSeveral?: boolean;
}): VirtualCardState {
  const algorithm = options.algorithm ?? 'ecdsa-p256';
  const { privateKey } =
    algorithm === 'rsa2048'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const aid = concatBytes(
    OPENPGP_AID_PREFIX,
    Uint8Array.from([0x03, 0x04]),
    fromHex(options.manufacturer ?? 'FFFE'),
    fromHex(options.serial.padStart(8, '0')),
    Uint8Array.from([0, 0]),
  );
  return {
    aid: toHex(aid),
    algorithm,
    privateJwk: privateKey.export({ format: 'jwk' }) as Record<string, string>,
    pin: options.pin ?? VIRTUAL_CARD_DEFAULT_PIN,
    pinRetries: PIN_RETRIES_MAX,
    signatureCounter: options.signatureCounter ?? 0,
    pw1ValidForSeveral: options.pw1ValidForSeveral ?? true,
  };
}

/** Reads a state written by a card created with `persistPath` (the same card in another process or test). */
export function loadVirtualCardState(path: string): VirtualCardState {
  return JSON.parse(readFileSync(path, 'utf8')) as VirtualCardState;
}

export interface VirtualCardOptions {
  /** When set, the state is written here after every change (crash-safe enough for tests). */
  persistPath?: string;
}

export class VirtualOpenPgpCard {
  private socket: Socket<undefined> | undefined;
  private inbox: Uint8Array = new Uint8Array(0);
  private selected = false;
  private pw1Sign = false;
  private pw1Other = false;
  private pendingResponse: Uint8Array = new Uint8Array(0);
  private keyObject: KeyObject | undefined;
  /** APDUs answered since creation (benchmarks). */
  apduCount = 0;
  /**
   * Delay before answering an APDU (ms), to model a slow card or to pull
   * the card while a command is in flight. The card executes the command
   * first, so a card pulled during the delay has done the work (its
   * counter went up) but its answer is lost: the worst case for the host.
   */
  apduDelayMs = 0;
  /** Called with each APDU's INS byte once the card has executed it, before it answers. */
  onCommand: ((ins: number) => void) | undefined;
  /** Resolves each time the socket closes (vpcd dropped us or we pulled the card). */
  private closedWaiters: (() => void)[] = [];

  constructor(
    readonly state: VirtualCardState,
    private readonly options: VirtualCardOptions = {},
  ) {}

  get serial(): string {
    return this.state.aid.slice(20, 28);
  }

  get inserted(): boolean {
    return this.socket !== undefined;
  }

  /** Inserts the card into the vpcd reader listening on `port`. */
  async insert(port: number, host = '127.0.0.1'): Promise<void> {
    if (this.socket) throw new Error('virtual card is already inserted');
    this.resetSession();
    this.socket = await Bun.connect<undefined>({
      hostname: host,
      port,
      socket: {
        data: (_socket, chunk) => this.onData(chunk),
        close: () => this.onClosed(),
        error: () => this.onClosed(),
      },
    });
    this.socket.setNoDelay(true);
  }

  /** Pulls the card: closes the connection, as unplugging a token. */
  async remove(): Promise<void> {
    const socket = this.socket;
    if (!socket) return;
    const closed = new Promise<void>((resolve) => this.closedWaiters.push(resolve));
    socket.end();
    await closed;
  }

  private onClosed(): void {
    this.socket = undefined;
    this.inbox = new Uint8Array(0);
    this.resetSession();
    for (const resolve of this.closedWaiters.splice(0)) resolve();
  }

  private resetSession(): void {
    this.selected = false;
    this.pw1Sign = false;
    this.pw1Other = false;
    this.pendingResponse = new Uint8Array(0);
  }

  private onData(chunk: Uint8Array): void {
    this.inbox = concatBytes(this.inbox, chunk);
    while (this.inbox.length >= 2) {
      const length = (this.inbox[0]! << 8) | this.inbox[1]!;
      if (this.inbox.length < 2 + length) return;
      const frame = this.inbox.slice(2, 2 + length);
      this.inbox = this.inbox.slice(2 + length);
      void this.onFrame(frame);
    }
  }

  private async onFrame(frame: Uint8Array): Promise<void> {
    if (frame.length === 1) {
      const control = frame[0];
      if (control === 0x00 || control === 0x01 || control === 0x02) this.resetSession();
      else if (control === 0x04) this.send(ATR);
      return;
    }
    const socket = this.socket;
    const response = this.processApdu(frame);
    this.onCommand?.(frame[1] ?? 0);
    if (this.apduDelayMs > 0) await Bun.sleep(this.apduDelayMs);
    // An answer for a connection that has since been closed is lost, as on a pulled card.
    if (this.socket === socket) this.send(response);
  }

  private send(payload: Uint8Array): void {
    if (!this.socket) return;
    const frame = new Uint8Array(2 + payload.length);
    frame[0] = (payload.length >> 8) & 0xff;
    frame[1] = payload.length & 0xff;
    frame.set(payload, 2);
    this.socket?.write(frame);
  }

  private persist(): void {
    if (this.options.persistPath) writeFileSync(this.options.persistPath, JSON.stringify(this.state));
  }

  /** Answers one command APDU (response data + status word). Public for socket-free unit tests. */
  processApdu(apdu: Uint8Array): Uint8Array {
    this.apduCount += 1;
    const command = parseCommandApdu(apdu);
    if (!command) return withStatus([], SW.WRONG_LENGTH);
    if (command.cla !== 0x00) return withStatus([], SW.CLA_NOT_SUPPORTED);
    if (command.ins === 0xc0) return this.respond(new Uint8Array(0), command.le, true);
    this.pendingResponse = new Uint8Array(0);
    if (command.ins === 0xa4) {
      const matches = command.p1 === 0x04 && command.data.length >= 6 && OPENPGP_AID_PREFIX.every((b, i) => command.data[i] === b);
      this.selected = matches;
      return withStatus([], matches ? SW.OK : SW.FILE_NOT_FOUND);
    }
    if (!this.selected) return withStatus([], SW.CONDITIONS_NOT_SATISFIED);
    switch (command.ins) {
      case 0xca:
        return this.getData((command.p1 << 8) | command.p2, command.le);
      case 0x20:
        return this.verify(command.p2, command.data);
      case 0x2a:
        if (command.p1 === 0x9e && command.p2 === 0x9a) return this.sign(command.data, command.le);
        return withStatus([], SW.WRONG_P1P2);
      case 0x47:
        if (command.p1 === 0x81 && command.data.length >= 1 && command.data[0] === 0xb6) {
          return this.respond(this.publicKeyTemplate(), command.le);
        }
        return withStatus([], SW.FUNCTION_NOT_SUPPORTED);
      default:
        return withStatus([], SW.INS_NOT_SUPPORTED);
    }
  }

  /** Sends `data`, using 61xx response chaining when it does not fit `le`. */
  private respond(data: Uint8Array, le: number, continuation = false): Uint8Array {
    const source = continuation ? this.pendingResponse : data;
    const max = le === 0 ? 256 : le;
    if (source.length <= max) {
      this.pendingResponse = new Uint8Array(0);
      return withStatus(source, SW.OK);
    }
    this.pendingResponse = source.slice(max);
    const rest = this.pendingResponse.length;
    return withStatus(source.slice(0, max), 0x6100 | (rest >= 256 ? 0 : rest));
  }

  private aidBytes(): Uint8Array {
    return fromHex(this.state.aid);
  }

  private pwStatus(): Uint8Array {
    return Uint8Array.from([this.state.pw1ValidForSeveral ? 1 : 0, 127, 127, 127, this.state.pinRetries, 0, 3]);
  }

  private algorithmAttributes(): Uint8Array {
    return this.state.algorithm === 'rsa2048'
      ? Uint8Array.from([ALGO_ID.rsa, 0x08, 0x00, 0x00, 0x20, 0x00])
      : concatBytes(Uint8Array.from([ALGO_ID.ecdsa]), CURVE_OID['ecdsa-p256']);
  }

  private getData(tag: number, le: number): Uint8Array {
    switch (tag) {
      case 0x004f:
        return this.respond(this.aidBytes(), le);
      case 0x5f52:
        return this.respond(HISTORICAL, le);
      case 0x00c4:
        return this.respond(this.pwStatus(), le);
      case 0x00c5:
        return this.respond(this.fingerprints(), le);
      case 0x006e:
        return this.respond(
          applicationRelatedData({
            aid: this.aidBytes(),
            historical: HISTORICAL,
            algorithm: this.algorithmAttributes(),
            pwStatus: this.pwStatus(),
            fingerprints: this.fingerprints(),
          }),
          le,
        );
      case 0x007a: {
        const c = this.state.signatureCounter;
        return this.respond(encodeTlv(0x7a, encodeTlv(0x93, [(c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff])), le);
      }
      default:
        return withStatus([], SW.DATA_NOT_FOUND);
    }
  }

  private fingerprints(): Uint8Array {
    const fp = createHash('sha1').update(this.publicKeyTemplate()).digest();
    return concatBytes(fp, new Uint8Array(40));
  }

  private verify(mode: number, data: Uint8Array): Uint8Array {
    if (mode !== 0x81 && mode !== 0x82) return withStatus([], SW.WRONG_P1P2);
    const verified = mode === 0x81 ? this.pw1Sign : this.pw1Other;
    if (data.length === 0) {
      if (this.state.pinRetries === 0) return withStatus([], SW.AUTH_METHOD_BLOCKED);
      return withStatus([], verified ? SW.OK : 0x63c0 | this.state.pinRetries);
    }
    if (this.state.pinRetries === 0) return withStatus([], SW.AUTH_METHOD_BLOCKED);
    if (new TextDecoder().decode(data) !== this.state.pin) {
      this.state.pinRetries -= 1;
      if (mode === 0x81) this.pw1Sign = false;
      else this.pw1Other = false;
      this.persist();
      return withStatus([], 0x63c0 | this.state.pinRetries);
    }
    if (this.state.pinRetries !== PIN_RETRIES_MAX) {
      this.state.pinRetries = PIN_RETRIES_MAX;
      this.persist();
    }
    if (mode === 0x81) this.pw1Sign = true;
    else this.pw1Other = true;
    return withStatus([], SW.OK);
  }

  private privateKey(): KeyObject {
    this.keyObject ??= createPrivateKey({ key: this.state.privateJwk as never, format: 'jwk' });
    return this.keyObject;
  }

  private sign(input: Uint8Array, le: number): Uint8Array {
    if (!this.pw1Sign) return withStatus([], SW.SECURITY_NOT_SATISFIED);
    if (this.state.signatureCounter >= 0xffffff) return withStatus([], SW.CONDITIONS_NOT_SATISFIED);
    let signature: Uint8Array;
    if (this.state.algorithm === 'rsa2048') {
      const isDigestInfo =
        input.length === SHA256_DIGEST_INFO_PREFIX.length + 32 && SHA256_DIGEST_INFO_PREFIX.every((b, i) => input[i] === b);
      if (!isDigestInfo) return withStatus([], SW.WRONG_DATA);
      signature = privateEncrypt({ key: this.privateKey(), padding: constants.RSA_PKCS1_PADDING }, input);
    } else {
      if (input.length !== 32) return withStatus([], SW.WRONG_DATA);
      signature = ecdsaP256SignDigest(BigInt(`0x${toHex(b64(this.state.privateJwk['d']!))}`), input);
    }
    this.state.signatureCounter += 1;
    if (!this.state.pw1ValidForSeveral) this.pw1Sign = false;
    this.persist();
    return this.respond(signature, le);
  }

  private publicKeyTemplate(): Uint8Array {
    const jwk = this.state.privateJwk;
    const inner =
      this.state.algorithm === 'rsa2048'
        ? concatBytes(encodeTlv(0x81, b64(jwk['n']!)), encodeTlv(0x82, b64(jwk['e']!)))
        : encodeTlv(0x86, concatBytes(Uint8Array.from([0x04]), b64(jwk['x']!), b64(jwk['y']!)));
    return encodeTlv(0x7f49, inner);
  }
}

function b64(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text, 'base64url'));
}

// ---- ECDSA P-256 over a given digest ----
// node:crypto can only sign a message it hashes itself; a card receives the
// hash. So the virtual card does the curve arithmetic (Jacobian coordinates).

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n;
const GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n;

const mod = (a: bigint, m: bigint) => {
  const r = a % m;
  return r < 0n ? r + m : r;
};
function modPow(base: bigint, exp: bigint, m: bigint): bigint {
  let result = 1n;
  let b = mod(base, m);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
  }
  return result;
}
const inv = (a: bigint, m: bigint) => modPow(a, m - 2n, m);

type Jacobian = [bigint, bigint, bigint];

function double([x, y, z]: Jacobian): Jacobian {
  if (y === 0n) return [0n, 1n, 0n];
  const delta = (z * z) % P;
  const gamma = (y * y) % P;
  const beta = (x * gamma) % P;
  const alpha = mod(3n * (x - delta) * (x + delta), P);
  const x3 = mod(alpha * alpha - 8n * beta, P);
  const z3 = mod((y + z) * (y + z) - gamma - delta, P);
  const y3 = mod(alpha * (4n * beta - x3) - 8n * gamma * gamma, P);
  return [x3, y3, z3];
}

/** Adds an affine point (x2, y2) to a Jacobian point. */
function addAffine(p1: Jacobian, x2: bigint, y2: bigint): Jacobian {
  const [x1, y1, z1] = p1;
  if (z1 === 0n) return [x2, y2, 1n];
  const z1z1 = (z1 * z1) % P;
  const u2 = (x2 * z1z1) % P;
  const s2 = (y2 * z1 * z1z1) % P;
  const h = mod(u2 - x1, P);
  const r = mod(2n * (s2 - y1), P);
  if (h === 0n) return r === 0n ? double(p1) : [0n, 1n, 0n];
  const hh = (h * h) % P;
  const i = (4n * hh) % P;
  const j = (h * i) % P;
  const v = (x1 * i) % P;
  const x3 = mod(r * r - j - 2n * v, P);
  const y3 = mod(r * (v - x3) - 2n * y1 * j, P);
  const z3 = mod((z1 + h) * (z1 + h) - z1z1 - hh, P);
  return [x3, y3, z3];
}

function multiplyG(k: bigint): bigint {
  let acc: Jacobian = [0n, 1n, 0n];
  for (let bit = 255n; bit >= 0n; bit--) {
    acc = double(acc);
    if ((k >> bit) & 1n) acc = addAffine(acc, GX, GY);
  }
  const zi = inv(acc[2], P);
  return (acc[0] * zi * zi) % P;
}

function ecdsaP256SignDigest(d: bigint, digest: Uint8Array): Uint8Array {
  const e = BigInt(`0x${toHex(digest)}`);
  for (;;) {
    const k = mod(BigInt(`0x${randomBytes(40).toString('hex')}`), N - 1n) + 1n;
    const r = mod(multiplyG(k), N);
    if (r === 0n) continue;
    const s = mod(inv(k, N) * (e + r * d), N);
    if (s === 0n) continue;
    return concatBytes(fromHex(r.toString(16).padStart(64, '0')), fromHex(s.toString(16).padStart(64, '0')));
  }
}
