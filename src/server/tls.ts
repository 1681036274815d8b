/**
 * Built-in TLS: reads and checks the PEM files named by --tls.cert,
 * --tls.key and --tls.ca, and maps the client-certificate policy
 * (--tls.client-auth) onto Bun.serve's options.
 *
 * Checked before listening, so a bad file is one clear error at start-up
 * rather than a handshake failure at the first client: the certificate and
 * the CA must parse as X.509, the key must parse, and the key must belong to
 * the certificate.
 *
 * Client-certificate policies:
 *   require   the handshake fails without a certificate that chains to --tls.ca
 *   optional  a certificate is requested but not enforced: Bun.serve admits a
 *             client without one *and one whose certificate does not verify*,
 *             and does not tell the handler which it was (nginx's
 *             `ssl_verify_client optional_no_ca`). Authentication still rests
 *             on HTTP Basic; use it while clients are being given certificates.
 *   none      no certificate is requested
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ServeOptions } from './serve.ts';

export const CLIENT_AUTH_MODES = ['require', 'optional', 'none'] as const;
export type ClientAuthMode = (typeof CLIENT_AUTH_MODES)[number];

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
  clientAuth: string;
}

export type TlsConfig = NonNullable<ServeOptions['tls']>;

/** Bad TLS settings or files; the CLI reports it with exit code 8 (server cannot start), or 2 for usage. */
export class TlsConfigError extends Error {
  constructor(
    message: string,
    readonly kind: 'usage' | 'file',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TlsConfigError';
  }
}

export function isClientAuthMode(value: string): value is ClientAuthMode {
  return (CLIENT_AUTH_MODES as readonly string[]).includes(value);
}

function readPem(path: string, option: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new TlsConfigError(`${option}: cannot read ${path}: ${(cause as Error).message}`, 'file', { cause });
  }
  if (!text.includes('-----BEGIN ')) {
    throw new TlsConfigError(`${option}: ${path} is not a PEM file (no "-----BEGIN" line)`, 'file');
  }
  return text;
}

/** Every certificate in a PEM bundle, parsed (the first is the leaf of a chain). */
function parseCertificates(pem: string, path: string, option: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new TlsConfigError(`${option}: ${path} holds no certificate`, 'file');
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (cause) {
      throw new TlsConfigError(`${option}: certificate ${index + 1} in ${path} is invalid: ${(cause as Error).message}`, 'file', { cause });
    }
  });
}

/** undefined when no TLS option is given (plain HTTP); throws TlsConfigError on any problem. */
export function loadTlsConfig(files: TlsFiles, nowMs: number): TlsConfig | undefined {
  if (!isClientAuthMode(files.clientAuth)) {
    throw new TlsConfigError(`--tls.client-auth must be require, optional or none, got "${files.clientAuth}"`, 'usage');
  }
  const mode = files.clientAuth;
  if (files.cert === undefined && files.key === undefined) {
    if (files.ca !== undefined || mode !== 'none') {
      throw new TlsConfigError('--tls.ca and --tls.client-auth need --tls.cert and --tls.key', 'usage');
    }
    return undefined;
  }
  if (files.cert === undefined || files.key === undefined) {
    throw new TlsConfigError('--tls.cert and --tls.key must be given together', 'usage');
  }
  if (mode === 'require' && files.ca === undefined) {
    throw new TlsConfigError('--tls.client-auth=require needs --tls.ca (the CA that issues client certificates)', 'usage');
  }

  const cert = readPem(files.cert, '--tls.cert');
  const [leaf] = parseCertificates(cert, files.cert, '--tls.cert');
  const key = readPem(files.key, '--tls.key');
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (cause) {
    throw new TlsConfigError(`--tls.key: ${files.key} is not a usable private key: ${(cause as Error).message}`, 'file', { cause });
  }
  if (!leaf!.checkPrivateKey(privateKey)) {
    throw new TlsConfigError(`--tls.key: ${files.key} does not belong to the certificate in ${files.cert}`, 'file');
  }
  if (Date.parse(leaf!.validTo) <= nowMs) {
    throw new TlsConfigError(`--tls.cert: the certificate in ${files.cert} expired on ${leaf!.validTo}`, 'file');
  }

  const config: TlsConfig = { cert, key };
  if (files.ca !== undefined) {
    const ca = readPem(files.ca, '--tls.ca');
    parseCertificates(ca, files.ca, '--tls.ca');
    config.ca = ca;
  }
  if (mode !== 'none') {
    config.requestCert = true;
    config.rejectUnauthorized = mode === 'require';
  }
  return config;
}

/** When the serving certificate expires, ms since epoch (a gauge operators alert on). */
export function certificateNotAfterMs(config: TlsConfig): number | undefined {
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(config.cert)?.[0];
  if (block === undefined) return undefined;
  return Date.parse(new X509Certificate(block).validTo);
}
