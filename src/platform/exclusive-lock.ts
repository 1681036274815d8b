/**
 * An exclusive advisory lock on a file (flock(2), platform/libc.ts): held
 * while the file descriptor is open, released by the kernel when the process
 * ends in any way, kill -9 included — so a crashed server never leaves a
 * stale lock behind, unlike a pid file.
 */
import { closeSync, openSync, readFileSync, writeSync, ftruncateSync } from 'node:fs';
import { libcLoadError, loadLibc, LOCK_EX, LOCK_NB } from './libc.ts';

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
export function acquireExclusiveLock(path: string, describe: string): HeldLock {
  const libc = loadLibc();
  if (!libc) throw new Error(`cannot lock ${path}: libc could not be loaded (${libcLoadError()})`);
  const fd = openSync(path, 'a+');
  if (libc.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
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

/**
 * Who holds the lock on `path`, without taking it for longer than the probe (and without writing
 * the file): the text its holder wrote, or undefined when nobody holds it (or there is no file).
 */
export function lockHolder(path: string): string | undefined {
  const libc = loadLibc();
  if (!libc) return undefined;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    if (libc.flock(fd, LOCK_EX | LOCK_NB) === 0) return undefined;
    return readFileSync(path, 'utf8').trim();
  } finally {
    // Closing releases the probe's lock if it got one.
    closeSync(fd);
  }
}
