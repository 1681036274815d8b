// Goal: a full disk makes write requests fail with a clear 5xx envelope while
// reads keep working; nothing is corrupted; writes resume once space is back.
// Method: (1) a real, small tmpfs mounted by the test (CI runs as root) holding
// the database plus a ballast file; Floating check-outs with long session ids
// fill it; deleting the ballast frees space. (2) An injected ENOSPC in the
// store adapter, for machines where mounting is not allowed.
import { afterAll, expect, test } from 'bun:test';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { STORED_ID_CHARS_MAX } from '../../src/core/models/common.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { diskFullError, tempDir } from '../helpers.ts';
import { apiKeyAuth, demoEntities, entity, seedStore, vendorAuth } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');
const mounts: string[] = [];
afterAll(() => {
  // A mount still busy (a test failed with the store open) is detached lazily rather than left behind.
  for (const m of mounts) if (Bun.spawnSync(['umount', m]).exitCode !== 0) Bun.spawnSync(['umount', '--lazy', m]);
});

function floatingEntities() {
  const entities = demoEntities().filter((e) => e.kind !== 'License' || e.number !== 'LIC-FLOAT');
  entities.push(entity('License', 'LIC-FLOAT', { licenseeNumber: 'L-1', licenseTemplateNumber: 'T-FLOAT', maxSessions: '1000000' }));
  return entities;
}

const checkOut = (id: string) => ({
  method: 'POST',
  headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
  body: `productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=${id}`,
});

test('real full disk (tmpfs): 5xx envelope on writes, reads served, writes resume, journal verifies', async () => {
  const mountPoint = tempDir('nla-tmpfs-');
  const mounted = Bun.spawnSync(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint], { stderr: 'pipe' });
  if (mounted.exitCode !== 0) {
    throw new Error(`this test mounts a tmpfs and needs root: ${mounted.stderr.toString()}`);
  }
  mounts.push(mountPoint);
  const ballast = join(mountPoint, 'ballast');
  // 2 MiB: the licensee's state grows to ~1 MiB of session ids here, and LMDB writes a changed
  // value anew (copy on write), once for the changes made before the disk filled and once for the
  // change after: freeing the ballast must leave room for both.
  writeFileSync(ballast, Buffer.alloc(2 * 1024 * 1024));
  const cwd = join(mountPoint, 'work');
  mkdirSync(cwd);
  // The runtime journal file takes up to its rewind offset of the disk (8 MiB by default, nothing on
  // a real disk); on this 4 MiB one it is kept to 64 KiB, so that the disk fills with LMDB's data
  // and freeing the ballast leaves LMDB the room to take the changes, as it would on a real disk.
  const { store } = seedStore(floatingEntities(), { dir: cwd, open: { walRewindAtBytes: 64 * 1024 } });
  const app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });

  const acknowledged: string[] = [];
  let failure: Response | undefined;
  for (let i = 0; i < 40_000 && !failure; i++) {
    // As long as a stored id may be (models/common.ts STORED_ID_CHARS_MAX), so that the disk fills soon.
    const id = `${i}-`.padEnd(STORED_ID_CHARS_MAX, 'x');
    const res = await app.request('/rest/licensee/L-1/validate', checkOut(id));
    if (res.status === 200) acknowledged.push(id);
    else failure = res;
  }
  expect(failure).toBeDefined();
  expect(failure!.status).toBe(507);
  const body = (await failure!.json()) as { infos: { info: { id: string; type: string; value: string }[] } };
  expect(body.infos.info[0]).toMatchObject({ id: 'ServiceUnavailableException', type: 'ERROR' });
  expect(body.infos.info[0]!.value).toContain('disk_full');

  // Reads keep working: entity reads and a dry-run validate.
  expect((await app.request('/rest/licensee/L-1', { headers: { authorization: vendorAuth() } })).status).toBe(200);
  const dry = await app.request('/rest/licensee/L-1/validate', {
    ...checkOut('dry'),
    body: 'dryRun=true&productModuleNumber0=M-QUOTA',
  });
  expect(dry.status).toBe(200);

  rmSync(ballast);
  const resumed = await app.request('/rest/licensee/L-1/validate', checkOut('after-space-is-back'));
  expect(resumed.status).toBe(200);
  acknowledged.push('after-space-is-back');

  // Acknowledged changes were durable in the runtime journal file; LMDB receives them once it has room.
  await store.settled();
  const sessions = store.getRuntime('L-1').sessions['M-FLOAT'] ?? new Map();
  for (const id of acknowledged) expect(sessions.get(id)).toBeDefined();
  expect(sessions.size).toBe(acknowledged.length);
  expect(verifyDatabase(store).ok).toBe(true);
  await store.close();
  const reopened = openAssetStore(join(cwd, 'database'));
  expect(reopened.getRuntime('L-1').sessions['M-FLOAT']?.size).toBe(acknowledged.length);
  await reopened.close();
});

test('injected ENOSPC: the write fails with 507, state is unchanged, and writes resume', async () => {
  const cwd = tempDir();
  const seeded = seedStore(floatingEntities(), { dir: cwd });
  await seeded.store.close();
  let diskFull = false;
  const store = openAssetStore(join(cwd, 'database'), {
    failWrites: () => (diskFull ? Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }) : undefined),
  });
  const app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  expect((await app.request('/rest/licensee/L-1/validate', checkOut('a'))).status).toBe(200);
  await store.settled();
  diskFull = true;
  const refused = await app.request('/rest/licensee/L-1/validate', checkOut('b'));
  expect(refused.status).toBe(507);
  // Voiding the failed record failed too (the disk is still full): the client is told to check.
  expect(await refused.text()).toContain('may still be stored: check before repeating it');
  expect([...(store.getRuntime('L-1').sessions['M-FLOAT']?.keys() ?? [])]).toEqual(['a']);
  diskFull = false;
  expect((await app.request('/rest/licensee/L-1/validate', checkOut('c'))).status).toBe(200);
  await store.settled();
  expect([...(store.getRuntime('L-1').sessions['M-FLOAT']?.keys() ?? [])].sort()).toEqual(['a', 'c']);
  expect(verifyDatabase(store).ok).toBe(true);
  await store.close();
});

test('while checkpoints fail (LMDB full): license reads get a 503 that says why, other reads and validates are answered', async () => {
  const seeded = seedStore(demoEntities());
  await seeded.store.close();
  let full = false;
  const store = openAssetStore(join(seeded.cwd, 'database'), { failCheckpoints: () => (full ? diskFullError() : undefined) });
  try {
    const app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
    const read = (path: string) => app.request(path, { headers: { authorization: vendorAuth(), accept: 'application/json' } });
    full = true;
    // Durable in the runtime journal file, which has room; its checkpoint into LMDB fails.
    const write = await app.request('/rest/licensee/L-1/validate', {
      method: 'POST',
      headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s1',
    });
    expect(write.status).toBe(200);
    const license = await read('/rest/license');
    expect(license.status).toBe(503);
    expect(license.headers.get('retry-after')).toBe('10');
    const text = await license.text();
    expect(text).toContain('License reads wait until the agent');
    expect(text).toContain('(disk_full)');
    expect(text).not.toContain('store this change');
    for (const path of ['/rest/licensee/L-1', '/rest/product', '/rest/licensetemplate']) expect((await read(path)).status).toBe(200);
    full = false;
    // Room again: the next read's wait brings LMDB up to date.
    expect((await read('/rest/license')).status).toBe(200);
  } finally {
    full = false;
    await store.close();
  }
});
