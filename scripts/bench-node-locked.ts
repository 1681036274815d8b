#!/usr/bin/env bun
/**
 * A Node-Locked site license: time per validate while machines register
 * their node secrets (CLIENT mode), one after another up to --nodes, and then
 * while known machines validate again. Every registration is a decided,
 * durable validate, and a Node-Locked decision must know every secret already
 * stored (README, "Node-Locked site licenses").
 *
 *   bun scripts/bench-node-locked.ts [--nodes=10000] [--revalidations=20000]
 *
 * In-process: the app (createApp, answer reuse as in the agent) over a fresh
 * database holding one product with a Node-Locked module and one licensee
 * with a license for 2 × nodes machines, called with `app.fetch`, 64 requests
 * in flight; registrations are durable (the runtime journal file) as in the
 * agent. Each figure includes building the request. Nothing is asserted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../src/platform/clock.ts';
import { silentLogger } from '../src/platform/log.ts';
import { createApp } from '../src/server/app.ts';
import { openAssetStore } from '../src/store/asset-store.ts';
import { fixedRandomInts } from './bench/random.ts';
import { benchEntity } from './bench/seed.ts';
import { BENCH_AUTH } from './bench/wrk.ts';

const arg = (name: string) => Bun.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const NODES = Number(arg('nodes') ?? 10_000);
const REVALIDATIONS = Number(arg('revalidations') ?? 20_000);
const IN_FLIGHT = 64;
const STEPS = 4;

const work = mkdtempSync(join(tmpdir(), 'nla-bench-node-locked-'));
const umask = process.umask(0o077);
const store = openAssetStore(join(work, 'database'), { create: true });
process.umask(umask);
try {
  store.importTransaction((tx) => {
    for (const entity of [
      benchEntity('Product', 'P', { name: 'Site' }),
      benchEntity('ProductModule', 'M-NODE', { productNumber: 'P', licensingModel: 'NodeLocked', name: 'Node', nodeSecretMode: 'CLIENT' }),
      benchEntity('LicenseTemplate', 'T-NODE', { productModuleNumber: 'M-NODE', licenseType: 'QUANTITY', quota: '1' }),
      benchEntity('Licensee', 'SITE', { productNumber: 'P' }),
      benchEntity('License', 'L-NODE', { licenseeNumber: 'SITE', licenseTemplateNumber: 'T-NODE', quota: String(2 * NODES) }),
      benchEntity('Token', 'bench-key', { tokenType: 'APIKEY' }),
    ]) {
      tx.put(entity);
    }
    tx.setMeta({ ...tx.meta(), withoutCard: true });
  });
  const app = createApp({ store, clock: systemClock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  const validateNode = async (node: number) => {
    const body = `productModuleNumber0=M-NODE&nodeSecret0=machine-${node}`;
    const response = await app.fetch(
      new Request('http://127.0.0.1/rest/licensee/SITE/validate', {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: BENCH_AUTH, 'content-length': String(body.length) },
      }),
    );
    const text = await response.text();
    if (response.status !== 200 || !text.includes('{"value":"true","name":"valid"}')) throw new Error(`validate of machine-${node} answered ${response.status}: ${text}`);
  };
  /** Validates `nodes` with IN_FLIGHT requests at a time; µs per request. */
  const timed = async (nodes: (i: number) => number, count: number) => {
    let next = 0;
    const startedMs = performance.now();
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) await validateNode(nodes(next++));
    }));
    return ((performance.now() - startedMs) * 1000) / count;
  };

  console.log(`Node-Locked (CLIENT) site license for ${2 * NODES} machines, in-process, ${IN_FLIGHT} requests in flight\n`);
  const step = Math.ceil(NODES / STEPS);
  for (let from = 0; from < NODES; from += step) {
    const count = Math.min(step, NODES - from);
    const us = await timed((i) => from + i, count);
    console.log(`registering machines ${from.toLocaleString('en-US')}–${(from + count).toLocaleString('en-US')}: ${us.toFixed(1)} µs per request`);
  }
  // Known machines again, picked at random: read-only, mostly reused answers.
  const us = await timed(fixedRandomInts(NODES), REVALIDATIONS);
  console.log(`known machines validating again (${REVALIDATIONS.toLocaleString('en-US')} at random): ${us.toFixed(1)} µs per request`);
} finally {
  await store.close();
  rmSync(work, { recursive: true, force: true });
}
