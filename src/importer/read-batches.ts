/**
 * Reads the transfer files of an import as a sequence of item batches
 * (`batchBytes` of input each), either on the calling thread or, for large
 * imports, on a worker thread, so that parsing (saxes, the digest, the
 * structure checks) runs on one core while the importer checks and writes
 * the previous batch on another. The batches are the same either way: the
 * worker runs `readBatchesInline` and posts each batch: its entity items as
 * one string of tokens (transfer-file.ts, ITEM_START), which is quick to
 * copy between threads.
 *
 * Memory stays bounded: the worker waits while MAX_IN_FLIGHT batches are
 * posted and not yet taken. The calling thread stays synchronous (the
 * importer's transactions are): it waits for the next batch with
 * Atomics.wait and takes it with receiveMessageOnPort.
 *
 * Errors keep their order: a batch holds the items read before a bad spot,
 * and the TransferInputError about that spot follows it, so the importer
 * reports an earlier item's error first (as when reading inline).
 */
import { existsSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { TransferInputError } from './errors.ts';
import { openTransferFile } from './transfer-file.ts';

export interface ReadFile {
  path: string;
  /** How messages name the file. */
  display: string;
}

export interface ReadBatch {
  /** Index of the file in the list given. */
  file: number;
  /**
   * The file's TransferHeader, in the file's first batch: where it is and the
   * hash of its content (the item itself can be large: file 1 lists every
   * licensee; the importer has it from planning and compares the hash).
   */
  header?: { line: number; column: number; contentHash: string };
  /** The entity items as one string of tokens (decode with forEachTokenItem). */
  tokens: string;
  /** Bytes of this file read so far. */
  bytesRead: number;
}

export interface ReadBatchesOptions {
  /** Input bytes per batch (a batch ends at the chunk that reaches it, and at the end of each file). */
  batchBytes: number;
  chunkBytes?: number;
  /**
   * Bytes of the current file read so far: after each chunk when reading inline; on a worker,
   * as each batch is taken (its `bytesRead`).
   */
  onChunk?: (file: number, bytesRead: number) => void;
}

/**
 * Reads the files in order on this thread and hands over their items in
 * batches. A file's last batch is handed over after its digest is verified.
 */
export function readBatchesInline(files: readonly ReadFile[], options: ReadBatchesOptions, consume: (batch: ReadBatch) => void): void {
  files.forEach((file, index) => {
    let header: ReadBatch['header'];
    let batchFrom = 0;
    const reader = openTransferFile(
      file.path,
      file.display,
      { header: (item, contentHash) => void (header = { line: item.line, column: item.column, contentHash }) },
      options.chunkBytes === undefined ? {} : { chunkBytes: options.chunkBytes },
    );
    const handOver = () => {
      const batch: ReadBatch = { file: index, tokens: reader.takeEntityTokens(), bytesRead: reader.bytesRead() };
      if (header !== undefined) batch.header = header;
      header = undefined;
      batchFrom = batch.bytesRead;
      consume(batch);
    };
    try {
      while (reader.step()) {
        options.onChunk?.(index, reader.bytesRead());
        if (reader.bytesRead() - batchFrom >= options.batchBytes) handOver();
      }
      reader.result();
    } catch (error) {
      // The items read before a malformed spot come first: their own errors are reported first.
      if (error instanceof TransferInputError) handOver();
      throw error;
    } finally {
      reader.close();
    }
    handOver();
  });
}

/** Slots of the shared state between the importing thread and the reader thread. */
const PRODUCED = 0;
const CONSUMED = 1;
const CANCELLED = 2;
/** Set once the job (files and options) is posted: the thread waits for it from its start. */
const JOB_POSTED = 3;
const STATE_SLOTS = 4;
/** Batches posted and not yet taken, at most: bounds the memory the reader can run ahead with. */
const MAX_IN_FLIGHT = 3;
/**
 * The worker says it runs within this time, or the files are read inline.
 * The importing thread cannot tell sooner that a worker died while loading:
 * a worker's 'error' and 'exit' events arrive on this thread's event loop,
 * which does not run while it waits in Atomics.wait (nor does anything else
 * about the worker change that it could look at). A death it has seen (the
 * event loop ran between startReadThread and reading) is seen at once.
 */
const START_TIMEOUT_MS = 10_000;
/**
 * The importer allocates several times the file size in short-lived strings.
 * JavaScriptCore sizes its heap by the allocation rate and collects lazily,
 * so without help the heap (and the process's memory) drifts upwards with
 * the size of the export; a collection every few dozen MiB keeps it flat
 * (see the peak RSS per size that `scripts/bench-import.ts` prints). Both
 * threads collect this often: the reader thread here, the importing one in
 * import-transfer.ts.
 */
export const COLLECT_EVERY_BYTES = 32 * 1024 * 1024;
/**
 * No batch for this long: the reader thread is taken to be dead. Only a thread
 * ended from outside can get here (serveReadWorker posts every error it
 * meets), and, as at the start, this thread cannot see its end while waiting.
 */
const STALL_TIMEOUT_MS = 300_000;

interface ReadWorkerData {
  state: SharedArrayBuffer;
  port: MessagePort;
}

/** What the reader thread reads: posted when the import starts reading (see startReadThread). */
interface ReadJob {
  files: ReadFile[];
  options: Omit<ReadBatchesOptions, 'onChunk'>;
}

type WorkerMessage =
  | { ready: true }
  | { done: true }
  | { batch: ReadBatch }
  | { inputError: { file: string; line: number; column: number; reason: string } }
  | { failure: string };

class Cancelled extends Error {}

/** The worker side (entry: read-worker.ts). */
export function serveReadWorker(data: ReadWorkerData): void {
  const state = new Int32Array(data.state);
  const post = (message: WorkerMessage) => {
    for (;;) {
      if (Atomics.load(state, CANCELLED) !== 0) throw new Cancelled();
      const consumed = Atomics.load(state, CONSUMED);
      if (Atomics.load(state, PRODUCED) - consumed < MAX_IN_FLIGHT) break;
      Atomics.wait(state, CONSUMED, consumed, 1000);
    }
    data.port.postMessage(message);
    Atomics.add(state, PRODUCED, 1);
    Atomics.notify(state, PRODUCED);
  };
  // This thread's heap grows with the allocation rate unless collected now and then (as the importer's).
  let total = 0;
  let collectAt = COLLECT_EVERY_BYTES;
  let lastFile = 0;
  let lastBytes = 0;
  const onChunk = (file: number, bytesRead: number) => {
    if (file !== lastFile) [lastFile, lastBytes] = [file, 0];
    total += bytesRead - lastBytes;
    lastBytes = bytesRead;
    if (total >= collectAt) {
      collectAt = total + COLLECT_EVERY_BYTES;
      Bun.gc(true);
    }
  };
  try {
    // Started ahead of the job (startReadThread): wait for it, or for a cancellation.
    while (Atomics.load(state, JOB_POSTED) === 0) {
      if (Atomics.load(state, CANCELLED) !== 0) throw new Cancelled();
      Atomics.wait(state, JOB_POSTED, 0, 1000);
    }
    const job = receiveMessageOnPort(data.port)?.message as ReadJob | undefined;
    if (job === undefined) throw new Error('the reader thread was told to start without a job');
    post({ ready: true });
    readBatchesInline(job.files, { ...job.options, onChunk }, (batch) => post({ batch }));
    post({ done: true });
  } catch (error) {
    if (error instanceof Cancelled) return;
    try {
      post(
        error instanceof TransferInputError
          ? { inputError: { file: error.file, line: error.line, column: error.column, reason: error.reason } }
          : { failure: (error as Error)?.message ?? String(error) },
      );
    } catch {
      // cancelled meanwhile
    }
  } finally {
    data.port.close();
  }
}

/**
 * Where the worker entry is: next to this file, or, in a `bun build
 * --compile` executable, at its place under the entry points' common root,
 * src/ (embedded as .js; the build must list src/importer/read-worker.ts as
 * an entry point). Undefined when it is not there: the caller reads inline.
 */
function workerPath(): string | undefined {
  const candidates = import.meta.url.startsWith('file:///$bunfs/')
    ? ['/$bunfs/root/importer/read-worker.js', '/$bunfs/root/importer/read-worker.ts']
    : [fileURLToPath(new URL('./read-worker.ts', import.meta.url))];
  return candidates.find((path) => existsSync(path));
}

/**
 * A reader thread started before its job is known. Starting a worker and
 * loading the reader's code takes a while (15–32 ms measured here); started
 * right after planning, that overlaps opening the database. Hand it to
 * readBatchesInWorker, or `stop()` it if the import ends before reading.
 */
export interface ReadThread {
  stop(): void;
}

interface StartedReadThread extends ReadThread {
  worker: Worker;
  port: MessagePort;
  state: Int32Array;
  /** Why the thread can no longer read (stopped, failed to load, exited), once known here. */
  ended(): string | undefined;
}

/**
 * Starts a reader thread (undefined when none can be started: the caller then
 * reads inline). `entry` is the worker's entry file (tests give one that fails).
 */
export function startReadThread(entry: string | undefined = workerPath()): ReadThread | undefined {
  if (entry === undefined) return undefined;
  const shared = new SharedArrayBuffer(STATE_SLOTS * Int32Array.BYTES_PER_ELEMENT);
  const state = new Int32Array(shared);
  const { port1, port2 } = new MessageChannel();
  const data: ReadWorkerData = { state: shared, port: port2 };
  let worker: Worker;
  try {
    worker = new Worker(entry, { workerData: data, transferList: [port2] });
  } catch {
    port1.close();
    return undefined;
  }
  worker.unref();
  // A worker that fails to load emits 'error' here, which, unheard, would end the process (when
  // this thread's event loop runs before reading: an import bound to a card awaits the card first).
  // Heard, it makes the import read inline at once (see START_TIMEOUT_MS for when it is not heard).
  let ended: string | undefined;
  worker.on('error', (error: Error) => void (ended ??= `the reader thread failed: ${error.message}`));
  worker.on('exit', (code) => void (ended ??= `the reader thread exited (code ${code})`));
  let stopped = false;
  const thread: StartedReadThread = {
    worker,
    port: port1,
    state,
    ended: () => ended,
    stop() {
      if (stopped) return;
      stopped = true;
      ended ??= 'the reader thread was stopped';
      Atomics.store(state, CANCELLED, 1);
      Atomics.notify(state, CONSUMED);
      Atomics.notify(state, JOB_POSTED);
      port1.close();
      void worker.terminate();
    },
  };
  return thread;
}

/**
 * As readBatchesInline, with the reading on a worker thread: `thread` (from
 * startReadThread), or one started now. Stops the thread when done. Returns
 * false (having read nothing) when no worker could be started, it did not
 * come up, or it is known to have ended already; the caller then reads inline.
 */
export function readBatchesInWorker(
  files: readonly ReadFile[],
  options: ReadBatchesOptions,
  consume: (batch: ReadBatch) => void,
  thread: ReadThread | undefined = startReadThread(),
): boolean {
  if (thread === undefined) return false;
  const { port: port1, state, ended } = thread as StartedReadThread;
  if (ended() !== undefined) {
    thread.stop();
    return false;
  }
  const { onChunk: _onChunk, ...workerOptions } = options;
  const job: ReadJob = { files: [...files], options: workerOptions };
  port1.postMessage(job);
  Atomics.store(state, JOB_POSTED, 1);
  Atomics.notify(state, JOB_POSTED);
  const restorePriority = yieldToReader();
  let started = false;
  try {
    for (;;) {
      const produced = Atomics.load(state, PRODUCED);
      const received = receiveMessageOnPort(port1);
      if (received === undefined) {
        const waited = Atomics.wait(state, PRODUCED, produced, started ? STALL_TIMEOUT_MS : START_TIMEOUT_MS);
        if (waited === 'timed-out' && Atomics.load(state, PRODUCED) === produced) {
          if (!started) return false;
          throw new Error(`the transfer-file reader thread stopped (no data for ${STALL_TIMEOUT_MS / 1000} s)`);
        }
        continue;
      }
      Atomics.add(state, CONSUMED, 1);
      Atomics.notify(state, CONSUMED);
      const message = received.message as WorkerMessage;
      if ('ready' in message) {
        started = true;
      } else if ('batch' in message) {
        const batch = message.batch;
        options.onChunk?.(batch.file, batch.bytesRead);
        consume(batch);
      } else if ('done' in message) {
        return true;
      } else if ('inputError' in message) {
        const e = message.inputError;
        throw new TransferInputError(e.file, e.line, e.column, e.reason);
      } else {
        throw new Error(`reading the transfer files failed: ${message.failure}`);
      }
    }
  } finally {
    thread.stop();
    restorePriority();
  }
}

/** How much lower (in nice steps) the importing thread runs while the reader thread parses. */
const YIELD_NICE_STEPS = 10;

/**
 * While the reader thread parses, this thread (which checks and writes the
 * batches) yields to it: the reader is the critical path, and on a small
 * host the two share the cores with the runtime's compiler threads.
 * Measured on the 2-core machine, 10k licensees: 482–527 ms instead of
 * 550–597 ms (6 runs each). On Linux the nice value belongs to the thread
 * (setpriority(2)), so only this one is lowered. Returns the restore; raising
 * a priority again needs CAP_SYS_NICE (or RLIMIT_NICE), so without it the
 * thread stays lower for the rest of the process (import-assets ends after
 * the import).
 */
function yieldToReader(): () => void {
  let before: number;
  try {
    before = getPriority(0);
    setPriority(0, Math.min(19, before + YIELD_NICE_STEPS));
  } catch {
    return () => undefined;
  }
  return () => {
    try {
      setPriority(0, before);
    } catch {
      // Not permitted (see above): stays lower.
    }
  };
}
