/**
 * The agent for bench-validate: a fresh database in a temp directory seeded
 * with a Subscription, a Floating (effectively unlimited seats) and a
 * Pay-per-Use licensee, served exactly as run-agent-offline does. Prints its port.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/log.ts';
import { hashCredential } from '../../src/platform/credentials.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp } from '../../src/server/serve.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import type { Entity, EntityKind } from '../../src/core/entities.ts';

const e = (kind: EntityKind, number: string, props: Record<string, string>): Entity => ({
  kind,
  number,
  props: { number, active: 'true', ...props },
});

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'nla-bench-'));
// --compute-every-answer: answer reuse off (src/server/answer-cache.ts), to show the cost of a full decision.
const reuseAnswers = !process.argv.includes('--compute-every-answer');
const store = openAssetStore(join(dir, 'database'), { create: true });
store.importTransaction((tx) => {
  for (const entity of [
    e('Product', 'P', { name: 'Bench' }),
    e('ProductModule', 'M-SUB', { productNumber: 'P', licensingModel: 'Subscription', name: 'Sub' }),
    e('LicenseTemplate', 'T-SUB', { productModuleNumber: 'M-SUB', licenseType: 'TIMEVOLUME', timeVolume: '10', timeVolumePeriod: 'YEAR' }),
    e('ProductModule', 'M-FLOAT', { productNumber: 'P', licensingModel: 'Floating', name: 'Float', maxCheckoutValidity: '3600' }),
    e('LicenseTemplate', 'T-FLOAT', { productModuleNumber: 'M-FLOAT', licenseType: 'FLOATING', maxSessions: '1000000000' }),
    e('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse', name: 'PPU' }),
    e('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: '1000000000' }),
    e('Licensee', 'L', { productNumber: 'P' }),
    e('License', 'L-SUB', { licenseeNumber: 'L', licenseTemplateNumber: 'T-SUB', startDate: '2026-01-01T00:00:00.000Z', timeVolume: '10', timeVolumePeriod: 'YEAR' }),
    e('License', 'L-FLOAT', { licenseeNumber: 'L', licenseTemplateNumber: 'T-FLOAT', maxSessions: '1000000000' }),
    e('License', 'L-PPU', { licenseeNumber: 'L', licenseTemplateNumber: 'T-PPU', quantity: '1000000000' }),
    e('Token', 'bench-key', { tokenType: 'APIKEY' }),
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
const app = createApp({ store, clock: systemClock, log: createLogger(), ttlMs: 600_000, allowAnonymous: false, reuseAnswers });
const server = serveApp(app, { port: 0, hostname: '127.0.0.1' });
console.log(`PORT ${server.port}`);
process.on('SIGTERM', async () => {
  await server.stop();
  await store.close();
  process.exit(0);
});
