// Goal: built-in TLS works for real clients and fails clearly on bad input:
// the npm netlicensing-client 1.2.40 validates over HTTPS (trusting the CA only
// through NODE_EXTRA_CA_CERTS, and refusing the server without it); client
// certificates are enforced with --tls.client-auth=require (none or a
// self-signed one rejected, the CA-issued one accepted); unreadable, non-PEM,
// mismatched or expired files stop the start with exit 8, bad combinations
// with exit 2. Method: certificates made with the openssl CLI per run; the
// agent started in-process with runCli on 127.0.0.1:0; the npm client runs
// as a child Bun process; Bun's fetch presents client certificates.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { runCli } from '../../src/cli/run.ts';
import { loadTlsConfig, TlsConfigError } from '../../src/server/tls.ts';
import { tempDir } from '../helpers.ts';
import { API_KEY, apiKeyAuth, demoEntities, seedStore } from '../support/seed-store.ts';
import { captureIo, makeCertificates, type TestCertificates } from './support.ts';

let certs: TestCertificates;
let cwd: string;
const NOW = Date.now();

beforeAll(async () => {
  certs = makeCertificates();
  const seeded = seedStore(demoEntities());
  cwd = seeded.cwd;
  await seeded.store.close();
});

interface RunningAgent {
  port: number;
  adminPort: number;
  out: string;
  err: string;
  stop(): Promise<number>;
}

async function startAgent(args: string[]): Promise<RunningAgent> {
  const io = captureIo();
  const controller = new AbortController();
  const exited = runCli(['--action=run-agent-offline', '--host=127.0.0.1', '--port=0', '--admin.port=0', ...args], io, {
    cwd,
    signal: controller.signal,
  });
  let done: number | undefined;
  void exited.then((code) => (done = code));
  for (let i = 0; i < 400 && !/^admin listening on .+:\d+$/m.test(io.out); i++) {
    if (done !== undefined) throw new Error(`agent stopped with ${done}: ${io.err}`);
    await Bun.sleep(10);
  }
  return {
    port: Number(/^listening on .+:(\d+)$/m.exec(io.out)![1]),
    adminPort: Number(/^admin listening on .+:(\d+)$/m.exec(io.out)![1]),
    out: io.out,
    err: io.err,
    async stop() {
      controller.abort();
      return await exited;
    },
  };
}

/** Async on purpose: the agent runs in this process and must keep answering while the child waits. */
async function runNpmClient(baseUrl: string, env: Record<string, string>, extra: string[] = []): Promise<{ ok: boolean; code?: unknown; validators?: Record<string, Record<string, string>> }> {
  const childEnv: Record<string, string> = { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env };
  const child = Bun.spawn([process.execPath, join(import.meta.dir, 'clients', 'nlic-validate.ts'), baseUrl, 'L-1', API_KEY, ...extra], {
    env: childEnv,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    timeout: 30_000,
  });
  const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  await child.exited;
  const line = stdout.trim().split('\n').pop() ?? '';
  if (!line.startsWith('{')) throw new Error(`client printed nothing useful: ${stdout} ${stderr}`);
  return JSON.parse(line);
}

describe('loadTlsConfig', () => {
  const files = () => ({ cert: certs.serverCert, key: certs.serverKey, clientAuth: 'none' });

  test('valid files: PEM texts; client-auth maps onto requestCert/rejectUnauthorized', () => {
    expect(loadTlsConfig({ clientAuth: 'none' }, NOW)).toBeUndefined();
    const plain = loadTlsConfig(files(), NOW)!;
    expect(plain.cert).toBe(readFileSync(certs.serverCert, 'utf8'));
    expect(plain.requestCert).toBeUndefined();
    expect(loadTlsConfig({ ...files(), ca: certs.caCert, clientAuth: 'require' }, NOW)).toMatchObject({ requestCert: true, rejectUnauthorized: true });
    expect(loadTlsConfig({ ...files(), ca: certs.caCert, clientAuth: 'optional' }, NOW)).toMatchObject({ requestCert: true, rejectUnauthorized: false });
  });

  test('bad files and combinations: clear messages, file problems vs usage problems', () => {
    const dir = tempDir();
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const cases: [Parameters<typeof loadTlsConfig>[0], 'usage' | 'file', string][] = [
      [{ ...files(), cert: join(dir, 'missing.pem') }, 'file', 'cannot read'],
      [{ ...files(), key: notPem }, 'file', 'is not a PEM file'],
      [{ ...files(), cert: garbage }, 'file', 'certificate 1 in'],
      [{ ...files(), key: certs.rogueKey }, 'file', 'does not belong to the certificate'],
      [{ ...files(), key: certs.serverCert }, 'file', 'not a usable private key'],
      [{ ...files(), ca: notPem, clientAuth: 'require' }, 'file', '--tls.ca'],
      [{ cert: certs.serverCert, clientAuth: 'none' }, 'usage', 'must be given together'],
      [{ ...files(), clientAuth: 'sometimes' }, 'usage', 'require, optional or none'],
      [{ ...files(), clientAuth: 'require' }, 'usage', 'needs --tls.ca'],
      [{ ca: certs.caCert, clientAuth: 'none' }, 'usage', 'need --tls.cert'],
    ];
    for (const [input, kind, message] of cases) {
      let caught: unknown;
      try {
        loadTlsConfig(input, NOW);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(TlsConfigError);
      expect((caught as TlsConfigError).kind).toBe(kind);
      expect((caught as Error).message).toContain(message);
    }
    // Expired: the same certificate, judged three days later.
    expect(() => loadTlsConfig(files(), NOW + 3 * 86_400_000)).toThrow('expired');
  });

  test('the CLI exits 8 for unusable TLS files and 2 for bad combinations, before listening', async () => {
    const io = captureIo();
    expect(await runCli(['--action=run-agent-offline', '--port=0', '--admin.port=off', `--tls.cert=${certs.serverCert}`, `--tls.key=${certs.rogueKey}`], io, { cwd })).toBe(EXIT.server);
    expect(io.err).toContain('does not belong to the certificate');
    expect(io.out).toBe('');
    const io2 = captureIo();
    expect(await runCli(['--action=run-agent-offline', '--port=0', '--admin.port=off', '--tls.cert=/nonexistent/cert.pem', `--tls.key=${certs.serverKey}`], io2, { cwd })).toBe(EXIT.server);
    expect(io2.err).toContain('cannot read /nonexistent/cert.pem');
    const io3 = captureIo();
    expect(await runCli(['--action=run-agent-offline', '--port=0', `--tls.cert=${certs.serverCert}`, `--tls.key=${certs.serverKey}`, '--tls.client-auth=require'], io3, { cwd })).toBe(EXIT.usage);
  });
});

describe('HTTPS with the real netlicensing-client', () => {
  let agent: RunningAgent;
  beforeAll(async () => {
    agent = await startAgent([`--tls.cert=${certs.serverCert}`, `--tls.key=${certs.serverKey}`]);
  });
  afterAll(async () => {
    expect(await agent.stop()).toBe(EXIT.ok);
  });

  test('trusting the CA through NODE_EXTRA_CA_CERTS it validates, as against the cloud', async () => {
    const result = await runNpmClient(`https://127.0.0.1:${agent.port}/core/v2/rest`, { NODE_EXTRA_CA_CERTS: certs.caCert }, ['M-FLOAT', 'tls-seat']);
    expect(result.ok).toBe(true);
    expect(result.validators!['M-SUB']).toMatchObject({ licensingModel: 'Subscription' });
    expect(result.validators!['M-FLOAT']).toMatchObject({ valid: 'true', licensingModel: 'Floating' });
  }, 30_000);

  test('without the CA the client refuses the server: the certificate is really checked', async () => {
    const result = await runNpmClient(`https://127.0.0.1:${agent.port}/core/v2/rest`, {});
    expect(result.ok).toBe(false);
    expect(String(result.code)).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
  }, 30_000);

  test('plain HTTP on the TLS port gets no answer; /health is served over TLS; the loopback admin listener stays HTTP', async () => {
    const plain = await fetch(`http://127.0.0.1:${agent.port}/health`).then((r) => r.status, () => 'refused');
    expect(plain).not.toBe(200);
    const health = await fetch(`https://127.0.0.1:${agent.port}/health`, { tls: { ca: readFileSync(certs.caCert, 'utf8') } });
    expect(await health.json()).toEqual({ status: 'ok' });
    const metrics = await (await fetch(`http://127.0.0.1:${agent.adminPort}/metrics`)).text();
    // The certificate expiry is exported for alerting.
    expect(metrics).toMatch(/^nla_tls_certificate_expiry_timestamp_seconds \d+$/m);
    expect(agent.err).toContain('serving offline on https://127.0.0.1:');
  });
});

describe('client certificates', () => {
  const ca = () => readFileSync(certs.caCert, 'utf8');
  const withClient = () => ({ ca: ca(), cert: readFileSync(certs.clientCert, 'utf8'), key: readFileSync(certs.clientKey, 'utf8') });
  const withRogue = () => ({ ca: ca(), cert: readFileSync(certs.rogueCert, 'utf8'), key: readFileSync(certs.rogueKey, 'utf8') });
  const validate = (port: number, tls: Record<string, string>) =>
    fetch(`https://127.0.0.1:${port}/rest/licensee/L-1/validate`, { method: 'POST', headers: { authorization: apiKeyAuth() }, tls }).then(
      (r) => r.status,
      (e: Error) => `failed: ${e.message}`,
    );

  test('require: rejected without a certificate and with a self-signed one, accepted with the CA-issued one', async () => {
    const agent = await startAgent([`--tls.cert=${certs.serverCert}`, `--tls.key=${certs.serverKey}`, `--tls.ca=${certs.caCert}`, '--tls.client-auth=require']);
    try {
      expect(String(await validate(agent.port, { ca: ca() }))).toStartWith('failed');
      expect(String(await validate(agent.port, withRogue()))).toStartWith('failed');
      expect(await validate(agent.port, withClient())).toBe(200);
    } finally {
      expect(await agent.stop()).toBe(EXIT.ok);
    }
  });

  test('optional: a client without a certificate is admitted (and one with), and a warning says it is not enforced', async () => {
    const agent = await startAgent([`--tls.cert=${certs.serverCert}`, `--tls.key=${certs.serverKey}`, `--tls.ca=${certs.caCert}`, '--tls.client-auth=optional']);
    try {
      expect(await validate(agent.port, { ca: ca() })).toBe(200);
      expect(await validate(agent.port, withClient())).toBe(200);
      expect(agent.err).toContain('does not enforce them');
    } finally {
      expect(await agent.stop()).toBe(EXIT.ok);
    }
  });
});
