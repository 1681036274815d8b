/**
 * An exclusive advisory lock on a file (flock(2) through Bun FFI into libc):
 * held while the file descriptor is open, released by the kernel when the
 * process ends in any way, kill -9 included — so a crashed server never
 * leaves a stale lock behind, unlike a pid file.
 *
 * Why FFI: neither Bun nor node:fs offers flock, and a native addon for one
 * call would be a new runtime dependency. libc is on every host the agent
 * runs on (glibc `libc.so.6`; musl answers to `libc.so`).
 */
import { closeSync, openSync, readFileSync, writeSync, ftruncateSync } from 'node:fs';

const LOCK_EX = 2;
const LOCK_NB = 4;

type Flock = (fd: number, operation: number) => number;

let flockFunction: Flock | undefined;

async function loadFlock(): Promise<Flock> {
  if (flockFunction) return flockFunction;
  const { dlopen, FFIType } = await import('bun:ffi');
  let lastError: unknown;
  for (const name of ['libc.so.6', 'libc.so']) {
    try {
      const lib = dlopen(name, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
      flockFunction = (fd, operation) => lib.symbols.flock(fd, operation);
      return flockFunction;
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`cannot load libc for file locking: ${(lastError as Error)?.message ?? String(lastError)}`);
}

export interface HeldLock {
  release(): void;
}

export class LockHeldError extends Error {
  constructor(
    readonly path: string,
    /** What the holder wrote into the file (its pid and start time), if readable. */
    readonly holder: string,
  ) {
    super(`${path} is locked by another process${holder ? ` (${holder})` : ''}`);
    this.name = 'LockHeldError';
  }
}

/**
 * Takes the lock on `path` (created if missing) without waiting, and writes
 * `describe` into the file for whoever finds it taken. Throws LockHeldError
 * when another process holds it.
 */
export async function acquireExclusiveLock(path: string, describe: string): Promise<HeldLock> {
  const flock = await loadFlock();
  const fd = openSync(path, 'a+');
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    let holder = '';
    try {
      holder = readFileSync(path, 'utf8').trim();
    } catch {
      // The message is only less detailed.
    }
    throw new LockHeldError(path, holder);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${describe}\n`, 0);
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      // Closing the descriptor releases the lock; the file stays (removing it could race a new holder).
      closeSync(fd);
    },
  };
}
