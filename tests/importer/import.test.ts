// Goal: an import applies an export exactly (every kind, custom properties,
// lists, odd numbers), merges a re-import by the documented rules (runtime
// state kept, stale definitions removed, other licensees untouched), refuses
// conflicts unless forced, and reads multi-file exports as one sequence.
// Method: write exports with the real writer into temp directories, import
// them into a real LMDB store, inspect the store.
import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import type { Entity } from '../../src/core/entities.ts';
import { ImportConflictError } from '../../src/importer/errors.ts';
import { importTransferFiles, type ImportOptions } from '../../src/importer/import-transfer.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import type { TransferHeader } from '../../src/transfer/types.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { transferOrder } from '../support/seed-store.ts';
import { counts, entity, header, smallExport, storeChecksum } from './helpers.ts';

async function exportTo(entities: Entity[], head: TransferHeader, maxFileBytes?: number): Promise<string> {
  const dir = tempDir('nla-export-');
  await writeTransferFiles(head, entities, { directory: dir, ...(maxFileBytes ? { maxFileBytes } : {}) });
  return dir;
}

function importDir(store: AssetStore, directory: string, options: Partial<ImportOptions> = {}) {
  const warnings: string[] = [];
  const summary = importTransferFiles(store, {
    directory,
    force: false,
    withoutCard: false,
    nowMs: Date.UTC(2026, 5, 1),
    onWarning: (m) => warnings.push(m),
    ...options,
  });
  return { summary, warnings };
}

/** The stored definition: exactly the exported entity (kind, number, props, lists), nothing added. */
function stored(store: AssetStore, e: Entity): Entity | undefined {
  return store.getEntity(e.kind, e.number);
}

function newStore(): AssetStore {
  return openAssetStore(join(tempDir(), 'database'), { create: true });
}

describe('import', () => {
  test('round trip of every entity kind with custom properties, lists and odd numbers', async () => {
    const product = 'Prödukt 1';
    const entities: Entity[] = [
      entity('Product', product, { name: 'Ä product', 'custom key': 'value with  two spaces ', licensingInfo: '<b>html</b> & more' }, [
        { name: 'discount', props: { totalPrice: '10.00', currency: 'EUR', amountFix: '1.50' } },
        { name: 'outer', props: { a: '1' }, lists: [{ name: 'inner', props: { b: '2' } }] },
      ]),
      entity('ProductModule', 'Modul α', { productNumber: product, licensingModel: 'MultiFeature', 'x-custom': 'ü' }),
      entity('LicenseTemplate', 'Vorlage 1', { productModuleNumber: 'Modul α', licenseType: 'FEATURE', price: '0.00' }),
      entity('Licensee', 'Kunde Müller 1', { productNumber: product, aliases: '["müller-alias"]', crmId: '  spaced  ' }),
      entity('License', 'Lizenz ♥ 1', { licenseeNumber: 'Kunde Müller 1', licenseTemplateNumber: 'Vorlage 1', note: 'line1\nline2' }),
      entity('Token', 'a1b2c3d4-0000-4000-8000-000000000001', { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE', licenseeNumber: 'Kunde Müller 1' }),
      entity('Token', 'a1b2c3d4-0000-4000-8000-000000000002', { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_ADMIN' }),
    ];
    const dir = await exportTo(entities, header(['Kunde Müller 1'], { vendorCredentials: { user: 'v', salt: '01'.repeat(16), hash: '02'.repeat(32) } }));
    const store = newStore();
    const { summary } = importDir(store, dir);
    for (const e of entities) expect(stored(store, e)).toEqual(e);
    expect(summary.entities).toEqual({ Product: 1, ProductModule: 1, LicenseTemplate: 1, Licensee: 1, License: 1, Token: 2 });
    expect(store.resolveLicensee('müller-alias')?.number).toBe('Kunde Müller 1');
    expect(store.children('License', 'Kunde Müller 1').map((l) => l.number)).toEqual(['Lizenz ♥ 1']);
    const meta = store.meta();
    expect(meta.withoutCard).toBe(true);
    expect(meta.vendorCredentials).toEqual({ user: 'v', salt: '01'.repeat(16), hash: '02'.repeat(32) });
    expect(meta.lastImport).toEqual({
      exportId: 'export-1',
      createdAt: '2026-03-01T12:00:00.000Z',
      sourceHost: 'https://go.netlicensing.io',
      importedAt: '2026-06-01T00:00:00.000Z',
      files: 1,
      entities: entities.length,
    });
    await store.close();
  });

  test('re-import replaces definitions, keeps runtime state, removes what the export no longer has', async () => {
    const store = newStore();
    const vendorKeys = [
      entity('Token', 'V1', { tokenType: 'APIKEY' }),
      entity('Token', 'V2', { tokenType: 'APIKEY' }),
      entity('Token', 'T1', { tokenType: 'APIKEY', licenseeNumber: 'L1' }),
    ];
    const first = smallExport(
      [
        { number: 'L1', licenses: ['X1', 'X2', 'X3'], props: { note: 'old' } },
        { number: 'L2', licenses: ['Y1'] },
      ],
      { tokens: vendorKeys, extraModules: true },
    );
    importDir(store, await exportTo(first, header(['L1', 'L2'])));
    await store.commitRuntime('L1', 1000, () => ({
      events: [
        { type: 'quantityUsed', licenseNumber: 'X1', quantity: 5 },
        { type: 'startDateSet', licenseNumber: 'X2', startDate: '2026-02-01T00:00:00.000Z' },
      ],
      result: null,
    }));
    await store.settled();
    const runtimeBefore = store.getRuntime('L1');

    // Second export: only L1, without X3, T1, V2, M-EXTRA/T-EXTRA; L1 lost its note.
    const second = smallExport([{ number: 'L1', licenses: ['X1', 'X2'] }], { tokens: [vendorKeys[0]!] });
    const { summary } = importDir(store, await exportTo(second, header(['L1'], { exportId: 'export-2' })));
    expect(summary.removed).toEqual({ Product: 0, ProductModule: 1, LicenseTemplate: 1, Licensee: 0, License: 1, Token: 2 });
    expect(store.getRuntime('L1')).toEqual(runtimeBefore);
    expect(store.getRuntime('L1').usedQuantity['X1']).toBe(5);
    expect(store.children('License', 'L1').map((l) => l.number)).toEqual(['X1', 'X2']);
    expect(store.getEntity('License', 'X3')).toBeUndefined();
    expect(store.getEntity('Licensee', 'L1')?.props['note']).toBeUndefined();
    // L2 is not in the second export: it and its license stay.
    expect(store.getEntity('Licensee', 'L2')).toBeDefined();
    expect(store.children('License', 'L2').map((l) => l.number)).toEqual(['Y1']);
    expect(store.listEntities('Token').items.map((t) => t.number)).toEqual(['V1']);
    expect(store.getEntity('ProductModule', 'M-EXTRA')).toBeUndefined();
    expect(store.getEntity('LicenseTemplate', 'T-EXTRA')).toBeUndefined();
    expect(store.meta().lastImport?.exportId).toBe('export-2');
    await store.close();
  });

  test('a module the cloud deleted goes with its templates and their licenses, also those of licensees outside the export', async () => {
    const store = newStore();
    const first = [
      ...smallExport([{ number: 'L1', licenses: ['X1'] }, { number: 'L2', licenses: ['Y1'] }], { extraModules: true }),
      // L2 also holds a license of the module the cloud will delete.
      entity('License', 'Y-EXTRA', { licenseeNumber: 'L2', licenseTemplateNumber: 'T-EXTRA', quantity: '5' }),
    ];
    importDir(store, await exportTo(transferOrder(first), header(['L1', 'L2'])));
    // The next export holds only L1, and the product without M-EXTRA.
    const second = smallExport([{ number: 'L1', licenses: ['X1'] }]);
    const { summary } = importDir(store, await exportTo(second, header(['L1'], { exportId: 'export-2' })));
    expect(summary.removed).toMatchObject({ ProductModule: 1, LicenseTemplate: 1, License: 1 });
    expect(store.getEntity('License', 'Y-EXTRA')).toBeUndefined();
    // L2 and its other license stay.
    expect(store.children('License', 'L2').map((l) => l.number)).toEqual(['Y1']);
    // No license is left pointing at a template that is gone.
    const integrity = store.checkIntegrity();
    expect([...integrity.unreadable, ...integrity.inconsistent]).toEqual([]);
    await store.close();
  });

  test('importing the same export twice changes nothing but the import record', async () => {
    const store = newStore();
    const dir = await exportTo(smallExport([{ number: 'L1', licenses: ['X1'] }]), header(['L1']));
    importDir(store, dir);
    const before = counts(store);
    const { summary } = importDir(store, dir);
    expect(counts(store)).toEqual(before);
    expect(Object.values(summary.removed).every((n) => n === 0)).toBe(true);
    await store.close();
  });

  test('a multi-file export (licensees split across files) imports like a single file', async () => {
    const licensees = Array.from({ length: 25 }, (_, i) => ({ number: `L${i}`, licenses: [`X${i}a`, `X${i}b`, `X${i}c`] }));
    const entities = smallExport(licensees, { tokens: [entity('Token', 'K', { tokenType: 'APIKEY', licenseeNumber: 'L3' })] });
    const head = header(licensees.map((l) => l.number));
    const one = newStore();
    importDir(one, await exportTo(entities, head));
    const many = newStore();
    const dir = await exportTo(entities, head, 2500);
    const { summary } = importDir(many, dir);
    expect(summary.files.length).toBeGreaterThan(5);
    expect(counts(many)).toEqual(counts(one));
    for (const e of entities) expect(stored(many, e)).toEqual(stored(one, e));
    expect(many.meta().lastImport?.files).toBe(summary.files.length);
    await one.close();
    await many.close();
  });

  describe('conflicts', () => {
    async function conflictCase(first: Entity[], second: Entity[], secondLicensees: string[]) {
      const store = newStore();
      importDir(store, await exportTo(first, header(first.filter((e) => e.kind === 'Licensee').map((e) => e.number))));
      const before = storeChecksum(store);
      const dir = await exportTo(second, header(secondLicensees, { exportId: 'export-2' }));
      let error: unknown;
      try {
        importDir(store, dir);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ImportConflictError);
      expect(storeChecksum(store)).toBe(before);
      return { store, dir, error: error as ImportConflictError };
    }

    test('a license moved to another licensee is refused, and applied with force', async () => {
      const first = smallExport([
        { number: 'L1', licenses: ['X1'] },
        { number: 'L2', licenses: [] },
      ]);
      // L1 comes first in the new export: the move must still be seen as a move, not as delete + create.
      const second = smallExport([
        { number: 'L1', licenses: [] },
        { number: 'L2', licenses: ['X1'] },
      ]);
      const { store, dir, error } = await conflictCase(first, second, ['L1', 'L2']);
      expect(error.total).toBe(1);
      expect(error.message).toContain('License "X1"');
      expect(error.message).toContain('licenseeNumber changes from "L1" to "L2"');
      expect(error.message).toMatch(/1_netlicensing-assets\.xml:\d+:\d+/);
      const { summary, warnings } = importDir(store, dir, { force: true });
      expect(summary.forcedTotal).toBe(1);
      expect(summary.removed.License).toBe(0);
      expect(warnings.join('\n')).toContain('License "X1"');
      expect(store.children('License', 'L2').map((l) => l.number)).toEqual(['X1']);
      expect(store.children('License', 'L1')).toEqual([]);
      await store.close();
    });

    test('a licensee moved to another product is refused', async () => {
      const first = smallExport([{ number: 'L1', licenses: [] }]);
      const second = [...smallExport([], { product: 'Q' }).slice(0, 1), ...smallExport([{ number: 'L1', licenses: [] }], { product: 'Q' }).slice(1)];
      // Modules and templates belong to Q now as well: two more conflicts.
      const { store, error } = await conflictCase(first, second, ['L1']);
      expect(error.message).toContain('Licensee "L1"');
      expect(error.message).toContain('productNumber changes from "P" to "Q"');
      expect(error.message).toContain('ProductModule "M-SUB"');
      expect(error.total).toBe(3);
      await store.close();
    });

    test('a changed licensing model or license type is refused', async () => {
      const first = smallExport([{ number: 'L1', licenses: ['X1'] }]);
      const second = smallExport([{ number: 'L1', licenses: ['X1'] }], { moduleModel: 'Rental', templateType: 'FEATURE' });
      const { store, error } = await conflictCase(first, second, ['L1']);
      expect(error.message).toContain('ProductModule "M-SUB"');
      expect(error.message).toContain('licensingModel changes from Subscription to Rental');
      expect(error.message).toContain('LicenseTemplate "T-SUB"');
      expect(error.message).toContain('licenseType changes from TIMEVOLUME to FEATURE');
      expect(error.total).toBe(2);
      await store.close();
    });

    test('an API key moved between licensees is refused', async () => {
      const key = (licensee: string) => entity('Token', 'K1', { tokenType: 'APIKEY', licenseeNumber: licensee });
      const specs = [
        { number: 'L1', licenses: [] },
        { number: 'L2', licenses: [] },
      ];
      const { store, error } = await conflictCase(smallExport(specs, { tokens: [key('L1')] }), smallExport(specs, { tokens: [key('L2')] }), ['L1', 'L2']);
      expect(error.message).toContain('Token "K1"');
      await store.close();
    });

    test('a database bound to a smart card refuses an import without card unless forced', async () => {
      const store = newStore();
      store.importTransaction((tx) => tx.setMeta({ ...tx.meta(), cardSerial: 'CARD-1' }));
      const before = storeChecksum(store);
      const dir = await exportTo(smallExport([{ number: 'L1', licenses: [] }]), header(['L1']));
      expect(() => importDir(store, dir)).toThrow('the database is bound to smart card CARD-1');
      expect(storeChecksum(store)).toBe(before);
      const { summary } = importDir(store, dir, { force: true });
      expect(summary.forcedTotal).toBe(1);
      expect(store.meta().cardSerial).toBeUndefined();
      expect(store.meta().withoutCard).toBe(true);
      await store.close();
    });
  });
});
