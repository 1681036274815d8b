// Goal: a reader thread started ahead of the import (startImportReader, so that its start-up
// overlaps opening the database) is read with when the import reads on a worker, and is
// stopped on every other path: an import refused before reading, an inline import; a thread
// that failed to load is seen as such and does not take the process down.
// Method: real exports and a real store; the thread is a real one, or a stand-in that
// counts its stop() calls, or one whose entry file throws (fixtures/failing-worker.ts).
import { afterEach, expect, test } from 'bun:test';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { importTransferFiles, planImport, startImportReader, type ImportOptions } from '../../src/importer/import-transfer.ts';
import { readBatchesInWorker, startReadThread, type ReadThread } from '../../src/importer/read-batches.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { counts, header, smallExport } from './helpers.ts';

const stores: AssetStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

async function setUp(): Promise<{ store: AssetStore; input: string }> {
  const input = tempDir('nla-reader-in-');
  await writeTransferFiles(header(['L1', 'L2']), smallExport([{ number: 'L1', licenses: ['X1'] }, { number: 'L2', licenses: ['X2', 'X3'] }]), { directory: input });
  const store = openAssetStore(join(tempDir('nla-reader-db-'), 'database'), { create: true });
  stores.push(store);
  return { store, input };
}

function options(input: string, extra: Partial<ImportOptions> = {}): ImportOptions {
  return { directory: input, force: false, withoutCard: false, nowMs: Date.UTC(2026, 5, 1), ...extra };
}

function countingThread(): ReadThread & { stops: number } {
  const thread = {
    stops: 0,
    stop() {
      thread.stops++;
    },
  };
  return thread;
}

test('a thread started ahead is read with: the import reports the worker and stores everything', async () => {
  const { store, input } = await setUp();
  const plan = planImport({ directory: input });
  const reader = startImportReader(plan, 'worker');
  expect(reader).toBeDefined();
  const summary = importTransferFiles(store, options(input, { readThread: 'worker', startedReader: reader! }), plan);
  expect(summary.readThread).toBe('worker');
  expect(counts(store)).toMatchObject({ Licensee: 2, License: 3 });
  // Stopped when the reading ended; stopping again is harmless.
  expect(() => reader!.stop()).not.toThrow();
});

test('a small import starts no thread ahead (it reads inline)', async () => {
  const { input } = await setUp();
  expect(startImportReader(planImport({ directory: input }))).toBeUndefined();
});

test('an import refused before reading stops the thread started for it', async () => {
  const { store, input } = await setUp();
  store.importTransaction((tx) => tx.setMeta({ ...tx.meta(), cardSerial: 'CARD-1' }));
  const reader = countingThread();
  expect(() => importTransferFiles(store, options(input, { startedReader: reader }))).toThrow('the database is bound to smart card CARD-1');
  expect(reader.stops).toBe(1);
});

test('an import that reads inline stops the thread it was given', async () => {
  const { store, input } = await setUp();
  const reader = countingThread();
  const summary = importTransferFiles(store, options(input, { readThread: 'inline', startedReader: reader }));
  expect(summary.readThread).toBe('inline');
  expect(reader.stops).toBe(1);
});

test('a thread stopped before it was given a job ends without reading', async () => {
  const thread = startReadThread();
  expect(thread).toBeDefined();
  thread!.stop();
  thread!.stop();
  // A second thread still starts and reads: stopping one leaves no shared state behind.
  const { store, input } = await setUp();
  const summary = importTransferFiles(store, options(input, { readThread: 'worker', startedReader: startReadThread()! }));
  expect(summary.readThread).toBe('worker');
});

test('a thread that failed to load, seen before reading: read inline, and the process goes on', async () => {
  const { input } = await setUp();
  const thread = startReadThread(join(import.meta.dir, 'fixtures', 'failing-worker.ts'));
  expect(thread).toBeDefined();
  // The event loop runs (as while an import bound to a card opens the card): the failure arrives.
  // Unheard, its 'error' event would end this process here.
  await new Promise((ended) => (thread as unknown as { worker: Worker }).worker.on('exit', ended));
  const files = [{ path: join(input, '1_netlicensing-assets.xml'), display: '1_netlicensing-assets.xml' }];
  const batches: unknown[] = [];
  expect(readBatchesInWorker(files, { batchBytes: 1 << 20 }, (batch) => batches.push(batch), thread)).toBe(false);
  expect(batches).toEqual([]);
  expect(() => thread!.stop()).not.toThrow();
});

test('while the reader thread parses, the importing thread runs at a lower priority, and afterwards as before', async () => {
  const { store, input } = await setUp();
  const before = getPriority(0);
  const during: number[] = [];
  importTransferFiles(store, options(input, { readThread: 'worker', batchBytes: 1, onBatch: () => during.push(getPriority(0)) }));
  expect(during.length).toBeGreaterThan(0);
  for (const nice of during) expect(nice).toBe(Math.min(19, before + 10));
  // Raising it back needs privileges (CAP_SYS_NICE); without them it stays lower.
  expect(getPriority(0)).toBe(process.getuid?.() === 0 ? before : Math.min(19, before + 10));
});
