// Goal: the validate path with card sealing (src/card/session.ts behind
// service/validate-service.ts's optional `sealing`): strict answers a write
// only after a card checkpoint covering it is stored, and one signature
// covers many concurrent writes; relaxed answers at once and seals within
// the interval; a missing card turns writes into 503
// ServiceUnavailableException (no write made once the card is known to be
// missing) while reads go on, and writes recover when the card is back; a
// card used elsewhere is fatal.
// Method: createApp over a real LMDB store bound to a FakeCard, requests
// through app.request in-process; a gate inside the card's sign() makes the
// order of "signed" and "answered" observable without timing assumptions.
import { afterEach, describe, expect, test } from 'bun:test';
import { decodeCheckpointPayload } from '../../src/card/checkpoint.ts';
import { bindDatabase } from '../../src/card/database.ts';
import { FakeCard } from '../../src/card/fake.ts';
import { startCardSession, type CardSession, type CardSessionOptions } from '../../src/card/session.ts';
import type { CardError } from '../../src/card/types.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { journalGroupRecord, type JournalRecord } from '../../src/store/journal-records.ts';
import { openKvEnvironment } from '../../src/store/lmdb.ts';
import { entity, seedStore } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');

/** A FakeCard whose signatures wait at a gate: `hold()` closes it, `release()` lets them through. */
class GatedCard extends FakeCard {
  private gate: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Resolves when a sign() call is waiting at the closed gate. */
  signing: Promise<void> = new Promise(() => undefined);
  private notifySigning: () => void = () => undefined;

  hold(): void {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.gate = { promise, resolve };
    this.signing = new Promise((r) => (this.notifySigning = r));
  }

  release(): void {
    const gate = this.gate;
    this.gate = undefined;
    gate?.resolve();
  }

  override async sign(message: Uint8Array): Promise<Uint8Array> {
    if (this.gate) {
      this.notifySigning();
      await this.gate.promise;
    }
    return super.sign(message);
  }
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  store: AssetStore;
  card: GatedCard;
  session: CardSession;
  app: ReturnType<typeof createApp>;
  fatal: CardError[];
}

async function setup(options: Partial<CardSessionOptions> = {}): Promise<Setup> {
  const { store } = seedStore([
    entity('Product', 'P'),
    entity('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse' }),
    entity('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: '100000' }),
    entity('Licensee', 'L', { productNumber: 'P' }),
    entity('License', 'LP1', { licenseeNumber: 'L', licenseTemplateNumber: 'T-PPU', quantity: '100000' }),
  ]);
  const card = new GatedCard();
  const clock = new ManualClock(NOW);
  const { binding, checkpoint } = await bindDatabase(card, store, NOW);
  store.importTransaction((tx) => {
    tx.setMeta({ ...tx.meta(), withoutCard: false, cardSerial: binding.serial, cardBinding: binding });
    tx.setCardCheckpoint(checkpoint);
  });
  const fatal: CardError[] = [];
  const session = await startCardSession({
    card,
    binding,
    db: store,
    clock,
    mode: 'strict',
    intervalMs: 0,
    retryMs: 5,
    probeCacheMs: 0,
    onFatal: (error) => fatal.push(error),
    ...options,
  });
  cleanups.push(() => store.close());
  cleanups.push(() => session.close());
  const app = createApp({ store, clock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: true, sealing: session });
  return { store, card, session, app, fatal };
}

function book(app: Setup['app'], quantity: number): Promise<Response> {
  return Promise.resolve(
    app.request('/rest/licensee/L/validate', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: `productModuleNumber0=M-PPU&usedQuantity0=${quantity}`,
    }),
  );
}

function sealedJournalSeq(store: AssetStore): number {
  return decodeCheckpointPayload(store.cardCheckpoint()!.payload).journalSeq;
}

/** Lets queued promise callbacks and zero-delay timers run. */
async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await Bun.sleep(0);
}

describe('strict sealing', () => {
  test('a write is answered only after the checkpoint covering it is signed and stored', async () => {
    const { app, card, store } = await setup();
    card.hold();
    let answered = false;
    const response = book(app, 1).then((res) => {
      answered = true;
      return res;
    });
    await card.signing;
    await settle();
    // Durable, but not answered: the card has not signed yet.
    expect(store.journalHead().seq).toBe(1);
    expect(answered).toBe(false);
    expect(sealedJournalSeq(store)).toBe(0);
    card.release();
    const res = await response;
    expect(res.status).toBe(200);
    expect(sealedJournalSeq(store)).toBe(1);
  });

  test('writes arriving together share one signature', async () => {
    const { app, card, store } = await setup();
    const before = card.signatures;
    const answers = await Promise.all(Array.from({ length: 50 }, () => book(app, 1)));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    expect(store.journalHead().seq).toBe(50);
    expect(sealedJournalSeq(store)).toBe(50);
    // One checkpoint for the first turn's writes, at most one more for those that came during its signature.
    expect(card.signatures - before).toBeLessThanOrEqual(3);
  });

  test('reads do not wait for the card', async () => {
    const { app, card } = await setup();
    card.hold();
    const read = await book(app, 0);
    expect(read.status).toBe(200);
    card.release();
  });

  test('card missing: writes get 503 ServiceUnavailableException, reads are served, no write is made once it is known; back: writes recover', async () => {
    const { app, card, store, session } = await setup();
    expect((await book(app, 1)).status).toBe(200);
    card.remove();

    // The first write finds out: it is durable, but not confirmed.
    const first = await book(app, 1);
    expect(first.status).toBe(503);
    const body = (await first.json()) as { infos: { info: { id: string; type: string; value: string }[] } };
    expect(body.infos.info[0]).toMatchObject({ id: 'ServiceUnavailableException', type: 'ERROR' });
    expect(body.infos.info[0]!.value).toContain('smart card');
    expect(body.infos.info[0]!.value).toContain('card_removed');
    expect(store.journalHead().seq).toBe(2);
    expect(session.available()).toBe(false);

    // Later writes are refused before they are made; reads go on.
    expect((await book(app, 1)).status).toBe(503);
    expect(store.journalHead().seq).toBe(2);
    const read = await book(app, 0);
    expect(read.status).toBe(200);
    expect((await session.readiness()).ok).toBe(false);

    card.insert();
    for (let i = 0; i < 1000 && !session.available(); i++) await Bun.sleep(5);
    expect(session.available()).toBe(true);
    // The retry checkpoint sealed what the unconfirmed write left.
    expect(sealedJournalSeq(store)).toBe(2);
    expect((await book(app, 1)).status).toBe(200);
    expect(sealedJournalSeq(store)).toBe(3);
    expect((await session.readiness()).ok).toBe(true);
  });

  test('a card pulled while idle is noticed by the readiness probe: writes are refused before they are made', async () => {
    const { app, card, store, session } = await setup();
    card.remove();
    const readiness = await session.readiness();
    expect(readiness.ok).toBe(false);
    expect(readiness.detail).toContain('validate writes are refused');
    expect((await book(app, 1)).status).toBe(503);
    expect(store.journalHead().seq).toBe(0);
  });

  test('the card used elsewhere: fatal, and writes are refused', async () => {
    const { app, card, fatal } = await setup();
    card.signElsewhere();
    expect((await book(app, 1)).status).toBe(503);
    expect(fatal.map((e) => e.code)).toEqual(['card_used_elsewhere']);
    expect((await book(app, 1)).status).toBe(503);
  });
});

describe('PIN rejected while running', () => {
  test('fatal at once: no second attempt that would use up the card\'s tries', async () => {
    const { app, card, fatal, session } = await setup({ retryMs: 1 });
    card.failNext('wrong_pin');
    expect((await book(app, 1)).status).toBe(503);
    expect(fatal.map((e) => e.code)).toEqual(['wrong_pin']);
    const signatures = card.signatures;
    await Bun.sleep(20);
    expect((await book(app, 1)).status).toBe(503);
    expect(card.signatures).toBe(signatures);
    expect((await session.readiness()).ok).toBe(false);
  });
});

describe('relaxed sealing', () => {
  test('a write is answered before the checkpoint; the checkpoint follows within the interval', async () => {
    const { app, card, store } = await setup({ mode: 'relaxed', intervalMs: 20 });
    card.hold();
    const before = card.signatures;
    const res = await book(app, 1);
    expect(res.status).toBe(200);
    expect(card.signatures).toBe(before);
    expect(sealedJournalSeq(store)).toBe(0);
    await card.signing;
    card.release();
    for (let i = 0; i < 1000 && sealedJournalSeq(store) < 1; i++) await Bun.sleep(5);
    expect(sealedJournalSeq(store)).toBe(1);
  });

  test('a missing card still stops writes once a checkpoint failed', async () => {
    const { app, card, store, session } = await setup({ mode: 'relaxed', intervalMs: 5 });
    card.remove();
    expect((await book(app, 1)).status).toBe(200);
    for (let i = 0; i < 1000 && session.available(); i++) await Bun.sleep(5);
    expect((await book(app, 1)).status).toBe(503);
    expect(store.journalHead().seq).toBe(1);
    card.insert();
    for (let i = 0; i < 1000 && !session.available(); i++) await Bun.sleep(5);
    expect((await book(app, 1)).status).toBe(200);
  });
});

describe('closing', () => {
  test('close() seals what is left and releases the card', async () => {
    const { app, store, session } = await setup({ mode: 'relaxed', intervalMs: 60_000 });
    expect((await book(app, 2)).status).toBe(200);
    expect(sealedJournalSeq(store)).toBe(0);
    expect(await session.close()).toBeUndefined();
    expect(sealedJournalSeq(store)).toBe(1);
  });
});

describe('what the card seals', () => {
  test("entries another process appends to LMDB are not sealed by the running agent's heartbeat; its own are", async () => {
    // Someone who can write database/ appends an entry to an idle agent's LMDB (here through a
    // second handle in this process); the heartbeat used to seal LMDB's head as it found it, and
    // the next start took the appended entry for the card's word (a session-15 review did this
    // with a fold marker that a forged base then named).
    let sealings = 0;
    const { store, app } = await setup({ heartbeatMs: 50, onSealed: () => void (sealings += 1) });
    expect((await book(app, 3)).status).toBe(200);
    await store.settled();
    const own = store.journalHead();
    const env = openKvEnvironment(store.path);
    const meta = env.open<unknown>('meta');
    const journal = env.open<JournalRecord>('journal');
    env.commitSync(() => {
      const { hash, record } = journalGroupRecord(own.hash, [{ seq: own.seq + 1, atMs: NOW, licenseeNumber: 'L', events: [{ type: 'quantityUsed', licenseNumber: 'LP1', quantity: 1 }] }]);
      journal.putSync(own.seq + 1, record);
      meta.putSync('journalHead', { seq: own.seq + 1, hash });
    });
    await Bun.sleep(5); // the store's reads see the other handle's commit from a later turn on
    expect(store.journalHead().seq).toBe(own.seq + 1);
    const sealedSeq = () => sealedJournalSeq(store);
    // Two heartbeats after the append.
    const before = sealings;
    for (let waited = 0; sealings < before + 2; waited++) {
      if (waited === 500) throw new Error('no heartbeat checkpoint in 10 s');
      await Bun.sleep(20);
    }
    expect(sealedSeq()).toBe(own.seq);
    expect(store.sealableJournalHead()).toEqual(own);
    // The agent's own next write is sealed (its group takes the appended entry's place).
    expect((await book(app, 2)).status).toBe(200);
    expect(sealedSeq()).toBe(own.seq + 1);
    expect(store.journalHead().seq).toBe(own.seq + 1);
    expect(store.getRuntime('L').usedQuantity).toEqual({ LP1: 5 });
  });
});
