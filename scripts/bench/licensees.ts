/** Generated licensees for the benchmarks that need many (bench-startup.ts, bench-serving-memory.ts). */
import type { Entity } from '../../src/core/entities.ts';
import { hashCredential } from '../../src/platform/credentials.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { benchEntity } from './seed.ts';

const TEMPLATE_DEFAULTS = { price: '0.00', currency: 'EUR', automatic: 'false', hidden: 'false', hideLicenses: 'false' };

/**
 * Generated entities: one product with a Subscription, a Floating and a
 * Pay-per-Use module; every licensee has a subscription license, every tenth
 * a floating license (5 seats), every twentieth a Pay-per-Use license; one
 * API key. Zero-padded numbers (`L-0000001`) keep store order = generation order.
 */
export function* entityFor(licensees: number, apiKey: string): Generator<Entity> {
  const P = 'P-BENCH';
  yield benchEntity('Product', P, { name: 'Bench product', version: '1.0', licenseeAutoCreate: 'false' });
  yield benchEntity('ProductModule', 'M-SUB', { name: 'Subscription', licensingModel: 'Subscription', productNumber: P });
  yield benchEntity('ProductModule', 'M-FLOAT', { name: 'Floating', licensingModel: 'Floating', productNumber: P, maxCheckoutValidity: '300' });
  yield benchEntity('ProductModule', 'M-PPU', { name: 'Credits', licensingModel: 'PayPerUse', productNumber: P });
  yield benchEntity('LicenseTemplate', 'T-SUB', { name: 'year', licenseType: 'TIMEVOLUME', productModuleNumber: 'M-SUB', timeVolume: '1', timeVolumePeriod: 'YEAR', ...TEMPLATE_DEFAULTS });
  yield benchEntity('LicenseTemplate', 'T-FLOAT', { name: 'seats', licenseType: 'FLOATING', productModuleNumber: 'M-FLOAT', maxSessions: '5', ...TEMPLATE_DEFAULTS });
  yield benchEntity('LicenseTemplate', 'T-PPU', { name: 'credits', licenseType: 'QUANTITY', productModuleNumber: 'M-PPU', quantity: '1000', ...TEMPLATE_DEFAULTS });
  const start = '2026-01-01T00:00:00.000Z';
  for (let i = 1; i <= licensees; i++) {
    const number = `L-${String(i).padStart(7, '0')}`;
    yield benchEntity('Licensee', number, { productNumber: P, name: `Customer ${i}` });
    yield benchEntity('License', `${number}-SUB`, { name: 'year', licenseeNumber: number, licenseTemplateNumber: 'T-SUB', startDate: start, timeVolume: '1', timeVolumePeriod: 'YEAR' });
    if (i % 10 === 0) yield benchEntity('License', `${number}-FLOAT`, { name: 'seats', licenseeNumber: number, licenseTemplateNumber: 'T-FLOAT', maxSessions: '5' });
    if (i % 20 === 0) yield benchEntity('License', `${number}-PPU`, { name: 'credits', licenseeNumber: number, licenseTemplateNumber: 'T-PPU', quantity: '1000', usedQuantity: '0' });
  }
  yield benchEntity('Token', apiKey, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE' });
}

/** Creates the database at `databasePath` with `entityFor`'s entities, as an import would leave it; returns how many. */
export async function seedManyLicensees(databasePath: string, licensees: number, apiKey: string, exportId: string): Promise<number> {
  const store = openAssetStore(databasePath, { create: true });
  let entityCount = 0;
  store.importTransaction((tx) => {
    for (const entity of entityFor(licensees, apiKey)) {
      tx.put(entity);
      entityCount += 1;
    }
    const now = new Date().toISOString();
    tx.setMeta({
      ...tx.meta(),
      withoutCard: true,
      vendorCredentials: hashCredential('vendor', 'bench-secret'),
      lastImport: { exportId, createdAt: now, sourceHost: 'bench', importedAt: now, files: 1, entities: entityCount },
    });
  });
  await store.close();
  return entityCount;
}
