/**
 * runCli(argv, io) → exit code. Never calls process.exit, so tests drive it
 * in-process and check the code and the captured output.
 */
import { parseArgs, type ArgsDef } from 'citty';
import packageJson from '../../package.json' with { type: 'json' };
import { systemClock, type Clock } from '../platform/clock.ts';
import { createLogger, type Logger } from '../platform/log.ts';
import { CardError } from '../card/types.ts';
import { damagedDatabaseAdvice, isDatabaseDamage, StoreError } from '../store/errors.ts';
import { ACTIONS, type CliIo } from './actions.ts';
import { CliError, EXIT } from './exit-codes.ts';
import { OPTION_DEFS, type CliOptions, type OptionName } from './options.ts';

declare const NLA_BUILD_COMMIT: string | undefined;

export function buildInfo(): { version: string; commit: string; bun: string } {
  const commit = typeof NLA_BUILD_COMMIT === 'string' ? NLA_BUILD_COMMIT : 'development';
  return { version: packageJson.version, commit, bun: Bun.version };
}

export function versionText(): string {
  const { version, commit, bun } = buildInfo();
  return `netlicensing-agent ${version} (build ${commit}, bun ${bun})`;
}

export function helpText(): string {
  const lines = [
    versionText(),
    '',
    'Usage:',
    '  netlicensing-agent --help',
    '  netlicensing-agent --version',
    '  netlicensing-agent --action=<action> [options]',
    '',
    'Actions:',
  ];
  const width = Math.max(...Object.keys(ACTIONS).map((a) => a.length));
  for (const [name, action] of Object.entries(ACTIONS)) lines.push(`  ${name.padEnd(width)}  ${action.summary}`);
  lines.push('', 'Options:');
  const rows = Object.entries(OPTION_DEFS).map(([name, def]) => {
    const alias = 'alias' in def ? `-${def.alias}, ` : '    ';
    const hint = def.type === 'string' ? `=<${'valueHint' in def ? def.valueHint : 'value'}>` : '';
    const dflt = 'default' in def ? ` (default: ${def.default})` : '';
    return [`  ${alias}--${name}${hint}`, `${def.description}${dflt}`] as const;
  });
  const left = Math.max(...rows.map(([l]) => l.length));
  for (const [l, r] of rows) lines.push(`${l.padEnd(left)}  ${r}`);
  lines.push('', 'Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input file, 4 conflict,');
  lines.push('            5 database, 6 smart card, 7 NetLicensing/upstream, 8 server start.');
  return `${lines.join('\n')}\n`;
}

/** Every spelling citty accepts and produces for an option (name, alias, kebab and camel case). */
function spellingsOf(name: string, def: (typeof OPTION_DEFS)[OptionName]): string[] {
  const spellings = [name, name.replace(/\./g, '-'), name.replace(/[.-](\w)/g, (_, c: string) => c.toUpperCase())];
  if ('alias' in def) spellings.push(def.alias);
  return spellings;
}

function knownKeys(): Set<string> {
  const keys = new Set<string>(['_']);
  for (const [name, def] of Object.entries(OPTION_DEFS)) for (const spelling of spellingsOf(name, def)) keys.add(spelling);
  return keys;
}

/**
 * citty reads `--flag=<anything>` as true, so `--allow-anonymous=no` would turn authentication
 * off: a boolean option's value is taken from the command line itself. It may have none, or be
 * `true` or `false`; anything else is refused.
 */
function checkFlagValues(argv: string[]): void {
  const flags = new Map<string, string>();
  for (const [name, def] of Object.entries(OPTION_DEFS)) {
    if (def.type === 'boolean') for (const spelling of spellingsOf(name, def)) flags.set(spelling, name);
  }
  for (const arg of argv) {
    const match = /^--?([^=]+)=([\s\S]*)$/.exec(arg);
    if (match === null) continue;
    const name = flags.get(match[1]!);
    if (name !== undefined && match[2] !== 'true' && match[2] !== 'false') {
      throw new CliError(`option --${name} takes no value (or =true, =false), got "${match[2]}"`, EXIT.usage);
    }
  }
}

/** Whether `argv` names the option in any of its spellings (parseArgs fills in defaults, so its result cannot tell). */
function given(argv: string[], name: OptionName): boolean {
  const spellings = new Set(spellingsOf(name, OPTION_DEFS[name]));
  return argv.some((arg) => {
    const match = /^--?([^=]+)/.exec(arg);
    return match !== null && spellings.has(match[1]!);
  });
}

/** Options whose value may be empty. */
const EMPTY_ALLOWED = new Set<OptionName>(['nlic.password', 'cache.password', 'cache.key-prefix']);

export function parseCliOptions(argv: string[]): CliOptions {
  checkFlagValues(argv);
  const raw = parseArgs(argv, OPTION_DEFS as unknown as ArgsDef) as Record<string, unknown> & { _: string[] };
  const known = knownKeys();
  const unknown = Object.keys(raw).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new CliError(
      `unknown option ${unknown.map((k) => (k.length === 1 ? `-${k}` : `--${k}`)).join(', ')} (see --help)`,
      EXIT.usage,
    );
  }
  if (raw._.length > 0) {
    throw new CliError(`unexpected argument "${raw._[0]}": options take the form --name=value (see --help)`, EXIT.usage);
  }
  const str = (name: OptionName): string | undefined => {
    const value = raw[name];
    if (value === undefined || value === false) return undefined;
    // An empty value is a mistake, never a choice: `--port=` would listen on a random port and
    // `--host=` on every interface. (A password may hold anything; an empty one is checked where used.)
    if (value === true || (value === '' && !EMPTY_ALLOWED.has(name))) throw new CliError(`option --${name} needs a value (--${name}=<value>)`, EXIT.usage);
    return String(value);
  };
  const flag = (name: OptionName): boolean => {
    const value = raw[name];
    if (value === undefined || value === false || value === 'false') return false;
    if (value === true || value === 'true') return true;
    throw new CliError(`option --${name} takes no value`, EXIT.usage);
  };
  const withDefault = (name: OptionName): string => str(name) ?? String((OPTION_DEFS[name] as { default: string }).default);
  const options: CliOptions = {
    help: flag('help'),
    version: flag('version'),
    coreBaseHost: withDefault('core.base.host'),
    port: withDefault('port'),
    host: withDefault('host'),
    output: withDefault('output'),
    input: withDefault('input'),
    force: flag('force'),
    withoutCard: flag('without-card'),
    cardSeal: withDefault('card.seal'),
    verbose: flag('verbose'),
    logJson: flag('log.json'),
    ttl: withDefault('ttl'),
    allowAnonymous: flag('allow-anonymous'),
    signingAlgorithm: withDefault('signing.algorithm'),
    tlsClientAuth: withDefault('tls.client-auth'),
    adminPort: withDefault('admin.port'),
    adminPortGiven: given(argv, 'admin.port'),
    adminHost: withDefault('admin.host'),
    cacheType: withDefault('cache.type'),
    cacheHost: withDefault('cache.host'),
    cachePort: withDefault('cache.port'),
    cacheDatabase: withDefault('cache.database'),
    cacheKeyPrefix: withDefault('cache.key-prefix'),
    cacheSsl: flag('cache.ssl'),
    upstreamTimeout: withDefault('upstream.timeout'),
    keepDays: withDefault('keep-days'),
  };
  const optional: [keyof CliOptions, OptionName][] = [
    ['action', 'action'],
    ['username', 'nlic.username'],
    ['password', 'nlic.password'],
    ['apiKey', 'nlic.apikey'],
    ['licensees', 'licensees'],
    ['serialNumber', 'serial-number'],
    ['cardPinFile', 'card.pin-file'],
    ['cardSealIntervalMs', 'card.seal-interval-ms'],
    ['signingKey', 'signing.key'],
    ['tlsCert', 'tls.cert'],
    ['tlsKey', 'tls.key'],
    ['tlsCa', 'tls.ca'],
    ['cachePassword', 'cache.password'],
  ];
  for (const [key, name] of optional) {
    const value = str(name);
    if (value !== undefined) (options as unknown as Record<string, string>)[key] = value;
  }
  return options;
}

/** An action to run in a child: its name and all arguments, in `cwd`; `logJson`: the final error line is JSON (--log.json). */
export interface ChildRun {
  action: string;
  argv: string[];
  cwd: string;
  logJson: boolean;
}

export interface RunCliOptions {
  cwd?: string;
  clock?: Clock;
  signal?: AbortSignal;
  /** Called for an action that drains on SIGINT/SIGTERM (actions.ts): installs the handlers, gives the signal. */
  watchSignals?: () => AbortSignal;
  /**
   * Runs an action that runs in a child (actions.ts, runsInChild) there, with these arguments and
   * working directory, and gives its exit code; absent, every action runs in this process.
   */
  runInChild?: (child: ChildRun) => Promise<number>;
  /** Tests pass a logger that writes into their buffer. */
  log?: Logger;
}

export function systemIo(): CliIo {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    isTTY: Boolean(process.stderr.isTTY),
    env: process.env,
  };
}

export async function runCli(argv: string[], io: CliIo, runOptions: RunCliOptions = {}): Promise<number> {
  let options: CliOptions;
  try {
    options = parseCliOptions(argv);
  } catch (error) {
    return reportError(error, io);
  }
  if (options.help || argv.length === 0) {
    io.stdout(helpText());
    return EXIT.ok;
  }
  if (options.version) {
    io.stdout(`${versionText()}\n`);
    return EXIT.ok;
  }
  if (options.action === undefined) {
    io.stderr('error: no action given: use --action=<action> (see --help)\n');
    return EXIT.usage;
  }
  const entry = ACTIONS[options.action];
  if (!entry) {
    io.stderr(
      `error: unknown action "${options.action}"; available: ${Object.keys(ACTIONS).join(', ')} (see --help)\n`,
    );
    return EXIT.usage;
  }
  const log =
    runOptions.log ??
    createLogger({
      verbose: options.verbose,
      json: options.logJson,
      stream: { write: (chunk: string) => (io.stderr(chunk), true) } as unknown as NodeJS.WritableStream,
    });
  try {
    const cwd = runOptions.cwd ?? workingDirectory();
    if (entry.runsInChild && runOptions.runInChild) return await runOptions.runInChild({ action: options.action, argv, cwd, logJson: options.logJson });
    const action = await entry.load();
    return await action.run({
      options,
      io,
      log,
      cwd,
      clock: runOptions.clock ?? systemClock,
      signal: runOptions.signal ?? (entry.drainsOnSignal ? runOptions.watchSignals?.() : undefined) ?? new AbortController().signal,
    });
  } catch (error) {
    return reportError(error, io, options.verbose, options.logJson);
  }
}

/** The working directory; one that was deleted under the process is the operator's to fix, not a bug. */
function workingDirectory(): string {
  try {
    return process.cwd();
  } catch (error) {
    throw new CliError(`the working directory no longer exists (${(error as Error).message}): run from the agent's directory`, EXIT.usage, { cause: error });
  }
}

/** The final error line: with --log.json a JSON object too, so that a log shipper gets every line. */
export function errorLines(message: string, json: boolean, detail?: string): string {
  if (json) return `${JSON.stringify({ time: new Date().toISOString(), level: 'error', message, ...(detail ? { detail } : {}) })}\n`;
  return `${message}\n${detail ? `${detail}\n` : ''}`;
}

function reportError(error: unknown, io: CliIo, verbose = false, json = false): number {
  const say = (prefix: string, message: string, detail?: string) => io.stderr(errorLines(`${prefix}${message}`, json, detail));
  if (error instanceof CliError) {
    say('error: ', error.message);
    return error.exitCode;
  }
  if (error instanceof StoreError) {
    say('error: ', error.message);
    return EXIT.store;
  }
  // LMDB read a damaged page after the database was opened (opening reports it as a StoreError).
  if (isDatabaseDamage(error)) {
    say('error: ', `the database is damaged (${(error as Error).message}): ${damagedDatabaseAdvice('database/')}`);
    return EXIT.store;
  }
  // No reader, no card, wrong card, PIN, rollback detected…: the message says what to do.
  if (error instanceof CardError) {
    say('error: smart card: ', error.message);
    return EXIT.card;
  }
  const err = error as Error;
  say('internal error: ', err?.message ?? String(error), verbose && err?.stack ? err.stack : '(run again with --verbose for details, and report it with that output)');
  return EXIT.internal;
}
