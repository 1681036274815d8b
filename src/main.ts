#!/usr/bin/env bun
import './platform/bundle-env.ts';
import { runCli, systemIo } from './cli/run.ts';

// Database, transfer files and backups hold licensing secrets: owner-only permissions.
process.umask(0o077);

const argv = Bun.argv.slice(2);

/**
 * Actions that do not watch for SIGINT/SIGTERM keep the default: the signal ends the process at
 * once (exit 130/143). An import runs synchronously, so a handler could run only after it had
 * committed; ended at once, nothing of it is in effect (its staged writes are dropped by the
 * next import, as after kill -9), which is what Ctrl-C or `timeout` means. The serving actions
 * and the export drain or stop cleanly on the first signal (below).
 */
const ENDED_BY_SIGNALS = new Set(['import-assets', 'backup', 'verify-database', 'status']);
const actionAt = argv.findIndex((arg) => arg === '--action' || arg.startsWith('--action='));
const action = actionAt === -1 ? undefined : argv[actionAt]!.startsWith('--action=') ? argv[actionAt]!.slice('--action='.length) : argv[actionAt + 1];

const controller = new AbortController();
for (const signal of action !== undefined && ENDED_BY_SIGNALS.has(action) ? [] : (['SIGINT', 'SIGTERM'] as const)) {
  process.on(signal, () => {
    if (!controller.signal.aborted) return controller.abort(signal);
    // A second signal: whoever sent it will not wait for the drain or the close (a client that
    // never finishes its request, a disk that hangs). Every acknowledged change is durable already
    // and every store write is a transaction, so leaving now is no worse than a crash.
    process.stderr.write(`${signal} again: exiting without finishing the shutdown\n`);
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}
// A reader that stops early (`verify-database | head`): the rest of the output has no one to go to.
// End quietly, with the status a shell gives a process its pipe closed (128 + SIGPIPE).
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(141);
  throw error;
});

process.exitCode = await runCli(argv, systemIo(), { signal: controller.signal });
