/**
 * ISO 7816-4 building blocks, pure: command APDU encoding (short and
 * extended), response splitting into data + status word, and BER-TLV
 * parsing for the data objects the OpenPGP card returns. Shared by the real
 * card driver and the virtual card used in tests, so both speak the same
 * encoding.
 */

export interface CommandApdu {
  cla: number;
  ins: number;
  p1: number;
  p2: number;
  data?: Uint8Array;
  /** Expected response length: 0 = none; 256 (short) or 65536 (extended) = "as much as there is". */
  le?: number;
}

/** Encodes a command APDU, short form when everything fits, else extended. */
export function encodeApdu(command: CommandApdu, options: { extended?: boolean } = {}): Uint8Array {
  const data = command.data ?? new Uint8Array(0);
  const le = command.le ?? 0;
  const extended = options.extended || data.length > 255 || le > 256;
  const out: number[] = [command.cla, command.ins, command.p1, command.p2];
  if (!extended) {
    if (data.length > 0) out.push(data.length, ...data);
    if (le > 0) out.push(le === 256 ? 0 : le);
    return Uint8Array.from(out);
  }
  if (data.length > 0) out.push(0, (data.length >> 8) & 0xff, data.length & 0xff, ...data);
  if (le > 0) {
    const encoded = le >= 65536 ? 0 : le;
    if (data.length === 0) out.push(0);
    out.push((encoded >> 8) & 0xff, encoded & 0xff);
  }
  return Uint8Array.from(out);
}

/** A decoded command APDU as the card sees it (used by the virtual card). */
export interface ParsedCommand {
  cla: number;
  ins: number;
  p1: number;
  p2: number;
  data: Uint8Array;
  /** 0 when absent. */
  le: number;
  extended: boolean;
}

/** Decodes the four ISO 7816-3 cases, short and extended; undefined when malformed. */
export function parseCommandApdu(apdu: Uint8Array): ParsedCommand | undefined {
  if (apdu.length < 4) return undefined;
  const [cla, ins, p1, p2] = [apdu[0]!, apdu[1]!, apdu[2]!, apdu[3]!];
  const base = { cla, ins, p1, p2 };
  const empty = new Uint8Array(0);
  if (apdu.length === 4) return { ...base, data: empty, le: 0, extended: false };
  const b4 = apdu[4]!;
  if (apdu.length === 5) return { ...base, data: empty, le: b4 === 0 ? 256 : b4, extended: false };
  if (b4 !== 0) {
    if (apdu.length === 5 + b4) return { ...base, data: apdu.slice(5, 5 + b4), le: 0, extended: false };
    if (apdu.length === 6 + b4) {
      const le = apdu[5 + b4]!;
      return { ...base, data: apdu.slice(5, 5 + b4), le: le === 0 ? 256 : le, extended: false };
    }
    return undefined;
  }
  // Extended: 00 followed by two length bytes.
  if (apdu.length === 7) {
    const le = (apdu[5]! << 8) | apdu[6]!;
    return { ...base, data: empty, le: le === 0 ? 65536 : le, extended: true };
  }
  const lc = (apdu[5]! << 8) | apdu[6]!;
  if (lc === 0) return undefined;
  if (apdu.length === 7 + lc) return { ...base, data: apdu.slice(7, 7 + lc), le: 0, extended: true };
  if (apdu.length === 9 + lc) {
    const le = (apdu[7 + lc]! << 8) | apdu[8 + lc]!;
    return { ...base, data: apdu.slice(7, 7 + lc), le: le === 0 ? 65536 : le, extended: true };
  }
  return undefined;
}

export interface ResponseApdu {
  data: Uint8Array;
  sw: number;
}

export function splitResponse(response: Uint8Array): ResponseApdu {
  if (response.length < 2) return { data: new Uint8Array(0), sw: 0 };
  const n = response.length;
  return { data: response.slice(0, n - 2), sw: (response[n - 2]! << 8) | response[n - 1]! };
}

export function withStatus(data: Uint8Array | number[], sw: number): Uint8Array {
  const bytes = data instanceof Uint8Array ? data : Uint8Array.from(data);
  const out = new Uint8Array(bytes.length + 2);
  out.set(bytes);
  out[bytes.length] = (sw >> 8) & 0xff;
  out[bytes.length + 1] = sw & 0xff;
  return out;
}

export const SW = {
  OK: 0x9000,
  WRONG_LENGTH: 0x6700,
  SECURITY_NOT_SATISFIED: 0x6982,
  AUTH_METHOD_BLOCKED: 0x6983,
  CONDITIONS_NOT_SATISFIED: 0x6985,
  WRONG_DATA: 0x6a80,
  FUNCTION_NOT_SUPPORTED: 0x6a81,
  FILE_NOT_FOUND: 0x6a82,
  WRONG_P1P2: 0x6b00,
  DATA_NOT_FOUND: 0x6a88,
  INS_NOT_SUPPORTED: 0x6d00,
  CLA_NOT_SUPPORTED: 0x6e00,
} as const;

export function swHex(sw: number): string {
  return sw.toString(16).toUpperCase().padStart(4, '0');
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').toUpperCase();
}

export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
}

// ---- BER-TLV ----

export interface Tlv {
  tag: number;
  constructed: boolean;
  value: Uint8Array;
}

/** Parses a sequence of BER-TLV objects (multi-byte tags, 81/82 lengths). Throws on truncation. */
export function parseTlv(bytes: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let i = 0;
  while (i < bytes.length) {
    const first = bytes[i]!;
    // 00 and FF are padding between objects (ISO 7816-4 5.2.2.1).
    if (first === 0x00 || first === 0xff) {
      i += 1;
      continue;
    }
    let tag = first;
    i += 1;
    if ((first & 0x1f) === 0x1f) {
      let b: number;
      do {
        if (i >= bytes.length) throw new Error('truncated TLV tag');
        b = bytes[i]!;
        tag = tag * 256 + b;
        i += 1;
      } while (b & 0x80);
    }
    if (i >= bytes.length) throw new Error('truncated TLV length');
    let length = bytes[i]!;
    i += 1;
    if (length & 0x80) {
      const count = length & 0x7f;
      if (count === 0 || count > 3 || i + count > bytes.length) throw new Error('bad TLV length');
      length = 0;
      for (let k = 0; k < count; k++) length = length * 256 + bytes[i + k]!;
      i += count;
    }
    if (i + length > bytes.length) throw new Error('truncated TLV value');
    out.push({ tag, constructed: (first & 0x20) !== 0, value: bytes.slice(i, i + length) });
    i += length;
  }
  return out;
}

/** Depth-first search for the first object with `tag`, descending into constructed objects. */
export function findTlv(bytes: Uint8Array, tag: number): Uint8Array | undefined {
  for (const tlv of parseTlv(bytes)) {
    if (tlv.tag === tag) return tlv.value;
    if (tlv.constructed) {
      const inner = findTlv(tlv.value, tag);
      if (inner) return inner;
    }
  }
  return undefined;
}

/** Encodes one BER-TLV object (tag up to 3 bytes). */
export function encodeTlv(tag: number, value: Uint8Array | number[]): Uint8Array {
  const v = value instanceof Uint8Array ? value : Uint8Array.from(value);
  const tagBytes: number[] = [];
  for (let t = tag; t > 0; t = Math.floor(t / 256)) tagBytes.unshift(t & 0xff);
  if (tagBytes.length === 0) tagBytes.push(0);
  const len = v.length;
  const lenBytes = len < 0x80 ? [len] : len < 0x100 ? [0x81, len] : [0x82, (len >> 8) & 0xff, len & 0xff];
  const out = new Uint8Array(tagBytes.length + lenBytes.length + len);
  out.set(tagBytes, 0);
  out.set(lenBytes, tagBytes.length);
  out.set(v, tagBytes.length + lenBytes.length);
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
