/**
 * A private PC/SC stack for card tests and the card benchmark: its own
 * pcscd (foreground, started and stopped by PID) with only the vpcd
 * virtual reader on a free port pair, and virtual OpenPGP cards inserted
 * into / pulled from its two slots.
 *
 * Isolation: pcscd 1.9.9 ignores PCSCLITE_CSOCK_NAME (only the client
 * library reads it) and always serves /run/pcscd/pcscd.comm. As root, the
 * testbed runs pcscd in its own mount namespace (`unshare --mount`) with a
 * temporary directory bind-mounted over /run/pcscd, so its socket appears
 * in that directory and a system pcscd, if any, is neither disturbed nor
 * used. Without unshare it runs pcscd plainly, but only when no other pcscd
 * owns /run/pcscd.
 *
 * One socket path per test process: libpcsclite reads PCSCLITE_CSOCK_NAME
 * once per process and keeps it, and all test files run in one process. So
 * every testbed of a process serves the same path (a directory named after
 * the process id), one after the other; the second file's testbed would
 * otherwise be unreachable.
 *
 * Nothing is installed here: missing pcscd / vsmartcard-vpcd / libpcsclite1
 * make `startPcscTestbed` throw with the apt-get line (CI installs them in
 * .ci/run), so card tests fail loudly rather than skip.
 */
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Subprocess } from 'bun';
import { openPcsc, type Pcsc } from '../../src/card/pcsc.ts';
import type { VirtualOpenPgpCard } from '../support/virtual-openpgp-card.ts';
import { removeWhenTestsEnd } from '../helpers.ts';

const PCSCD_CANDIDATES = ['/usr/sbin/pcscd', '/sbin/pcscd', '/usr/local/sbin/pcscd'];
const VPCD_DRIVER_CANDIDATES = [
  '/usr/lib/pcsc/drivers/serial/libifdvpcd.so',
  '/usr/lib/pcsc/drivers/serial/libifdvpcd.so.0.8',
  '/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so',
];
const LIBPCSCLITE_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/libpcsclite.so.1',
  '/usr/lib/aarch64-linux-gnu/libpcsclite.so.1',
  '/usr/lib/libpcsclite.so.1',
  '/usr/lib64/libpcsclite.so.1',
  '/usr/local/lib/libpcsclite.so.1',
];
const INSTALL_HINT = 'install them with: apt-get install pcscd vsmartcard-vpcd libpcsclite1 (.ci/run does this for CI)';

export interface PcscTestbed {
  /** pcscd socket: give it to openPcsc/PcscCard as `socketPath`. */
  readonly socketPath: string;
  /** Common part of the testbed's reader names (use as `readerFilter`). */
  readonly readerPrefix: string;
  /** Reader names of slot 0 and slot 1. */
  readonly readers: readonly [string, string];
  readonly pcscdPid: number;
  /** Whether pcscd runs in a private mount namespace (false: it owns /run/pcscd). */
  readonly isolated: boolean;
  /** A PC/SC client of the testbed (shared, for watching reader state). */
  readonly pcsc: Pcsc;
  /** Inserts `card` into `slot` and waits until pcscd reports it present. */
  insert(card: VirtualOpenPgpCard, slot?: 0 | 1): Promise<void>;
  /** Pulls `card` and waits until pcscd reports the slot empty. */
  remove(card: VirtualOpenPgpCard, slot?: 0 | 1): Promise<void>;
  /** The last lines pcscd printed (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

/** The run directory (socket, pid file) every testbed of this process uses; see the header. */
const PROCESS_RUN_DIR = join(tmpdir(), `nla-pcsc-run-${process.pid}`);
removeWhenTestsEnd(PROCESS_RUN_DIR);

function firstExisting(paths: string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

/** Two consecutive TCP ports nobody listens on (vpcd binds slot n to port+n on all interfaces). */
function freePortPair(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const servers: { stop(): void }[] = [];
    try {
      for (const p of [port, port + 1]) {
        servers.push(Bun.listen({ hostname: '0.0.0.0', port: p, socket: { data() {} } }));
      }
      return port;
    } catch {
      // taken: try another pair
    } finally {
      for (const s of servers) s.stop();
    }
  }
  throw new Error('no free TCP port pair for the vpcd reader');
}

function canUnshare(): boolean {
  if (process.getuid?.() !== 0) return false;
  const unshare = Bun.which('unshare');
  if (!unshare) return false;
  const probe = Bun.spawnSync([unshare, '--mount', '--propagation', 'private', '--', 'true']);
  return probe.exitCode === 0;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, log: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`testbed: timed out waiting for ${what}\npcscd log:\n${log()}`);
    await Bun.sleep(25);
  }
}

export async function startPcscTestbed(): Promise<PcscTestbed> {
  const pcscd = firstExisting(PCSCD_CANDIDATES) ?? Bun.which('pcscd') ?? undefined;
  const driver = firstExisting(VPCD_DRIVER_CANDIDATES);
  const library = firstExisting(LIBPCSCLITE_CANDIDATES);
  const missing = [
    pcscd ? undefined : 'pcscd (package pcscd)',
    driver ? undefined : 'the vpcd reader driver libifdvpcd.so (package vsmartcard-vpcd)',
    library ? undefined : 'libpcsclite.so.1 (package libpcsclite1)',
  ].filter((m): m is string => m !== undefined);
  if (missing.length > 0) {
    throw new Error(`card tests need a PC/SC stack; missing: ${missing.join(', ')}; ${INSTALL_HINT}`);
  }

  const dir = mkdtempSync(join(tmpdir(), 'nla-pcsc-'));
  const confDir = join(dir, 'reader.conf.d');
  const runDir = PROCESS_RUN_DIR;
  mkdirSync(confDir);
  mkdirSync(runDir, { recursive: true });
  // Left behind only by a pcscd that did not exit cleanly; a new pcscd refuses to start over them.
  for (const name of ['pcscd.comm', 'pcscd.pid']) rmSync(join(runDir, name), { force: true });
  const port = freePortPair();
  const friendly = `NLA Test vpcd ${port}`;
  writeFileSync(
    join(confDir, 'vpcd'),
    `FRIENDLYNAME "${friendly}"\nDEVICENAME   /dev/null:0x${port.toString(16)}\nLIBPATH      ${driver}\nCHANNELID    0x${port.toString(16)}\n`,
  );
  const logPath = join(dir, 'pcscd.log');
  const logFd = openSync(logPath, 'w');
  const readLog = () => {
    try {
      return readFileSync(logPath, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '(no log)';
    }
  };

  const isolated = canUnshare();
  let socketPath: string;
  let child: Subprocess;
  if (isolated) {
    if (!existsSync('/run/pcscd')) mkdirSync('/run/pcscd', { recursive: true });
    socketPath = join(runDir, 'pcscd.comm');
    child = Bun.spawn(
      [
        'unshare', '--mount', '--propagation', 'private', '--',
        '/bin/sh', '-c', 'mount --bind "$0" /run/pcscd && exec "$1" --foreground --config "$2"',
        runDir, pcscd!, confDir,
      ],
      { stdout: logFd, stderr: logFd, stdin: 'ignore' },
    );
  } else {
    if (existsSync('/run/pcscd/pcscd.comm')) {
      closeSync(logFd);
      rmSync(dir, { recursive: true, force: true });
      throw new Error(
        'card tests need their own pcscd, but another pcscd owns /run/pcscd and this process cannot use a private mount namespace ' +
          '(run the tests as root with util-linux unshare, or stop the system pcscd)',
      );
    }
    socketPath = '/run/pcscd/pcscd.comm';
    child = Bun.spawn([pcscd!, '--foreground', '--config', confDir], { stdout: logFd, stderr: logFd, stdin: 'ignore' });
  }
  closeSync(logFd);

  const stopChild = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await child.exited;
      clearTimeout(killer);
    }
  };

  let pcsc: Pcsc;
  try {
    await waitFor(
      'pcscd to start',
      () => {
        if (child.exitCode !== null) throw new Error(`testbed: pcscd exited with code ${child.exitCode}\n${readLog()}`);
        return existsSync(socketPath) ? true : undefined;
      },
      10_000,
      readLog,
    );
    pcsc = await waitFor('a PC/SC context', () => openPcsc({ socketPath }).catch(() => undefined), 10_000, readLog);
    await waitFor(
      'the vpcd readers',
      async () => ((await pcsc.listReaders()).filter((r) => r.startsWith(friendly)).length === 2 ? true : undefined),
      10_000,
      readLog,
    );
  } catch (error) {
    await stopChild();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const readers = [`${friendly} 00 00`, `${friendly} 00 01`] as const;
  const present = async (slot: 0 | 1) => (await pcsc.readerStatus([readers[slot]]))[0]?.present ?? false;

  return {
    socketPath,
    readerPrefix: friendly,
    readers,
    pcscdPid: child.pid,
    isolated,
    pcsc,
    async insert(card, slot = 0) {
      await card.insert(port + slot);
      await waitFor(`card in ${readers[slot]}`, async () => ((await present(slot)) ? true : undefined), 10_000, readLog);
    },
    async remove(card, slot = 0) {
      await card.remove();
      await waitFor(`empty ${readers[slot]}`, async () => ((await present(slot)) ? undefined : true), 10_000, readLog);
    },
    log: readLog,
    async stop() {
      await pcsc.close();
      await stopChild();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
