/**
 * Every command-line option, in one table: name, type, default, help text.
 * The names and defaults follow the original agent (seed manual); options
 * beyond it are marked as ours in the README.
 */
import type { ArgsDef } from 'citty';

export const DEFAULT_CLOUD_HOST = 'https://go.netlicensing.io';

export const OPTION_DEFS = {
  help: { type: 'boolean', alias: 'h', description: 'Print help screen and exit.' },
  version: { type: 'boolean', description: 'Print the version of the application and exit.' },
  action: { type: 'string', alias: 'a', description: 'Action to perform (see below).', valueHint: 'action' },
  'core.base.host': {
    type: 'string',
    default: DEFAULT_CLOUD_HOST,
    description: 'NetLicensing host (or another agent) including protocol and port. Used for export-assets.',
    valueHint: 'protocol://host[:port]',
  },
  'nlic.username': { type: 'string', alias: 'u', description: 'Vendor username at NetLicensing.' },
  'nlic.password': { type: 'string', alias: 'p', description: 'Vendor password at NetLicensing.' },
  'nlic.apikey': { type: 'string', description: 'API key instead of username/password (export-assets).' },
  port: { type: 'string', default: '8080', description: 'TCP port to listen on (run-agent-offline).' },
  host: { type: 'string', default: '0.0.0.0', description: 'Address to listen on (run-agent-offline).' },
  output: { type: 'string', alias: 'o', default: '.', description: 'Directory for export-assets output files.' },
  input: { type: 'string', alias: 'i', default: '.', description: 'Directory import-assets reads transfer files from.' },
  licensees: { type: 'string', alias: 'l', description: 'Comma-separated licensee numbers to export.' },
  force: { type: 'boolean', alias: 'f', description: 'Ignore conflicts on export-assets or import-assets.' },
  'serial-number': { type: 'string', description: 'Smart card serial number the export is bound to.' },
  'without-card': { type: 'boolean', description: "Don't use the smart card." },
  verbose: { type: 'boolean', description: 'Enable detailed log output.' },
  'log.json': { type: 'boolean', description: 'Write logs as one JSON object per line (for log shippers).' },
  ttl: {
    type: 'string',
    default: '600',
    description: 'Seconds a client may cache a validate response (the ttl attribute).',
  },
  'signing.key': {
    type: 'string',
    description: 'PEM private key (PKCS#8) that signs XML validate answers (XML-DSig, as the cloud).',
    valueHint: 'file',
  },
  'signing.algorithm': {
    type: 'string',
    default: 'rsa-sha1',
    description: 'Signature algorithm: rsa-sha1 (cloud default, PHP) or rsa-sha256 (Java on JDK 17+).',
  },
  'allow-anonymous': {
    type: 'boolean',
    description: 'Answer validate calls without credentials (off by default).',
  },
} as const satisfies ArgsDef;

export type OptionName = keyof typeof OPTION_DEFS;

/** Parsed options: string values, booleans for flags; absent options hold their default. */
export interface CliOptions {
  help: boolean;
  version: boolean;
  action?: string;
  coreBaseHost: string;
  username?: string;
  password?: string;
  apiKey?: string;
  port: string;
  host: string;
  output: string;
  input: string;
  licensees?: string;
  force: boolean;
  serialNumber?: string;
  withoutCard: boolean;
  verbose: boolean;
  logJson: boolean;
  ttl: string;
  allowAnonymous: boolean;
  signingKey?: string;
  signingAlgorithm: string;
}
