#!/usr/bin/env bun
import './platform/bundle-env.ts';
import { endWithParent, GUARDED_CHILD_ENV, runInGuardedChild } from './cli/crash-guard.ts';
import { runCli, systemIo, type ChildRun } from './cli/run.ts';

// Database, transfer files and backups hold licensing secrets: owner-only permissions.
process.umask(0o077);

/** SIGINT/SIGTERM handlers, for the actions that drain on them (cli/actions.ts, drainsOnSignal). */
function watchSignals(): AbortSignal {
  const controller = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (!controller.signal.aborted) return controller.abort(signal);
      // A second signal: whoever sent it will not wait for the drain or the close (a client that
      // never finishes its request, a disk that hangs). Every acknowledged change is durable already
      // and every store write is a transaction, so leaving now is no worse than a crash.
      process.stderr.write(`${signal} again: exiting without finishing the shutdown\n`);
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    });
  }
  return controller.signal;
}

// A reader that stops early (`verify-database | head`): the rest of the output has no one to go to.
// End quietly, with the status a shell gives a process its pipe closed (128 + SIGPIPE).
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(141);
  throw error;
});

// The actions that read the whole database run in a child process (cli/crash-guard.ts); the child runs them itself,
// and ends with the process that started it.
const guardedBy = process.env[GUARDED_CHILD_ENV];
if (guardedBy && /^\d+$/.test(guardedBy)) endWithParent(Number(guardedBy));
const runInChild = guardedBy ? undefined : (child: ChildRun) => runInGuardedChild(child, systemIo());

process.exitCode = await runCli(Bun.argv.slice(2), systemIo(), { watchSignals, runInChild });
