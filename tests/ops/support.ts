/**
 * Helpers for the operator-feature tests: captured CLI io, certificates made
 * with the openssl CLI (a CA, a server certificate for 127.0.0.1, a client
 * certificate from the CA and a self-signed "rogue" one), a strict reader of
 * the Prometheus text format, and the agent started as a child process
 * through src/main.ts (as the installed binary runs, umask included).
 */
import { expect } from 'bun:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers.ts';
export { captureIo } from '../helpers.ts';

export const ROOT = join(import.meta.dir, '..', '..');
export const MAIN = join(ROOT, 'src', 'main.ts');

/** src/main.ts run to its end in `cwd`, as an administrator's script runs the agent. */
export async function runMain(cwd: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const child = Bun.spawn([process.execPath, MAIN, ...args], { cwd, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  const [out, err] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code: await child.exited, out, err };
}

function openssl(args: string[], cwd: string): void {
  const result = Bun.spawnSync(['openssl', ...args], { cwd, stdout: 'pipe', stderr: 'pipe' });
  if (result.exitCode !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr.toString()}`);
}

export interface TestCertificates {
  dir: string;
  /** Paths of PEM files. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  rogueCert: string;
  rogueKey: string;
}

/** A throw-away PKI in a temp directory, valid for two days. */
export function makeCertificates(): TestCertificates {
  const dir = tempDir('nla-tls-');
  const req = (name: string, subject: string) =>
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  const sign = (name: string, ext?: string) =>
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', ...(ext ? ['-extfile', ext] : [])],
      dir,
    );
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=NLA test CA'], dir);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  req('server', '/CN=127.0.0.1');
  sign('server', 'server.ext');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  req('client', '/CN=licensed-client');
  sign('client', 'client.ext');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '2', '-subj', '/CN=rogue'], dir);
  return {
    dir,
    caCert: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    rogueCert: join(dir, 'rogue.pem'),
    rogueKey: join(dir, 'rogue.key'),
  };
}

export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface ParsedExposition {
  types: Map<string, string>;
  samples: ParsedSample[];
  /** Value of the one sample with this name and (a superset of) these labels. */
  value(name: string, labels?: Record<string, string>): number | undefined;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (-?(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|\+Inf|-Inf|NaN))$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g;

/**
 * Parses the text format and fails the test on anything the format forbids:
 * a sample before its family's HELP and TYPE, a family declared twice,
 * malformed lines, non-cumulative histogram buckets, `+Inf` ≠ `_count`.
 */
export function parseExposition(text: string): ParsedExposition {
  expect(text.endsWith('\n')).toBe(true);
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const samples: ParsedSample[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line);
    if (help) {
      expect(helped.has(help[1]!)).toBe(false);
      helped.add(help[1]!);
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      expect(types.has(type[1]!)).toBe(false);
      types.set(type[1]!, type[2]!);
      continue;
    }
    const match = SAMPLE_LINE.exec(line);
    if (!match) throw new Error(`not a valid exposition line: ${JSON.stringify(line)}`);
    const name = match[1]!;
    const family = [...types.keys()].find((f) => name === f || (types.get(f) === 'histogram' && /^(_bucket|_sum|_count)$/.test(name.slice(f.length)) && name.startsWith(f)));
    if (family === undefined || !helped.has(family)) throw new Error(`sample ${name} before its # HELP/# TYPE`);
    const labels: Record<string, string> = {};
    for (const [, key, raw] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = raw!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    const rawValue = match[3]!;
    const value = rawValue === '+Inf' ? Infinity : rawValue === '-Inf' ? -Infinity : Number(rawValue);
    samples.push({ name, labels, value });
  }
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const buckets = samples.filter((s) => s.name === `${family}_bucket`);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    const inf = buckets.find((b) => b.labels['le'] === '+Inf');
    const count = samples.find((s) => s.name === `${family}_count`);
    expect(inf).toBeDefined();
    expect(inf!.value).toBe(count!.value);
  }
  return {
    types,
    samples,
    value(name, labels = {}) {
      const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
      return found[0]?.value;
    },
  };
}

export interface AgentChild {
  port: number;
  adminPort?: number;
  proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'>;
  stderr(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number>;
}

/** Runs `bun src/main.ts --action=run-agent-offline …` in `cwd` and waits for its listening lines. */
export function startAgentChild(cwd: string, args: string[], env: Record<string, string> = {}): Promise<AgentChild> {
  const argv = [process.execPath, MAIN, '--action=run-agent-offline', '--host=127.0.0.1', '--port=0', ...args];
  return startServingChild(argv, cwd, { env, adminLine: !args.includes('--admin.port=off') });
}

/**
 * Runs a serving program (`argv`: run-agent-offline or run-agent, from source or compiled) in `cwd`
 * and waits for its "listening on" line, and its admin listener's when `adminLine`.
 */
export async function startServingChild(argv: string[], cwd: string, options: { env?: Record<string, string>; adminLine?: boolean } = {}): Promise<AgentChild> {
  const proc = Bun.spawn(argv, {
    cwd,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    env: { ...process.env, ...options.env },
  });
  let err = '';
  void (async () => {
    for await (const chunk of proc.stderr) err += new TextDecoder().decode(chunk);
  })();
  let out = '';
  const reader = proc.stdout.getReader();
  const wantAdmin = options.adminLine === true;
  const deadline = Date.now() + 20_000;
  while (!(/^listening on .+:(\d+)$/m.test(out) && (!wantAdmin || /^admin listening on .+:(\d+)$/m.test(out)))) {
    if (Date.now() > deadline) throw new Error(`agent did not start: ${out} ${err}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`agent exited early (${await proc.exited}): ${out} ${err}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = Number(/^listening on .+:(\d+)$/m.exec(out)![1]);
  const admin = /^admin listening on .+:(\d+)$/m.exec(out);
  return {
    port,
    ...(admin ? { adminPort: Number(admin[1]) } : {}),
    proc,
    stderr: () => err,
    async stop() {
      proc.kill('SIGTERM');
      return await proc.exited;
    },
  };
}
