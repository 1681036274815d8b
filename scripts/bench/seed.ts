/**
 * The benchmark data set: a product with a Subscription, a Floating
 * (effectively unlimited seats) and a Pay-per-Use module, one licensee `L`
 * holding a license of each, and the API key `bench-key` (wrk.ts, BENCH_AUTH).
 * Every validate of `L` decides all three modules, as the cloud does.
 */
import type { Entity, EntityKind } from '../../src/core/entities.ts';
import { hashCredential } from '../../src/platform/credentials.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';

/** An active entity with its number among its properties, as an import stores it. */
export const benchEntity = (kind: EntityKind, number: string, props: Record<string, string>): Entity => ({
  kind,
  number,
  props: { number, active: 'true', ...props },
});

/** Creates the database at `databasePath` with the benchmark data set and returns it open. */
export function seedBenchDatabase(databasePath: string): AssetStore {
  // Owner-only files, as src/main.ts makes them (the agent warns about a database others can read).
  const umask = process.umask(0o077);
  let store: AssetStore;
  try {
    store = openAssetStore(databasePath, { create: true });
  } finally {
    process.umask(umask);
  }
  store.importTransaction((tx) => {
    for (const entity of [
      benchEntity('Product', 'P', { name: 'Bench' }),
      benchEntity('ProductModule', 'M-SUB', { productNumber: 'P', licensingModel: 'Subscription', name: 'Sub' }),
      benchEntity('LicenseTemplate', 'T-SUB', { productModuleNumber: 'M-SUB', licenseType: 'TIMEVOLUME', timeVolume: '10', timeVolumePeriod: 'YEAR' }),
      benchEntity('ProductModule', 'M-FLOAT', { productNumber: 'P', licensingModel: 'Floating', name: 'Float', maxCheckoutValidity: '3600' }),
      benchEntity('LicenseTemplate', 'T-FLOAT', { productModuleNumber: 'M-FLOAT', licenseType: 'FLOATING', maxSessions: '1000000000' }),
      benchEntity('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse', name: 'PPU' }),
      benchEntity('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: '1000000000' }),
      benchEntity('Licensee', 'L', { productNumber: 'P' }),
      benchEntity('License', 'L-SUB', { licenseeNumber: 'L', licenseTemplateNumber: 'T-SUB', startDate: '2026-01-01T00:00:00.000Z', timeVolume: '10', timeVolumePeriod: 'YEAR' }),
      benchEntity('License', 'L-FLOAT', { licenseeNumber: 'L', licenseTemplateNumber: 'T-FLOAT', maxSessions: '1000000000' }),
      benchEntity('License', 'L-PPU', { licenseeNumber: 'L', licenseTemplateNumber: 'T-PPU', quantity: '1000000000' }),
      benchEntity('Token', 'bench-key', { tokenType: 'APIKEY' }),
    ]) {
      tx.put(entity);
    }
    tx.setMeta({
      ...tx.meta(),
      withoutCard: true,
      vendorCredentials: hashCredential('vendor', 'secret'),
      lastImport: { exportId: 'bench', createdAt: '', sourceHost: 'bench', importedAt: '', files: 1, entities: 12 },
    });
  });
  return store;
}
