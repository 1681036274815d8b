/**
 * Entry point of the transfer-file reader thread; all the code is in
 * read-batches.ts. A separate file so that a `bun build --compile`
 * executable can start the worker without re-running the main program (list
 * this file as an additional entry point of the build).
 */
import { workerData } from 'node:worker_threads';
import { serveReadWorker } from './read-batches.ts';

serveReadWorker(workerData);
