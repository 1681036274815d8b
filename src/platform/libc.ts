/**
 * The libc calls neither Bun nor node:fs offers, through Bun FFI — the one
 * place that loads libc: flock(2) for the serving agent's exclusive lock
 * (exclusive-lock.ts), madvise(2) for the import's release of mapped
 * database pages (store/lmdb.ts), setenv(3) for the PC/SC worker's pcscd
 * socket (card/pcsc.ts) and prctl(2) for a guarded child that must end with
 * its parent (cli/crash-guard.ts). FFI, because a native addon for four calls
 * would be a new runtime dependency. glibc is `libc.so.6`; musl answers to
 * `libc.so`. Where libc cannot be loaded, `loadLibc` returns undefined and
 * callers say what they do without it.
 */
import { dlopen, FFIType } from 'bun:ffi';

export interface Libc {
  flock(fd: number, operation: number): number;
  madvise(address: bigint, length: bigint, advice: number): number;
  /**
   * setenv(3): changes the C environment, which native libraries read with
   * getenv (pcsc-lite reads PCSCLITE_CSOCK_NAME there, not in process.env).
   */
  setenv(name: string, value: string, overwrite: number): number;
  /** prctl(2) with one argument (PR_SET_PDEATHSIG and its signal). */
  prctl(option: number, argument: number): number;
}

/** prctl option: the signal this process gets when its parent ends. */
export const PR_SET_PDEATHSIG = 1;
export const SIGKILL = 9;

export const LOCK_EX = 2;
export const LOCK_NB = 4;
/** MADV_DONTNEED (Linux): the pages of a shared file mapping are dropped from the mapping, not from the file. */
export const MADV_DONTNEED = 4;

let loaded: Libc | null | undefined;
let loadError = '';

export function loadLibc(): Libc | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  if (process.platform !== 'linux') {
    loadError = `not available on ${process.platform}`;
    return undefined;
  }
  for (const name of ['libc.so.6', 'libc.so']) {
    try {
      const lib = dlopen(name, {
        flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
        madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
        setenv: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
        prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
      });
      loaded = {
        flock: (fd, operation) => lib.symbols.flock(fd, operation) as number,
        madvise: (address, length, advice) => lib.symbols.madvise(address, length, advice) as number,
        setenv: (name, value, overwrite) => lib.symbols.setenv(cString(name), cString(value), overwrite) as number,
        prctl: (option, argument) => lib.symbols.prctl(option, BigInt(argument), 0n, 0n, 0n) as number,
      };
      return loaded;
    } catch (error) {
      loadError = (error as Error)?.message ?? String(error);
    }
  }
  return undefined;
}

/** A NUL-terminated UTF-8 copy of a string, for a `char *` argument. */
function cString(text: string): Buffer {
  return Buffer.from(`${text}\0`, 'utf8');
}

/** Why loadLibc returned undefined. */
export function libcLoadError(): string {
  return loadError;
}
