/** Shared test helpers: temporary directories that are removed when the tests end. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created: string[] = [];

/**
 * Removes every directory tempDir made so far. `bun test` runs it after the last test file
 * (tests/setup.ts, preloaded by bunfig.toml): it fires no 'exit' event (Bun 1.4.5, checked), and
 * relying on one left ~400 directories of ~8 MiB (a store's journal file) per run in /tmp.
 * A process outside `bun test` that uses these helpers (scripts/bench-card.ts, through the pcsc
 * testbed's run directory) still removes its directories on exit.
 */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}
process.on('exit', removeTempDirs);

/** Has `dir` (made elsewhere) removed with the temporary directories. */
export function removeWhenTestsEnd(dir: string): void {
  created.push(dir);
}

export function tempDir(prefix = 'nla-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  removeWhenTestsEnd(dir);
  return dir;
}

/**
 * Copies of the reference fixtures from ../shared/fixtures (real and official
 * NetLicensing responses; origins in tests/fixtures/shared/fixtures/SOURCES.md),
 * kept in the repository so tests do not depend on where shared/ lies.
 */
export const SHARED_FIXTURES = join(import.meta.dir, 'fixtures', 'shared', 'fixtures');

/** A CliIo that records what runCli writes, for assertions on stdout/stderr. */
export interface CapturedIo {
  out: string;
  err: string;
  stdout(text: string): void;
  stderr(text: string): void;
  isTTY: boolean;
  env: Record<string, string | undefined>;
}

export function captureIo(options: { isTTY?: boolean; env?: Record<string, string> } = {}): CapturedIo {
  const io: CapturedIo = {
    out: '',
    err: '',
    stdout(text) {
      io.out += text;
    },
    stderr(text) {
      io.err += text;
    },
    isTTY: options.isTTY ?? false,
    env: options.env ?? {},
  };
  return io;
}

/** mulberry32: a small seeded PRNG, so that a failing randomised test can be replayed with its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The error a write to a full disk fails with (for the stores' failWrites / failCheckpoints test hooks). */
export function diskFullError(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
}

/** The error a write fails with when the device reports an I/O error (for the stores' write-failure test hooks). */
export function ioError(): Error {
  return Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
}

/** A raw TCP connection to 127.0.0.1:`port`, for requests fetch cannot make (half-sent bodies, trickling). */
export interface RawConnection {
  socket: Bun.Socket<undefined>;
  /** Everything the server sent so far. */
  received(): string;
  /** Whether the server (or the test) closed the connection. */
  closed(): boolean;
  /** Resolves once the connection is closed. */
  whenClosed: Promise<void>;
}

export async function connectRaw(port: number): Promise<RawConnection> {
  let received = '';
  let closed = false;
  const { promise: whenClosed, resolve } = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: '127.0.0.1',
    port,
    socket: {
      data: (_socket, bytes) => void (received += new TextDecoder().decode(bytes)),
      close: () => {
        closed = true;
        resolve();
      },
    },
  });
  return { socket, received: () => received, closed: () => closed, whenClosed };
}
