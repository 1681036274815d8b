// Goal: run-agent killed with SIGKILL during an outage loses nothing it answered locally: the
// next start replays every acknowledged counter change to the upstream, once. Method: the real
// program (`src/main.ts --action=run-agent`) as a child process against the stand-in upstream
// (tests/proxy/support.ts) in this process; the upstream's own database shows what it counted.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { join } from 'node:path';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { tempDir } from '../helpers.ts';
import { MAIN, startServingChild } from '../ops/support.ts';
import { apiKeyAuth, VENDOR } from '../support/seed-store.ts';
import { form, moduleProperty, StandinUpstream } from './support.ts';

let upstream: StandinUpstream;
beforeAll(() => {
  upstream = StandinUpstream.start();
});
afterAll(async () => {
  await upstream.close();
});

/** run-agent in `cwd` against the stand-in upstream, once it listens. */
const startRunAgent = (cwd: string) =>
  startServingChild(
    [
      process.execPath,
      MAIN,
      '--action=run-agent',
      `--core.base.host=${upstream.baseUrl}`,
      `--nlic.username=${VENDOR.user}`,
      `--nlic.password=${VENDOR.password}`,
      '--host=127.0.0.1',
      '--port=0',
      '--admin.port=off',
      '--upstream.timeout=1',
    ],
    cwd,
  );

const used = async () => {
  await upstream.store.settled();
  return upstream.store.getRuntime('L-1').usedQuantity['LIC-PPU'] ?? 0;
};

test('SIGKILL during an outage: the next start replays every use answered locally, once', async () => {
  const cwd = tempDir('nla-proxy-crash-');
  const validate = (port: number, body: string) =>
    fetch(`http://127.0.0.1:${port}/rest/licensee/L-1/validate`, form(body, { authorization: apiKeyAuth(), accept: 'application/json' }));
  const first = await startRunAgent(cwd);
  let acknowledged = 0;
  try {
    // Healthy: forwarded, and the agent fetches its local copy of L-1 in the background; read the
    // agent's database (read-only, beside the running agent) until its licenses are there.
    expect((await validate(first.port, 'productModuleNumber0=M-SUB')).status).toBe(200);
    const hasLocalCopy = async () => {
      const local = openAssetStore(join(cwd, 'database'), { readOnly: true });
      try {
        return local.children('License', 'L-1').length > 0;
      } finally {
        await local.close();
      }
    };
    for (let i = 0; i < 250 && !(await hasLocalCopy()); i++) await Bun.sleep(20);
    expect(await hasLocalCopy()).toBe(true);
    const before = await used();
    await upstream.stop();
    for (let i = 1; i <= 5; i++) {
      const res = await validate(first.port, 'productModuleNumber0=M-PPU&usedQuantity0=1');
      expect(res.status).toBe(200);
      expect(await moduleProperty(res, 'M-PPU', 'remainingQuantity')).toBe(String(35 - before - i));
      acknowledged++;
    }
    first.proc.kill('SIGKILL');
    await first.proc.exited;
    expect(await used()).toBe(before);
    await upstream.restart();
    // The next start replays what waits, before anything else asks for it.
    const second = await startRunAgent(cwd);
    try {
      for (let i = 0; i < 250 && (await used()) < before + acknowledged; i++) await Bun.sleep(20);
      expect(await used()).toBe(before + acknowledged);
      // Once: nothing more arrives after a while, and a new use is forwarded as usual.
      await Bun.sleep(300);
      expect(await used()).toBe(before + acknowledged);
      expect((await validate(second.port, 'productModuleNumber0=M-PPU&usedQuantity0=1')).status).toBe(200);
      expect(await used()).toBe(before + acknowledged + 1);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  } finally {
    if (first.proc.exitCode === null) first.proc.kill('SIGKILL');
  }
}, 60_000);
