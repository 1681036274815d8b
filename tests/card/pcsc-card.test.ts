// Goal: the card layer works over a real PC/SC stack: PcscCard reads the
// serial, signs with a rising counter, reports typed errors (wrong card,
// PIN, removal), and checkpoints detect rollback, foreign cards and clock
// rollback. Method: a private pcscd with the vpcd driver (tests/card/
// pcsc-testbed.ts) and virtual OpenPGP cards from tests/support inserted
// into its two slots; no mocks between PcscCard and pcscd.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { createPublicKey, verify } from 'node:crypto';
import {
  Checkpointer,
  createCheckpoint,
  EMPTY_JOURNAL_HASH,
  verifyStartup,
  type StartupContext,
  type StoredCheckpoint,
} from '../../src/card/checkpoint.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { PcscCard } from '../../src/card/pcsc-card.ts';
import { CardError, type CardPublicKey } from '../../src/card/types.ts';
import { createVirtualCardState, VirtualOpenPgpCard } from '../support/virtual-openpgp-card.ts';
import { startPcscTestbed, type PcscTestbed } from './pcsc-testbed.ts';

let bed: PcscTestbed;

beforeAll(async () => {
  bed = await startPcscTestbed();
}, 30_000);

afterAll(async () => {
  await bed?.stop();
}, 30_000);

const open = (options: { serial?: string; pin?: string } = {}) =>
  PcscCard.open({ pin: options.pin ?? '123456', readerFilter: bed.readerPrefix, socketPath: bed.socketPath, ...(options.serial ? { serial: options.serial } : {}) });

async function expectCardError(promise: Promise<unknown>, code: string): Promise<CardError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(CardError);
    expect((error as CardError).code).toBe(code as CardError['code']);
    return error as CardError;
  }
  throw new Error(`expected CardError ${code}, but the call succeeded`);
}

const DB = 'c0ffee00-0000-4000-8000-000000000001';
const context = (over: Partial<StartupContext> = {}): StartupContext => ({
  databaseId: DB,
  nowMs: Date.UTC(2030, 0, 2),
  journalHashAt: (seq) => (seq === 0 ? EMPTY_JOURNAL_HASH : undefined),
  ...over,
});
const input = (seq: number, clockHighWaterMs = Date.UTC(2030, 0, 2)) => ({
  databaseId: DB,
  seq,
  journalSeq: 0,
  journalHash: EMPTY_JOURNAL_HASH,
  clockHighWaterMs,
});

describe('PcscCard over pcscd + vpcd', () => {
  test('the testbed runs its own pcscd', () => {
    expect(bed.pcscdPid).toBeGreaterThan(0);
    expect(bed.readers[0]).toStartWith(bed.readerPrefix);
  });

  test('without a card: no_card', async () => {
    await expectCardError(open(), 'no_card');
  });

  test('reads serial and AID of an ECDSA card; signs with a rising counter', async () => {
    const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: '1A2B3C4D', algorithm: 'ecdsa-p256', signatureCounter: 41 }));
    await bed.insert(virtual);
    const card = await open({ serial: '1a2b3c4d' });
    try {
      const identity = await card.identity();
      expect(identity.serial).toBe('1A2B3C4D');
      expect(identity.manufacturer).toBe('FFFE');
      expect(identity.applicationId).toBe('D276000124010304FFFE1A2B3C4D0000');
      expect(identity.reader).toBe(bed.readers[0]);
      const publicKey = await card.publicKey();
      expect(publicKey.algorithm).toBe('ecdsa-p256');
      expect(await card.signatureCounter()).toBe(41);
      const message = new TextEncoder().encode('checkpoint');
      const signature = await card.sign(message);
      const key = createPublicKey({ key: Buffer.from(publicKey.spkiBase64, 'base64'), format: 'der', type: 'spki' });
      expect(verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
      await card.sign(message);
      expect(await card.signatureCounter()).toBe(43);
      // The tally equals what the card itself reports.
      expect(await card.readSignatureCounter()).toBe(43);
      expect(virtual.state.signatureCounter).toBe(43);
    } finally {
      await card.close();
      await bed.remove(virtual);
    }
  });

  test('RSA-2048 card with "PIN forced": public key via response chaining, PIN before each signature', async () => {
    const virtual = new VirtualOpenPgpCard(
      createVirtualCardState({ serial: '000000A1', algorithm: 'rsa2048', pw1ValidForSeveral: false }),
    );
    await bed.insert(virtual);
    const card = await open();
    try {
      const publicKey = await card.publicKey();
      expect(publicKey.algorithm).toBe('rsa');
      const message = new TextEncoder().encode('rsa checkpoint');
      const first = await card.sign(message);
      await card.sign(message);
      const key = createPublicKey({ key: Buffer.from(publicKey.spkiBase64, 'base64'), format: 'der', type: 'spki' });
      expect(verify('sha256', message, key, first)).toBe(true);
      expect(virtual.state.signatureCounter).toBe(2);
    } finally {
      await card.close();
      await bed.remove(virtual);
    }
  });

  test('wrong card: the error names the bound and the inserted serial', async () => {
    const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0BADCAFE' }));
    await bed.insert(virtual);
    try {
      const error = await expectCardError(open({ serial: '12345678' }), 'wrong_card');
      expect(error.message).toContain('12345678');
      expect(error.message).toContain('0BADCAFE');
    } finally {
      await bed.remove(virtual);
    }
  });

  test('two OpenPGP cards without a serial: ambiguous; with a serial: the right one', async () => {
    const a = new VirtualOpenPgpCard(createVirtualCardState({ serial: 'AAAA0001' }));
    const b = new VirtualOpenPgpCard(createVirtualCardState({ serial: 'BBBB0002' }));
    await bed.insert(a, 0);
    await bed.insert(b, 1);
    try {
      await expectCardError(open(), 'ambiguous_card');
      const card = await open({ serial: 'BBBB0002' });
      expect((await card.identity()).reader).toBe(bed.readers[1]);
      await card.close();
    } finally {
      await bed.remove(a, 0);
      await bed.remove(b, 1);
    }
  });

  test('wrong PIN reports the tries left and is not retried; a blocked PIN is refused at connect', async () => {
    const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: '00000B10' }));
    await bed.insert(virtual);
    try {
      const card = await open({ pin: '999999' });
      const error = await expectCardError(card.sign(new Uint8Array([1])), 'wrong_pin');
      expect(error.details['retriesLeft']).toBe(2);
      expect(virtual.state.pinRetries).toBe(2);
      await card.close();
      virtual.state.pinRetries = 0;
      const blocked = await expectCardError(open(), 'pin_blocked');
      expect(blocked.message).toContain('blocked');
      expect(virtual.state.signatureCounter).toBe(0);
    } finally {
      await bed.remove(virtual);
    }
  });

  test('card pulled mid-run: typed error, then works again after re-insertion with its counter kept', async () => {
    const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000C0DE' }));
    await bed.insert(virtual);
    const card = await open({ serial: '0000C0DE' });
    try {
      await card.sign(new Uint8Array([1]));
      await bed.remove(virtual);
      const error = await expectCardErrorOneOf(card.sign(new Uint8Array([2])), ['card_removed', 'no_card']);
      expect(error.message.length).toBeGreaterThan(10);
      // Still out: the next call says so instead of hanging.
      await expectCardErrorOneOf(card.signatureCounter(), ['no_card', 'card_removed']);
      await bed.insert(virtual);
      expect(await card.signatureCounter()).toBe(1);
      await card.sign(new Uint8Array([3]));
      expect(virtual.state.signatureCounter).toBe(2);
    } finally {
      await card.close();
      await bed.remove(virtual);
    }
  });

  test('the wrong card inserted after a removal is refused', async () => {
    const bound = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000D001' }));
    const other = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000D002' }));
    await bed.insert(bound);
    const card = await open({ serial: '0000D001' });
    try {
      await bed.remove(bound);
      await bed.insert(other);
      await expectCardError(card.sign(new Uint8Array([1])), 'wrong_card');
      expect(other.state.signatureCounter).toBe(0);
    } finally {
      await card.close();
      await bed.remove(other);
    }
  });

  test('the event loop keeps running while the card works (calls run on the PC/SC worker)', async () => {
    const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000E001' }));
    await bed.insert(virtual);
    const card = await open();
    try {
      let ticks = 0;
      const timer = setInterval(() => (ticks += 1), 1);
      await card.sign(new Uint8Array([1]));
      await card.readSignatureCounter();
      clearInterval(timer);
      // Each APDU over vpcd takes tens of ms; a blocked loop would not tick at all.
      expect(ticks).toBeGreaterThan(3);
    } finally {
      await card.close();
      await bed.remove(virtual);
    }
  });
});

describe('checkpoints over pcscd + vpcd', () => {
  test('ok, restored older checkpoint, another card, clock set back', async () => {
    const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000F001' }));
    await bed.insert(virtual);
    const card = await open({ serial: '0000F001' });
    let publicKey: CardPublicKey;
    let older: StoredCheckpoint;
    let newest: StoredCheckpoint;
    try {
      publicKey = await card.publicKey();
      older = await createCheckpoint(card, input(1), { publicKey });
      newest = await createCheckpoint(card, input(2), { publicKey });
      expect(newest.cardCounter).toBe(2);

      const ok = await verifyStartup(card, newest, publicKey, context());
      expect(ok.status).toBe('ok');

      const rolledBack = await verifyStartup(card, older, publicKey, context());
      expect(rolledBack.status).toBe('rollback_detected');
      if (rolledBack.status === 'rollback_detected') {
        expect(rolledBack.cardCounter).toBe(2);
        expect(rolledBack.storedCounter).toBe(1);
        expect(rolledBack.message).toContain('rollback detected');
        expect(rolledBack.advice).toContain('fresh export');
      }

      const clock = await verifyStartup(card, newest, publicKey, context({ nowMs: Date.UTC(2029, 11, 1) }));
      expect(clock.status).toBe('clock_rollback_detected');
      expect(clock.message).toContain('behind');
    } finally {
      await card.close();
      await bed.remove(virtual);
    }

    // Another card with the same serial (a copy of the card's identity, not its key).
    const impostor = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000F001', signatureCounter: 7 }));
    await bed.insert(impostor);
    const other = await open({ serial: '0000F001' });
    try {
      const foreign = await verifyStartup(other, newest, publicKey, context());
      expect(foreign.status).toBe('foreign_card');
      if (foreign.status === 'foreign_card') expect(foreign.reason).toBe('key_changed');
    } finally {
      await other.close();
      await bed.remove(impostor);
    }
  });

  test('card pulled while it signs: typed error, the lost signature is accepted once, sealing resumes after re-insertion', async () => {
    const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: '0000F002' }));
    await bed.insert(virtual);
    const card = await open({ serial: '0000F002' });
    try {
      const publicKey = await card.publicKey();
      let record: StoredCheckpoint = await createCheckpoint(card, input(1), { publicKey });
      const persistence = {
        journalHead: () => ({ seq: 0, hash: EMPTY_JOURNAL_HASH }),
        save: async (next: StoredCheckpoint) => {
          record = next;
        },
      };
      const verdict = await verifyStartup(card, record, publicKey, context());
      if (verdict.status !== 'ok') throw new Error(verdict.message);
      const checkpointer = new Checkpointer({
        card,
        publicKey,
        databaseId: DB,
        persistence,
        clock: new ManualClock(Date.UTC(2030, 0, 2)),
        stored: record,
        base: verdict.base,
      });

      // Pull the card while PSO:CDS is in flight: the card signs, the answer is lost.
      virtual.apduDelayMs = 300;
      let pulled: Promise<void> | undefined;
      virtual.onCommand = (ins) => {
        if (ins === 0x2a && !pulled) pulled = bed.remove(virtual);
      };
      const error = await checkpointer.checkpoint().then(
        () => undefined,
        (e: unknown) => e,
      );
      await pulled;
      expect(error).toBeInstanceOf(CardError);
      expect(['card_removed', 'no_card']).toContain((error as CardError).code);
      expect(virtual.state.signatureCounter).toBe(2);
      expect(record.cardCounter).toBe(1);
      expect(record.pending?.map((p) => p.cardCounter)).toEqual([2]);

      virtual.apduDelayMs = 0;
      virtual.onCommand = undefined;
      await bed.insert(virtual);
      // Had the agent crashed now, the next start would accept the one lost signature.
      const afterCrash = await verifyStartup(card, record, publicKey, context());
      expect(afterCrash.status).toBe('ok');
      if (afterCrash.status === 'ok') expect(afterCrash.recovered).toBe(true);

      const sealed = await checkpointer.checkpoint();
      expect(sealed.cardCounter).toBe(3);
      expect(record.pending).toBeUndefined();
      const restart = await verifyStartup(card, record, publicKey, context());
      expect(restart.status).toBe('ok');
    } finally {
      await card.close();
      if (virtual.inserted) await bed.remove(virtual);
    }
  });

  test('a process without a running pcscd gets no_service', async () => {
    // libpcsclite fixes its socket path once per process, hence a child process.
    const script = `
      const { openPcsc } = await import(${JSON.stringify(new URL('../../src/card/pcsc.ts', import.meta.url).pathname)});
      try { await openPcsc({ socketPath: ${JSON.stringify(`${bed.socketPath}.missing`)} }); console.log('opened'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const child = Bun.spawnSync([process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' });
    const output = JSON.parse(child.stdout.toString().trim()) as { code: string; message: string };
    expect(output.code).toBe('no_service');
    expect(output.message).toContain('pcscd is not running');
  });
});

async function expectCardErrorOneOf(promise: Promise<unknown>, codes: string[]): Promise<CardError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(CardError);
    expect(codes).toContain((error as CardError).code);
    return error as CardError;
  }
  throw new Error(`expected CardError ${codes.join('|')}, but the call succeeded`);
}
