// Goal: `--action=compact-journal` folds the entries older than --keep-days, says what it did on
// stdout, and leaves verify-database and status reporting the base; it refuses with a clear
// message and exit code a bad --keep-days (2), a database an agent serves (4), a journal that
// does not verify (5, nothing folded) and a card-bound database without checkpoint (6).
// Method: seeded stores with runtime changes at chosen times, runCli with an injected clock.
import { describe, expect, test } from 'bun:test';
import { generateKeyPairSync, sign } from 'node:crypto';
import { join } from 'node:path';
import { decodeCheckpointPayload, encodeCheckpointPayload } from '../../src/card/checkpoint.ts';
import { runCli } from '../../src/cli/run.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { renderStatusPage } from '../../src/server/ops/status-page.ts';
import { createStatusReader } from '../../src/service/status.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { openKvEnvironment } from '../../src/store/lmdb.ts';
import { captureIo } from '../helpers.ts';
import { entity, seedStore } from '../support/seed-store.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const NOW = T0 + 100 * DAY;
const clock = { nowMs: () => NOW };
/** The card's key: compact-journal and verify-database check the checkpoint's signature with its public half. */
const CARD_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' });
/** A card binding as an import records it (the card itself is not asked by compact-journal). */
const BINDING = {
  serial: '00C0FFEE',
  manufacturer: 'ffff',
  applicationId: 'D276000124010304FFFF00C0FFEE0000',
  publicKey: { algorithm: 'ecdsa-p256' as const, spkiBase64: CARD_KEY.publicKey.export({ format: 'der', type: 'spki' }).toString('base64') },
  boundAt: new Date(T0).toISOString(),
};

/** Stores a checkpoint sealing journal entry `journalSeq`, signed as the card signs (what an agent's start or write leaves). */
async function seal(store: AssetStore, journalSeq: number, cardCounter: number, databaseId = store.meta().databaseId): Promise<void> {
  const payload = encodeCheckpointPayload({
    databaseId,
    seq: cardCounter,
    journalSeq,
    journalHash: store.journalHashAt(journalSeq)!,
    clockHighWaterMs: NOW - DAY,
    cardManufacturer: BINDING.manufacturer,
    cardSerial: BINDING.serial,
    cardCounter,
  });
  const signature = sign('sha256', Buffer.from(payload), { key: CARD_KEY.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64');
  await store.saveCardCheckpoint({ payload, signature, cardCounter });
}

/** Licensee L books 1 on license X once a day for 20 days, from day 70 to day 89 (11 to 30 days ago). */
async function twentyDays(): Promise<string> {
  const { store, cwd } = seedStore([entity('Product', 'P'), entity('Licensee', 'L', { productNumber: 'P' })]);
  for (let d = 70; d < 90; d++) await store.commitRuntime('L', T0 + d * DAY, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 1 }], result: null }));
  await store.close();
  return cwd;
}

/** Records the card binding an import leaves, and a checkpoint sealing `sealed` when given. */
async function bindCard(cwd: string, sealed?: { journalSeq: number; cardCounter: number }): Promise<void> {
  const store = openAssetStore(join(cwd, 'database'));
  store.importTransaction((tx) => tx.setMeta({ ...tx.meta(), withoutCard: false, cardBinding: BINDING }));
  if (sealed) await seal(store, sealed.journalSeq, sealed.cardCounter);
  await store.close();
}

async function run(cwd: string, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo();
  const code = await runCli(argv, io, { cwd, log: silentLogger(), clock });
  return { code, out: io.out, err: io.err };
}

describe('compact-journal', () => {
  test('folds what is older than --keep-days; verify-database and status then report the base', async () => {
    const cwd = await twentyDays();
    // 20 days kept: nothing is older.
    const none = await run(cwd, '--action=compact-journal', '--keep-days=31');
    expect(none).toMatchObject({ code: 0, err: '' });
    expect(none.out).toBe('journal: nothing to fold: no entry older than 31 days\njournal: 20 entries kept after the base (fold markers included)\n');

    const folded = await run(cwd, '--action=compact-journal', '--keep-days=20');
    expect(folded.code).toBe(0);
    // Days 70 to 79 are more than 20 days old: entries 1–10 (one group each).
    expect(folded.out).toStartWith(
      'journal: folded 10 entries; entries 1–10 are now the base (the runtime state of 1 licensees)\njournal: 11 entries kept after the base (fold markers included)\n',
    );
    expect(folded.out).toContain('journal records deleted: 10 (their space is reused by the database; --action=backup writes a compacted copy)\n');

    const verified = await run(cwd, '--action=verify-database');
    expect(verified.code).toBe(0);
    expect(verified.out).toContain('journal entries: 11 after its base (entries 1–10, folded 2026-04-11T00:00:00.000Z: the state of 1 licensees)\n');
    expect(verified.out).toContain('used quantity: 20\n');

    const status = await run(cwd, '--action=status');
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/^journal: +21 entries, newest 2026-03-31T00:00:00\.000Z; entries 1–10 folded into its base 2026-04-11T00:00:00\.000Z\n/m);

    // The status page's journal tile, from the same snapshot.
    const store = openAssetStore(join(cwd, 'database'), { readOnly: true });
    const snapshot = await createStatusReader(store).snapshot(NOW);
    await store.close();
    const page = renderStatusPage({ version: 'test', snapshot, activity: { items: [], total: 0 }, samples: [], sampleIntervalMs: 60_000, readiness: { ready: true, checks: [] }, validateRequests: 0 });
    expect(page).toContain('21 entries<small>newest 2026-03-31 00:00:00 UTC · 1–10 folded 2026-04-11 00:00:00 UTC</small>');

    // The default keeps 90 days.
    expect((await run(cwd, '--action=compact-journal')).out).toStartWith('journal: nothing to fold: no entry older than 90 days');
  });

  test('a bad --keep-days is a usage error', async () => {
    const cwd = await twentyDays();
    for (const value of ['-1', 'ten', '1.5', '36501']) {
      const result = await run(cwd, '--action=compact-journal', `--keep-days=${value}`);
      expect(result.code).toBe(2);
      expect(result.err).toContain(`--keep-days must be whole days from 0 to 36500, got "${value}"`);
    }
  });

  test('while an agent serves the database: exit 4, nothing folded', async () => {
    const cwd = await twentyDays();
    const server = openAssetStore(join(cwd, 'database'));
    server.claimRuntimeWriter('pid 4242, port 8080');
    try {
      const result = await run(cwd, '--action=compact-journal', '--keep-days=0');
      expect(result.code).toBe(4);
      expect(result.err).toContain('another agent already serves the database');
      expect(result.err).toContain('(pid 4242, port 8080)');
      expect(result.err).toContain('stop it, then compact the journal');
      expect(server.journalBase()).toBeUndefined();
    } finally {
      await server.close();
    }
  });

  test('a journal that does not verify is not folded: exit 5 with the problems', async () => {
    const cwd = await twentyDays();
    const env = openKvEnvironment(join(cwd, 'database'));
    const runtime = env.open<{ licenseeNumber: string; state: { usedQuantity: Record<string, number> } }>('runtime');
    const record = runtime.get('L')!;
    env.commitSync(() => runtime.putSync('L', { ...record, state: { ...record.state, usedQuantity: { X: 3 } } }));
    await env.close();
    const result = await run(cwd, '--action=compact-journal', '--keep-days=0');
    expect(result.code).toBe(5);
    expect(result.err).toContain("problem: runtime state of licensee 'L' differs from the replayed journal");
    expect(result.err).toContain('nothing folded: the journal does not verify.');
    const store = openAssetStore(join(cwd, 'database'), { readOnly: true });
    expect(store.journalBase()).toBeUndefined();
    expect([...store.journal()].length).toBe(20);
    await store.close();
  });

  test('a card-bound database without a card checkpoint, or with one the card did not sign: exit 6, nothing folded', async () => {
    const cwd = await twentyDays();
    await bindCard(cwd);
    const result = await run(cwd, '--action=compact-journal', '--keep-days=0');
    expect(result.code).toBe(6);
    expect(result.err).toContain('nothing folded: this database is bound to a smart card but holds no card checkpoint');
    // A checkpoint the bound card did not sign: the same.
    const writer = openAssetStore(join(cwd, 'database'));
    await writer.saveCardCheckpoint({ payload: 'nla-checkpoint/1\n', signature: 'AA==', cardCounter: 1 });
    await writer.close();
    const unsigned = await run(cwd, '--action=compact-journal', '--keep-days=0');
    expect(unsigned.code).toBe(6);
    expect(unsigned.err).toContain("nothing folded: its newest card checkpoint is not signed by the bound card's key");
    // One the card signed for another database (a card binds several): says nothing of this one.
    const other = openAssetStore(join(cwd, 'database'));
    await seal(other, 20, 9, 'another-database');
    await other.close();
    const foreign = await run(cwd, '--action=compact-journal', '--keep-days=0');
    expect(foreign.code).toBe(6);
    expect(foreign.err).toContain('nothing folded: its newest card checkpoint was sealed for another database (another-database)');
    const reader = openAssetStore(join(cwd, 'database'), { readOnly: true });
    expect(reader.journalBase()).toBeUndefined();
    expect(reader.journalPendingFold()).toBeUndefined();
    await reader.close();
  });

  test('a card-bound database folds up to the entry the card sealed, and in two steps: pending, then the base once the card sealed its marker', async () => {
    const cwd = await twentyDays();
    await bindCard(cwd, { journalSeq: 5, cardCounter: 7 });

    // Step 1: a pending fold of entries 1–5, nothing deleted.
    const first = await run(cwd, '--action=compact-journal', '--keep-days=0');
    expect(first.code).toBe(0);
    expect(first.out).toBe(
      'journal: folded 5 entries into a fold through entry 5 (the runtime state of 1 licensees); ' +
        "card-bound: it becomes the base at the next compact-journal, once the agent's next start has had the card seal it\n" +
        'journal: 21 entries kept after the base (fold markers included)\n',
    );
    let reader = openAssetStore(join(cwd, 'database'), { readOnly: true });
    expect(reader.journalBase()).toBeUndefined();
    expect(reader.journalPendingFold()).toMatchObject({ throughSeq: 5, markerSeq: 21 });
    expect([...reader.journal()].length).toBe(21);
    await reader.close();
    expect((await run(cwd, '--action=verify-database')).out).toContain("journal entries: 21; a fold through entry 5 waits for the card's seal\n");

    // Until the card seals the marker, nothing else is done.
    const waiting = await run(cwd, '--action=compact-journal', '--keep-days=0');
    expect(waiting).toMatchObject({ code: 0, err: '' });
    expect(waiting.out).toStartWith('journal: the fold through entry 5 waits for the card to seal it: start the agent with its card once, then run compact-journal again');

    // The agent's start seals the head (the marker included): the fold becomes the base, and the
    // next pending fold takes what the card sealed.
    const sealedStore = openAssetStore(join(cwd, 'database'));
    await seal(sealedStore, 21, 8);
    await sealedStore.close();
    const second = await run(cwd, '--action=compact-journal', '--keep-days=0');
    expect(second.code).toBe(0);
    expect(second.out).toStartWith(
      'journal: the fold through entry 5, sealed by the card, is now the base\n' +
        'journal: folded 16 entries into a fold through entry 21 (the runtime state of 1 licensees);',
    );
    expect(second.out).toContain('journal records deleted: 5 ');
    reader = openAssetStore(join(cwd, 'database'), { readOnly: true });
    expect(reader.journalBase()).toMatchObject({ throughSeq: 5, markerSeq: 21 });
    expect(reader.journalPendingFold()).toMatchObject({ throughSeq: 21, markerSeq: 22 });
    // What the card's start-up check reads: the sealed entry's link.
    expect(reader.journalHashAt(21)).toBe(decodeCheckpointPayload(reader.cardCheckpoint()!.payload).journalHash);
    await reader.close();
    const verified = await run(cwd, '--action=verify-database');
    expect(verified.code).toBe(0);
    expect(verified.out).toContain('used quantity: 20\n');
  });

  test("a base the card has not sealed is refused by verify-database and compact-journal: someone's own base after the sealed entry", async () => {
    const cwd = await twentyDays();
    await bindCard(cwd, { journalSeq: 20, cardCounter: 7 });
    // A fold without a card makes the base at once: what a forger could write into a card-bound database.
    const store = openAssetStore(join(cwd, 'database'));
    store.exclusively('forger', () => store.foldJournal({ throughSeqAtMost: 20, entriesBeforeMs: NOW, atMs: NOW }, 'now'));
    await store.close();
    for (const action of ['verify-database', 'compact-journal']) {
      const result = await run(cwd, `--action=${action}`, ...(action === 'compact-journal' ? ['--keep-days=0'] : []));
      expect(result.code).toBe(5);
      expect(result.err).toContain(
        "problem: the journal's folded base (entries 1–20) was not sealed by the card: its marker, entry 21, is after the newest entry the card sealed (20)",
      );
    }
  });
});
