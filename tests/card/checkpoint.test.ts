// Goal: checkpoints detect rollback, clones, foreign cards and clock
// rollback exactly as documented, survive a lost signature once, and the
// batcher groups writes (strict) or seals periodically (relaxed).
// Method: the in-process FakeCard (real ECDSA signatures, real counter) and
// an in-memory stand-in for the store's journal head and meta record.
import { describe, expect, test } from 'bun:test';
import {
  CheckpointBatcher,
  Checkpointer,
  createCheckpoint,
  decodeCheckpointPayload,
  EMPTY_JOURNAL_HASH,
  encodeCheckpointPayload,
  verifyCheckpointSignature,
  verifyStartup,
  type CheckpointFields,
  type StartupContext,
  type StoredCheckpoint,
} from '../../src/card/checkpoint.ts';
import { createFakeCardState, FakeCard } from '../../src/card/fake.ts';
import { CardError, type Card } from '../../src/card/types.ts';
import { ManualClock } from '../../src/platform/clock.ts';

const DB = '3f2b8a10-0000-4000-8000-00000000aaaa';
const T0 = Date.UTC(2031, 5, 1, 12);

/** A journal like the store's: seq → hash, appended by "writes". */
class FakeJournal {
  hashes = new Map<number, string>([[0, EMPTY_JOURNAL_HASH]]);
  head = { seq: 0, hash: EMPTY_JOURNAL_HASH };
  append(): number {
    const seq = this.head.seq + 1;
    const hash = `${seq.toString(16).padStart(8, '0')}${'ab'.repeat(28)}`;
    this.hashes.set(seq, hash);
    this.head = { seq, hash };
    return seq;
  }
}

function setup(options: { card?: FakeCard; clockMs?: number } = {}) {
  const card = options.card ?? new FakeCard(createFakeCardState({ serial: '00ABCDEF' }));
  const journal = new FakeJournal();
  const clock = new ManualClock(options.clockMs ?? T0);
  let record: StoredCheckpoint | undefined;
  const saves: StoredCheckpoint[] = [];
  const persistence = {
    journalHead: () => journal.head,
    save: async (next: StoredCheckpoint) => {
      record = next;
      saves.push(next);
    },
  };
  const context = (over: Partial<StartupContext> = {}): StartupContext => ({
    databaseId: DB,
    nowMs: clock.nowMs(),
    journalHashAt: (seq) => journal.hashes.get(seq),
    ...over,
  });
  /** Binding, as import does it: first checkpoint, then verify and build a checkpointer. */
  const bind = async () => {
    const publicKey = await card.publicKey();
    record = await createCheckpoint(
      card,
      { databaseId: DB, seq: 1, journalSeq: journal.head.seq, journalHash: journal.head.hash, clockHighWaterMs: clock.nowMs() },
      { publicKey },
    );
    const verdict = await verifyStartup(card, record, publicKey, context());
    if (verdict.status !== 'ok') throw new Error(verdict.message);
    const checkpointer = new Checkpointer({ card, publicKey, databaseId: DB, persistence, clock, stored: record, base: verdict.base });
    return { publicKey, checkpointer };
  };
  return { card, journal, clock, persistence, context, bind, saves, record: () => record! };
}

const fields = (over: Partial<CheckpointFields> = {}): CheckpointFields => ({
  databaseId: DB,
  seq: 3,
  journalSeq: 17,
  journalHash: 'a'.repeat(64),
  clockHighWaterMs: T0,
  cardManufacturer: 'FFFE',
  cardSerial: '00ABCDEF',
  cardCounter: 9,
  ...over,
});

describe('checkpoint payload', () => {
  test('encodes canonically and decodes back', () => {
    const payload = encodeCheckpointPayload(fields());
    expect(payload).toBe(
      'nla-checkpoint/1\ndatabase=3f2b8a10-0000-4000-8000-00000000aaaa\nseq=3\njournal-seq=17\n' +
        `journal-hash=${'a'.repeat(64)}\nclock-high-water-ms=${T0}\ncard-manufacturer=FFFE\ncard-serial=00ABCDEF\ncard-counter=9\n`,
    );
    expect(decodeCheckpointPayload(payload)).toEqual(fields());
  });

  test('refuses non-canonical or malformed payloads', () => {
    const payload = encodeCheckpointPayload(fields());
    expect(() => decodeCheckpointPayload(payload.replace('seq=3', 'seq=03'))).toThrow();
    expect(() => decodeCheckpointPayload(`${payload}extra=1\n`)).toThrow();
    expect(() => decodeCheckpointPayload(payload.replace('nla-checkpoint/1', 'nla-checkpoint/2'))).toThrow();
    expect(() => encodeCheckpointPayload(fields({ databaseId: 'a\nseq=1' }))).toThrow(TypeError);
    expect(() => encodeCheckpointPayload(fields({ cardCounter: -1 }))).toThrow(TypeError);
  });
});

describe('createCheckpoint', () => {
  test('signs with counter + 1 and the signature verifies only for that payload', async () => {
    const card = new FakeCard(createFakeCardState({ counter: 5 }));
    const publicKey = await card.publicKey();
    const checkpoint = await createCheckpoint(
      card,
      { databaseId: DB, seq: 1, journalSeq: 0, journalHash: EMPTY_JOURNAL_HASH, clockHighWaterMs: T0 },
      { publicKey },
    );
    expect(checkpoint.cardCounter).toBe(6);
    expect(await card.signatureCounter()).toBe(6);
    expect(decodeCheckpointPayload(checkpoint.payload).cardCounter).toBe(6);
    expect(verifyCheckpointSignature(checkpoint, publicKey)).toBe(true);
    expect(verifyCheckpointSignature({ ...checkpoint, payload: checkpoint.payload.replace('seq=1', 'seq=2') }, publicKey)).toBe(false);
  });
});

describe('verifyStartup', () => {
  test('ok when the card counter equals the newest checkpoint', async () => {
    const s = setup();
    const { publicKey } = await s.bind();
    const verdict = await verifyStartup(s.card, s.record(), publicKey, s.context());
    expect(verdict.status).toBe('ok');
    if (verdict.status === 'ok') {
      expect(verdict.recovered).toBe(false);
      expect(verdict.base.cardCounter).toBe(1);
    }
  });

  test('restored snapshot: rollback_detected with both counters and recovery advice', async () => {
    const s = setup();
    const { publicKey, checkpointer } = await s.bind();
    const snapshot = s.record();
    s.journal.append();
    await checkpointer.checkpoint();
    const verdict = await verifyStartup(s.card, snapshot, publicKey, s.context());
    expect(verdict.status).toBe('rollback_detected');
    if (verdict.status === 'rollback_detected') {
      expect(verdict.reason).toBe('card_ahead');
      expect(verdict.storedCounter).toBe(1);
      expect(verdict.cardCounter).toBe(2);
      expect(verdict.message).toContain('restored from a backup or snapshot');
      expect(verdict.advice).toContain('fresh export');
    }
  });

  test('clone: two agents with copies of one database and one card; the second start detects it', async () => {
    const s = setup();
    const { publicKey, checkpointer } = await s.bind();
    const cloneRecord = s.record(); // the copy taken when the VM was cloned
    s.journal.append();
    await checkpointer.checkpoint(); // the original keeps running and seals
    const verdict = await verifyStartup(s.card, cloneRecord, publicKey, s.context());
    expect(verdict.status).toBe('rollback_detected');
  });

  test('card counter behind the checkpoint: foreign_card', async () => {
    const state = createFakeCardState({ counter: 10 });
    const s = setup({ card: new FakeCard(state) });
    const { publicKey } = await s.bind();
    const sameKeyLowerCounter = new FakeCard({ ...state, counter: 3 });
    const verdict = await verifyStartup(sameKeyLowerCounter, s.record(), publicKey, s.context());
    expect(verdict.status).toBe('foreign_card');
    if (verdict.status === 'foreign_card') {
      expect(verdict.reason).toBe('card_behind');
      expect(verdict.message).toContain('never goes back');
    }
  });

  test('another card with the same serial: foreign_card (key_changed)', async () => {
    const s = setup();
    const { publicKey } = await s.bind();
    const other = new FakeCard(createFakeCardState({ serial: '00ABCDEF', counter: 1 }));
    const verdict = await verifyStartup(other, s.record(), publicKey, s.context());
    expect(verdict.status).toBe('foreign_card');
    if (verdict.status === 'foreign_card') expect(verdict.reason).toBe('key_changed');
  });

  test('altered checkpoint: foreign_card (bad_signature)', async () => {
    const s = setup();
    const { publicKey } = await s.bind();
    const altered = { ...s.record(), payload: s.record().payload.replace(/clock-high-water-ms=\d+/, 'clock-high-water-ms=1') };
    const verdict = await verifyStartup(s.card, altered, publicKey, s.context());
    expect(verdict.status).toBe('foreign_card');
    if (verdict.status === 'foreign_card') expect(verdict.reason).toBe('bad_signature');
  });

  test('checkpoint copied from another database: foreign_card (other_database)', async () => {
    const s = setup();
    const { publicKey } = await s.bind();
    const verdict = await verifyStartup(s.card, s.record(), publicKey, s.context({ databaseId: 'another-db' }));
    expect(verdict.status).toBe('foreign_card');
    if (verdict.status === 'foreign_card') expect(verdict.reason).toBe('other_database');
  });

  test('journal rewritten below the checkpoint: rollback_detected (journal_mismatch)', async () => {
    const s = setup();
    const { publicKey, checkpointer } = await s.bind();
    s.journal.append();
    await checkpointer.checkpoint();
    s.journal.hashes.set(1, 'f'.repeat(64));
    const verdict = await verifyStartup(s.card, s.record(), publicKey, s.context());
    expect(verdict.status).toBe('rollback_detected');
    if (verdict.status === 'rollback_detected') expect(verdict.reason).toBe('journal_mismatch');
  });

  test('no checkpoint in a bound database: rollback_detected (no_checkpoint)', async () => {
    const s = setup();
    const verdict = await verifyStartup(s.card, undefined, await s.card.publicKey(), s.context());
    expect(verdict.status).toBe('rollback_detected');
    if (verdict.status === 'rollback_detected') expect(verdict.reason).toBe('no_checkpoint');
  });

  test('clock set back beyond the tolerance: clock_rollback_detected; within it: ok', async () => {
    const s = setup();
    const { publicKey } = await s.bind();
    const back = await verifyStartup(s.card, s.record(), publicKey, s.context({ nowMs: T0 - 3 * 86_400_000 }));
    expect(back.status).toBe('clock_rollback_detected');
    if (back.status === 'clock_rollback_detected') {
      expect(back.highWaterMs).toBe(T0);
      expect(back.message).toContain('3 days behind');
    }
    const jitter = await verifyStartup(s.card, s.record(), publicKey, s.context({ nowMs: T0 - 60_000 }));
    expect(jitter.status).toBe('ok');
  });

  test('crash after the card signed but before the signature was stored: accepted once via the pending attempt', async () => {
    const s = setup();
    const { publicKey } = await s.bind();
    // Make the card sign but lose the answer: the store has the pending attempt only.
    const lossy: Card = {
      identity: () => s.card.identity(),
      publicKey: () => s.card.publicKey(),
      signatureCounter: () => s.card.signatureCounter(),
      sign: async (m) => {
        await s.card.sign(m);
        throw new CardError('card_removed', 'pulled during the answer');
      },
      close: async () => {},
    };
    const lossyCheckpointer = new Checkpointer({
      card: lossy,
      publicKey,
      databaseId: DB,
      persistence: s.persistence,
      clock: s.clock,
      stored: s.record(),
      base: { seq: 1, cardCounter: 1, clockHighWaterMs: T0 },
    });
    s.journal.append();
    await expect(lossyCheckpointer.checkpoint()).rejects.toThrow(CardError);
    expect(s.record().cardCounter).toBe(1);
    expect(s.record().pending?.map((p) => p.cardCounter)).toEqual([2]);

    const recovered = await verifyStartup(s.card, s.record(), publicKey, s.context());
    expect(recovered.status).toBe('ok');
    if (recovered.status === 'ok') {
      expect(recovered.recovered).toBe(true);
      expect(recovered.base.cardCounter).toBe(2);
      // Continue from the recovered base: the next checkpoint seals with counter 3.
      const next = new Checkpointer({ card: s.card, publicKey, databaseId: DB, persistence: s.persistence, clock: s.clock, stored: s.record(), base: recovered.base });
      expect((await next.checkpoint()).cardCounter).toBe(3);
      expect(s.record().pending).toBeUndefined();
    }

    // Without the pending attempt, or with tolerance 0, the same card state is a rollback.
    const strict = await verifyStartup(s.card, { ...s.saves[0]!, pending: [] }, publicKey, s.context());
    expect(strict.status).toBe('rollback_detected');
  });

  test('a pending attempt excuses at most `lostSignatureTolerance` signatures (the documented bound)', async () => {
    const s = setup();
    const { publicKey } = await s.bind();
    const sealed = s.record();
    const attempt = (cardCounter: number) => ({
      payload: encodeCheckpointPayload({ ...decodeCheckpointPayload(sealed.payload), seq: 2, cardCounter }),
      cardCounter,
    });
    s.card.signElsewhere(); // card at 2, database sealed at 1
    const withAttempt = { ...sealed, pending: [attempt(2)] };
    expect((await verifyStartup(s.card, withAttempt, publicKey, s.context())).status).toBe('ok');
    expect((await verifyStartup(s.card, withAttempt, publicKey, s.context({ lostSignatureTolerance: 0 }))).status).toBe(
      'rollback_detected',
    );
    s.card.signElsewhere(); // card at 3: two ahead, more than the default tolerance
    const twoAhead = { ...sealed, pending: [attempt(2), attempt(3)] };
    expect((await verifyStartup(s.card, twoAhead, publicKey, s.context())).status).toBe('rollback_detected');
  });
});

describe('Checkpointer', () => {
  test('stops with card_used_elsewhere when the card signed behind its back', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    s.card.signElsewhere();
    s.journal.append();
    const error = await checkpointer.checkpoint().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CardError);
    expect((error as CardError).code).toBe('card_used_elsewhere');
  });

  test('a failed attempt that never reached the card does not count as use elsewhere', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    s.journal.append();
    s.card.remove();
    await expect(checkpointer.checkpoint()).rejects.toThrow(CardError);
    s.card.insert();
    const sealed = await checkpointer.checkpoint();
    expect(sealed.cardCounter).toBe(2);
    expect(sealed.journalSeq).toBe(1);
  });

  test('raises the clock high-water mark, never lowers it', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    s.clock.advance(10_000);
    expect((await checkpointer.checkpoint()).clockHighWaterMs).toBe(T0 + 10_000);
    s.clock.set(T0 - 50_000);
    expect((await checkpointer.checkpoint()).clockHighWaterMs).toBe(T0 + 10_000);
  });
});

describe('CheckpointBatcher', () => {
  test('strict: concurrent writes share signatures and resolve only when sealed', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    s.card.delayMs = 5;
    const batcher = new CheckpointBatcher(checkpointer, { mode: 'strict', intervalMs: 0, clock: s.clock });
    const before = s.card.signatures;
    const writes: Promise<void>[] = [];
    const sealedAt: number[] = [];
    for (let i = 0; i < 20; i++) {
      const seq = s.journal.append();
      writes.push(batcher.sealed(seq).then(() => void sealedAt.push(batcher.sealedSeq)));
    }
    await Promise.all(writes);
    expect(s.card.signatures - before).toBe(1);
    expect(Math.min(...sealedAt)).toBe(20);
    await batcher.close();
  });

  test('strict: writes arriving during a signature wait for the next one', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    s.card.delayMs = 20;
    const batcher = new CheckpointBatcher(checkpointer, { mode: 'strict', intervalMs: 0, clock: s.clock });
    const before = s.card.signatures;
    const first = batcher.sealed(s.journal.append());
    await Bun.sleep(10); // the first checkpoint is now at the card
    const late = [1, 2, 3].map(() => batcher.sealed(s.journal.append()));
    await first;
    expect(batcher.sealedSeq).toBe(1);
    await Promise.all(late);
    expect(batcher.sealedSeq).toBe(4);
    expect(s.card.signatures - before).toBe(2);
    await batcher.close();
  });

  test('strict: a card failure rejects the waiting writes; the next write retries the card', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    const batcher = new CheckpointBatcher(checkpointer, { mode: 'strict', intervalMs: 0, clock: s.clock });
    s.card.remove();
    const error = await batcher.sealed(s.journal.append()).catch((e: unknown) => e);
    expect((error as CardError).code).toBe('card_removed');
    s.card.insert();
    await batcher.sealed(s.journal.append());
    expect(batcher.sealedSeq).toBe(2);
    await batcher.close();
  });

  test('strict: card used elsewhere is fatal', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    const fatal: CardError[] = [];
    const batcher = new CheckpointBatcher(checkpointer, { mode: 'strict', intervalMs: 0, clock: s.clock, onFatal: (e) => fatal.push(e) });
    s.card.signElsewhere();
    await expect(batcher.sealed(s.journal.append())).rejects.toThrow(CardError);
    expect(fatal.map((e) => e.code)).toEqual(['card_used_elsewhere']);
    await expect(batcher.sealed(s.journal.append())).rejects.toThrow('another copy');
    await expect(batcher.close()).resolves.toBeUndefined();
  });

  test('heartbeat: seals without writes, raising the clock high-water mark', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    const batcher = new CheckpointBatcher(checkpointer, { mode: 'strict', intervalMs: 0, heartbeatMs: 5, clock: s.clock });
    const before = s.card.signatures;
    s.clock.advance(3_600_000);
    for (let i = 0; i < 200 && s.card.signatures === before; i++) await Bun.sleep(5);
    await batcher.close();
    expect(s.card.signatures).toBeGreaterThan(before);
    expect(checkpointer.clockHighWaterMs).toBe(T0 + 3_600_000);
  });

  test('relaxed: acknowledges at once and seals within the interval', async () => {
    const s = setup();
    const { checkpointer } = await s.bind();
    const batcher = new CheckpointBatcher(checkpointer, { mode: 'relaxed', intervalMs: 20, clock: s.clock });
    const before = s.card.signatures;
    for (let i = 0; i < 5; i++) await batcher.sealed(s.journal.append());
    expect(batcher.sealedSeq).toBe(0); // acknowledged before sealing: the documented loss window
    for (let i = 0; i < 200 && batcher.sealedSeq < 5; i++) await Bun.sleep(10);
    expect(batcher.sealedSeq).toBe(5);
    expect(s.card.signatures - before).toBe(1);
    await batcher.sealed(s.journal.append());
    await batcher.close(); // close seals what is left
    expect(batcher.sealedSeq).toBe(6);
  });
});
