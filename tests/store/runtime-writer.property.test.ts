// Goal: whatever fails when, the runtime writer acknowledges exactly what is durable, and what it
// refuses leaves no trace: in memory, in LMDB after the checkpoints, and after a crash. Method:
// seeded random rounds of concurrent Pay-per-Use bookings on three licensees, with failing journal
// writes and failing checkpoints switched on and off at random, now and then a journal write that
// lands and fails all the same (its record must be voided), a small journal file that rewinds
// often, and crash copies (the database's files) taken between rounds; a model adds up what was
// acknowledged. Replay a failure with WRITER_SEED.
import { expect, test } from 'bun:test';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { WAL_FILE } from '../../src/store/runtime-wal.ts';
import { diskFullError, ioError, seededRandom, tempDir } from '../helpers.ts';

const seed = Number(process.env['WRITER_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const LICENSEES = ['L1', 'L 2', 'L-ü'];

test(`random failures of journal writes and checkpoints: acknowledged = durable, refused = absent (seed ${seed})`, async () => {
  const rand = seededRandom(seed);
  const dir = join(tempDir(), 'database');
  let journalFailing = false;
  let checkpointsFailing = false;
  /** The next journal write lands and fails all the same (once). */
  let lateFailureArmed = false;
  let lateFailures = 0;
  const store = openAssetStore(dir, {
    create: true,
    walRewindAtBytes: 2048,
    checkpointEveryGroups: 3,
    checkpointQuietMs: 1,
    checkpointRetryMs: 5,
    failWrites: () => (journalFailing ? diskFullError() : undefined),
    failCheckpoints: () => (checkpointsFailing ? diskFullError() : undefined),
    failJournalWritesAfterLanding: () => {
      if (!lateFailureArmed) return undefined;
      lateFailureArmed = false;
      lateFailures++;
      return ioError();
    },
  });
  const acknowledged = new Map<string, number>(LICENSEES.map((l) => [l, 0]));
  const crashes: { copy: string; expected: Map<string, number> }[] = [];
  let refused = 0;
  let written = 0;
  for (let round = 0; round < 300; round++) {
    // Failures come now and then and last a few rounds.
    if (rand() < (journalFailing ? 0.3 : 0.05)) journalFailing = !journalFailing;
    if (rand() < (checkpointsFailing ? 0.3 : 0.05)) checkpointsFailing = !checkpointsFailing;
    // Only while other writes succeed, so that voiding its record succeeds: its refusals are then certain.
    lateFailureArmed = !journalFailing && rand() < 0.1;
    const lateFailuresBefore = lateFailures;
    const commits = Array.from({ length: 1 + Math.floor(rand() * 8) }, async () => {
      const licensee = LICENSEES[Math.floor(rand() * LICENSEES.length)]!;
      const quantity = 1 + Math.floor(rand() * 5);
      try {
        await store.commitRuntime(licensee, 1000 + round, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity }], result: null }));
        acknowledged.set(licensee, acknowledged.get(licensee)! + quantity);
        written++;
      } catch (error) {
        const { code, mayBeStored } = error as { code: string; mayBeStored: boolean };
        expect(['disk_full', 'io']).toContain(code);
        // A late failure ('io') comes only while other writes succeed: its record was voided. (A disk-full
        // refusal may say "may be stored", as voiding failed too; its write never landed here.)
        if (code === 'io') expect(mayBeStored).toBe(false);
        refused++;
      }
    });
    await Promise.all(commits);
    // No dirty reads: with nothing in flight, a decision sees exactly what was acknowledged.
    for (const licensee of LICENSEES) {
      const seen = await store.commitRuntime(licensee, 1000 + round, (state) => ({ events: [], result: state.usedQuantity['X'] ?? 0 }));
      expect(seen).toBe(acknowledged.get(licensee)!);
    }
    lateFailureArmed = false;
    // Right after a late failure, the voided record is usually the journal file's last.
    if (rand() < 0.05 || lateFailures > lateFailuresBefore) {
      const copy = join(tempDir(), 'database');
      mkdirSync(copy);
      for (const file of ['data.mdb', WAL_FILE]) copyFileSync(join(dir, file), join(copy, file));
      crashes.push({ copy, expected: new Map(acknowledged) });
    }
  }
  journalFailing = false;
  checkpointsFailing = false;
  await store.settled();
  for (const licensee of LICENSEES) expect(store.getRuntime(licensee).usedQuantity['X'] ?? 0).toBe(acknowledged.get(licensee)!);
  expect(verifyDatabase(store).problems).toEqual([]);
  await store.close();
  // Both outcomes happened often enough for the test to mean something.
  expect(written).toBeGreaterThan(100);
  expect(refused).toBeGreaterThan(10);
  expect(crashes.length).toBeGreaterThan(3);
  expect(lateFailures).toBeGreaterThan(5);

  const reopened = openAssetStore(dir);
  for (const licensee of LICENSEES) expect(reopened.getRuntime(licensee).usedQuantity['X'] ?? 0).toBe(acknowledged.get(licensee)!);
  await reopened.close();
  for (const { copy, expected } of crashes) {
    const recovered = openAssetStore(copy);
    for (const licensee of LICENSEES) expect(recovered.getRuntime(licensee).usedQuantity['X'] ?? 0).toBe(expected.get(licensee)!);
    expect(verifyDatabase(recovered).problems).toEqual([]);
    await recovered.close();
  }
  console.log(`runtime writer under random failures (seed ${seed}): ${written} acknowledged, ${refused} refused (${lateFailures} writes landed and failed), ${crashes.length} crash copies recovered`);
}, 60_000);
