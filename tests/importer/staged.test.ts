// Goal: the import's commit protocol (docs/transfer-format.md, "Import"): it
// stages into the spare definitions generation in small transactions, a
// reader (store and definitions cache, as a server uses them) sees the old
// definitions until the one switch transaction commits, runtime writes go on
// between batches, a second import is refused while one runs, a change of the
// served definitions meanwhile makes the switch refuse, and carrying over
// page by page or parsing on a worker thread changes nothing in the result.
// Method: a child process imports and stops at fixed points (after batch n,
// after the switch) until the parent tells it to go on; the parent reads and
// writes the same database meanwhile. No timing is asserted.
import { describe, expect, test } from 'bun:test';
import { copyFileSync, cpSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { importTransferFiles, planImport, type ImportOptions } from '../../src/importer/import-transfer.ts';
import { readTransferFile } from '../../src/importer/transfer-file.ts';
import { openAssetStore, StagedImportError, type AssetStore } from '../../src/store/asset-store.ts';
import { createDefinitionsCache } from '../../src/store/definitions-cache.ts';
import { tempDir } from '../helpers.ts';
import { counts, entity, storeChecksum } from './helpers.ts';
import { freshSnapshot, ImportChild, newExport, oldState } from './staged-helpers.ts';

const NOW = Date.UTC(2026, 5, 2);

function importOptions(directory: string, extra: Partial<ImportOptions> = {}): ImportOptions {
  return { directory, force: false, withoutCard: false, nowMs: NOW, ...extra };
}

async function withStore<T>(database: string, use: (store: AssetStore) => T | Promise<T>): Promise<T> {
  const store = openAssetStore(database);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

describe('staged import', () => {
  test('readers see the old definitions until the switch; runtime writes go on; a second import is refused', async () => {
    const root = tempDir('nla-staged-');
    const database = await oldState(root);
    const input = await newExport(root, 3000);
    const store = openAssetStore(database);
    const cache = createDefinitionsCache(store);
    const licensesOfL0 = () => cache.loadLicenseeAssets(cache.resolveLicensee('L0')!)!.licenses.map((l) => l.number);
    let child: ImportChild | undefined;
    try {
      expect(licensesOfL0()).toEqual(['X0']);
      child = new ImportChild(database, input, ['batch:3', 'switched']);

      await child.until('paused batch:3');
      await freshSnapshot();
      // Three batches are durable in the staging generation, but nothing of them is served.
      const staging = store.definitionsGenerations();
      expect(staging.staging?.pid).toBe(child.proc.pid);
      expect(staging.spareEntities).toBeGreaterThan(0);
      expect(store.getEntity('License', 'N0a')).toBeUndefined();
      expect(store.getEntity('License', 'X0')).toBeDefined();
      expect(store.children('License', 'L0').map((l) => l.number)).toEqual(['X0']);
      expect(licensesOfL0()).toEqual(['X0']);
      expect(store.meta().lastImport?.exportId).toBe('export-1');
      // The import holds no lock between batches: a durable runtime write completes now.
      await store.commitRuntime('L0', 6, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X0', quantity: 4 }], result: null }));
      // A second import is refused while this one runs, and leaves it alone.
      let refused: unknown;
      try {
        importTransferFiles(store, importOptions(input));
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(StagedImportError);
      expect((refused as StagedImportError).reason).toBe('busy');
      expect((refused as Error).message).toContain(`process ${child.proc.pid}`);
      child.resume();

      await child.until('paused switched');
      await freshSnapshot();
      // Switched: the new definitions, all at once; the previous generation is not cleared yet.
      expect(store.getEntity('License', 'N0a')).toBeDefined();
      expect(store.getEntity('License', 'X0')).toBeUndefined();
      expect(licensesOfL0()).toEqual(['N0a', 'N0b', 'N0c']);
      expect(store.meta().lastImport?.exportId).toBe('large');
      const switched = store.definitionsGenerations();
      expect(switched.served).not.toBe(staging.served);
      expect(switched.staging).toBeUndefined();
      expect(switched.spareEntities).toBeGreaterThan(0);
      child.resume();

      await child.until('done');
      expect(await child.proc.exited).toBe(0);
      await freshSnapshot();
      expect(store.definitionsGenerations().spareEntities).toBe(0);
      expect(counts(store)).toMatchObject({ Licensee: 3000, License: 9000 });
      // Runtime state is never touched by an import: both writes are there.
      expect(store.getRuntime('L0').usedQuantity['X0']).toBe(7);
    } finally {
      // A failed expectation must not leave the child waiting at a stop.
      if (child && child.proc.exitCode === null) child.proc.kill('SIGKILL');
      await store.close();
    }
  });

  test('definitions changed by another writer during the import: the switch is refused, nothing applied', async () => {
    const root = tempDir('nla-staged-');
    const database = await oldState(root);
    const input = await newExport(root, 500);
    await withStore(database, (store) => {
      const before = storeChecksum(store);
      let refused: unknown;
      try {
        importTransferFiles(
          store,
          importOptions(input, {
            batchBytes: 16 * 1024,
            // Between two batches another writer (here: a direct definitions write) changes the served generation.
            onBatch: ({ batches }) => {
              if (batches === 2) store.importTransaction((tx) => tx.put(entity('Licensee', 'OTHER', { productNumber: 'P' })));
            },
          }),
        );
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(StagedImportError);
      expect((refused as StagedImportError).reason).toBe('definitions_changed');
      expect(store.getEntity('Licensee', 'OTHER')).toBeDefined();
      expect(store.getEntity('License', 'N0a')).toBeUndefined();
      expect(store.meta().lastImport?.exportId).toBe('export-1');
      // The staging is gone with the failed import.
      expect(store.definitionsGenerations()).toMatchObject({ spareEntities: 0 });
      expect(store.definitionsGenerations().staging).toBeUndefined();
      store.importTransaction((tx) => tx.remove('Licensee', 'OTHER'));
      // Apart from the other writer's change (undone), the database is as before.
      expect(storeChecksum(store)).toBe(before);
    });
  });

  test('after each staging batch the import holds none of the database file mapped (its memory stays flat)', async () => {
    const root = tempDir('nla-staged-');
    const database = await oldState(root);
    const input = await newExport(root, 2000);
    const file = realpathSync(join(database, 'data.mdb'));
    /** Resident kB of this process's mappings of the database file (Linux). */
    const mappedKb = () => {
      let current = '';
      let kb = 0;
      for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
        if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) current = line;
        else if (current.endsWith(` ${file}`) && line.startsWith('Rss:')) kb += Number(/(\d+)/.exec(line)![1]);
      }
      return kb;
    };
    const seen: number[] = [];
    await withStore(database, (store) => {
      for (const kind of ['License', 'Licensee'] as const) expect(store.listEntities(kind).total).toBe(50); // reads: pages mapped
      expect(mappedKb()).toBeGreaterThan(0);
      importTransferFiles(store, importOptions(input, { batchBytes: 32 * 1024, onBatch: () => seen.push(mappedKb()) }));
    });
    expect(seen.length).toBeGreaterThan(10);
    expect(Math.max(...seen)).toBe(0);
  });

  test('a file whose header changed between planning and reading is refused, on either thread', async () => {
    const root = tempDir('nla-staged-');
    const database = await oldState(root);
    const input = await newExport(root, 300, 32 * 1024);
    const plan = planImport({ directory: input });
    // After planning, file 2 is replaced by file 2 of the same export written with another source
    // host: a valid file, digest included, whose header differs from the one planned with.
    const second = join(input, '2_netlicensing-assets.xml');
    const text = readFileSync(second, 'utf8');
    const elsewhere = await newExport(root, 300, 32 * 1024, { directory: 'elsewhere', sourceHost: 'https://elsewhere.example' });
    const replacement = join(elsewhere, '2_netlicensing-assets.xml');
    expect(readTransferFile(replacement, 'replacement', { header() {}, entity() {} }).items).toBeGreaterThan(1);
    copyFileSync(replacement, second);
    expect(readFileSync(second, 'utf8')).not.toBe(text);
    expect(readFileSync(second, 'utf8')).toContain('https://elsewhere.example');
    for (const readThread of ['inline', 'worker'] as const) {
      await withStore(database, (store) => {
        const before = storeChecksum(store);
        expect(() => importTransferFiles(store, importOptions(input, { readThread }), plan)).toThrow(
          /2_netlicensing-assets\.xml:\d+:\d+: the file changed while it was being imported/,
        );
        expect(storeChecksum(store)).toBe(before);
      });
    }
  });

  test('carry-over page size and reader thread do not change the result', async () => {
    const root = tempDir('nla-staged-');
    const database = await oldState(root);
    // Licensees outside the new export (L2000…) keep their licenses; exported ones lose X<i>.
    await withStore(database, (store) =>
      store.importTransaction((tx) => {
        for (let i = 0; i < 300; i++) {
          tx.put(entity('Licensee', `K${i}`, { productNumber: 'P', aliases: JSON.stringify([`alias-${i}`]) }));
          tx.put(entity('License', `KX${i}`, { licenseeNumber: `K${i}`, licenseTemplateNumber: 'T-SUB' }));
        }
      }),
    );
    const input = await newExport(root, 1000, 64 * 1024);
    const variants: (Partial<ImportOptions> & { readThread: 'inline' | 'worker' })[] = [
      { readThread: 'inline' },
      { readThread: 'inline', carryOverPage: 7, batchBytes: 8 * 1024 },
      { readThread: 'worker', batchBytes: 32 * 1024 },
    ];
    const results: string[] = [];
    for (const [i, variant] of variants.entries()) {
      const copy = join(root, `copy-${i}`, 'database');
      cpSync(database, copy, { recursive: true });
      results.push(
        await withStore(copy, (store) => {
          const summary = importTransferFiles(store, importOptions(input, variant));
          expect(summary.readThread).toBe(variant.readThread);
          expect(summary.removed).toMatchObject({ License: 50 });
          expect(store.getEntity('License', 'KX7')?.props['licenseeNumber']).toBe('K7');
          expect(store.resolveLicensee('alias-7')?.number).toBe('K7');
          expect(store.getEntity('License', 'X7')).toBeUndefined();
          expect(counts(store)).toMatchObject({ Licensee: 1300, License: 3300 });
          return storeChecksum(store);
        }),
      );
    }
    expect(new Set(results).size).toBe(1);
  });
});
