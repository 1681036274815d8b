/**
 * Goal: what export-assets reads from the cloud arrives unchanged in the
 * agent's database after import-assets: every property (custom ones, CR/LF,
 * markup, non-ASCII), every list, nothing of the other product, the vendor
 * credentials as a verifiable hash; also across split files and for a
 * repeated export/import after changes in the cloud.
 * Method: export from the stand-in cloud (CLI, or the export pipeline with a
 * small maxFileBytes), import with `runCli --action=import-assets`, then read
 * the stored entities through the asset store and compare them with the
 * stand-in's data set.
 */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { runCli } from '../../src/cli/run.ts';
import { ENTITY_KINDS, type Entity } from '../../src/core/entities.ts';
import { exportAssets } from '../../src/export/export-assets.ts';
import { NetLicensingRestClient } from '../../src/export/netlicensing-rest.ts';
import { verifyCredential } from '../../src/platform/credentials.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { captureIo, tempDir } from '../helpers.ts';
import {
  LICENSING_MODELS,
  STANDIN_LICENSEES,
  STANDIN_OTHER_LICENSEE,
  STANDIN_VENDOR,
  expectedExport,
  standinDataSet,
  startStandinCloud,
  type StandinCloud,
} from '../support/standin-cloud.ts';

const ALL = LICENSING_MODELS.map((model) => STANDIN_LICENSEES[model]);


let cloud: StandinCloud;
beforeEach(async () => {
  cloud = await startStandinCloud();
});
afterEach(async () => {
  await cloud.stop();
});

async function exportCli(cwd: string, extra: string[] = []): Promise<void> {
  const io = captureIo();
  const code = await runCli(
    [
      '--action=export-assets',
      `--core.base.host=${cloud.url}`,
      `--nlic.username=${STANDIN_VENDOR.username}`,
      `--nlic.password=${STANDIN_VENDOR.password}`,
      `--licensees=${ALL.join(',')}`,
      '--without-card',
      ...extra,
    ],
    io,
    { cwd },
  );
  expect(io.err).toBe('');
  expect(code).toBe(EXIT.ok);
}

async function importCli(cwd: string, extra: string[] = []): Promise<string> {
  const io = captureIo();
  const code = await runCli(['--action=import-assets', '--without-card', ...extra], io, { cwd });
  if (code !== EXIT.ok) throw new Error(`import failed (${code}): ${io.err}`);
  return io.out;
}

/** The definition as the cloud sent it; the store adds bookkeeping (e.g. the import id) beside it. */
function definition(entity: Entity | undefined): Entity | undefined {
  if (!entity) return undefined;
  const out: Entity = { kind: entity.kind, number: entity.number, props: entity.props };
  if (entity.lists !== undefined) out.lists = entity.lists;
  return out;
}

/** Every stored definition. */
function storedEntities(store: AssetStore): Entity[] {
  return ENTITY_KINDS.flatMap((kind) => store.listEntities(kind).items.map((e) => definition(e)!));
}

const byKey = (entities: Entity[]) =>
  [...entities].sort((a, b) => `${a.kind}:${a.number}`.localeCompare(`${b.kind}:${b.number}`));

async function withStore<T>(cwd: string, use: (store: AssetStore) => T | Promise<T>): Promise<T> {
  const store = openAssetStore(join(cwd, 'database'));
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

describe('export → import', () => {
  test('all nine licensees: the database holds exactly the stand-in entities of the product', async () => {
    const cwd = tempDir('nla-roundtrip-');
    await exportCli(cwd);
    await importCli(cwd);
    await withStore(cwd, async (store) => {
      for (const expected of expectedExport()) {
        expect(definition(store.getEntity(expected.kind, expected.number))).toEqual(expected);
      }
      expect(byKey(storedEntities(store))).toEqual(byKey(expectedExport()));
      expect(store.getEntity('Licensee', STANDIN_OTHER_LICENSEE)).toBeUndefined();
      const nodeLocked = store.getEntity('Licensee', STANDIN_LICENSEES.NodeLocked)!;
      expect(nodeLocked.props['note']).toBe('line 1\r\nline 2 & <tags> "quoted"');
      expect(store.getEntity('Product', 'P-AGENT-DEMO')!.lists).toHaveLength(2);
      const meta = store.meta();
      expect(meta.lastImport?.sourceHost).toBe(cloud.url);
      expect(meta.vendorCredentials?.user).toBe(STANDIN_VENDOR.username);
      expect(await verifyCredential(meta.vendorCredentials!, STANDIN_VENDOR.username, STANDIN_VENDOR.password)).toBe(true);
    });
  });

  test('split over many files: the same entities arrive', async () => {
    const client = new NetLicensingRestClient({
      baseUrl: cloud.url,
      credentials: { kind: 'basic', username: STANDIN_VENDOR.username, password: STANDIN_VENDOR.password },
    });
    const { entities, report } = exportAssets(client, { licensees: ALL });
    const collected: Entity[] = [];
    for await (const entity of entities) collected.push(entity);
    const cwd = tempDir('nla-roundtrip-split-');
    const result = await writeTransferFiles(
      { exportId: crypto.randomUUID(), createdAt: '2026-01-15T12:00:00.000Z', sourceHost: cloud.url, licensees: report.licensees },
      collected,
      { directory: cwd, maxFileBytes: 3_000 },
    );
    expect(result.files.length).toBeGreaterThan(3);
    await importCli(cwd);
    await withStore(cwd, (store) => {
      expect(byKey(storedEntities(store))).toEqual(byKey(expectedExport()));
    });
  });

  test('export again after changes in the cloud (--force) and import again: the database follows', async () => {
    const cwd = tempDir('nla-roundtrip-again-');
    await exportCli(cwd);
    await importCli(cwd);

    // The vendor changes the cloud: a custom property, a deactivated license, a removed license.
    const changed = standinDataSet()
      .filter((e) => e.number !== 'LIC-FEATURE-PRINT')
      .map((e) => {
        if (e.number === 'L-QUOTA') return { ...e, props: { ...e.props, crmCustomerId: 'new-crm-id' } };
        if (e.number === 'LIC-SUB') return { ...e, props: { ...e.props, active: 'false' } };
        return e;
      });
    cloud.entities = changed;
    await exportCli(cwd, ['--force']);
    await importCli(cwd);

    await withStore(cwd, (store) => {
      expect(store.getEntity('Licensee', 'L-QUOTA')!.props['crmCustomerId']).toBe('new-crm-id');
      expect(store.getEntity('License', 'LIC-SUB')!.props['active']).toBe('false');
      expect(store.getEntity('License', 'LIC-FEATURE-PRINT')).toBeUndefined();
      expect(byKey(storedEntities(store))).toEqual(byKey(expectedExport(changed)));
    });
  });
});
