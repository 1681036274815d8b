// Goal: the ISO 7816 / OpenPGP encoding the card driver relies on is right:
// APDU cases 1-4 short and extended, BER-TLV, AID/PW-status/algorithm
// parsing, response chaining, PIN handling, PC/SC error mapping.
// Method: pure functions, and OpenPgpSession talking to the virtual card's
// processApdu directly (no socket, no pcscd).
import { describe, expect, test } from 'bun:test';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { encodeApdu, encodeTlv, findTlv, fromHex, parseCommandApdu, parseTlv, toHex } from '../../src/card/apdu.ts';
import {
  OpenPgpSession,
  parseAid,
  parseAlgorithmAttributes,
  parsePwStatus,
  parseSignatureCounter,
  publicKeyFromTemplate,
  signatureInput,
} from '../../src/card/openpgp.ts';
import { pcscError, RV } from '../../src/card/pcsc.ts';
import { CardError, normalizeSerial, serialMatches } from '../../src/card/types.ts';
import { createVirtualCardState, loadVirtualCardState, VirtualOpenPgpCard } from '../support/virtual-openpgp-card.ts';
import { tempDir } from '../helpers.ts';

describe('APDU encoding', () => {
  test('short cases 1-4 round-trip', () => {
    const cases = [
      { cla: 0, ins: 0xa4, p1: 4, p2: 0 },
      { cla: 0, ins: 0xca, p1: 0, p2: 0x6e, le: 256 },
      { cla: 0, ins: 0x20, p1: 0, p2: 0x81, data: fromHex('313233343536') },
      { cla: 0, ins: 0x2a, p1: 0x9e, p2: 0x9a, data: new Uint8Array(32).fill(7), le: 256 },
    ];
    expect(toHex(encodeApdu(cases[1]!))).toBe('00CA006E00');
    for (const c of cases) {
      const parsed = parseCommandApdu(encodeApdu(c))!;
      expect(parsed.extended).toBe(false);
      expect(toHex(parsed.data)).toBe(toHex(c.data ?? new Uint8Array(0)));
      expect(parsed.le).toBe(c.le ?? 0);
    }
  });

  test('extended Le and Lc', () => {
    const read = encodeApdu({ cla: 0, ins: 0x47, p1: 0x81, p2: 0, data: fromHex('B600'), le: 65536 });
    expect(toHex(read)).toBe('004781000000' + '02B6000000');
    const parsed = parseCommandApdu(read)!;
    expect(parsed.extended).toBe(true);
    expect(parsed.le).toBe(65536);
    const big = parseCommandApdu(encodeApdu({ cla: 0, ins: 0xdb, p1: 0x3f, p2: 0xff, data: new Uint8Array(300) }))!;
    expect(big.data.length).toBe(300);
    expect(parseCommandApdu(fromHex('00CA'))).toBeUndefined();
  });

  test('BER-TLV with two-byte tags and long lengths', () => {
    const inner = encodeTlv(0x81, new Uint8Array(256).fill(1));
    const outer = encodeTlv(0x7f49, inner);
    expect(toHex(outer.slice(0, 6))).toBe('7F4982010481');
    const [tlv] = parseTlv(outer);
    expect(tlv?.tag).toBe(0x7f49);
    expect(tlv?.constructed).toBe(true);
    expect(findTlv(outer, 0x81)?.length).toBe(256);
    expect(() => parseTlv(fromHex('7A0593'))).toThrow();
  });
});

describe('OpenPGP data objects', () => {
  test('AID gives manufacturer and serial as GnuPG prints them', () => {
    const aid = parseAid(fromHex('D2760001240103040006123456780000'));
    expect(aid).toEqual({ applicationId: 'D2760001240103040006123456780000', version: '3.4', manufacturer: '0006', serial: '12345678' });
    expect(() => parseAid(fromHex('A0000003080000100001000000000000'))).toThrow(CardError);
  });

  test('serial matching accepts serial, manufacturer:serial and AID', () => {
    const identity = { serial: '12345678', manufacturer: '0006', applicationId: 'D2760001240103040006123456780000', reader: 'r' };
    expect(serialMatches('12345678', identity)).toBe(true);
    expect(serialMatches('0006:12345678', identity)).toBe(true);
    expect(serialMatches('d2760001240103040006123456780000', identity)).toBe(true);
    expect(serialMatches('12345679', identity)).toBe(false);
    expect(normalizeSerial(' 00 06-1234 ')).toBe('00061234');
  });

  test('PW status, algorithm attributes and the counter', () => {
    expect(parsePwStatus(fromHex('00202020030003'))).toEqual({
      pw1ValidForSeveralSignatures: false,
      pw1Retries: 3,
      resetCodeRetries: 0,
      pw3Retries: 3,
    });
    expect(parseAlgorithmAttributes(fromHex('010800002000'))).toBe('rsa');
    expect(parseAlgorithmAttributes(fromHex('132A8648CE3D030107'))).toBe('ecdsa-p256');
    expect(parseAlgorithmAttributes(fromHex('132B81040022'))).toBe('ecdsa-p384');
    expect(() => parseAlgorithmAttributes(fromHex('162B06010401DA470F01'))).toThrow('not supported');
    expect(parseSignatureCounter(fromHex('7A059303012345'))).toBe(0x012345);
  });
});

describe('OpenPgpSession against the virtual card', () => {
  const session = (card: VirtualOpenPgpCard) => new OpenPgpSession(async (apdu) => card.processApdu(apdu));

  test('RSA public key comes back through 61xx response chaining and verifies a signature', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000AB01', algorithm: 'rsa2048' }));
    const s = session(card);
    await s.select();
    const template = await s.readSignaturePublicKey();
    expect(template.length).toBeGreaterThan(256);
    const publicKey = publicKeyFromTemplate(template, 'rsa');
    await s.verify(0x81, '123456');
    const message = new TextEncoder().encode('m');
    const { signature } = await s.computeSignature(signatureInput('rsa', createHash('sha256').update(message).digest()));
    const key = createPublicKey({ key: Buffer.from(publicKey.spkiBase64, 'base64'), format: 'der', type: 'spki' });
    expect(verify('sha256', message, key, signature!)).toBe(true);
    expect(parseSignatureCounter(await s.getData(0x7a))).toBe(1);
  });

  test('signing without the PIN is refused; three wrong PINs block it', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000AB02' }));
    const s = session(card);
    await s.select();
    expect((await s.computeSignature(new Uint8Array(32))).sw).toBe(0x6982);
    expect(await s.isVerified(0x81)).toBe(false);
    for (const left of [2, 1]) {
      const error = await s.verify(0x81, '000000').catch((e: unknown) => e as CardError);
      expect(error?.code).toBe('wrong_pin');
      expect(error?.details['retriesLeft']).toBe(left);
    }
    const last = await s.verify(0x81, '000000').catch((e: unknown) => e as CardError);
    expect(last?.code).toBe('pin_blocked');
    const evenRight = await s.verify(0x81, '123456').catch((e: unknown) => e as CardError);
    expect(evenRight?.code).toBe('pin_blocked');
    expect(card.state.signatureCounter).toBe(0);
  });

  test('the card state persists to a file: the same card, counter and PIN tries, in a new object', async () => {
    const path = `${tempDir()}/card.json`;
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000AB03' }), { persistPath: path });
    const s = session(card);
    await s.select();
    await s.verify(0x81, '123456');
    await s.computeSignature(new Uint8Array(32));
    await s.verify(0x81, '000000').catch(() => undefined);
    const again = new VirtualOpenPgpCard(loadVirtualCardState(path));
    expect(again.state.signatureCounter).toBe(1);
    expect(again.state.pinRetries).toBe(2);
    expect(again.serial).toBe('0000AB03');
  });

  test('a card without the OpenPGP application', async () => {
    const s = new OpenPgpSession(async () => fromHex('6A82'));
    await expect(s.select()).rejects.toThrow('no OpenPGP application');
  });

  test('an answer without a status word is a removed card', async () => {
    const s = new OpenPgpSession(async () => new Uint8Array(0));
    const error = await s.getData(0x7a).then(
      () => undefined,
      (e: unknown) => e as CardError,
    );
    expect(error?.code).toBe('card_removed');
  });
});

describe('PC/SC error mapping', () => {
  test('each condition the operator must act on has its own code', () => {
    expect(pcscError('SCardEstablishContext', RV.NO_SERVICE).code).toBe('no_service');
    expect(pcscError('SCardListReaders', RV.NO_READERS_AVAILABLE).code).toBe('no_reader');
    expect(pcscError('SCardConnect', RV.NO_SMARTCARD, 'r').code).toBe('no_card');
    expect(pcscError('SCardConnect', RV.SHARING_VIOLATION, 'r').message).toContain('scdaemon');
    expect(pcscError('SCardTransmit', RV.REMOVED_CARD, 'r').code).toBe('card_removed');
    expect(pcscError('SCardTransmit', RV.NOT_TRANSACTED, 'r').code).toBe('card_removed');
    expect(pcscError('SCardTransmit', RV.REMOVED_CARD, 'r').message).toContain('SCARD_W_REMOVED_CARD');
    expect(pcscError('SCardConnect', 0x80100099).code).toBe('card_failure');
  });
});
