/**
 * The only file that touches PC/SC: `libpcsclite.so.1` through `bun:ffi`.
 *
 * Why FFI and a worker (docs/smart-card.md has the measurements): the npm
 * bindings (`pcsclite`, `@pokusew/pcsclite`) are NAN/V8 addons that do not
 * load under Bun or crash it, and `pcsc-mini` would be a new native runtime
 * dependency for seven C calls. PC/SC calls block (SCardTransmit waits for
 * the card, tens to hundreds of ms), and bun:ffi calls are synchronous, so
 * every call runs on one dedicated worker thread; the main thread only
 * posts messages and awaits answers, and its event loop never waits on a card.
 *
 * This file holds both halves: `openPcsc` (the client, main thread) and
 * `servePcscWorker` (the FFI side), which the three-line entry
 * `pcsc-worker.ts` runs on the worker thread. (A worker started from this
 * file's own URL would, in a `bun build --compile` executable, re-run the
 * whole bundle, main program included; a separate entry point does not.)
 * It is loaded with a dynamic import only when a card is actually used, so
 * `--help` and `--without-card` runs never load it.
 *
 * Linux (pcsc-lite) ABI only: DWORD and LONG are 8 bytes on 64-bit Linux.
 */
import { parentPort, Worker } from 'node:worker_threads';
import { CardError, type CardErrorCode } from './types.ts';

// ---- PC/SC constants (pcsc-lite pcsclite.h) ----
const SCARD_SCOPE_SYSTEM = 2;
export const SHARE = { exclusive: 1, shared: 2 } as const;
const SCARD_PROTOCOL_T0 = 1;
const SCARD_PROTOCOL_T1 = 2;
export const DISPOSITION = { leave: 0, reset: 1, unpower: 2 } as const;
const SCARD_STATE_UNAWARE = 0;
export const STATE = {
  changed: 0x2,
  unknown: 0x4,
  unavailable: 0x8,
  empty: 0x10,
  present: 0x20,
  exclusive: 0x80,
  inUse: 0x100,
  mute: 0x200,
} as const;
const MAX_ATR_SIZE = 33;
/** sizeof(SCARD_READERSTATE) on 64-bit Linux: 5 × 8 bytes + 33 ATR bytes, padded to 8. */
const READERSTATE_SIZE = 80;
const MAX_RESPONSE = 65536 + 2;

/** PC/SC return codes the agent tells apart (SCARD_E_* / SCARD_W_*). */
export const RV = {
  SUCCESS: 0,
  CANCELLED: 0x80100002,
  INVALID_HANDLE: 0x80100003,
  UNKNOWN_READER: 0x80100009,
  TIMEOUT: 0x8010000a,
  SHARING_VIOLATION: 0x8010000b,
  NO_SMARTCARD: 0x8010000c,
  PROTO_MISMATCH: 0x8010000f,
  NOT_READY: 0x80100010,
  COMM_ERROR: 0x80100013,
  NOT_TRANSACTED: 0x80100016,
  READER_UNAVAILABLE: 0x80100017,
  NO_SERVICE: 0x8010001d,
  SERVICE_STOPPED: 0x8010001e,
  NO_READERS_AVAILABLE: 0x8010002e,
  UNSUPPORTED_CARD: 0x80100065,
  UNRESPONSIVE_CARD: 0x80100066,
  UNPOWERED_CARD: 0x80100067,
  RESET_CARD: 0x80100068,
  REMOVED_CARD: 0x80100069,
} as const;

const RV_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(RV).map(([name, value]) => [value, `SCARD_${name.startsWith('SUCCESS') ? 'S' : value >= 0x80100065 ? 'W' : 'E'}_${name}`]),
);

export function rvName(rv: number): string {
  return RV_NAMES[rv] ?? `0x${rv.toString(16).toUpperCase()}`;
}

/** Maps a PC/SC return code to the card layer's error. */
export function pcscError(fn: string, rv: number, reader?: string): CardError {
  const where = reader ? ` (reader "${reader}")` : '';
  const detail = `${fn} returned ${rvName(rv)}`;
  const make = (code: CardErrorCode, text: string) =>
    new CardError(code, `${text}${where} [${detail}]`, { details: { fn, rv } });
  switch (rv) {
    case RV.NO_SERVICE:
    case RV.SERVICE_STOPPED:
      return make(
        'no_service',
        'the PC/SC daemon pcscd is not running: start it (`systemctl start pcscd.socket`, or run `pcscd`)',
      );
    case RV.NO_READERS_AVAILABLE:
      return make('no_reader', 'no smart card reader is connected: plug in the reader or token');
    case RV.NO_SMARTCARD:
      return make('no_card', 'no smart card is inserted');
    case RV.REMOVED_CARD:
    case RV.RESET_CARD:
    case RV.UNPOWERED_CARD:
    case RV.READER_UNAVAILABLE:
    case RV.UNKNOWN_READER:
      return make('card_removed', 'the smart card was removed or reset while in use; insert it again');
    case RV.SHARING_VIOLATION:
      return make(
        'card_in_use',
        'another program holds the smart card (often gpg-agent\'s scdaemon: run `gpgconf --kill scdaemon`)',
      );
    case RV.UNRESPONSIVE_CARD:
    case RV.UNSUPPORTED_CARD:
    case RV.PROTO_MISMATCH:
      return make('card_failure', 'the smart card does not answer (inserted the wrong way round, or not a smart card?)');
    case RV.NOT_TRANSACTED:
    case RV.COMM_ERROR:
      // What a card pulled mid-command looks like before pcscd's poll notices (vpcd, CCID readers alike).
      if (fn === 'SCardTransmit') {
        return make('card_removed', 'the smart card stopped answering (removed, or its reader unplugged); insert it again');
      }
      return make('card_failure', 'PC/SC call failed');
    case RV.TIMEOUT:
      return make('timeout', 'the smart card did not answer in time');
    default:
      return make('card_failure', 'PC/SC call failed');
  }
}

export interface ReaderStatus {
  reader: string;
  /** SCARD_STATE_* bits (see STATE). */
  state: number;
  present: boolean;
  atr: Uint8Array;
}

export interface PcscConnection {
  readonly reader: string;
  transmit(apdu: Uint8Array): Promise<Uint8Array>;
  disconnect(disposition?: keyof typeof DISPOSITION): Promise<void>;
}

export interface Pcsc {
  listReaders(): Promise<string[]>;
  /** Current state of each reader (SCardGetStatusChange with timeout 0). */
  readerStatus(readers: string[]): Promise<ReaderStatus[]>;
  connect(reader: string, share?: keyof typeof SHARE): Promise<PcscConnection>;
  /** Releases the PC/SC context and ends the worker thread. */
  close(): Promise<void>;
  /** Time spent inside PC/SC calls on the worker, and call count (benchmarks). */
  stats(): { calls: number; busyMs: number };
}

export interface OpenPcscOptions {
  /** A call that takes longer fails with `timeout` and the worker is replaced (default 15 s). */
  callTimeoutMs?: number;
  /** Path of libpcsclite (default `libpcsclite.so.1`, found by the dynamic linker). */
  library?: string;
  /**
   * pcscd socket to use (pcsc-lite's PCSCLITE_CSOCK_NAME; default: that
   * variable from process.env, else /run/pcscd/pcscd.comm). Passed to the C
   * environment explicitly: assigning process.env at run time does not
   * reach getenv() in libpcsclite.
   */
  socketPath?: string;
  /** Worker entry (default: pcsc-worker.ts next to this file, or its place in a compiled executable). */
  workerUrl?: URL | string;
}

type Request =
  | { op: 'init'; library: string; socketPath?: string }
  | { op: 'listReaders' }
  | { op: 'status'; readers: string[] }
  | { op: 'connect'; reader: string; share: number }
  | { op: 'transmit'; handle: number; protocol: number; apdu: Uint8Array }
  | { op: 'disconnect'; handle: number; disposition: number }
  | { op: 'release' };

type Reply =
  | { id: number; ok: true; value: unknown; busyMs: number }
  | { id: number; ok: false; fn: string; rv: number; message?: string; busyMs: number };

/**
 * Where the worker entry is. In a `bun build --compile` executable all
 * modules are bundled into the main file (/$bunfs/root/<name>), so
 * import.meta.url no longer points into src/card; the extra entry point
 * src/card/pcsc-worker.ts is embedded relative to the entry points' common
 * root, src/ (build: `bun build --compile src/main.ts src/card/pcsc-worker.ts`).
 */
function defaultWorkerUrl(): URL | string {
  if (import.meta.url.startsWith('file:///$bunfs/')) return '/$bunfs/root/card/pcsc-worker.ts';
  return new URL('./pcsc-worker.ts', import.meta.url);
}

/** Starts the worker and establishes a PC/SC context. Throws CardError (pcsc_unavailable, no_service). */
export async function openPcsc(options: OpenPcscOptions = {}): Promise<Pcsc> {
  const timeoutMs = options.callTimeoutMs ?? 15_000;
  const library = options.library ?? 'libpcsclite.so.1';
  if (process.platform !== 'linux') {
    throw new CardError('pcsc_unavailable', `smart-card support is implemented for Linux (pcsc-lite); this is ${process.platform}: use --without-card`);
  }
  let worker: Worker | undefined;
  let nextId = 1;
  const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: unknown) => void; timer: Timer }>();
  let calls = 0;
  let busyMs = 0;

  const startWorker = async (): Promise<void> => {
    const w = new Worker(options.workerUrl ?? defaultWorkerUrl());
    // Not keeping the process alive by itself: a pending call's timeout timer does that.
    w.unref();
    w.on('message', (reply: Reply) => {
      const entry = pending.get(reply.id);
      if (!entry) return;
      pending.delete(reply.id);
      clearTimeout(entry.timer);
      calls += 1;
      busyMs += reply.busyMs;
      entry.resolve(reply);
    });
    w.on('error', (error: Error) =>
      failAll(
        new CardError(
          'pcsc_unavailable',
          `the PC/SC worker thread failed (${error.message}); a single-file build must list src/card/pcsc-worker.ts as an entry point`,
          { cause: error },
        ),
      ),
    );
    w.on('exit', () => {
      if (worker === w) worker = undefined;
      failAll(new CardError('card_failure', 'the PC/SC worker ended unexpectedly'));
    });
    worker = w;
    const socketPath = options.socketPath ?? process.env['PCSCLITE_CSOCK_NAME'];
    const reply = await call(socketPath === undefined ? { op: 'init', library } : { op: 'init', library, socketPath });
    if (!reply.ok) {
      await stopWorker();
      if (reply.fn === 'dlopen') {
        throw new CardError(
          'pcsc_unavailable',
          `cannot load ${library}: install the PC/SC library (Debian: apt-get install libpcsclite1 pcscd) or use --without-card (${reply.message ?? ''})`,
        );
      }
      throw pcscError(reply.fn, reply.rv);
    }
  };

  const failAll = (error: unknown) => {
    for (const [id, entry] of pending) {
      pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  };

  const stopWorker = async () => {
    const w = worker;
    worker = undefined;
    if (w) await w.terminate();
  };

  const call = (request: Request): Promise<Reply> =>
    new Promise<Reply>((resolve, reject) => {
      const w = worker;
      if (!w) {
        reject(new CardError('card_failure', 'the PC/SC connection is closed'));
        return;
      }
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new CardError('timeout', `the smart card or pcscd did not answer within ${timeoutMs} ms (${request.op}); the card connection was reset`));
        // A blocked FFI call cannot be interrupted: drop the thread, the next call starts a new one.
        void stopWorker();
      }, timeoutMs);
      pending.set(id, { resolve, reject, timer });
      w.postMessage({ id, ...request });
    });

  /** Runs `request`, restarting the worker first if a timeout killed it. */
  const run = async (request: Request): Promise<Reply> => {
    if (!worker) await startWorker();
    return call(request);
  };

  await startWorker();

  return {
    async listReaders() {
      const reply = await run({ op: 'listReaders' });
      if (!reply.ok) {
        if (reply.rv === RV.NO_READERS_AVAILABLE) return [];
        throw pcscError(reply.fn, reply.rv);
      }
      return reply.value as string[];
    },
    async readerStatus(readers) {
      if (readers.length === 0) return [];
      const reply = await run({ op: 'status', readers });
      if (!reply.ok) throw pcscError(reply.fn, reply.rv);
      return reply.value as ReaderStatus[];
    },
    async connect(reader, share = 'exclusive') {
      const reply = await run({ op: 'connect', reader, share: SHARE[share] });
      if (!reply.ok) throw pcscError(reply.fn, reply.rv, reader);
      const { handle, protocol } = reply.value as { handle: number; protocol: number };
      let open = true;
      return {
        reader,
        async transmit(apdu) {
          if (!open) throw new CardError('card_failure', 'the card connection is closed');
          const r = await run({ op: 'transmit', handle, protocol, apdu });
          if (!r.ok) throw pcscError(r.fn, r.rv, reader);
          return r.value as Uint8Array;
        },
        async disconnect(disposition = 'leave') {
          if (!open) return;
          open = false;
          if (!worker) return;
          await call({ op: 'disconnect', handle, disposition: DISPOSITION[disposition] }).catch(() => undefined);
        },
      };
    },
    async close() {
      if (worker) await call({ op: 'release' }).catch(() => undefined);
      await stopWorker();
    },
    stats: () => ({ calls, busyMs }),
  };
}

// ---------------------------------------------------------------------------
// Worker side: the blocking FFI calls.

/** Runs on the worker thread (started by pcsc-worker.ts): serves the client's calls with blocking FFI. */
export async function servePcscWorker(): Promise<void> {
  const { dlopen, ptr } = await import('bun:ffi');
  const { loadLibc, libcLoadError } = await import('../platform/libc.ts');
  const port = parentPort;
  if (!port) throw new Error('servePcscWorker must run on a worker thread');
  let lib: ReturnType<typeof load> | undefined;
  let context = 0;

  function load(path: string) {
    return dlopen(path, {
      SCardEstablishContext: { args: ['u64', 'ptr', 'ptr', 'ptr'], returns: 'i64' },
      SCardReleaseContext: { args: ['i64'], returns: 'i64' },
      SCardListReaders: { args: ['i64', 'ptr', 'ptr', 'ptr'], returns: 'i64' },
      SCardGetStatusChange: { args: ['i64', 'u64', 'ptr', 'u64'], returns: 'i64' },
      SCardConnect: { args: ['i64', 'ptr', 'u64', 'u64', 'ptr', 'ptr'], returns: 'i64' },
      SCardTransmit: { args: ['i64', 'ptr', 'ptr', 'u64', 'ptr', 'ptr', 'ptr'], returns: 'i64' },
      SCardDisconnect: { args: ['i64', 'u64'], returns: 'i64' },
    });
  }

  const cstr = (text: string) => Buffer.from(`${text}\0`, 'utf8');
  const rvOf = (value: number | bigint) => Number(BigInt.asUintN(32, BigInt(value)));

  const handlers: Record<string, (req: Request & Record<string, unknown>) => { fn: string; rv: number; value?: unknown }> = {
    init(req) {
      const { library, socketPath } = req as { library: string; socketPath?: string };
      if (socketPath !== undefined) {
        const libc = loadLibc();
        if (!libc) throw new Error(`cannot load libc to set PCSCLITE_CSOCK_NAME: ${libcLoadError()}`);
        libc.setenv('PCSCLITE_CSOCK_NAME', socketPath, 1);
      }
      lib = load(library);
      const out = new BigInt64Array(1);
      const rv = rvOf(lib.symbols.SCardEstablishContext(SCARD_SCOPE_SYSTEM, null, null, out));
      context = Number(out[0]);
      return { fn: 'SCardEstablishContext', rv };
    },
    listReaders() {
      const size = new BigUint64Array(1);
      let rv = rvOf(lib!.symbols.SCardListReaders(context, null, null, size));
      if (rv !== RV.SUCCESS) return { fn: 'SCardListReaders', rv };
      const buffer = Buffer.alloc(Number(size[0]));
      rv = rvOf(lib!.symbols.SCardListReaders(context, null, buffer, size));
      if (rv !== RV.SUCCESS) return { fn: 'SCardListReaders', rv };
      const names = buffer.subarray(0, Number(size[0])).toString('utf8').split('\0').filter((n) => n !== '');
      return { fn: 'SCardListReaders', rv, value: names };
    },
    status(req) {
      const readers = (req as { readers: string[] }).readers;
      const names = readers.map(cstr);
      const states = Buffer.alloc(READERSTATE_SIZE * readers.length);
      const view = new DataView(states.buffer, states.byteOffset, states.byteLength);
      names.forEach((name, i) => {
        view.setBigUint64(i * READERSTATE_SIZE, BigInt(ptr(name)), true);
        view.setBigUint64(i * READERSTATE_SIZE + 16, BigInt(SCARD_STATE_UNAWARE), true);
      });
      const rv = rvOf(lib!.symbols.SCardGetStatusChange(context, 0, states, readers.length));
      if (rv !== RV.SUCCESS && rv !== RV.TIMEOUT) return { fn: 'SCardGetStatusChange', rv };
      const value: ReaderStatus[] = readers.map((reader, i) => {
        const base = i * READERSTATE_SIZE;
        const state = Number(view.getBigUint64(base + 24, true));
        const atrLength = Math.min(Number(view.getBigUint64(base + 32, true)), MAX_ATR_SIZE);
        return { reader, state, present: (state & STATE.present) !== 0, atr: Uint8Array.from(states.subarray(base + 40, base + 40 + atrLength)) };
      });
      return { fn: 'SCardGetStatusChange', rv: RV.SUCCESS, value };
    },
    connect(req) {
      const { reader, share } = req as { reader: string; share: number };
      const handle = new BigInt64Array(1);
      const protocol = new BigUint64Array(1);
      const rv = rvOf(
        lib!.symbols.SCardConnect(context, cstr(reader), share, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, handle, protocol),
      );
      return { fn: 'SCardConnect', rv, value: { handle: Number(handle[0]), protocol: Number(protocol[0]) } };
    },
    transmit(req) {
      const { handle, protocol, apdu } = req as { handle: number; protocol: number; apdu: Uint8Array };
      const sendPci = new BigUint64Array([BigInt(protocol), 16n]);
      const response = Buffer.alloc(MAX_RESPONSE);
      const length = new BigUint64Array([BigInt(MAX_RESPONSE)]);
      const rv = rvOf(lib!.symbols.SCardTransmit(handle, sendPci, apdu, apdu.length, null, response, length));
      return { fn: 'SCardTransmit', rv, value: Uint8Array.from(response.subarray(0, Number(length[0]))) };
    },
    disconnect(req) {
      const { handle, disposition } = req as { handle: number; disposition: number };
      return { fn: 'SCardDisconnect', rv: rvOf(lib!.symbols.SCardDisconnect(handle, disposition)) };
    },
    release() {
      const rv = context ? rvOf(lib!.symbols.SCardReleaseContext(context)) : RV.SUCCESS;
      context = 0;
      return { fn: 'SCardReleaseContext', rv };
    },
  };

  port.on('message', (message: { id: number } & Request) => {
    const started = performance.now();
    try {
      const handler = handlers[message.op];
      if (!handler) throw new Error(`unknown PC/SC worker op ${message.op}`);
      const { fn, rv, value } = handler(message as Request & Record<string, unknown>);
      const busyMs = performance.now() - started;
      port.postMessage(rv === RV.SUCCESS ? { id: message.id, ok: true, value, busyMs } : { id: message.id, ok: false, fn, rv, busyMs });
    } catch (error) {
      const busyMs = performance.now() - started;
      port.postMessage({ id: message.id, ok: false, fn: message.op === 'init' ? 'dlopen' : message.op, rv: -1, message: (error as Error).message, busyMs });
    }
  });
}
