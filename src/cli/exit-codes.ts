/**
 * Exit codes of the whole program. Documented in README.md ("Exit codes");
 * scripts depend on them, so never renumber.
 */
export const EXIT = {
  ok: 0,
  /** Unexpected failure (a bug): the message says what to report. */
  internal: 1,
  /** Bad command line: unknown action or option, missing or invalid value. */
  usage: 2,
  /** Bad input file: unreadable, malformed, truncated or altered transfer file. */
  input: 3,
  /** Conflict with stored or existing data, refused without --force. */
  conflict: 4,
  /** Database problem: missing, unknown schema version, disk full, I/O error. */
  store: 5,
  /** Smart card problem: no reader, no card, wrong card, rollback detected. */
  card: 6,
  /** The NetLicensing service (or upstream agent) refused or could not be reached. */
  remote: 7,
  /** The server could not start (port in use, TLS files unreadable). */
  server: 8,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one clear line on stderr and a given exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}
