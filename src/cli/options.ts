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
  output: { type: 'string', alias: 'o', default: '.', description: 'Directory for export-assets output files; for backup, where the copy goes (<dir>/database).' },
  input: { type: 'string', alias: 'i', default: '.', description: 'Directory import-assets reads transfer files from.' },
  licensees: { type: 'string', alias: 'l', description: 'Comma-separated licensee numbers to export.' },
  force: { type: 'boolean', alias: 'f', description: 'Ignore conflicts on export-assets or import-assets.' },
  'serial-number': { type: 'string', description: 'Smart card serial number the export is bound to.' },
  'without-card': { type: 'boolean', description: "Don't use the smart card." },
  'card.pin-file': {
    type: 'string',
    description: "File whose first line is the smart card's user PIN (else the NLA_CARD_PIN environment variable).",
    valueHint: 'file',
  },
  'card.seal': {
    type: 'string',
    default: 'strict',
    description: 'Smart card: strict (a write is answered once a card checkpoint covers it) or relaxed (checkpoint every --card.seal-interval-ms).',
  },
  'card.seal-interval-ms': {
    type: 'string',
    description: 'Smart card: least ms between two checkpoints (strict, default 1000) or the checkpoint period (relaxed, default 60000).',
    valueHint: 'ms',
  },
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
  'tls.cert': { type: 'string', description: 'PEM certificate (chain): serve HTTPS instead of HTTP.', valueHint: 'file' },
  'tls.key': { type: 'string', description: 'PEM private key of --tls.cert.', valueHint: 'file' },
  'tls.ca': { type: 'string', description: 'PEM CA certificate(s) that client certificates must chain to.', valueHint: 'file' },
  'tls.client-auth': {
    type: 'string',
    default: 'none',
    description: 'Client certificates: require (verified against --tls.ca), optional (requested, not enforced) or none.',
  },
  'admin.port': {
    type: 'string',
    default: '8081',
    description: 'Port of the admin listener (/health, /ready, /metrics, /status); "off" disables it.',
  },
  'admin.host': { type: 'string', default: '127.0.0.1', description: 'Address of the admin listener (loopback by default).' },
  'cache.type': {
    type: 'string',
    default: 'local',
    description: 'run-agent validation cache: local (the agent database) or redis (shared by several agents).',
  },
  'cache.host': { type: 'string', default: 'localhost', description: 'Redis host (--cache.type=redis).' },
  'cache.port': { type: 'string', default: '6379', description: 'Redis port.' },
  'cache.password': { type: 'string', description: 'Redis password.' },
  'cache.database': { type: 'string', default: '0', description: 'Redis database number.' },
  'cache.key-prefix': { type: 'string', default: 'agent:validate:', description: 'Prefix of every Redis key the agent writes.' },
  'cache.ssl': { type: 'boolean', description: 'Connect to Redis over TLS.' },
  'keep-days': {
    type: 'string',
    default: '90',
    description: 'compact-journal: journal entries newer than this many days stay; older ones are folded into its base.',
    valueHint: 'days',
  },
  'upstream.timeout': {
    type: 'string',
    default: '5',
    description: 'run-agent: seconds to wait for NetLicensing (or the upstream agent) before answering from local state.',
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
  cardPinFile?: string;
  cardSeal: string;
  cardSealIntervalMs?: string;
  verbose: boolean;
  logJson: boolean;
  ttl: string;
  allowAnonymous: boolean;
  signingKey?: string;
  signingAlgorithm: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsClientAuth: string;
  adminPort: string;
  /** Whether --admin.port was given (run-agent goes on without its admin listener when the default port is taken). */
  adminPortGiven: boolean;
  adminHost: string;
  cacheType: string;
  cacheHost: string;
  cachePort: string;
  cachePassword?: string;
  cacheDatabase: string;
  cacheKeyPrefix: string;
  cacheSsl: boolean;
  upstreamTimeout: string;
  keepDays: string;
}
