/**
 * Goal: under load, checkpoints come every `checkpointEveryGroups` groups, and further apart when
 * the states they copy and encode are large (runtime-writer.ts, checkpointInterval): one group
 * later per 256 sessions or node secrets the last checkpoint held. Nothing acknowledged waits for
 * that: whoever waits for LMDB still gets a checkpoint at once.
 * Method: the runtime writer over stand-ins for LMDB and the journal file that count checkpoints
 * and settle at once; one group per commit (each awaited before the next).
 */
import { expect, test } from 'bun:test';
import type { RuntimeEvent } from '../../src/core/runtime.ts';
import type { KvDatabase, KvEnvironment } from '../../src/store/lmdb.ts';
import { createRuntimeWriter, type RuntimeWriter } from '../../src/store/runtime-writer.ts';
import type { RuntimeWalFile } from '../../src/store/runtime-wal.ts';

function writerCountingCheckpoints(): { writer: RuntimeWriter; checkpoints: () => number; stored: Map<unknown, unknown> } {
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
