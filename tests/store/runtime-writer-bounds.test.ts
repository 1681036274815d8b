/**
 * Goal: under load, checkpoints come every `checkpointEveryGroups` groups, and further apart when
 * the states they copy and encode are large (runtime-writer.ts, checkpointInterval): one group
 * later per 256 sessions or node secrets the last checkpoint held. Nothing acknowledged waits for
 * that: whoever waits for LMDB still gets a checkpoint at once. And past the bound of licensees in
 * memory, only the earliest loaded tenth leaves it, never one with changes not yet in LMDB.
 * Method: the runtime writer over stand-ins for LMDB and the journal file that count checkpoints
 * and settle at once; one group per commit (each awaited before the next).
 */
import { expect, test } from 'bun:test';
import type { RuntimeEvent } from '../../src/core/runtime.ts';
import type { KvDatabase, KvEnvironment } from '../../src/store/lmdb.ts';
import { createRuntimeWriter, type RuntimeWriter } from '../../src/store/runtime-writer.ts';
import type { RuntimeWalFile } from '../../src/store/runtime-wal.ts';

function writerCountingCheckpoints(options: { licenseesInMemoryMax?: number } = {}): { writer: RuntimeWriter; checkpoints: () => number; stored: Map<unknown, unknown> } {
  let checkpoints = 0;
  const stored = new Map<unknown, unknown>();
  const db = { get: (key: unknown) => stored.get(key), putInBatch: (key: unknown, value: unknown) => void stored.set(key, value) } as unknown as KvDatabase<never>;
  const env = {
    commitBatchDurable: async (write: () => void) => {
      checkpoints += 1;
      write();
    },
  } as unknown as KvEnvironment;
  const wal = { path: 'wal', write: async () => undefined, voidRecordAt: async () => undefined } as unknown as RuntimeWalFile;
  const writer = createRuntimeWriter({
    env,
    runtimeDb: db,
    journalDb: db,
    metaDb: db,
    wal,
    databaseId: 'test',
    walOffset: 0,
    rewindAtBytes: Number.MAX_SAFE_INTEGER,
    keyOf: (licenseeNumber) => `runtime:${licenseeNumber}`,
    readJournalHead: () => ({ seq: 0, hash: '' }),
    journalGroupRecord: (prevHash, entries) => ({ hash: `${prevHash}+${entries.length}`, record: JSON.stringify(entries) }),
    wrapWriteError: (cause) => cause as Error,
    checkpointEveryGroups: 2,
    // No checkpoint when the writes pause: only the ones under load are counted.
    checkpointQuietMs: 60_000,
    ...options,
  });
  return { writer, checkpoints: () => checkpoints, stored };
}

const checkOut = (sessionId: string): RuntimeEvent => ({ type: 'sessionCheckedOut', moduleNumber: 'M', sessionId, checkedOutMs: 0, expiresMs: 1e15 });
const book: RuntimeEvent = { type: 'quantityUsed', licenseNumber: 'X', quantity: 1 };

/** Checkpoints made while `groups` single-commit groups change `licensee`, after `sessions` sessions were opened for it. */
async function checkpointsOver(sessions: number, groups: number): Promise<number> {
  const { writer, checkpoints } = writerCountingCheckpoints();
  await writer.commit('L', 0, () => ({ events: Array.from({ length: sessions }, (_, i) => checkOut(`s${i}`)), result: null }));
  // Its checkpoint, with the sessions in it: from here the interval follows their number.
  await writer.settled();
  const before = checkpoints();
  for (let i = 0; i < groups; i++) await writer.commit('L', i, () => ({ events: [book], result: null }));
  const made = checkpoints() - before;
  await writer.drained();
  writer.close();
  return made;
}

test('a checkpoint every checkpointEveryGroups groups, one group later per 256 sessions it holds', async () => {
  expect(await checkpointsOver(0, 48)).toBe(24);
  expect(await checkpointsOver(256 * 2, 48)).toBe(24);
  expect(await checkpointsOver(256 * 4, 48)).toBe(12);
  expect(await checkpointsOver(256 * 12, 48)).toBe(4);
});

test('whoever waits for LMDB gets a checkpoint at once, however large the states', async () => {
  const { writer, checkpoints, stored } = writerCountingCheckpoints();
  await writer.commit('L', 0, () => ({ events: Array.from({ length: 256 * 12 }, (_, i) => checkOut(`s${i}`)), result: null }));
  await writer.settled();
  await writer.commit('L', 1, () => ({ events: [book], result: null }));
  const before = checkpoints();
  await writer.settled();
  expect(checkpoints()).toBe(before + 1);
  expect((stored.get('runtime:L') as { state: { usedQuantity: Record<string, number> } }).state.usedQuantity['X']).toBe(1);
  await writer.drained();
  writer.close();
});

test('past licenseesInMemoryMax, the earliest loaded tenth of the licensees leaves the memory, not all', async () => {
  const { writer } = writerCountingCheckpoints({ licenseesInMemoryMax: 20 });
  const licensees = Array.from({ length: 20 }, (_, i) => `L${i}`);
  // A revision is kept while the licensee stays in memory; a reload makes a new one.
  const revisions = new Map(licensees.map((licensee) => [licensee, writer.revision(licensee)]));
  // L0 has a change not yet in LMDB (checkpoints wait for 60 s of quiet): it must stay.
  await writer.commit('L0', 0, () => ({ events: [book], result: null }));
  revisions.set('L0', writer.revision('L0'));
  writer.revision('L20');
  // The ones kept first (asking for a dropped one loads it, and may drop others).
  const kept = licensees.filter((licensee) => !['L1', 'L2'].includes(licensee));
  expect(kept.filter((licensee) => writer.revision(licensee) !== revisions.get(licensee))).toEqual([]);
  expect(writer.revision('L1')).not.toBe(revisions.get('L1')!);
  expect(writer.revision('L2')).not.toBe(revisions.get('L2')!);
  await writer.drained();
  writer.close();
});
