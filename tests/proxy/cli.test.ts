// Goal: `--action=run-agent` checks its options (upstream, credentials,
// --cache.*, --upstream.timeout) with usage errors, serves on a real port,
// proxies to the upstream and stops cleanly on SIGINT. Method: runCli
// in-process with captured output and an AbortSignal; a stand-in upstream.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import type { CliIo } from '../../src/cli/actions.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { upstreamCredentialsCheck } from '../../src/cli/actions/run-agent.ts';
import { runCli } from '../../src/cli/run.ts';
import { adminCredentials, createOps } from '../../src/server/ops/ops.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { seedStore } from '../support/seed-store.ts';
import { createLogger, silentLogger } from '../../src/platform/log.ts';
import { tempDir } from '../helpers.ts';
import { apiKeyAuth, VENDOR } from '../support/seed-store.ts';
import { form, StandinUpstream } from './support.ts';

function captureIo(env: Record<string, string> = {}): CliIo & { out: string; err: string } {
  const io = {
    out: '',
    err: '',
    stdout(text: string) {
      io.out += text;
    },
    stderr(text: string) {
      io.err += text;
    },
    isTTY: false,
    env,
  };
  return io;
}

let upstream: StandinUpstream;
beforeAll(() => {
  upstream = StandinUpstream.start();
});
afterAll(async () => {
  await upstream.close();
});

const base = () => ['--action=run-agent', `--core.base.host=${upstream.baseUrl}`, '--port=0', '--host=127.0.0.1', '--admin.port=off'];
const creds = [`--nlic.username=${VENDOR.user}`, `--nlic.password=${VENDOR.password}`];

describe('run-agent options', () => {
  const usage = async (args: string[], message: string, env: Record<string, string> = {}) => {
    const io = captureIo(env);
    expect(await runCli(args, io, { cwd: tempDir(), log: silentLogger() })).toBe(EXIT.usage);
    expect(io.err).toContain(message);
  };

  test('usage errors', async () => {
    await usage(base(), 'run-agent needs NetLicensing credentials');
    await usage([...base(), ...creds, '--nlic.apikey=k'], 'either --nlic.apikey or --nlic.username');
    await usage([...base(), ...creds, '--cache.type=memcached'], '--cache.type must be local or redis');
    await usage([...base(), ...creds, '--cache.type=redis', '--cache.port=x'], '--cache.port must be');
    await usage([...base(), ...creds, '--cache.database=-1'], '--cache.database must be');
    await usage([...base(), ...creds, '--upstream.timeout=0'], '--upstream.timeout must be');
    await usage([...base(), ...creds, '--core.base.host=go.netlicensing.io'], '--core.base.host');
    await usage([...base(), ...creds], 'NLA_PROXY_BREAKER_FAILURES', { NLA_PROXY_BREAKER_FAILURES: '0' });
  });

  test('a Redis that cannot be reached stops the start (exit 8)', async () => {
    const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response() });
    const closedPort = probe.port!;
    await probe.stop(true);
    const io = captureIo();
    const code = await runCli([...base(), ...creds, '--cache.type=redis', '--cache.host=127.0.0.1', `--cache.port=${closedPort}`], io, {
      cwd: tempDir(),
      log: silentLogger(),
    });
    expect(code).toBe(EXIT.server);
    expect(io.err).toContain(`cannot use Redis at 127.0.0.1:${closedPort}`);
  });
});

describe('run-agent serving', () => {
  test('listens, proxies validate to the upstream and stops on SIGINT', async () => {
    const controller = new AbortController();
    const io = captureIo();
    const running = runCli([...base(), ...creds, '--upstream.timeout=2'], io, { cwd: tempDir(), log: silentLogger(), signal: controller.signal });
    for (let i = 0; i < 100 && !/listening on 127\.0\.0\.1:(\d+)/.test(io.out); i++) await Bun.sleep(20);
    const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(io.out)?.[1]);
    expect(port).toBeGreaterThan(0);
    const init = form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth(), accept: 'application/json' });
    const direct = await (await upstream.direct('/licensee/L-1/validate', init)).text();
    const res = await fetch(`http://127.0.0.1:${port}/rest/licensee/L-1/validate`, init);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(direct);
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    controller.abort();
    expect(await running).toBe(EXIT.ok);
  });
});

describe('run-agent admin listener', () => {
  const metric = (text: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"=]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

  test('/health, /ready, /metrics, the status page and /status.json show the local copy and the upstream, through an outage', async () => {
    const controller = new AbortController();
    const io = captureIo();
    const args = ['--action=run-agent', `--core.base.host=${upstream.baseUrl}`, '--port=0', '--host=127.0.0.1', '--admin.port=0', ...creds, '--upstream.timeout=1'];
    const running = runCli(args, io, { cwd: tempDir(), log: silentLogger(), signal: controller.signal });
    for (let i = 0; i < 100 && !/admin listening on 127\.0\.0\.1:(\d+)/.test(io.out); i++) await Bun.sleep(20);
    const port = Number(/^listening on 127\.0\.0\.1:(\d+)/m.exec(io.out)?.[1]);
    const admin = `http://127.0.0.1:${Number(/admin listening on 127\.0\.0\.1:(\d+)/.exec(io.out)?.[1])}`;
    const validate = () => fetch(`http://127.0.0.1:${port}/rest/licensee/L-1/validate`, form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth(), accept: 'application/json' }));
    const metrics = async () => (await fetch(`${admin}/metrics`)).text();
    try {
      expect((await fetch(`${admin}/health`)).status).toBe(200);
      // An empty local copy is ready: run-agent fills it from the upstream.
      const ready = await fetch(`${admin}/ready`);
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { checks: { name: string; detail: string }[] }).checks).toEqual([
        { name: 'store', ok: true, detail: 'local copy, schema 3, journal 0' } as never,
      ]);

      expect((await validate()).status).toBe(200);
      // The forwarded answer also refreshes the local copy of L-1, in the background.
      let text = await metrics();
      for (let i = 0; i < 250 && metric(text, 'nla_proxy_refreshes_total') < 1; i++) text = (await Bun.sleep(20), await metrics());
      expect(metric(text, 'nla_proxy_forwarded_total')).toBe(1);
      expect(metric(text, 'nla_proxy_refreshes_total')).toBe(1);
      expect(metric(text, 'nla_proxy_breaker_state{state="closed"}')).toBe(1);
      expect(metric(text, 'nla_http_requests_total{route="validate",method="POST",status="200"}')).toBe(1);
      expect(text).toContain(`nla_proxy_upstream_info{upstream="${upstream.baseUrl}"} 1`);
      expect(text).not.toMatch(/^nla_proxy_upstream_down_since_timestamp_seconds /m);
      expect(metric(text, 'nla_card_bound')).toBe(0);
      expect(await (await fetch(`${admin}/status`)).text()).not.toContain('is not answering');

      // Outage: answered from the local copy; the breaker opens after 3 failures (the default).
      await upstream.stop();
      for (let i = 0; i < 4; i++) expect((await validate()).status).toBe(200);
      text = await metrics();
      expect(metric(text, 'nla_proxy_local_answers_total')).toBe(4);
      expect(metric(text, 'nla_proxy_upstream_failures_total{cause="network"}')).toBe(3);
      expect(metric(text, 'nla_proxy_breaker_rejected_total')).toBe(1);
      expect(metric(text, 'nla_proxy_breaker_state{state="open"}')).toBe(1);
      expect(metric(text, 'nla_proxy_upstream_down_since_timestamp_seconds')).toBeGreaterThan(0);
      expect(metric(text, 'nla_http_requests_total{route="validate",method="POST",status="200"}')).toBe(5);
      // Still ready: answering through an outage is what run-agent is for.
      expect((await fetch(`${admin}/ready`)).status).toBe(200);
      const page = await (await fetch(`${admin}/status`)).text();
      expect(page).toContain(`The upstream ${upstream.baseUrl} is not answering since `);
      expect(page).toContain('<h3>Upstream</h3><div class="value">not answering');
      expect(page).toContain('1 forwarded · 4 local');
      const json = (await (await fetch(`${admin}/status.json`)).json()) as { proxy: Record<string, unknown> };
      expect(json.proxy).toMatchObject({ upstream: upstream.baseUrl, breakerState: 'open', forwarded: 1, localAnswers: 4 });
    } finally {
      await upstream.restart();
      controller.abort();
      expect(await running).toBe(EXIT.ok);
    }
  });

  test('beyond loopback, /metrics and the status page need the credentials run-agent uses upstream', async () => {
    const basic = (pair: string, scheme = 'Basic') => `${scheme} ${Buffer.from(pair).toString('base64')}`;
    const vendor = upstreamCredentialsCheck({ kind: 'basic', username: 'vendor', password: 's3cret' });
    // A password is hashed on a worker thread (a promise); a header that passed before is known at once.
    expect(await vendor(basic('vendor:s3cret'))).toBe(true);
    expect(vendor(basic('vendor:s3cret'))).toBe(true);
    expect(await vendor(basic('vendor:s3cret', 'basic'))).toBe(true);
    expect(await vendor(basic('vendor:s3cre'))).toBe(false);
    expect(await vendor(basic('Vendor:s3cret'))).toBe(false);
    expect(vendor(null)).toBe(false);
    const key = upstreamCredentialsCheck({ kind: 'apiKey', apiKey: 'k-123' });
    expect(key(basic('apiKey:k-123'))).toBe(true);
    expect(key(basic('apiKey:k-124'))).toBe(false);
    expect(key('Bearer k-123')).toBe(false);
    // The rule that picks it (ops.ts): asked for beyond loopback only, and not with required client certificates.
    expect(adminCredentials('127.0.0.1', undefined, key)).toBeUndefined();
    expect(adminCredentials('0.0.0.0', 'require', key)).toBeUndefined();
    expect(adminCredentials('0.0.0.0', undefined, key)).toBe(key);
    // On a listener with that rule: the 401 says whose credentials it wants.
    const { store } = seedStore([]);
    const o = createOps({ store, clock: new ManualClock(Date.now()), log: silentLogger(), build: { version: 'v', commit: 'c', bun: Bun.version }, versionText: 'v', cardDisabled: true });
    const listener = o.listenAdmin({ host: '127.0.0.1', port: 0, authorize: key, authorizeText: 'the credentials run-agent uses upstream (--nlic.*)' });
    try {
      const refused = await fetch(`http://127.0.0.1:${listener.port}/metrics`);
      expect(refused.status).toBe(401);
      expect(await refused.text()).toBe('credentials required: the credentials run-agent uses upstream (--nlic.*) (HTTP Basic)\n');
      expect((await fetch(`http://127.0.0.1:${listener.port}/metrics`, { headers: { authorization: basic('apiKey:k-123') } })).status).toBe(200);
    } finally {
      await o.stop();
      await store.close();
    }
  });

  test('the default admin port taken (a run-agent-offline on the same host): run-agent starts without its admin listener and says why', async () => {
    // The default is 127.0.0.1:8081: held here by the test, or by something else already.
    let blocker: ReturnType<typeof Bun.serve> | undefined;
    try {
      blocker = Bun.serve({ port: 8081, hostname: '127.0.0.1', fetch: () => new Response('someone else') });
    } catch {
      // Taken already: the same situation.
    }
    const lines: string[] = [];
    const log = createLogger({ stream: { write: (chunk: string) => (lines.push(chunk), true) } as unknown as NodeJS.WritableStream });
    const controller = new AbortController();
    const io = captureIo();
    const args = ['--action=run-agent', `--core.base.host=${upstream.baseUrl}`, '--port=0', '--host=127.0.0.1', ...creds];
    const running = runCli(args, io, { cwd: tempDir(), log, signal: controller.signal });
    try {
      for (let i = 0; i < 100 && !/^listening on 127\.0\.0\.1:(\d+)/m.test(io.out); i++) await Bun.sleep(20);
      const port = Number(/^listening on 127\.0\.0\.1:(\d+)/m.exec(io.out)?.[1]);
      expect(port).toBeGreaterThan(0);
      expect(io.out).not.toContain('admin listening');
      expect(lines.join('')).toContain('admin listener not started: cannot listen on 127.0.0.1:8081');
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    } finally {
      controller.abort();
      expect(await running).toBe(EXIT.ok);
      await blocker?.stop(true);
    }
  });

  test('--admin.port=off starts none; a bad admin port is a usage error; a busy one ends the start with exit 8', async () => {
    const io = captureIo();
    expect(await runCli([...base().slice(0, -1), ...creds, '--admin.port=eighty'], io, { cwd: tempDir(), log: silentLogger() })).toBe(EXIT.usage);
    expect(io.err).toContain('--admin.port must be a number from 0 to 65535 or "off"');
    const busy = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response() });
    try {
      const busyIo = captureIo();
      const code = await runCli([...base().slice(0, -1), ...creds, '--admin.host=127.0.0.1', `--admin.port=${busy.port}`], busyIo, { cwd: tempDir(), log: silentLogger() });
      expect(code).toBe(EXIT.server);
      expect(busyIo.err).toContain('(--admin.port)');
      expect(busyIo.out).not.toContain('listening');
    } finally {
      await busy.stop(true);
    }
  });
});

describe('run-agent with Redis through its options', () => {
  test('--cache.host/port/password/database/key-prefix reach a running Redis; a wrong password stops the start (exit 8)', async () => {
    const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response() });
    const redisPort = probe.port!;
    await probe.stop(true);
    const password = 'p@ss/w:rd';
    const redis = Bun.spawn(['redis-server', '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', password], {
      stdout: 'ignore',
      stderr: 'inherit',
    });
    const client = new RedisClient(`redis://:${encodeURIComponent(password)}@127.0.0.1:${redisPort}/3`, { connectionTimeout: 200, autoReconnect: false });
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await client.connect();
          break;
        } catch (error) {
          if (attempt >= 50) throw new Error(`redis-server did not start: ${(error as Error).message}`);
          await Bun.sleep(100);
        }
      }
      const redisArgs = ['--cache.type=redis', '--cache.host=127.0.0.1', `--cache.port=${redisPort}`, '--cache.database=3', '--cache.key-prefix=site-7:'];
      const wrong = captureIo();
      expect(await runCli([...base(), ...creds, ...redisArgs, '--cache.password=wrong'], wrong, { cwd: tempDir(), log: silentLogger() })).toBe(EXIT.server);
      expect(wrong.err).toContain('check --cache.password');

      const controller = new AbortController();
      const io = captureIo();
      const running = runCli([...base(), ...creds, ...redisArgs, `--cache.password=${password}`], io, { cwd: tempDir(), log: silentLogger(), signal: controller.signal });
      for (let i = 0; i < 100 && !/listening on 127\.0\.0\.1:(\d+)/.test(io.out); i++) await Bun.sleep(20);
      const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(io.out)?.[1]);
      expect(port, io.err).toBeGreaterThan(0);
      const res = await fetch(`http://127.0.0.1:${port}/rest/licensee/L-1/validate`, form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth(), accept: 'application/json' }));
      expect(res.status).toBe(200);
      // The forwarded answer is cached in the background: in database 3, under the prefix.
      let keys: string[] = [];
      for (let i = 0; i < 100 && keys.length === 0; i++) {
        keys = (await client.send('KEYS', ['*'])) as string[];
        if (keys.length === 0) await Bun.sleep(20);
      }
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) expect(key.startsWith('site-7:')).toBe(true);
      await client.send('SELECT', ['0']);
      expect((await client.send('KEYS', ['*'])) as string[]).toEqual([]);
      controller.abort();
      expect(await running).toBe(EXIT.ok);
    } finally {
      client.close();
      redis.kill();
      await redis.exited;
    }
  }, 60_000);
});
