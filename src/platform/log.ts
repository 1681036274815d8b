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
