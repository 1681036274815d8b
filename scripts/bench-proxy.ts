/**
 * run-agent overhead, measured with wrk (Debian package `wrk`) against
 * 127.0.0.1, 64 keep-alive connections, one wrk thread: requests/s and
 * p50/p99 latency of validate sent straight to an upstream agent, and the
 * same requests sent through run-agent to that upstream on loopback, with
 * the ratio proxied / direct. The upstream is scripts/bench/agent-server.ts
 * (an offline agent on a seeded database); the proxy is this script started
 * with --serve-proxy, wired as run-agent wires it (local cache, timers on).
 * For reference the same requests also go through a bare forwarder
 * (--serve-bare-forwarder: Bun.serve + fetch, nothing else).
 * Note the machine's cores are shared by wrk, the proxy and the upstream.
 *
 * Usage: bun scripts/bench-proxy.ts [--seconds=10]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_AUTH, CONNECTIONS, postScript, requireWrk, runWrk, startPortPrinter, type Figures } from './bench/wrk.ts';

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=').slice(1).join('=');

if (process.argv.includes('--serve-proxy')) {
  await serveProxy(arg('upstream')!, arg('dir')!);
} else if (process.argv.includes('--serve-bare-forwarder')) {
  serveBareForwarder(arg('upstream')!);
} else {
  await bench(Number(arg('seconds') ?? '10'));
}

async function serveProxy(upstream: string, dir: string): Promise<void> {
  const { systemClock } = await import('../src/platform/clock.ts');
  const { createLogger } = await import('../src/platform/log.ts');
  const { createProxy } = await import('../src/proxy/proxy-app.ts');
  const { serveApp } = await import('../src/server/serve.ts');
  const { openAssetStore } = await import('../src/store/asset-store.ts');
  const store = openAssetStore(join(dir, 'database'), { create: true });
  const proxy = createProxy({
    store,
    clock: systemClock,
    log: createLogger(),
    ttlMs: 600_000,
    allowAnonymous: false,
    upstream: { baseUrl: upstream, credentials: { kind: 'basic', username: 'vendor', password: 'secret' } },
  });
  // As run-agent serves it: every request counted for /metrics, /health answered in front.
  const { withHealth } = await import('../src/server/ops/admin-app.ts');
  const { createOpsMetrics } = await import('../src/server/ops/metrics.ts');
  const { observeRequests } = await import('../src/server/ops/ops.ts');
  const metrics = createOpsMetrics({ version: 'bench', commit: 'bench', bun: Bun.version }, Date.now());
  const server = serveApp(withHealth(observeRequests(proxy.app, metrics)), { port: 0, hostname: '127.0.0.1' });
  console.log(`PORT ${server.port}`);
  process.on('SIGTERM', async () => {
    await server.stop();
    await proxy.close();
    await store.close();
    process.exit(0);
  });
}

/** The least a forwarding proxy on Bun.serve + fetch can do: the reference for run-agent's own overhead. */
function serveBareForwarder(upstream: string): void {
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(request) {
      const url = new URL(request.url);
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'accept', 'content-type']) {
        const value = request.headers.get(name);
        if (value !== null) headers[name] = value;
      }
      const answer = await fetch(`${upstream}/core/v2/rest${url.pathname.slice('/rest'.length)}${url.search}`, {
        method: request.method,
        headers,
        body: await request.arrayBuffer(),
      });
      return new Response(await answer.arrayBuffer(), { status: answer.status, headers: { 'content-type': answer.headers.get('content-type') ?? '' } });
    },
  });
  console.log(`PORT ${server.port}`);
}

async function bench(seconds: number): Promise<void> {
  const connections = CONNECTIONS;
  const work = mkdtempSync(join(tmpdir(), 'nla-bench-proxy-'));
  requireWrk();
  const start = startPortPrinter;
  const auth = BENCH_AUTH;
  const script = (name: string, accept: string, body: string) => postScript(work, name, accept, body);
  const wrk = (url: string, lua: string): Figures => runWrk(url, seconds, lua);

  const scenarios = [
    { name: 'Subscription validate, JSON', lua: script('sub-json', 'application/json', 'productModuleNumber0=M-SUB') },
    { name: 'Subscription validate, XML', lua: script('sub-xml', 'application/xml', 'productModuleNumber0=M-SUB') },
    { name: 'Pay-per-Use usedQuantity=1 (durable upstream)', lua: script('ppu', 'application/json', 'productModuleNumber0=M-PPU&usedQuantity0=1') },
  ];
  const rows: { name: string; direct: Figures; bare: Figures; proxied: Figures }[] = [];
  const upstream = await start([join(import.meta.dir, 'bench', 'agent-server.ts'), join(work, 'upstream')]);
  const proxy = await start([import.meta.path, '--serve-proxy', `--upstream=http://127.0.0.1:${upstream.port}`, `--dir=${join(work, 'proxy')}`]);
  const bare = await start([import.meta.path, '--serve-bare-forwarder', `--upstream=http://127.0.0.1:${upstream.port}`]);
  try {
    const path = '/rest/licensee/L/validate';
    // Warm-up through the proxy: credentials remembered, assets refreshed.
    await fetch(`http://127.0.0.1:${proxy.port}${path}`, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' }, body: 'productModuleNumber0=M-SUB' });
    await Bun.sleep(500);
    for (const scenario of scenarios) {
      // Warm-up of both processes (JIT, connection pools) before each measured pair.
      const saved = seconds;
      seconds = 2;
      wrk(`http://127.0.0.1:${upstream.port}${path}`, scenario.lua);
      wrk(`http://127.0.0.1:${bare.port}${path}`, scenario.lua);
      wrk(`http://127.0.0.1:${proxy.port}${path}`, scenario.lua);
      seconds = saved;
      const direct = wrk(`http://127.0.0.1:${upstream.port}${path}`, scenario.lua);
      const bareFigures = wrk(`http://127.0.0.1:${bare.port}${path}`, scenario.lua);
      const proxied = wrk(`http://127.0.0.1:${proxy.port}${path}`, scenario.lua);
      rows.push({ name: scenario.name, direct, bare: bareFigures, proxied });
    }
  } finally {
    for (const { proc } of [bare, proxy, upstream]) {
      proc.kill('SIGTERM');
      await proc.exited;
    }
    rmSync(work, { recursive: true, force: true });
  }

  console.log(`\nrun-agent benchmark: wrk -t1 -c${connections} -d${seconds}s, 127.0.0.1, keep-alive; upstream on loopback\n`);
  const head = ['scenario'.padEnd(46), 'direct req/s', 'p50 ms', 'p99 ms', 'run-agent req/s', 'p50 ms', 'p99 ms', 'ratio', 'bare fwd req/s', 'ratio', 'errors'];
  console.log(head.join('  '));
  for (const { name, direct, bare, proxied } of rows) {
    console.log(
      [
        name.padEnd(46),
        direct.rps.toFixed(0).padStart(12),
        direct.p50Ms.toFixed(2).padStart(6),
        direct.p99Ms.toFixed(2).padStart(6),
        proxied.rps.toFixed(0).padStart(15),
        proxied.p50Ms.toFixed(2).padStart(6),
        proxied.p99Ms.toFixed(2).padStart(6),
        (proxied.rps / direct.rps).toFixed(2).padStart(5),
        bare.rps.toFixed(0).padStart(14),
        (bare.rps / direct.rps).toFixed(2).padStart(5),
        String(direct.errors + bare.errors + proxied.errors).padStart(6),
      ].join('  '),
    );
  }
  console.log('\nratio = req/s through the proxy ÷ req/s straight to the upstream (1.00 = no overhead);');
  console.log('"bare fwd" is a minimal Bun.serve + fetch forwarder on the same machine: the floor any proxy here pays.');
}
