/**
 * Builds small stores for server tests: entities written straight into a
 * fresh database (no transfer file), with the API keys and vendor
 * credentials the tests authenticate with.
 */
import { join } from 'node:path';
import type { Entity, EntityKind } from '../../src/core/entities.ts';
import { hashCredential } from '../../src/platform/credentials.ts';
import { openAssetStore, type AssetStore, type OpenStoreOptions } from '../../src/store/asset-store.ts';
import { tempDir } from '../helpers.ts';

export const VENDOR = { user: 'vendor', password: 'vendor-secret' };
export const API_KEY = '11111111-1111-4111-8111-111111111111';
export const ADMIN_API_KEY = '22222222-2222-4222-8222-222222222222';
export const SCOPED_API_KEY = '33333333-3333-4333-8333-333333333333';

export function entity(kind: EntityKind, number: string, props: Record<string, string> = {}): Entity {
  return { kind, number, props: { number, active: 'true', ...props } };
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export const apiKeyAuth = (key = API_KEY) => basic('apiKey', key);
export const vendorAuth = () => basic(VENDOR.user, VENDOR.password);

/** Opens a fresh store in a temp working directory and writes `entities` plus API keys. */
export function seedStore(entities: Entity[], options: { dir?: string; open?: OpenStoreOptions } = {}): { store: AssetStore; cwd: string } {
  const cwd = options.dir ?? tempDir();
  const store = openAssetStore(join(cwd, 'database'), { ...options.open, create: true });
  store.importTransaction((tx) => {
    for (const e of entities) tx.put(e);
    tx.put(entity('Token', API_KEY, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE' }));
    tx.put(entity('Token', ADMIN_API_KEY, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_ADMIN' }));
    const meta = tx.meta();
    tx.setMeta({
      ...meta,
      withoutCard: true,
      vendorCredentials: hashCredential(VENDOR.user, VENDOR.password),
      lastImport: {
        exportId: 'test-export',
        createdAt: '2026-01-01T00:00:00.000Z',
        sourceHost: 'test',
        importedAt: '2026-01-01T00:00:00.000Z',
        files: 1,
        entities: entities.length,
      },
    });
  });
  return { store, cwd };
}

/** A product with one module per licensing model and one licensee each. */
export function demoEntities(): Entity[] {
  const P = 'P-TEST';
  const out: Entity[] = [entity('Product', P, { name: 'Test product', version: '1.0', licenseeAutoCreate: 'false' })];
  const mod = (number: string, licensingModel: string, extra: Record<string, string> = {}) =>
    out.push(entity('ProductModule', number, { name: `${licensingModel} module`, licensingModel, productNumber: P, ...extra }));
  const tpl = (number: string, module: string, licenseType: string, extra: Record<string, string> = {}) =>
    out.push(entity('LicenseTemplate', number, { name: number, licenseType, productModuleNumber: module, price: '0.00', currency: 'EUR', automatic: 'false', hidden: 'false', hideLicenses: 'false', ...extra }));
  const lic = (number: string, licensee: string, template: string, extra: Record<string, string> = {}) =>
    out.push(entity('License', number, { name: number, licenseeNumber: licensee, licenseTemplateNumber: template, ...extra }));
  const licensee = (number: string, extra: Record<string, string> = {}) =>
    out.push(entity('Licensee', number, { productNumber: P, ...extra }));

  mod('M-TRY', 'TryAndBuy');
  tpl('T-TRY-TRIAL', 'M-TRY', 'TIMEVOLUME', { timeVolume: '30', timeVolumePeriod: 'DAY', automatic: 'true', hidden: 'true' });
  tpl('T-TRY-FULL', 'M-TRY', 'FEATURE', { price: '10.00' });
  mod('M-SUB', 'Subscription');
  tpl('T-SUB-MONTH', 'M-SUB', 'TIMEVOLUME', { timeVolume: '1', timeVolumePeriod: 'MONTH' });
  mod('M-FLOAT', 'Floating', { maxCheckoutValidity: '300' });
  tpl('T-FLOAT', 'M-FLOAT', 'FLOATING', { maxSessions: '2' });
  mod('M-PPU', 'PayPerUse');
  tpl('T-PPU', 'M-PPU', 'QUANTITY', { quantity: '35' });
  mod('M-QUOTA', 'Quota');
  tpl('T-QUOTA', 'M-QUOTA', 'QUANTITY', { quantity: '35' });
  mod('M-NODE', 'NodeLocked', { nodeSecretMode: 'CLIENT' });
  tpl('T-NODE', 'M-NODE', 'QUANTITY', { quota: '2' });

  licensee('L-1', { aliases: '["alias-one"]', crmCustomerId: 'cust-1' });
  lic('LIC-SUB', 'L-1', 'T-SUB-MONTH', { startDate: '2026-11-01T00:00:00.000Z', timeVolume: '1', timeVolumePeriod: 'MONTH' });
  lic('LIC-FLOAT', 'L-1', 'T-FLOAT', { maxSessions: '2' });
  lic('LIC-PPU', 'L-1', 'T-PPU', { quantity: '35' });
  lic('LIC-QUOTA', 'L-1', 'T-QUOTA', { quantity: '35' });
  lic('LIC-NODE', 'L-1', 'T-NODE', { quota: '2' });
  licensee('L 2/ä', {});
  return out;
}

/** Entities in the order transfer files require: product, modules, templates, each licensee with its licenses, tokens. */
export function transferOrder(entities: Entity[]): Entity[] {
  const of = (kind: EntityKind) => entities.filter((e) => e.kind === kind);
  const out = [...of('Product'), ...of('ProductModule'), ...of('LicenseTemplate')];
  for (const licensee of of('Licensee')) {
    out.push(licensee, ...of('License').filter((l) => l.props['licenseeNumber'] === licensee.number));
  }
  return [...out, ...of('Token')];
}
