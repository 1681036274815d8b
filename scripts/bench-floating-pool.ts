#!/usr/bin/env bun
/**
 * Floating with many open sessions: time per check-out / check-in request
 * while the licensee holds 0, 1,000, 10,000 and 50,000 other open sessions.
 * A Floating decision must count the live sessions, and clients re-validate
 * theirs periodically, so a cost per request that grows with the pool makes
 * the whole load grow with its square (README, "Large Floating pools").
 *
 *   bun scripts/bench-floating-pool.ts [--pools=0,1000,10000,50000] [--requests=64000]
 *
 * In-process: the app (createApp, answer reuse as in the agent) over the
 * benchmark data set (bench/seed.ts) in a fresh database, called with
 * `app.fetch`, 64 requests in flight; every check-out is durable (the runtime
 * journal file) and checkpointed into LMDB as in the agent. Each figure
 * includes building the request. Nothing is asserted.
 *
 * Then the journal replay that `--action=verify-database` and every start of
 * a card-bound agent run (service/verify-database.ts) over the journal those
 * requests wrote: its time, and per entry, with the pool still open.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../src/platform/clock.ts';
import { silentLogger } from '../src/platform/log.ts';
import { createApp } from '../src/server/app.ts';
import { verifyDatabase } from '../src/service/verify-database.ts';
import { BENCH_AUTH } from './bench/wrk.ts';
import { seedBenchDatabase } from './bench/seed.ts';

const arg = (name: string) => Bun.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const POOLS = (arg('pools') ?? '0,1000,10000,50000').split(',').map(Number);
const REQUESTS = Number(arg('requests') ?? 64_000);
const IN_FLIGHT = 64;

const validateRequest = (body: string) =>
  new Request('http://127.0.0.1/rest/licensee/L/validate', {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: BENCH_AUTH, 'content-length': String(body.length) },
  });
const floating = (sessionId: string, action: 'checkOut' | 'checkIn') => `productModuleNumber0=M-FLOAT&sessionId0=${sessionId}&action0=${action}`;

console.log(`Floating check-out/check-in pairs, in-process, ${IN_FLIGHT} requests in flight, ${REQUESTS} requests per pool size\n`);
console.log(`${'open sessions'.padStart(14)} ${'µs per request'.padStart(15)} ${'journal replay'.padStart(28)}`);
for (const pool of POOLS) {
  const work = mkdtempSync(join(tmpdir(), 'nla-bench-floating-'));
  const store = seedBenchDatabase(join(work, 'database'));
  try {
    const app = createApp({ store, clock: systemClock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
    const send = async (body: string) => {
      const response = await app.fetch(validateRequest(body));
      if (response.status !== 200) throw new Error(`validate answered ${response.status}: ${await response.text()}`);
      await response.text();
    };
    // The pool: sessions that stay open (the module allows an hour) while the pairs run.
    for (let at = 0; at < pool; at += 500) {
      await Promise.all(Array.from({ length: Math.min(500, pool - at) }, (_, k) => send(floating(`pool-${at + k}`, 'checkOut'))));
    }
    let next = 0;
    const pairs = async (requests: number) => {
      for (let i = 0; i < requests; i += 2) {
        const sessionId = `pair-${next++}`;
        await send(floating(sessionId, 'checkOut'));
        await send(floating(sessionId, 'checkIn'));
      }
    };
    const run = (requests: number) => Promise.all(Array.from({ length: IN_FLIGHT }, () => pairs(requests / IN_FLIGHT)));
    await run(Math.min(REQUESTS, 16_000)); // warm-up
    const startedMs = performance.now();
    await run(REQUESTS);
    const perRequestUs = ((performance.now() - startedMs) * 1000) / REQUESTS;
    await store.settled();
    const replayStartedMs = performance.now();
    const report = verifyDatabase(store, 3);
    const replayMs = performance.now() - replayStartedMs;
    if (!report.ok) throw new Error(`verify-database found problems: ${report.problems.join('; ')}`);
    const replay = `${replayMs.toFixed(0)} ms, ${((replayMs * 1000) / report.entries).toFixed(2)} µs × ${report.entries}`;
    console.log(`${pool.toLocaleString('en-US').padStart(14)} ${perRequestUs.toFixed(1).padStart(15)} ${replay.padStart(28)}`);
  } finally {
    await store.close();
    rmSync(work, { recursive: true, force: true });
  }
}
