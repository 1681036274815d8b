// Goal: export → import → validate gives, for every licensing model, exactly the
// answer the stand-in cloud's own data implies; and an agent serving offline
// can itself be the export source of another agent (hub → isolated agent).
// Method: the stand-in cloud on 127.0.0.1; export and import through runCli;
// the agent served on 127.0.0.1:0; the expected answer computed by the pure core
// straight from the stand-in data set (same request, same clock, empty runtime).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { runCli } from '../../src/cli/run.ts';
import type { Entity } from '../../src/core/entities.ts';
import { parseValidateParameters } from '../../src/core/params.ts';
import { emptyRuntimeState } from '../../src/core/runtime.ts';
import { validate } from '../../src/core/validate.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp, type RunningServer } from '../../src/server/serve.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { renderJson } from '../../src/wire/json.ts';
import { captureIo, tempDir } from '../helpers.ts';
import {
  LICENSING_MODELS,
  STANDIN_API_KEY,
  STANDIN_LICENSEES,
  STANDIN_MODULES,
  STANDIN_VENDOR,
  standinDataSet,
  startStandinCloud,
  type LicensingModel,
  type StandinCloud,
} from '../support/standin-cloud.ts';

const NOW = Date.parse('2026-11-20T10:00:00.000Z');
const ALL = LICENSING_MODELS.map((m) => STANDIN_LICENSEES[m]);

/** Parameters a client of each model sends (dry run, so the comparison needs no state). */
const PARAMS: Record<LicensingModel, Record<string, string>> = {
  TryAndBuy: {},
  Subscription: {},
  Rental: {},
  Floating: { sessionId: 'host-1', action: 'checkOut' },
  MultiFeature: {},
  PayPerUse: { usedQuantity: '3' },
  Quota: {},
  NodeLocked: { nodeSecret: 'node-1' },
  PricingTable: {},
};


async function cli(cwd: string, argv: string[]): Promise<void> {
  const io = captureIo();
  const code = await runCli(argv, io, { cwd, log: silentLogger() });
  if (code !== 0) throw new Error(`${argv[0]} failed (${code}): ${io.err}`);
}

/** export-assets from `host` (the stand-in cloud or a hub agent) into `cwd`, then import-assets there. */
async function exportAndImport(cwd: string, host: string, licensees: readonly string[]): Promise<void> {
  await cli(cwd, [
    '--action=export-assets',
    `--core.base.host=${host}`,
    `--nlic.username=${STANDIN_VENDOR.username}`,
    `--nlic.password=${STANDIN_VENDOR.password}`,
    `--licensees=${licensees.join(',')}`,
    '--without-card',
  ]);
  await cli(cwd, ['--action=import-assets', '--without-card']);
}

function body(model: LicensingModel): string {
  const params = Object.entries(PARAMS[model]).map(([k, v]) => `&${k}0=${encodeURIComponent(v)}`).join('');
  return `dryRun=true&productModuleNumber0=${STANDIN_MODULES[model]}${params}`;
}

/** What the data set implies: the core over the stand-in's own entities. */
function expectedAnswer(data: Entity[], model: LicensingModel): string {
  const byNumber = (a: Entity, b: Entity) => (a.number < b.number ? -1 : a.number > b.number ? 1 : 0);
  const licensee = data.find((e) => e.kind === 'Licensee' && e.number === STANDIN_LICENSEES[model])!;
  const product = data.find((e) => e.kind === 'Product' && e.number === licensee.props['productNumber'])!;
  const modules = data.filter((e) => e.kind === 'ProductModule' && e.props['productNumber'] === product.number).sort(byNumber);
  const moduleNumbers = new Set(modules.map((m) => m.number));
  const templates = data.filter((e) => e.kind === 'LicenseTemplate' && moduleNumbers.has(e.props['productModuleNumber'] ?? '')).sort(byNumber);
  const licenses = data.filter((e) => e.kind === 'License' && e.props['licenseeNumber'] === licensee.number).sort(byNumber);
  const pairs = [...new URLSearchParams(body(model))] as [string, string][];
  const outcome = validate({ product, licensee, modules, templates, licenses }, emptyRuntimeState(), parseValidateParameters(pairs, false), {
    nowMs: NOW,
    ttlMs: 600_000,
  });
  return renderJson(outcome.envelope);
}

function serve(store: AssetStore): RunningServer {
  const app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  return serveApp(app, { port: 0, hostname: '127.0.0.1' });
}

async function validateOverHttp(server: RunningServer, model: LicensingModel, authorization: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${server.port}/core/v2/rest/licensee/${encodeURIComponent(STANDIN_LICENSEES[model])}/validate`, {
    method: 'POST',
    headers: { authorization, accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
    body: body(model),
  });
  expect(res.status).toBe(200);
  return res.text();
}

let cloud: StandinCloud;
let hubCwd: string;
let hubStore: AssetStore;
let hub: RunningServer;
const apiKey = `Basic ${Buffer.from(`apiKey:${STANDIN_API_KEY}`).toString('base64')}`;

beforeAll(async () => {
  cloud = await startStandinCloud();
  hubCwd = tempDir('nla-e2e-hub-');
  await exportAndImport(hubCwd, cloud.url, ALL);
  hubStore = openAssetStore(join(hubCwd, 'database'));
  hub = serve(hubStore);
});
afterAll(async () => {
  await hub.stop();
  await hubStore.close();
  await cloud.stop();
});

describe('export → import → validate, every licensing model', () => {
  for (const model of LICENSING_MODELS) {
    test(`${model}: the agent answers what the cloud's data implies`, async () => {
      const answer = await validateOverHttp(hub, model, apiKey);
      expect(answer).toBe(expectedAnswer(standinDataSet(), model));
      expect(answer).toContain(`"value":"${STANDIN_MODULES[model]}","name":"productModuleNumber"`);
    });
  }
});

test('an agent serving offline is the export source of another agent, with the same answers', async () => {
  const isolatedCwd = tempDir('nla-e2e-isolated-');
  await exportAndImport(isolatedCwd, `http://127.0.0.1:${hub.port}`, ALL);
  const isolatedStore = openAssetStore(join(isolatedCwd, 'database'));
  const isolated = serve(isolatedStore);
  try {
    for (const kind of ['Product', 'ProductModule', 'LicenseTemplate', 'Licensee', 'License', 'Token'] as const) {
      const strip = (e: Entity) => ({ kind: e.kind, number: e.number, props: e.props, lists: e.lists ?? [] });
      expect(isolatedStore.listEntities(kind).items.map(strip)).toEqual(hubStore.listEntities(kind).items.map(strip));
    }
    for (const model of LICENSING_MODELS) {
      expect(await validateOverHttp(isolated, model, apiKey)).toBe(await validateOverHttp(hub, model, apiKey));
    }
  } finally {
    await isolated.stop();
    await isolatedStore.close();
  }
});

test('node secrets the hub registered travel with its export and count against the quota downstream', async () => {
  const licensee = encodeURIComponent(STANDIN_LICENSEES.NodeLocked);
  const nodeValidate = async (server: RunningServer, secret: string) => {
    const res = await fetch(`http://127.0.0.1:${server.port}/core/v2/rest/licensee/${licensee}/validate`, {
      method: 'POST',
      headers: { authorization: apiKey, accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
      body: `productModuleNumber0=${STANDIN_MODULES.NodeLocked}&nodeSecret0=${encodeURIComponent(secret)}`,
    });
    const items = ((await res.json()) as { items: { item: { property: { name: string; value: string }[] }[] } }).items.item;
    const node = items.find((item) => item.property.some((p) => p.name === 'productModuleNumber' && p.value === STANDIN_MODULES.NodeLocked))!;
    return node.property.find((p) => p.name === 'valid')!.value;
  };
  // The hub binds the license's second node (quota 2; node-secret-A came from the cloud).
  expect(await nodeValidate(hub, 'node-hub')).toBe('true');
  const license = await fetch(`http://127.0.0.1:${hub.port}/core/v2/rest/license/LIC-NODE`, {
    headers: { authorization: `Basic ${Buffer.from(`${STANDIN_VENDOR.username}:${STANDIN_VENDOR.password}`).toString('base64')}`, accept: 'application/json' },
  });
  const properties = ((await license.json()) as { items: { item: { property: { name: string; value: string }[] }[] } }).items.item[0]!.property;
  expect(properties).toContainEqual({ name: 'nodeSecret0', value: 'node-secret-A' });
  expect(properties).toContainEqual({ name: 'nodeSecret1', value: 'node-hub' });

  const downstreamCwd = tempDir('nla-e2e-downstream-');
  await exportAndImport(downstreamCwd, `http://127.0.0.1:${hub.port}`, [STANDIN_LICENSEES.NodeLocked]);
  const downstreamStore = openAssetStore(join(downstreamCwd, 'database'));
  const downstream = serve(downstreamStore);
  try {
    expect(await nodeValidate(downstream, 'node-hub')).toBe('true');
    expect(await nodeValidate(downstream, 'node-secret-A')).toBe('true');
    // Both nodes of the quota are taken: a third machine is refused here too.
    expect(await nodeValidate(downstream, 'node-elsewhere')).toBe('false');
  } finally {
    await downstream.stop();
    await downstreamStore.close();
  }
});
