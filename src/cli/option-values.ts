/**
 * Parsing and checking of option values shared by several actions: ports,
 * ttl, NetLicensing credentials, and the numeric environment overrides some
 * actions document. Every bad value is a CliError with EXIT.usage.
 */
import type { Credentials } from '../export/netlicensing-rest.ts';
import { CliError, EXIT } from './exit-codes.ts';
import type { CliOptions } from './options.ts';

/**
 * A whole number written in decimal digits only, or undefined: `Number` alone also reads "",
 * " 8080 ", "0x1F90" and "1e3", and an option written that way is more likely a mistake.
 */
export function parseWholeNumber(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

export function parsePort(text: string): number {
  const port = parseWholeNumber(text);
  if (port === undefined || port > 65535) {
    throw new CliError(`--port must be a number from 0 to 65535, got "${text}"`, EXIT.usage);
  }
  return port;
}

export function parseTtlMs(text: string): number {
  const seconds = parseWholeNumber(text);
  if (seconds === undefined || seconds < 1 || seconds > 30 * 86_400) {
    throw new CliError(`--ttl must be whole seconds from 1 to 2592000, got "${text}"`, EXIT.usage);
  }
  return seconds * 1000;
}

/** A whole-number environment override, `fallback` when unset. */
export function envInteger(env: Record<string, string | undefined>, name: string, fallback: number, min: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = parseWholeNumber(text);
  if (value === undefined || value < min) {
    throw new CliError(`environment variable ${name} must be a whole number ≥ ${min}, got "${text}"`, EXIT.usage);
  }
  return value;
}

/**
 * `--nlic.apikey`, or `--nlic.username` with `--nlic.password` (never both).
 * `missing` says why the action needs them, for the message when none are given.
 */
export function nlicCredentials(options: CliOptions, missing: string): Credentials {
  const hasBasic = options.username !== undefined || options.password !== undefined;
  if (options.apiKey !== undefined) {
    if (hasBasic) throw new CliError('give either --nlic.apikey or --nlic.username with --nlic.password, not both', EXIT.usage);
    if (options.apiKey === '') throw new CliError('--nlic.apikey is empty', EXIT.usage);
    return { kind: 'apiKey', apiKey: options.apiKey };
  }
  if (options.username === undefined || options.password === undefined) {
    throw new CliError(`${missing}: --nlic.username=<user> --nlic.password=<password> (or --nlic.apikey=<key>)`, EXIT.usage);
  }
  if (options.username === '') throw new CliError('--nlic.username is empty', EXIT.usage);
  return { kind: 'basic', username: options.username, password: options.password };
}
