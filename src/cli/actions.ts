/**
 * The actions the CLI offers. Each is loaded lazily so that `--help` and
 * actions that need no database or card load neither native module.
 * An action appears here only once it is complete.
 */
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/log.ts';
import type { CliOptions } from './options.ts';

export interface CliIo {
  /** Output meant for scripts (summaries). */
  stdout(text: string): void;
  /** Human diagnostics. */
  stderr(text: string): void;
  /** True when stderr is a terminal (progress bars are drawn only then). */
  isTTY: boolean;
  env: Record<string, string | undefined>;
}

export interface ActionContext {
  options: CliOptions;
  io: CliIo;
  log: Logger;
  /** Working directory: `database/` lives here. */
  cwd: string;
  clock: Clock;
  /** Aborted on SIGINT/SIGTERM (servers drain and stop). */
  signal: AbortSignal;
}

export interface ActionDef {
  name: string;
  summary: string;
  /** Returns the exit code; throws CliError for expected failures. */
  run(context: ActionContext): Promise<number>;
}

/**
 * `drainsOnSignal`: the action watches `signal` and stops cleanly on SIGINT/SIGTERM (servers
 * drain, the export stops between calls). The others keep the signals' default and end at once:
 * an import runs synchronously, so a handler could run only after it had committed; ended at
 * once, nothing of it is in effect (its staged writes are dropped by the next import, as after
 * kill -9), which is what Ctrl-C or `timeout` means.
 *
 * `runsInChild`: the action reads much of the database and runs in a child process, so that
 * damage that makes LMDB end the process is reported as damage (crash-guard.ts). The servers
 * do not: they stay the process a service manager started and signals.
 */
export const ACTIONS: Record<string, { summary: string; drainsOnSignal?: true; runsInChild?: true; load: () => Promise<ActionDef> }> = {
  'export-assets': {
    summary: 'export licensees and their assets from NetLicensing into transfer files (needs network)',
    drainsOnSignal: true,
    load: async () => (await import('./actions/export-assets.ts')).exportAssetsAction,
  },
  'import-assets': {
    summary: 'import assets into the local database from the transfer files created with export-assets',
    runsInChild: true,
    load: async () => (await import('./actions/import-assets.ts')).importAssetsAction,
  },
  'run-agent': {
    summary: 'run as a caching proxy to NetLicensing that answers from local state while it is unreachable',
    drainsOnSignal: true,
    load: async () => (await import('./actions/run-agent.ts')).runAgentAction,
  },
  'run-agent-offline': {
    summary: 'run in offline mode: serve validate and the read calls from the local database',
    drainsOnSignal: true,
    load: async () => (await import('./actions/run-agent-offline.ts')).runAgentOfflineAction,
  },
  'verify-database': {
    summary: 'read every record, check the definitions, the journal hash chain and every counter against its replay',
    runsInChild: true,
    load: async () => (await import('./actions/verify-database.ts')).verifyDatabaseAction,
  },
  status: {
    summary: 'print the state of the database: last import, seats, quantities, journal (works while the agent runs)',
    runsInChild: true,
    load: async () => (await import('./actions/status.ts')).statusAction,
  },
  'compact-journal': {
    summary: 'fold journal entries older than --keep-days into its base: bounds the database and every replay (agent stopped)',
    runsInChild: true,
    load: async () => (await import('./actions/compact-journal.ts')).compactJournalAction,
  },
  backup: {
    summary: 'copy the database consistently while the agent runs (to --output/database)',
    runsInChild: true,
    load: async () => (await import('./actions/backup.ts')).backupAction,
  },
};
