// Goal: `--action=import-assets` as a user and a script see it: summary on
// stdout, diagnostics and (TTY only) progress on stderr, the documented exit
// codes for card binding, conflicts and --force, the bundled demo export
// importing cleanly, transfer files left in place. Method: runCli with
// captured io and a fixed clock in temp working directories.
import { describe, expect, test } from 'bun:test';
import { cpSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.ts';
import type { Entity, EntityList } from '../../src/core/entities.ts';
import { claimImport, IMPORT_LOCK_FILE, openAssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { cli, entity, header, headerFor, smallExport, TEST_NOW_MS } from '../importer/helpers.ts';

const DEMO = join(import.meta.dir, '..', '..', 'demo');

describe('import-assets action', () => {
  test('imports the bundled demo export into <cwd>/database and prints a summary', async () => {
    const cwd = tempDir();
    cpSync(DEMO, cwd, { recursive: true });
    const result = await cli(['--action=import-assets'], cwd);
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toBe(
      [
        'imported export 5e1d0d5c-2026-4000-8000-000000000001 (created 2026-01-01T00:00:00.000Z from https://go.netlicensing.io)',
        `files: 1 (${(demoFileBytes(cwd) / 1024).toFixed(1)} KiB)`,
        'entities: 1 Product, 9 ProductModule, 13 LicenseTemplate, 9 Licensee, 9 License, 2 Token',
        'removed: none',
        'card: without card',
        'time: 0.00 s',
        'The transfer files may now be removed (they hold sensitive data): 1_netlicensing-assets.xml',
        '',
      ].join('\n'),
    );
    expect(result.stderr).toContain('importing export 5e1d0d5c-2026-4000-8000-000000000001');
    expect(result.stderr).not.toContain('\r');
    // The transfer file stays; the database is there.
    expect(existsSync(join(cwd, '1_netlicensing-assets.xml'))).toBe(true);
    const store = openAssetStore(join(cwd, 'database'));
    const meta = store.meta();
    expect(meta.withoutCard).toBe(true);
    expect(meta.vendorCredentials?.user).toBe('demo');
    expect(meta.lastImport).toMatchObject({ exportId: '5e1d0d5c-2026-4000-8000-000000000001', files: 1, entities: 43 });
    const models = store.children('ProductModule', 'DEMO-PRODUCT').map((m) => m.props['licensingModel']);
    expect(models).toEqual(
      expect.arrayContaining(['TryAndBuy', 'Subscription', 'Rental', 'Floating', 'MultiFeature', 'PayPerUse', 'Quota', 'NodeLocked', 'PricingTable']),
    );
    expect(store.getEntity('Token', '6f1a3c52-7d0e-4b8a-9c1e-2f5b8d4a7e01')?.props['licenseeNumber']).toBe('DEMO-SUBSCRIPTION');
    expect(store.getEntity('Token', '0b9d2e7f-3a41-4c6b-8e5d-9f2a1c7b4e10')?.props['licenseeNumber']).toBeUndefined();
    await store.close();
  });

  test('a transfer file name that is a dangling symlink, a directory or a FIFO is a bad input (exit 3), and never waited on', async () => {
    for (const make of [
      (path: string) => symlinkSync('/nonexistent/1_netlicensing-assets.xml', path),
      (path: string) => mkdirSync(path),
      (path: string) => expect(Bun.spawnSync(['mkfifo', path]).exitCode).toBe(0),
    ]) {
      const cwd = tempDir();
      make(join(cwd, '1_netlicensing-assets.xml'));
      const result = await cli(['--action=import-assets'], cwd);
      expect(result.code).toBe(EXIT.input);
      expect(result.stderr).toContain('cannot read the transfer file');
      expect(existsSync(join(cwd, 'database'))).toBe(false);
    }
  });

  test('an item past the bounds real exports keep (lists 64 deep, values of 1 Mi characters) is bad input at its position', async () => {
    const nested = (depth: number): EntityList => ({ name: `l${depth}`, props: { a: 'b' }, ...(depth > 1 ? { lists: [nested(depth - 1)] } : {}) });
    const cases: [Partial<Entity>, string][] = [
      [{ lists: [nested(65)] }, 'lists nested more than 64 deep'],
      [{ props: { description: 'x'.repeat(1024 * 1024 + 1) } }, 'the value of property "description" is longer than 1048576 characters'],
      [{ props: { description: 'x'.repeat(5 * 1024 * 1024) } }, 'characters without markup'],
    ];
    for (const [product, reason] of cases) {
      const cwd = tempDir();
      const entities = smallExport([{ number: 'L1', licenses: [] }]).map(
        (e): Entity => (e.kind === 'Product' ? { ...e, props: { ...e.props, ...product.props }, ...(product.lists ? { lists: product.lists } : {}) } : e),
      );
      await writeTransferFiles(header(['L1']), entities, { directory: join(cwd, 'in'), maxFileBytes: 64 * 1024 * 1024 });
      const result = await cli(['--action=import-assets', '--input=in'], cwd);
      expect(result.code).toBe(EXIT.input);
      expect(result.stderr).toMatch(/1_netlicensing-assets\.xml:\d+:\d+/);
      expect(result.stderr).toContain(reason);
    }
    // 64 deep is still fine.
    const cwd = tempDir();
    const entities = smallExport([{ number: 'L1', licenses: [] }]).map((e) => (e.kind === 'Product' ? { ...e, lists: [nested(64)] } : e));
    await writeTransferFiles(header(['L1']), entities, { directory: join(cwd, 'in') });
    expect((await cli(['--action=import-assets', '--input=in'], cwd)).code).toBe(EXIT.ok);
  });

  test("the header's licensees list is bounded apart: an export of many licensees lists more than 1 Mi, and 4 Mi, characters there", async () => {
    // 2,000 numbers of 2,200 characters: 4.4 million characters in one value, as about 367,000
    // numbers of 9 would be with their quotes and comma (bench-import's 100,000 made 1.2 million
    // and were refused before).
    const cwd = tempDir();
    const licensees = Array.from({ length: 2000 }, (_, i) => ({ number: `L${String(i).padStart(4, '0')}-${'n'.repeat(2194)}`, licenses: [] }));
    const entities = smallExport(licensees);
    await writeTransferFiles(headerFor(entities), entities, { directory: join(cwd, 'in'), maxFileBytes: 64 * 1024 * 1024 });
    const result = await cli(['--action=import-assets', '--input=in'], cwd);
    expect(result.stderr).not.toContain('longer than');
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toContain('2000 Licensee');
  });

  test('a second import while one runs is refused before it opens the database, and removes nothing', async () => {
    const cwd = tempDir();
    cpSync(DEMO, cwd, { recursive: true });
    // The running import: it holds the lock from before the database exists (two cron jobs started
    // together both found none), and has created the database meanwhile.
    const running = claimImport(join(cwd, 'database'), 'import-assets, pid 4242');
    try {
      await openAssetStore(join(cwd, 'database'), { create: true }).close();
      const refused = await cli(['--action=import-assets'], cwd);
      expect(refused.code).toBe(EXIT.store);
      expect(refused.stderr).toContain('import refused: another import into');
      expect(refused.stderr).toContain('is running (import-assets, pid 4242)');
      // The refused one created nothing, so it removed nothing.
      expect(existsSync(join(cwd, 'database', 'data.mdb'))).toBe(true);
    } finally {
      running.release();
    }
    const imported = await cli(['--action=import-assets'], cwd);
    expect(imported.code).toBe(EXIT.ok);
  });

  test('draws progress on stderr only when it is a terminal', async () => {
    const cwd = tempDir();
    const licensees = Array.from({ length: 200 }, (_, i) => ({ number: `L${i}`, licenses: [`X${i}`] }));
    const entities = smallExport(licensees);
    await writeTransferFiles(headerFor(entities), entities, { directory: join(cwd, 'in') });
    const tty = await cli(['--action=import-assets', '--input=in'], cwd, { isTTY: true });
    expect(tty.code).toBe(EXIT.ok);
    expect(tty.stderr).toContain('\rimporting: ');
    expect(tty.stdout).not.toContain('importing:');
  });

  test('a card-bound export needs its card: --without-card does not lift the binding', async () => {
    const cwd = tempDir();
    await writeTransferFiles(header(['L1'], { cardSerial: 'CARD-7' }), smallExport([{ number: 'L1', licenses: [] }]), { directory: join(cwd, 'in') });
    for (const argv of [['--action=import-assets', '--input=in'], ['--action=import-assets', '--input=in', '--without-card']]) {
      const refused = await cli(argv, cwd);
      expect(refused.code).toBe(EXIT.card);
      expect(refused.stderr).toContain('bound to smart card CARD-7');
      expect(refused.stderr).toContain('export made with --without-card');
      expect(existsSync(join(cwd, 'database'))).toBe(false);
    }
  });

  test('a conflict exits with 4 and changes nothing; --force imports and reports it', async () => {
    const cwd = tempDir();
    const specs = [
      { number: 'L1', licenses: ['X1', 'X2'] },
      { number: 'L2', licenses: [] },
    ];
    await writeTransferFiles(header(['L1', 'L2']), smallExport(specs), { directory: join(cwd, 'a') });
    expect((await cli(['--action=import-assets', '--input=a'], cwd)).code).toBe(EXIT.ok);
    const moved = [
      { number: 'L1', licenses: ['X1'] },
      { number: 'L2', licenses: ['X2'] },
    ];
    await writeTransferFiles(header(['L1', 'L2'], { exportId: 'b' }), smallExport(moved, { tokens: [entity('Token', 'K', { tokenType: 'APIKEY' })] }), {
      directory: join(cwd, 'b'),
    });
    const refused = await cli(['--action=import-assets', '--input=b'], cwd);
    expect(refused.code).toBe(EXIT.conflict);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain('import refused: 1 conflict with the database');
    expect(refused.stderr).toMatch(/License "X2" \(b\/1_netlicensing-assets\.xml:\d+:\d+\): its licenseeNumber changes from "L1" to "L2"/);

    const forced = await cli(['--action=import-assets', '--input=b', '--force'], cwd);
    expect(forced.code).toBe(EXIT.ok);
    expect(forced.stderr).toContain('conflict overridden by --force: License "X2"');
    expect(forced.stdout).toContain('conflicts overridden by --force: 1');
    expect(forced.stdout).toContain('entities: 1 Product, 2 ProductModule, 2 LicenseTemplate, 2 Licensee, 2 License, 1 Token');
    const store = openAssetStore(join(cwd, 'database'));
    expect(store.children('License', 'L2').map((l) => l.number)).toEqual(['X2']);
    expect(store.meta().lastImport?.exportId).toBe('b');
    await store.close();
  });

  test('an export older than the one imported is refused (exit 4, nothing changed); --force imports it; the same export again is fine', async () => {
    const cwd = tempDir();
    const specs = [{ number: 'L1', licenses: ['X1'] }];
    await writeTransferFiles(header(['L1'], { exportId: 'new', createdAt: '2026-06-01T00:00:00.000Z' }), smallExport(specs), { directory: join(cwd, 'new') });
    await writeTransferFiles(header(['L1'], { exportId: 'old', createdAt: '2026-05-31T23:59:59.000Z' }), smallExport(specs), { directory: join(cwd, 'old') });
    expect((await cli(['--action=import-assets', '--input=new'], cwd)).code).toBe(EXIT.ok);
    expect((await cli(['--action=import-assets', '--input=new'], cwd)).code).toBe(EXIT.ok);
    const refused = await cli(['--action=import-assets', '--input=old'], cwd);
    expect(refused.code).toBe(EXIT.conflict);
    expect(refused.stderr).toContain('export old was created 2026-05-31T23:59:59.000Z, before export new (2026-06-01T00:00:00.000Z)');
    const store = openAssetStore(join(cwd, 'database'));
    expect(store.meta().lastImport?.exportId).toBe('new');
    await store.close();
    const forced = await cli(['--action=import-assets', '--input=old', '--force'], cwd);
    expect(forced.code).toBe(EXIT.ok);
    expect(forced.stderr).toContain('conflict overridden by --force: database');
  });

  test('an export dated after this host\'s clock (beyond a day) is refused (exit 4): once imported, every later export looked older', async () => {
    const cwd = tempDir();
    const specs = [{ number: 'L1', licenses: ['X1'] }];
    await writeTransferFiles(header(['L1'], { exportId: 'future', createdAt: '9999-12-31T00:00:00.000Z' }), smallExport(specs), { directory: join(cwd, 'future') });
    await writeTransferFiles(header(['L1'], { exportId: 'now', createdAt: new Date(TEST_NOW_MS).toISOString() }), smallExport(specs), { directory: join(cwd, 'now') });
    const refused = await cli(['--action=import-assets', '--input=future'], cwd);
    expect(refused.code).toBe(EXIT.conflict);
    expect(refused.stderr).toContain("export future was created 9999-12-31T00:00:00.000Z, after this host's clock");
    expect(existsSync(join(cwd, 'database'))).toBe(false);
    // An export made now (the test's clock), on a clock that is right, imports as usual.
    expect((await cli(['--action=import-assets', '--input=now'], cwd)).code).toBe(EXIT.ok);
    const forced = await cli(['--action=import-assets', '--input=future', '--force'], cwd);
    expect(forced.code).toBe(EXIT.ok);
    expect(forced.stderr).toContain("conflict overridden by --force: database");
  });

  test('a re-import reports what it removed and leaves the transfer files', async () => {
    const cwd = tempDir();
    await writeTransferFiles(header(['L1']), smallExport([{ number: 'L1', licenses: ['X1', 'X2'] }]), { directory: join(cwd, 'a') });
    await writeTransferFiles(header(['L1'], { exportId: 'b' }), smallExport([{ number: 'L1', licenses: ['X1'] }]), { directory: join(cwd, 'b') });
    expect((await cli(['--action=import-assets', '--input=a'], cwd)).code).toBe(EXIT.ok);
    const again = await cli(['--action=import-assets', '--input=b'], cwd);
    expect(again.code).toBe(EXIT.ok);
    expect(again.stdout).toContain('removed: 1 License\n');
    expect(again.stdout).toContain('may now be removed (they hold sensitive data): b/1_netlicensing-assets.xml');
    expect(readdirSync(join(cwd, 'b'))).toEqual(['1_netlicensing-assets.xml']);
  });
});

function demoFileBytes(dir: string): number {
  return statSync(join(dir, '1_netlicensing-assets.xml')).size;
}
