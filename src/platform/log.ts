/**
 * The only file that imports `consola`. Diagnostics always go to stderr so
 * that stdout carries only what a script should read (summaries, JSON).
 */
import { createConsola, type ConsolaInstance } from 'consola';

export type Logger = Pick<ConsolaInstance, 'info' | 'warn' | 'error' | 'debug' | 'success' | 'start' | 'level'>;

export interface LoggerOptions {
  verbose?: boolean;
  /** Where log lines go; defaults to process.stderr. */
  stream?: NodeJS.WritableStream;
  /** One JSON object per line, for log shippers. */
  json?: boolean;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const logger = createConsola({
    level: options.verbose ? 4 : 3,
    stdout: stream as NodeJS.WriteStream,
    stderr: stream as NodeJS.WriteStream,
    ...(options.json
      ? {
          reporters: [
            {
              log: (entry) => {
                stream.write(
                  `${JSON.stringify({
                    time: entry.date.toISOString(),
                    level: entry.type,
                    message: entry.args.map((a) => (typeof a === 'string' ? a : String(a))).join(' '),
                  })}\n`,
                );
              },
            },
          ],
        }
      : {}),
  });
  return logger;
}

/** A logger that drops everything (tests that do not look at logs). */
export function silentLogger(): Logger {
  return createConsola({ level: -999 });
}

/**
 * Lets the same kind of line through once per `intervalMs` (per key), and says how many were
 * held back since: a fault that repeats every second (a full disk under load) must not fill the
 * log, and journald with it, while it lasts. `nowMs` is passed in for tests.
 */
export function logEvery(intervalMs: number): (key: string, nowMs: number) => { log: boolean; suppressed: number } {
  const last = new Map<string, { atMs: number; suppressed: number }>();
  return (key, nowMs) => {
    const seen = last.get(key);
    if (seen !== undefined && nowMs - seen.atMs < intervalMs) {
      seen.suppressed += 1;
      return { log: false, suppressed: 0 };
    }
    const suppressed = seen?.suppressed ?? 0;
    last.set(key, { atMs: nowMs, suppressed: 0 });
    return { log: true, suppressed };
  };
}
