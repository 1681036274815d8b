#!/usr/bin/env bun
/**
 * Read-only validates spread over many licensees: time per request, and the
 * share of answers reused from the answer cache, when the requests go to W
 * licensees picked uniformly at random — below and above the caches' bounds
 * (10,000 answers, src/server/answer-cache.ts; 20,000 licensees' definitions,
 * src/store/definitions-cache.ts). A site with more active licensees than a
 * bound keeps the ones it validates most (least recently used out first).
 *
 *   bun scripts/bench-working-set.ts [--licensees=5000,15000,40000] [--requests=100000]
 *
 * In-process: the app (createApp, answer reuse as in the agent) over the
 * benchmark data set (bench/seed.ts) plus W licensees of its product without
 * licenses, in a fresh database, called with `app.fetch` one request at a
 * time after a warm-up of 3 × W requests. Each figure includes building the
 * request; RSS is the whole process's after a full collection (the databases
 * of earlier sizes closed). Nothing is asserted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../src/platform/clock.ts';
import { silentLogger } from '../src/platform/log.ts';
import { createApp } from '../src/server/app.ts';
import { BENCH_AUTH } from './bench/wrk.ts';
import { fixedRandomInts } from './bench/random.ts';
import { seedBenchDatabase } from './bench/seed.ts';

const arg = (name: string) => Bun.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const WORKING_SETS = (arg('licensees') ?? '5000,15000,40000').split(',').map(Number);
const REQUESTS = Number(arg('requests') ?? 100_000);
const BODY = 'productModuleNumber0=M-SUB';

console.log(`read-only validates (Subscription module) over W licensees picked uniformly at random, in-process, ${REQUESTS} requests each\n`);
console.log(`${'W licensees'.padStart(12)} ${'µs per request'.padStart(15)} ${'answers reused'.padStart(15)} ${'RSS after'.padStart(10)}`);
for (const licensees of WORKING_SETS) {
  const work = mkdtempSync(join(tmpdir(), 'nla-bench-working-set-'));
  const store = seedBenchDatabase(join(work, 'database'));
  try {
    store.importTransaction((tx) => {
      for (let i = 0; i < licensees; i++) tx.put({ kind: 'Licensee', number: `W-${i}`, props: { number: `W-${i}`, active: 'true', productNumber: 'P' } });
    });
    // Every answer not taken from the answer cache is decided through the store (counted here).
    let decided = 0;
    const commitRuntime = store.commitRuntime;
    store.commitRuntime = (...args) => {
      decided += 1;
      return commitRuntime(...args);
    };
    const app = createApp({ store, clock: systemClock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
    const randomLicensee = fixedRandomInts(licensees);
    const nextLicensee = () => `W-${randomLicensee()}`;
    const send = async () => {
      const response = await app.fetch(
        new Request(`http://127.0.0.1/rest/licensee/${nextLicensee()}/validate`, {
          method: 'POST',
          body: BODY,
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: BENCH_AUTH, 'content-length': String(BODY.length) },
        }),
      );
      if (response.status !== 200) throw new Error(`validate answered ${response.status}: ${await response.text()}`);
      await response.text();
    };
    for (let i = 0; i < 3 * licensees; i++) await send();
    decided = 0;
    const startedMs = performance.now();
    for (let i = 0; i < REQUESTS; i++) await send();
    const perRequestUs = ((performance.now() - startedMs) * 1000) / REQUESTS;
    const reused = (100 * (REQUESTS - decided)) / REQUESTS;
    // The whole process after a full collection: the caches full (when W exceeds their bounds) and the runtime states loaded.
    Bun.gc(true);
    const rssMb = process.memoryUsage().rss / 2 ** 20;
    console.log(`${licensees.toLocaleString('en-US').padStart(12)} ${perRequestUs.toFixed(1).padStart(15)} ${`${reused.toFixed(0)} %`.padStart(15)} ${`${rssMb.toFixed(0)} MB`.padStart(10)}`);
  } finally {
    await store.close();
    rmSync(work, { recursive: true, force: true });
  }
}
