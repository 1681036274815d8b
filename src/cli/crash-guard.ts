/**
 * The actions that read much of the database (status, verify-database, backup, import-assets)
 * run in a child process of this same program. LMDB has no page checksums, and some damage makes it end the
 * process instead of returning an error: an assertion ("mdb.c:…: Assertion … failed", SIGABRT) or
 * a read past the end of the file through its memory map (SIGBUS). In this process that shows as
 * the runtime's crash report ("Bun has crashed") and exit 134 or 135; from the child, the
 * operator reads that the database is damaged and what to do, and a script gets exit 5.
 */
import { constants } from 'node:os';
import { join } from 'node:path';
import { loadLibc, PR_SET_PDEATHSIG, SIGKILL } from '../platform/libc.ts';
import { damagedDatabaseAdvice } from '../store/errors.ts';
import type { CliIo } from './actions.ts';
import { EXIT } from './exit-codes.ts';
import { errorLines, type ChildRun } from './run.ts';

/** Set in the child's environment, to the started process's pid: the child runs the action itself. */
export const GUARDED_CHILD_ENV = 'NETLICENSING_AGENT_GUARDED_CHILD';

/** Where the kernel cannot end a guarded child with its parent (no libc): how often it looks itself. */
const PARENT_CHECK_MS = 200;

/**
 * In the child: ends it (SIGKILL, which every guarded action is safe against: an import leaves the
 * database as it was, a backup its previous copy) once the process that started it is gone. Only
 * SIGINT and SIGTERM are passed on; killed by anything else (`kill -9`, `timeout -s KILL`, a hang-up),
 * the started process left the child running on its own, and an import the caller saw fail
 * committed seconds later (found by the import review). The kernel does it (prctl PR_SET_PDEATHSIG):
 * a timer is not enough, as an import keeps timers from running for seconds at a time.
 */
export function endWithParent(parentPid: number): void {
  const libc = loadLibc();
  const byKernel = libc !== undefined && libc.prctl(PR_SET_PDEATHSIG, SIGKILL) === 0;
  const check = () => {
    if (process.ppid !== parentPid) process.kill(process.pid, 'SIGKILL');
  };
  // The parent may have ended before the kernel was asked.
  check();
  if (!byKernel) setInterval(check, PARENT_CHECK_MS).unref();
}

/** How a process ends when native code fails: LMDB's assertions, a read past the mapped file. */
const CRASH_SIGNALS: ReadonlySet<string> = new Set(['SIGABRT', 'SIGBUS', 'SIGSEGV', 'SIGILL', 'SIGFPE', 'SIGTRAP']);

/** The first line of the runtime's crash report (a row of '='). */
const CRASH_REPORT_START = /^={20,}\s*$/;

/** This program again: the compiled executable, or Bun with its runtime flags and the entry script. */
function selfCommand(argv: string[]): string[] {
  const compiled = Bun.main.startsWith('/$bunfs/');
  return compiled ? [process.execPath, ...argv] : [process.execPath, ...process.execArgv, Bun.main, ...argv];
}

/**
 * Runs this program with `argv` (for `action`) in a child (in `cwd`) and ends as it ends. Its
 * stdout is this process's; so is its stderr where that is a terminal (the import draws its
 * progress there; the runtime's crash report then stays, followed by what it means); otherwise
 * its stderr is passed on line by line, up to the runtime's crash report, which is replaced by
 * what the crash means. SIGINT and SIGTERM sent to this process are passed on.
 */
export async function runInGuardedChild(
  { action, argv, cwd, logJson }: ChildRun,
  io: CliIo,
  /** What runs in the child; tests give a program that crashes the way LMDB makes one crash. */
  command: string[] = selfCommand(argv),
): Promise<number> {
  const child = Bun.spawn(command, {
    cwd,
    env: { ...io.env, [GUARDED_CHILD_ENV]: String(process.pid) },
    stdin: 'inherit',
    stdout: 'inherit',
    stderr: io.isTTY ? 'inherit' : 'pipe',
  });
  const forward = (signal: NodeJS.Signals) => void child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const crashReport: string[] = [];
  try {
    const relay = (line: string) => {
      if (crashReport.length > 0 || CRASH_REPORT_START.test(line)) crashReport.push(line);
      else io.stderr(line);
    };
    const decoder = new TextDecoder();
    let pending = '';
    for await (const chunk of child.stderr ?? []) {
      pending += decoder.decode(chunk, { stream: true });
      for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
        relay(pending.slice(0, end + 1));
        pending = pending.slice(end + 1);
      }
    }
    pending += decoder.decode();
    if (pending !== '') relay(pending);
    await child.exited;
  } finally {
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
  }
  const code = child.signalCode;
  const signal = typeof code === 'number' ? (Object.entries(constants.signals).find(([, n]) => n === code)?.[0] ?? `signal ${code}`) : code;
  if (signal !== null && CRASH_SIGNALS.has(signal)) {
    const panic = crashReport.find((line) => line.startsWith('panic'))?.trim();
    const path = join(cwd, 'database');
    io.stderr(
      errorLines(
        `error: the database in ${path} is damaged: reading it ended the process (${signal}${panic ? `, ${panic}` : ''}): ` +
          damagedDatabaseAdvice(path, { verifying: action === 'verify-database' }),
        logJson,
      ),
    );
    return EXIT.store;
  }
  // Not a crash of ours to explain (a fault of the runtime itself): shown as it is.
  for (const line of crashReport) io.stderr(line);
  if (signal !== null) {
    // Ended by a signal (Ctrl-C, `timeout`): end by the same one, so that a calling shell or
    // script sees what it would have seen without the child (and a shell loop stops on Ctrl-C).
    // The handlers are off again: the signal's default disposition applies.
    process.kill(process.pid, signal as NodeJS.Signals);
    await Bun.sleep(1000);
    return 128 + (constants.signals[signal as keyof typeof constants.signals] ?? 0);
  }
  return child.exitCode ?? EXIT.internal;
}
