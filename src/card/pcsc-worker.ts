/**
 * Entry point of the PC/SC worker thread; all the code is in pcsc.ts. A
 * separate file so that a `bun build --compile` executable can start the
 * worker without re-running the main program (list this file as an
 * additional entry point of the build).
 */
import { servePcscWorker } from './pcsc.ts';

await servePcscWorker();
