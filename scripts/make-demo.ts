#!/usr/bin/env bun
/**
 * Writes the bundled demo export demo/1_netlicensing-assets.xml with the
 * transfer writer: one product DEMO-PRODUCT with one module per licensing
 * model, sensible templates, one licensee per model with its licenses, a
 * licensee-scoped and a vendor-wide API key, and the vendor credentials
 * demo/demo. Everything is fixed (ids, dates, salt), so the file is
 * reproducible; dates are chosen so that the demo stays meaningful until
 * 2036.
 *
 * Usage: bun scripts/make-demo.ts [output-directory]   (default: demo/)
 */
import { join } from 'node:path';
import type { Entity, EntityKind, EntityList } from '../src/core/entities.ts';
import { hashCredential } from '../src/platform/credentials.ts';
import type { TransferHeader } from '../src/transfer/types.ts';
import { writeTransferFiles } from '../src/transfer/writer.ts';

export const DEMO_PRODUCT = 'DEMO-PRODUCT';
/** API key that may validate DEMO-SUBSCRIPTION only. */
export const DEMO_LICENSEE_API_KEY = '6f1a3c52-7d0e-4b8a-9c1e-2f5b8d4a7e01';
/** Vendor-wide API key (role ROLE_APIKEY_LICENSEE: may validate every licensee, read nothing). */
export const DEMO_VENDOR_API_KEY = '0b9d2e7f-3a41-4c6b-8e5d-9f2a1c7b4e10';
export const DEMO_EXPORT_ID = '5e1d0d5c-2026-4000-8000-000000000001';
/** Start of every dated demo license; ten-year volumes run until 2036-01-01. */
const START = '2026-01-01T00:00:00.000Z';

function entity(kind: EntityKind, number: string, props: Record<string, string>, lists?: EntityList[]): Entity {
  const result: Entity = { kind, number, props: { number, active: 'true', ...props } };
  if (lists) result.lists = lists;
  return result;
}

const product = entity(
  'Product',
  DEMO_PRODUCT,
  { name: 'Demo Product', version: '1.0', licenseeAutoCreate: 'false', description: 'Bundled demo data of netlicensing-agent' },
  [{ name: 'discount', props: { totalPrice: '100.00', currency: 'EUR', amountPercent: '10' } }],
);

const module = (number: string, name: string, licensingModel: string, extra: Record<string, string> = {}) =>
  entity('ProductModule', number, { name, licensingModel, productNumber: DEMO_PRODUCT, ...extra });

const modules = [
  module('DEMO-M-TRYANDBUY', 'Try & Buy module', 'TryAndBuy'),
  module('DEMO-M-SUBSCRIPTION', 'Subscription module', 'Subscription'),
  module('DEMO-M-RENTAL', 'Rental module', 'Rental', { yellowThreshold: '30', redThreshold: '7' }),
  module('DEMO-M-FLOATING', 'Floating module', 'Floating', { maxCheckoutValidity: '300' }),
  module('DEMO-M-MULTIFEATURE', 'Multi-Feature module', 'MultiFeature'),
  module('DEMO-M-PAYPERUSE', 'Pay-per-Use module', 'PayPerUse'),
  module('DEMO-M-QUOTA', 'Quota module', 'Quota'),
  module('DEMO-M-NODELOCKED', 'Node-Locked module', 'NodeLocked', { nodeSecretMode: 'CLIENT' }),
  module('DEMO-M-PRICINGTABLE', 'Pricing Table module', 'PricingTable', {
    skudef: JSON.stringify({
      skudef: [
        { number: 'USERS', name: 'Users', type: 'QUOTA' },
        { number: 'API_ACCESS', name: 'API access', type: 'FEATURE' },
      ],
    }),
  }),
];

const template = (number: string, moduleNumber: string, name: string, licenseType: string, extra: Record<string, string> = {}) =>
  entity('LicenseTemplate', number, {
    name,
    licenseType,
    price: '0.00',
    currency: 'EUR',
    automatic: 'false',
    hidden: 'false',
    hideLicenses: 'false',
    productModuleNumber: moduleNumber,
    ...extra,
  });

const templates = [
  template('DEMO-T-TRIAL', 'DEMO-M-TRYANDBUY', '30-day trial', 'TIMEVOLUME', {
    timeVolume: '30',
    timeVolumePeriod: 'DAY',
    automatic: 'true',
    hidden: 'true',
  }),
  template('DEMO-T-PURCHASE', 'DEMO-M-TRYANDBUY', 'Full version', 'FEATURE', { price: '49.00' }),
  template('DEMO-T-SUBSCRIPTION', 'DEMO-M-SUBSCRIPTION', 'Yearly subscription', 'TIMEVOLUME', {
    price: '99.00',
    timeVolume: '1',
    timeVolumePeriod: 'YEAR',
  }),
  template('DEMO-T-RENTAL-INSTANCE', 'DEMO-M-RENTAL', 'Rental instance', 'FEATURE'),
  template('DEMO-T-RENTAL-PERIOD', 'DEMO-M-RENTAL', 'Rental year', 'TIMEVOLUME', {
    price: '20.00',
    timeVolume: '1',
    timeVolumePeriod: 'YEAR',
  }),
  template('DEMO-T-FLOATING', 'DEMO-M-FLOATING', 'Five concurrent users', 'FLOATING', { price: '199.00', maxSessions: '5' }),
  template('DEMO-T-FEATURE-EXPORT', 'DEMO-M-MULTIFEATURE', 'Export', 'FEATURE', { price: '15.00' }),
  template('DEMO-T-FEATURE-REPORTS', 'DEMO-M-MULTIFEATURE', 'Reports', 'FEATURE', { price: '25.00' }),
  template('DEMO-T-CREDITS', 'DEMO-M-PAYPERUSE', '100 credits', 'QUANTITY', { price: '10.00', quantity: '100' }),
  template('DEMO-T-QUOTA', 'DEMO-M-QUOTA', '50 documents', 'QUANTITY', { price: '5.00', quantity: '50' }),
  template('DEMO-T-NODES', 'DEMO-M-NODELOCKED', 'Two machines', 'QUANTITY', { price: '30.00', quota: '2' }),
  template('DEMO-T-PLAN-FREE', 'DEMO-M-PRICINGTABLE', 'Free plan', 'FEATURE', {
    automatic: 'true',
    skus: JSON.stringify({ USERS: '1', API_ACCESS: false }),
  }),
  template('DEMO-T-PLAN-PRO', 'DEMO-M-PRICINGTABLE', 'Pro plan', 'TIMEVOLUME', {
    price: '29.00',
    timeVolume: '1',
    timeVolumePeriod: 'MONTH',
    skus: JSON.stringify({ USERS: '25', API_ACCESS: true }),
  }),
];

const licensee = (number: string, name: string, extra: Record<string, string> = {}) =>
  entity('Licensee', number, { name, productNumber: DEMO_PRODUCT, markedForTransfer: 'false', ...extra });

const license = (number: string, licenseeNumber: string, templateNumber: string, extra: Record<string, string> = {}) =>
  entity('License', number, {
    name: templateNumber,
    licenseeNumber,
    licenseTemplateNumber: templateNumber,
    hidden: 'false',
    ...extra,
  });

/** Each licensee followed by its licenses (transfer order). */
const licensees: Entity[][] = [
  // No license: the trial starts with the first validation (the agent creates it).
  [licensee('DEMO-TRYANDBUY', 'Try & Buy customer')],
  [
    licensee('DEMO-SUBSCRIPTION', 'Subscription customer', { aliases: JSON.stringify(['demo-subscription-alias']) }),
    license('DEMO-L-SUBSCRIPTION', 'DEMO-SUBSCRIPTION', 'DEMO-T-SUBSCRIPTION', {
      startDate: START,
      timeVolume: '10',
      timeVolumePeriod: 'YEAR',
      price: '99.00',
      currency: 'EUR',
    }),
  ],
  [
    licensee('DEMO-RENTAL', 'Rental customer'),
    license('DEMO-L-RENTAL-DEV1', 'DEMO-RENTAL', 'DEMO-T-RENTAL-INSTANCE'),
    license('DEMO-L-RENTAL-DEV1-PERIOD', 'DEMO-RENTAL', 'DEMO-T-RENTAL-PERIOD', {
      parentfeature: 'DEMO-L-RENTAL-DEV1',
      startDate: START,
      timeVolume: '10',
      timeVolumePeriod: 'YEAR',
    }),
  ],
  [
    licensee('DEMO-FLOATING', 'Floating customer'),
    license('DEMO-L-FLOATING', 'DEMO-FLOATING', 'DEMO-T-FLOATING', { maxSessions: '5' }),
  ],
  [
    licensee('DEMO-MULTIFEATURE', 'Multi-Feature customer'),
    license('DEMO-L-FEATURE-EXPORT', 'DEMO-MULTIFEATURE', 'DEMO-T-FEATURE-EXPORT'),
  ],
  [
    licensee('DEMO-PAYPERUSE', 'Pay-per-Use customer'),
    license('DEMO-L-CREDITS', 'DEMO-PAYPERUSE', 'DEMO-T-CREDITS', { quantity: '100', usedQuantity: '10' }),
  ],
  [
    licensee('DEMO-QUOTA', 'Quota customer'),
    license('DEMO-L-QUOTA', 'DEMO-QUOTA', 'DEMO-T-QUOTA', { quantity: '50' }),
  ],
  [
    licensee('DEMO-NODELOCKED', 'Node-Locked customer'),
    license('DEMO-L-NODES', 'DEMO-NODELOCKED', 'DEMO-T-NODES', { quota: '2' }),
  ],
  [
    licensee('DEMO-PRICINGTABLE', 'Pricing Table customer', { crmCustomerId: 'Kunde Müller GmbH' }),
    license('DEMO-L-PLAN-PRO', 'DEMO-PRICINGTABLE', 'DEMO-T-PLAN-PRO', {
      startDate: START,
      timeVolume: '120',
      timeVolumePeriod: 'MONTH',
    }),
  ],
];

const tokens = [
  entity('Token', DEMO_LICENSEE_API_KEY, {
    tokenType: 'APIKEY',
    apiKeyRole: 'ROLE_APIKEY_LICENSEE',
    licenseeNumber: 'DEMO-SUBSCRIPTION',
  }),
  entity('Token', DEMO_VENDOR_API_KEY, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE' }),
];

export function demoExport(): { header: TransferHeader; entities: Entity[] } {
  const header: TransferHeader = {
    exportId: DEMO_EXPORT_ID,
    createdAt: START,
    sourceHost: 'https://go.netlicensing.io',
    licensees: licensees.map((group) => group[0]!.number),
    // The NetLicensing demo account's credentials, with a fixed salt so the file is reproducible.
    vendorCredentials: hashCredential('demo', 'demo', '6e6c612d64656d6f2d73616c742d3031'),
  };
  return { header, entities: [product, ...modules, ...templates, ...licensees.flat(), ...tokens] };
}

if (import.meta.main) {
  const directory = process.argv[2] ?? join(import.meta.dir, '..', 'demo');
  const { header, entities } = demoExport();
  const result = await writeTransferFiles(header, entities, { directory, overwrite: true });
  console.log(`wrote ${result.files.join(', ')}: ${result.entities} entities, ${result.bytes} bytes`);
}
