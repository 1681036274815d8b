// Goal: the deprecated Licensee Secret over HTTP, as real clients see it (API spec §4.4, §1.6):
// the unmodified `netlicensing-client` sends it with setLicenseeSecret and, like the cloud's
// answer, the mismatch reaches it as an NlicError with the cloud's text; XML carries the info
// with the lower-case type the Java and C# clients parse; a CLIENT-mode binding is durable
// (it survives closing and reopening the database). Method: a real Bun.serve on 127.0.0.1:0 over
// a seeded LMDB store.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import NL from 'netlicensing-client';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp, type RunningServer } from '../../src/server/serve.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { API_KEY, apiKeyAuth, entity, seedStore } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');
let store: AssetStore;
let cwd: string;
let server: RunningServer;

function entities() {
  const out = [];
  for (const [product, mode] of [['P-PRE', 'PREDEFINED'], ['P-CLI', 'CLIENT']] as const) {
    out.push(entity('Product', product, { name: product, licenseeAutoCreate: 'false', licenseeSecretMode: mode }));
    out.push(entity('ProductModule', `${product}-M`, { name: 'PPU', licensingModel: 'PayPerUse', productNumber: product }));
    out.push(entity('LicenseTemplate', `${product}-T`, { name: 'T', licenseType: 'QUANTITY', productModuleNumber: `${product}-M`, price: '0.00', currency: 'EUR', automatic: 'false', hidden: 'false', hideLicenses: 'false' }));
  }
  out.push(entity('Licensee', 'L-PRE', { productNumber: 'P-PRE', licenseeSecret: 'right' }));
  out.push(entity('License', 'LIC-PRE', { licenseeNumber: 'L-PRE', licenseTemplateNumber: 'P-PRE-T', quantity: '10' }));
  out.push(entity('Licensee', 'L-CLI', { productNumber: 'P-CLI' }));
  out.push(entity('License', 'LIC-CLI', { licenseeNumber: 'L-CLI', licenseTemplateNumber: 'P-CLI-T', quantity: '10' }));
  return out;
}

function start(): void {
  const app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
  server = serveApp(app, { port: 0, hostname: '127.0.0.1' });
}

beforeAll(() => {
  ({ store, cwd } = seedStore(entities()));
  start();
});
afterAll(async () => {
  await server.stop();
  await store.close();
});

const context = () => new NL.Context({ baseUrl: `http://127.0.0.1:${server.port}/core/v2/rest`, securityMode: NL.Constants.APIKEY_IDENTIFICATION, apiKey: API_KEY });

async function clientValidate(licensee: string, module: string, secret?: string) {
  const vp = new NL.ValidationParameters();
  vp.setProductModuleValidationParameters(module, { usedQuantity: '1' });
  if (secret !== undefined) vp.setLicenseeSecret(secret);
  return NL.LicenseeService.validate(context(), licensee, vp).then(
    (results: { getValidators(): unknown }) => (results.getValidators() as Record<string, Record<string, unknown>>)[module]!,
    (error: unknown) => error,
  );
}

async function raw(licensee: string, body: string, accept?: string): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' };
  if (accept) headers['accept'] = accept;
  const response = await fetch(`http://127.0.0.1:${server.port}/rest/licensee/${licensee}/validate`, { method: 'POST', headers, body });
  return { status: response.status, text: await response.text() };
}

describe('Licensee Secret over HTTP', () => {
  test('PREDEFINED: the real client validates with the right secret and gets the cloud error with a wrong one', async () => {
    expect(await clientValidate('L-PRE', 'P-PRE-M', 'right')).toMatchObject({ valid: 'true', remainingQuantity: '9' });
    const wrong = await clientValidate('L-PRE', 'P-PRE-M', 'wrong');
    expect(wrong).toBeInstanceOf(NL.NlicError);
    expect((wrong as Error).message).toBe('Licensee secret mismatch');
    const none = await clientValidate('L-PRE', 'P-PRE-M');
    expect(none).toBeInstanceOf(NL.NlicError);
    // Nothing was booked by the refused calls.
    expect(await clientValidate('L-PRE', 'P-PRE-M', 'right')).toMatchObject({ valid: 'true', remainingQuantity: '8' });
  });

  test('the mismatch is a 200 with the items: lower-case type in XML, upper-case in JSON', async () => {
    const xml = await raw('L-PRE', 'licenseeSecret=wrong');
    expect(xml.status).toBe(200);
    expect(xml.text).toContain('<ns2:info id="licenseeSecretMismatch" type="error">Licensee secret mismatch</ns2:info>');
    expect(xml.text).toContain('<ns2:property name="valid">false</ns2:property>');
    const json = await raw('L-PRE', 'licenseeSecret=wrong', 'application/json');
    expect(json.status).toBe(200);
    const envelope = JSON.parse(json.text) as { infos: { info: unknown[] }; items: { item: unknown[] } };
    expect(envelope.infos.info).toEqual([{ value: 'Licensee secret mismatch', id: 'licenseeSecretMismatch', type: 'ERROR' }]);
    expect(envelope.items.item).toHaveLength(1);
  });

  test('CLIENT: the first secret is bound, durably; another one is refused after a restart', async () => {
    expect(await clientValidate('L-CLI', 'P-CLI-M', 'first')).toMatchObject({ valid: 'true', remainingQuantity: '9' });
    expect(await clientValidate('L-CLI', 'P-CLI-M', 'second')).toBeInstanceOf(NL.NlicError);
    await server.stop();
    await store.close();
    store = openAssetStore(join(cwd, 'database'));
    start();
    expect(await clientValidate('L-CLI', 'P-CLI-M', 'second')).toBeInstanceOf(NL.NlicError);
    expect(await clientValidate('L-CLI', 'P-CLI-M', 'first')).toMatchObject({ valid: 'true', remainingQuantity: '8' });
    expect(store.getRuntime('L-CLI').licenseeSecret).toBe('first');
  });
});
