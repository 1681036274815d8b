// Goal: the nightly re-import can run while run-agent-offline serves: no request
// fails, no counter change is lost, and the served definitions switch at once
// (a client never sees half of the new import). Method: the agent in a child
// process over a working directory; clients on 127.0.0.1 drive Pay-per-Use
// writes and Quota reads; meanwhile `import-assets` runs as a second process
// (the real CLI) with an export of 20,000 licensees in which two licenses of the
// watched licensee change together (quota 10+5 → 20+15).
import { expect, test } from 'bun:test';
import { join } from 'node:path';
import type { Entity } from '../../src/core/entities.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { startAgentChild } from '../ops/support.ts';
import { API_KEY, apiKeyAuth, entity } from '../support/seed-store.ts';

const main = join(import.meta.dir, '..', '..', 'src', 'main.ts');

function data(quotas: [string, string], extraLicensees: number): Entity[] {
  const out: Entity[] = [
    entity('Product', 'P'),
    entity('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse' }),
    entity('ProductModule', 'M-QUOTA', { productNumber: 'P', licensingModel: 'Quota' }),
    entity('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: '1000000' }),
    entity('LicenseTemplate', 'T-QUOTA', { productModuleNumber: 'M-QUOTA', licenseType: 'QUANTITY', quantity: '1' }),
    entity('Licensee', 'L', { productNumber: 'P' }),
    entity('License', 'LP', { licenseeNumber: 'L', licenseTemplateNumber: 'T-PPU', quantity: '1000000' }),
    entity('License', 'LQ1', { licenseeNumber: 'L', licenseTemplateNumber: 'T-QUOTA', quantity: quotas[0] }),
    entity('License', 'LQ2', { licenseeNumber: 'L', licenseTemplateNumber: 'T-QUOTA', quantity: quotas[1] }),
  ];
  for (let i = 0; i < extraLicensees; i++) {
    out.push(entity('Licensee', `X-${i}`, { productNumber: 'P', note: 'filler' }));
    out.push(entity('License', `XL-${i}`, { licenseeNumber: `X-${i}`, licenseTemplateNumber: 'T-QUOTA', quantity: '3' }));
  }
  out.push(entity('Token', API_KEY, { tokenType: 'APIKEY' }));
  return out;
}

async function write(dir: string, entities: Entity[]): Promise<void> {
  await writeTransferFiles(
    {
      exportId: crypto.randomUUID(),
      createdAt: '2026-11-15T00:00:00.000Z',
      sourceHost: 'test',
      licensees: entities.filter((e) => e.kind === 'Licensee').map((e) => e.number),
    },
    entities,
    { directory: dir },
  );
}

function run(argv: string[], cwd: string): Bun.Subprocess<'ignore', 'pipe', 'pipe'> {
  return Bun.spawn([process.execPath, main, ...argv], { cwd, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
}

test('import into a serving agent: no failed request, no lost count, atomic switch', async () => {
  const cwd = tempDir('nla-live-import-');
  await write(join(cwd, 'first'), data(['10', '5'], 0));
  const first = run(['--action=import-assets', '--input=first', '--without-card'], cwd);
  expect(await first.exited).toBe(0);
  await write(join(cwd, 'second'), data(['20', '15'], 20_000));

  const agent = await startAgentChild(cwd, ['--without-card', '--admin.port=off']);
  const url = `http://127.0.0.1:${agent.port}/rest/licensee/L/validate`;
  const post = async (body: string) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body,
    });
    return { status: res.status, text: await res.text() };
  };

  let importing = true;
  let used = 0;
  const failures: string[] = [];
  const quotasSeen = new Set<string>();
  const writer = async () => {
    while (importing) {
      const r = await post('productModuleNumber0=M-PPU&usedQuantity0=1');
      if (r.status === 200) used++;
      else failures.push(`${r.status} ${r.text.slice(0, 200)}`);
    }
  };
  const watcher = async () => {
    while (importing) {
      const r = await post('dryRun=true&productModuleNumber0=M-QUOTA');
      if (r.status !== 200) failures.push(`${r.status} ${r.text.slice(0, 200)}`);
      else quotasSeen.add(/"value":"(\d+)","name":"quota"/.exec(r.text)?.[1] ?? 'none');
    }
  };
  const load = [writer(), writer(), writer(), watcher(), watcher()];
  const second = run(['--action=import-assets', '--input=second', '--without-card'], cwd);
  const importExit = await second.exited;
  const importErr = await new Response(second.stderr).text();
  // Keep the load on a moment after the import so the switch is observed.
  await Bun.sleep(200);
  importing = false;
  await Promise.all(load);
  expect(await agent.stop()).toBe(0);

  expect(importExit, importErr).toBe(0);
  expect(failures).toEqual([]);
  expect(used).toBeGreaterThan(0);
  // Quota is the sum of both licenses: 15 before, 35 after, never a mix (25).
  expect([...quotasSeen].sort()).toEqual(['15', '35']);
  const store = openAssetStore(join(cwd, 'database'));
  expect(store.getRuntime('L').usedQuantity['LP']).toBe(used);
  expect(store.listEntities('Licensee').total).toBe(20_001);
  await store.close();
}, 180_000);

// Goal: one database, one serving agent (the runtime state lives in the serving process's
// memory). Method: a second run-agent-offline on the same working directory while the first
// serves must stop with exit 8 and say why; after the first stops (SIGKILL: the kernel drops
// the lock with the process) a new one starts.
test('a second agent on the same database is refused; the lock dies with its holder', async () => {
  const cwd = tempDir('nla-one-agent-');
  await write(join(cwd, 'in'), data(['1', '1'], 0));
  expect(await run(['--action=import-assets', '--input=in', '--without-card'], cwd).exited).toBe(0);
  const serve = ['--without-card', '--admin.port=off'];
  const first = await startAgentChild(cwd, serve);
  // Refused before it listens, so started directly (startAgentChild waits for the listening line).
  const second = run(['--action=run-agent-offline', '--port=0', '--host=127.0.0.1', ...serve], cwd);
  expect(await second.exited).toBe(8);
  expect(await new Response(second.stderr).text()).toContain(`another agent already serves the database in ${join(cwd, 'database')} (pid ${first.proc.pid}`);
  first.proc.kill('SIGKILL');
  await first.proc.exited;
  const third = await startAgentChild(cwd, serve);
  const res = await fetch(`http://127.0.0.1:${third.port}/rest/licensee/L/validate`, {
    method: 'POST',
    headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' },
    body: 'productModuleNumber0=M-QUOTA',
  });
  expect(res.status).toBe(200);
  expect(await third.stop()).toBe(0);
});
