// Goal: XML validate answers are signed as the cloud signs them — for API-key
// callers whose token carries a private key — and verify with the public key;
// JSON answers and other callers are not signed unless the operator set a key.
// Method: in-process app over a seeded store, the C# demo key pair from
// tests/fixtures/xmldsig, our verifier and xmlsec1.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { createSigner, type XmlSignerFor } from '../../src/server/signing.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { parsePrivateKey, verifyResponse } from '../../src/wire/xmldsig.ts';
import { xmlsecVerify } from '../wire/xml-tools.ts';
import { apiKeyAuth, demoEntities, entity, seedStore, vendorAuth } from '../support/seed-store.ts';

const fixtures = join(import.meta.dir, '..', 'fixtures', 'xmldsig');
const privatePem = readFileSync(join(fixtures, 'rsa_private.pem'), 'utf8');
const publicPem = readFileSync(join(fixtures, 'rsa_public.pem'), 'utf8');
let store: AssetStore;

beforeAll(() => {
  const entities = demoEntities();
  entities.push(entity('Token', 'signing-key', { tokenType: 'APIKEY', privateKey: privatePem }));
  ({ store } = seedStore(entities));
});
afterAll(async () => {
  await store.close();
});

const appSigningWith = (signXml: XmlSignerFor) =>
  createApp({
    store,
    clock: new ManualClock(Date.parse('2026-11-15T12:00:00.000Z')),
    log: silentLogger(),
    ttlMs: 600_000,
    allowAnonymous: false,
    signXml,
  });

const post = (app: ReturnType<typeof createApp>, authorization: string, accept?: string) =>
  app.request('/rest/licensee/L-1/validate', {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/x-www-form-urlencoded', ...(accept ? { accept } : {}) },
    body: 'productModuleNumber0=M-QUOTA',
  });

test('an API key with a private key gets a signed XML answer that verifies, and xmlsec1 agrees', async () => {
  const app = appSigningWith(createSigner({ algorithm: 'rsa-sha1' }));
  const signed = await (await post(app, apiKeyAuth('signing-key'))).text();
  expect(signed).toContain('<ns2:netlicensing xmlns="http://www.w3.org/2000/09/xmldsig#" xmlns:ns2="http://netlicensing.labs64.com/schema/context" ttl="2026-11-15T12:10:00.000Z"><Signature>');
  expect(verifyResponse(signed, publicPem)).toBe(true);
  expect(verifyResponse(signed.replace('>35<', '>36<'), publicPem)).toBe(false);
  expect(xmlsecVerify(signed, publicPem).ok).toBe(true);

  const json = await (await post(app, apiKeyAuth('signing-key'), 'application/json')).text();
  expect(json).toContain('"signature":null');
  const vendor = await (await post(app, vendorAuth())).text();
  expect(vendor).not.toContain('<Signature>');
});

test('an operator key signs every XML validate answer, with rsa-sha256 when chosen', async () => {
  const app = appSigningWith(createSigner({ algorithm: 'rsa-sha256', operatorKey: parsePrivateKey(privatePem) }));
  const signed = await (await post(app, vendorAuth())).text();
  expect(signed).toContain('Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"');
  expect(verifyResponse(signed, publicPem)).toBe(true);
});

test("a token's own key signs before the operator key; the operator key signs for everyone else", async () => {
  const operator = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const operatorPublic = operator.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const app = appSigningWith(createSigner({ algorithm: 'rsa-sha1', operatorKey: operator.privateKey }));
  const byToken = await (await post(app, apiKeyAuth('signing-key'))).text();
  expect(verifyResponse(byToken, publicPem)).toBe(true);
  expect(verifyResponse(byToken, operatorPublic)).toBe(false);
  for (const authorization of [vendorAuth(), apiKeyAuth()]) {
    const byOperator = await (await post(app, authorization)).text();
    expect(verifyResponse(byOperator, operatorPublic)).toBe(true);
    expect(verifyResponse(byOperator, publicPem)).toBe(false);
  }
});

test('unsigned XML answers are reused even when signing is configured; signed ones are decided every time', async () => {
  const app = appSigningWith(createSigner({ algorithm: 'rsa-sha1' }));
  let decisions = 0;
  const commitRuntime = store.commitRuntime;
  store.commitRuntime = (...args) => {
    decisions += 1;
    return commitRuntime(...args);
  };
  try {
    // The vendor's answers carry no signature (no token key, no operator key): the second is reused.
    const first = await (await post(app, vendorAuth())).text();
    const second = await (await post(app, vendorAuth())).text();
    expect(second).toBe(first);
    expect(second).not.toContain('<Signature>');
    expect(decisions).toBe(1);
    // The signing key's answers are signed one by one.
    decisions = 0;
    expect(await (await post(app, apiKeyAuth('signing-key'))).text()).toContain('<Signature>');
    expect(await (await post(app, apiKeyAuth('signing-key'))).text()).toContain('<Signature>');
    expect(decisions).toBe(2);
  } finally {
    store.commitRuntime = commitRuntime;
  }
});
