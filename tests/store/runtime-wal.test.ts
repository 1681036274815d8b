// Goal: a counter change is durable when acknowledged, although LMDB receives it later: the
// runtime journal file (src/store/runtime-wal.ts) holds it until a checkpoint, and the next
// open applies what a crashed server left only there. Method: a "crash" is a copy of the
// database directory's files taken right after the acknowledgements, while no checkpoint has
// run (checkpoints are held back with a long quiet delay; each test checks that LMDB in the
// copy lacks the changes, so the recovery path is what the test exercises).
import { describe, expect, test } from 'bun:test';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runCli } from '../../src/cli/run.ts';
import type { RuntimeEvent } from '../../src/core/runtime.ts';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore, StoreError, type AssetStore, type OpenStoreOptions } from '../../src/store/asset-store.ts';
import { readWalGroupsAfter, WAL_FILE } from '../../src/store/runtime-wal.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { captureIo, diskFullError, ioError, tempDir } from '../helpers.ts';

const GENESIS = { seq: 0, hash: '0'.repeat(64) };
/** No quiet checkpoint during a test; checkpoints under load only every 1,000 groups. */
const HELD: OpenStoreOptions = { create: true, checkpointQuietMs: 60_000, checkpointEveryGroups: 1000 };
const used = (quantity: number): RuntimeEvent[] => [{ type: 'quantityUsed', licenseNumber: 'X', quantity }];

function newDatabase(options: OpenStoreOptions = HELD): { dir: string; store: AssetStore } {
  const dir = join(tempDir(), 'database');
  return { dir, store: openAssetStore(dir, options) };
}

/** The files a crash right now would leave on disk (what the page cache holds survives a kill). */
function crashCopy(dir: string): string {
  const copy = join(tempDir(), 'database');
  mkdirSync(copy);
  for (const file of ['data.mdb', WAL_FILE]) copyFileSync(join(dir, file), join(copy, file));
  return copy;
}

/** LMDB's own journal head in a database directory, without applying its journal file. */
async function lmdbHeadSeq(dir: string): Promise<number> {
  const readOnly = openAssetStore(dir, { readOnly: true });
  try {
    return readOnly.journalHead().seq;
  } finally {
    await readOnly.close();
  }
}

/** Opens `dir` (applying its journal file), expects `usedX` booked on license X of L1 and an intact journal, closes it. */
async function expectReopened(dir: string, usedX: number): Promise<void> {
  const reopened = openAssetStore(dir);
  try {
    expect(reopened.getRuntime('L1').usedQuantity['X']).toBe(usedX);
    expect(verifyDatabase(reopened).problems).toEqual([]);
  } finally {
    await reopened.close();
  }
}

describe('runtime journal file', () => {
  test('what only the journal file holds is counted by a reader (status says so) until an open that may write applies it', async () => {
    const { dir, store } = newDatabase();
    await Promise.all(Array.from({ length: 12 }, () => store.commitRuntime('L1', 1000, () => ({ events: used(1), result: null }))));
    const copy = crashCopy(dir);
    await store.close();
    const reader = openAssetStore(copy, { readOnly: true });
    expect(reader.journalHead().seq).toBe(0);
    expect(reader.pendingJournalEntries()).toBe(12);
    await reader.close();
    const io = captureIo();
    expect(await runCli(['--action=status'], io, { cwd: dirname(copy), log: silentLogger() })).toBe(0);
    expect(io.out).toMatch(/^journal: +0 entries\n/m);
    expect(io.out).toMatch(/^journal file: +12 more entries in runtime\.wal, not counted above: .*after a crash the next start \(or import\) applies them\n/m);
    await expectReopened(copy, 12);
    const after = openAssetStore(copy, { readOnly: true });
    expect(after.pendingJournalEntries()).toBe(0);
    await after.close();
    const again = captureIo();
    expect(await runCli(['--action=status'], again, { cwd: dirname(copy), log: silentLogger() })).toBe(0);
    expect(again.out).not.toContain('journal file:');
    expect(again.out).toMatch(/^journal: +12 entries, newest /m);
  });

  test('acknowledged changes that only the journal file holds survive a crash, replay entries included', async () => {
    const { dir, store } = newDatabase();
    await Promise.all([
      ...Array.from({ length: 30 }, () => store.commitRuntime('L1', 1000, () => ({ events: used(1), result: null }))),
      store.commitRuntime('L ü 2', 1000, () => ({
        events: [{ type: 'sessionCheckedOut', moduleNumber: 'M', sessionId: 's1', checkedOutMs: 1000, expiresMs: 9000 }],
        result: null,
      })),
      store.commitRuntimeWithReplay('L1', 1000, () => ({ events: used(5), result: 'r' }), () => ({ form: 'usedQuantity0=5', decision: { status: 200, valid: { M: 'true' } } })),
    ]);
    const copy = crashCopy(dir);
    await store.close();
    expect(await lmdbHeadSeq(copy)).toBe(0);

    let recovered = 0;
    const reopened = openAssetStore(copy, { onRecovered: (entries) => (recovered = entries) });
    expect(recovered).toBe(32);
    expect(reopened.journalHead().seq).toBe(32);
    expect(reopened.getRuntime('L1').usedQuantity['X']).toBe(35);
    expect([...(reopened.getRuntime('L ü 2').sessions['M']?.keys() ?? [])]).toEqual(['s1']);
    expect([...reopened.replayBacklog()].map((entry) => [entry.form, entry.events])).toEqual([['usedQuantity0=5', used(5)]]);
    expect(verifyDatabase(reopened).problems).toEqual([]);
    await reopened.close();
    // Applied once: a second open finds nothing more to apply.
    recovered = 0;
    const again = openAssetStore(copy, { onRecovered: (entries) => (recovered = entries) });
    expect(recovered).toBe(0);
    expect(again.getRuntime('L1').usedQuantity['X']).toBe(35);
    await again.close();
  });

  test('the file starts again at offset 0 once LMDB holds its records; a crash after that is recovered from there', async () => {
    const { dir, store } = newDatabase({ ...HELD, walRewindAtBytes: 4096 });
    for (let i = 0; i < 200; i++) await store.commitRuntime('L1', 1000 + i, () => ({ events: used(1), result: null }));
    const copy = crashCopy(dir);
    // Each record is a few hundred bytes: 200 of them went round the 4 KiB several times, and the
    // file kept the size it was created with (rewind threshold + 64 KiB).
    expect(statSync(join(dir, WAL_FILE)).size).toBe(4096 + 64 * 1024);
    await store.close();
    // LMDB holds what preceded the newest rewind; what followed it is in the file only.
    const lmdbSeq = await lmdbHeadSeq(copy);
    expect(lmdbSeq).toBeGreaterThan(0);
    expect(lmdbSeq).toBeLessThan(200);
    const reopened = openAssetStore(copy);
    expect(reopened.journalHead().seq).toBe(200);
    expect(reopened.getRuntime('L1').usedQuantity['X']).toBe(200);
    expect(verifyDatabase(reopened).problems).toEqual([]);
    await reopened.close();
  });

  test('a torn last record is not applied: the changes before it are', async () => {
    const { dir, store } = newDatabase();
    for (let i = 1; i <= 3; i++) await store.commitRuntime('L1', 1000, () => ({ events: used(i), result: null }));
    const copy = crashCopy(dir);
    await store.close();
    const readOnly = openAssetStore(copy, { readOnly: true });
    const databaseId = readOnly.meta().databaseId;
    await readOnly.close();
    const groups = readWalGroupsAfter(join(copy, WAL_FILE), databaseId, GENESIS, 0);
    expect(groups.map((group) => group.firstSeq)).toEqual([1, 2, 3]);
    // A power loss in the middle of the third write: its end never reached the disk.
    const file = readFileSync(join(copy, WAL_FILE));
    file.fill(0, groups[2]!.end - 10, groups[2]!.end);
    writeFileSync(join(copy, WAL_FILE), file);
    const reopened = openAssetStore(copy);
    expect(reopened.journalHead().seq).toBe(2);
    expect(reopened.getRuntime('L1').usedQuantity['X']).toBe(3);
    expect(verifyDatabase(reopened).problems).toEqual([]);
    // The next change continues the journal after entry 2.
    await reopened.commitRuntime('L1', 2000, () => ({ events: used(10), result: null }));
    await reopened.close();
    await expectReopened(copy, 13);
  });

  test('a failed journal write fails what was decided on top of it; acknowledged changes not yet in LMDB stay', async () => {
    let diskFull = false;
    const { dir, store } = newDatabase({
      ...HELD,
      failWrites: () => (diskFull ? diskFullError() : undefined),
    });
    await store.commitRuntime('L1', 1000, () => ({ events: used(1), result: null }));
    expect(await lmdbHeadSeq(dir)).toBe(0);
    diskFull = true;
    const failed = store.commitRuntime('L1', 1001, () => ({ events: used(100), result: null }));
    await expect(failed).rejects.toMatchObject({ code: 'disk_full' });
    diskFull = false;
    // Decided against the rebuilt memory: the acknowledged change is there, the failed one is not.
    const seen = await store.commitRuntime('L1', 1002, (state) => ({ events: used(2), result: state.usedQuantity['X'] }));
    expect(seen).toBe(1);
    await store.settled();
    expect(store.getRuntime('L1').usedQuantity['X']).toBe(3);
    expect(store.journalHead().seq).toBe(2);
    await store.close();
    await expectReopened(dir, 3);
  });

  test('a journal write that fails after its bytes landed is voided before the refusal: a crash right after does not bring the change back', async () => {
    let failLate = false;
    const { dir, store } = newDatabase({
      ...HELD,
      // One write lands and fails; the next ones (the void's first) succeed.
      failJournalWritesAfterLanding: () => (failLate ? ((failLate = false), ioError()) : undefined),
    });
    await store.commitRuntime('L1', 1000, () => ({ events: used(1), result: null }));
    failLate = true;
    const refused = store.commitRuntime('L1', 1001, () => ({ events: used(100), result: null }));
    await expect(refused).rejects.toMatchObject({ code: 'io', mayBeStored: false });
    // The crash comes before any other write: the refused record's bytes are in the file, voided.
    const copy = crashCopy(dir);
    await store.commitRuntime('L1', 1002, () => ({ events: used(2), result: null }));
    await store.close();
    await expectReopened(copy, 1);
    await expectReopened(dir, 3);
  });

  test('when voiding fails too, the refusal says the change may be stored (and after a crash it is)', async () => {
    let failing = false;
    let diskGone = false;
    const { dir, store } = newDatabase({
      ...HELD,
      // The record lands, its write reports an error, and from then on every write fails (the void's too).
      failJournalWritesAfterLanding: () => (failing ? ((diskGone = true), ioError()) : undefined),
      failWrites: () => (diskGone ? ioError() : undefined),
    });
    await store.commitRuntime('L1', 1000, () => ({ events: used(1), result: null }));
    failing = true;
    const refused = store.commitRuntime('L1', 1001, () => ({ events: used(100), result: null }));
    await expect(refused).rejects.toMatchObject({ code: 'io', mayBeStored: true });
    const copy = crashCopy(dir);
    await store.close();
    await expectReopened(copy, 101);
  });

  test('a failing checkpoint loses nothing: new changes are refused with its cause, reads are answered, writes resume', async () => {
    let lmdbFull = false;
    const errors: string[] = [];
    const { dir, store } = newDatabase({
      ...HELD,
      failCheckpoints: () => (lmdbFull ? diskFullError() : undefined),
      onCheckpointError: (error) => errors.push(error.message),
    });
    await store.commitRuntime('L1', 1000, () => ({ events: used(1), result: null }));
    lmdbFull = true;
    await expect(store.settled()).rejects.toMatchObject({ code: 'disk_full' });
    expect(errors).toHaveLength(1);
    // Acknowledged before: durable in the file, so a crash now keeps it.
    const copy = crashCopy(dir);
    // A change is refused with the cause; a read is answered from the latest state.
    await expect(store.commitRuntime('L1', 1001, () => ({ events: used(100), result: null }))).rejects.toMatchObject({ code: 'disk_full' });
    expect(await store.commitRuntime('L1', 1002, (state) => ({ events: [], result: state.usedQuantity['X'] }))).toBe(1);
    lmdbFull = false;
    // The next change first gets the checkpoint through, then is decided and made durable.
    await store.commitRuntime('L1', 1003, () => ({ events: used(2), result: null }));
    await store.settled();
    expect(store.getRuntime('L1').usedQuantity['X']).toBe(3);
    expect(verifyDatabase(store).problems).toEqual([]);
    await store.close();
    const reopened = openAssetStore(copy);
    expect(reopened.getRuntime('L1').usedQuantity['X']).toBe(1);
    await reopened.close();
  });

  test("another database's journal file is refused at open with what to do, and nothing is applied", async () => {
    const a = newDatabase();
    await a.store.commitRuntime('L1', 1000, () => ({ events: used(7), result: null }));
    const b = newDatabase();
    await b.store.close();
    copyFileSync(join(a.dir, WAL_FILE), join(b.dir, WAL_FILE));
    await a.store.close();
    let error: unknown;
    try {
      openAssetStore(b.dir);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StoreError);
    expect(error).toMatchObject({ code: 'corrupt' });
    expect((error as Error).message).toContain('belongs to another database');
    expect((error as Error).message).toContain('move that file away');
    expect(await lmdbHeadSeq(b.dir)).toBe(0);
  });

  test('settled() waits for the checkpoint that brings acknowledged changes into LMDB', async () => {
    const { store } = newDatabase();
    await store.commitRuntime('L1', 1000, () => ({ events: used(4), result: null }));
    expect(store.getRuntime('L1').usedQuantity['X']).toBeUndefined();
    await store.settled();
    expect(store.getRuntime('L1').usedQuantity['X']).toBe(4);
    expect(store.journalHead().seq).toBe(1);
    await store.close();
  });
});

describe("run-agent's replay entries across a failed journal write", () => {
  test('the next entry after the rebuild takes the number after the newest durable one, not one LMDB lags behind with', async () => {
    // A is acknowledged and durable in the journal file only (no checkpoint yet); B's write fails,
    // and the memory is rebuilt. The replay head was read from LMDB again, which does not hold A:
    // C took A's number, overwrote its entry, and A's usage was never replayed upstream.
    let fail = false;
    const { store } = newDatabase({ ...HELD, failJournalWritesAfterLanding: () => (fail ? diskFullError() : undefined) });
    store.claimRuntimeWriter('test');
    const book = (who: string) =>
      store.commitRuntimeWithReplay(who, 1000, () => ({ events: used(1), result: who }), () => ({ form: `who=${who}`, decision: { status: 200, valid: {} } }));
    expect(await book('A')).toBe('A');
    const revisionOfA = store.runtimeRevision('A');
    fail = true;
    const refused = book('B').then(
      () => 'acknowledged',
      () => 'refused',
    );
    // The rebuild after the failure reloads every licensee's memory (A's revision changes).
    while (store.runtimeRevision('A') === revisionOfA) await new Promise((resolve) => setImmediate(resolve));
    fail = false;
    const c = book('C');
    expect(await refused).toBe('refused');
    expect(await c).toBe('C');
    await store.settled();
    expect([...store.replayBacklog()].map((entry) => `${entry.seq}:${entry.licenseeNumber}`)).toEqual(['1:A', '2:C']);
    await store.close();
  });
});
