// Goal: with a healthy upstream, run-agent is invisible: every answer comes
// back byte for byte (status, body, content type) as the upstream gave it,
// in XML and JSON, for validate, errors, the auth challenge and read calls;
// and a successful validate refreshes the licensee's local assets, off the
// request path. Method: a stand-in upstream (real offline agent app on
// 127.0.0.1, tests/proxy/support.ts); each proxied answer is compared with
// the answer to the same request sent straight to the upstream.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { ADMIN_API_KEY, apiKeyAuth, vendorAuth } from '../support/seed-store.ts';
import { form, startProxy, StandinUpstream, type ProxyFixture } from './support.ts';

let upstream: StandinUpstream;
let fixture: ProxyFixture;

beforeAll(async () => {
  upstream = StandinUpstream.start();
  fixture = startProxy(upstream);
  // The first validate of L-1 starts its trial upstream; later answers are stable.
  await upstream.direct('/licensee/L-1/validate', form('', { authorization: apiKeyAuth() }));
});
afterAll(async () => {
  await fixture.close();
  await upstream.close();
});

async function same(path: string, init: RequestInit): Promise<Response> {
  const direct = await upstream.direct(path, init);
  const directBody = new Uint8Array(await direct.arrayBuffer());
  const proxied = await fixture.request(`/rest${path}`, init);
  const proxiedBody = new Uint8Array(await proxied.arrayBuffer());
  expect(proxied.status).toBe(direct.status);
  expect(proxied.headers.get('content-type')).toBe(direct.headers.get('content-type'));
  expect(Buffer.from(proxiedBody).equals(Buffer.from(directBody))).toBe(true);
  return new Response(proxiedBody, { status: proxied.status, headers: proxied.headers });
}

describe('healthy upstream: answers pass through unchanged', () => {
  test('validate, XML (no Accept header) and JSON', async () => {
    const xml = await same('/licensee/L-1/validate', form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth() }));
    expect(xml.status).toBe(200);
    expect(await xml.text()).toContain('<ns2:property name="productModuleNumber">M-SUB</ns2:property>');
    const json = await same('/licensee/L-1/validate', form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth(), accept: 'application/json' }));
    expect(json.headers.get('content-type')).toStartWith('application/json');
  });

  test('percent-encoded licensee number and the /core/v2/rest prefix', async () => {
    const path = `/licensee/${encodeURIComponent('L 2/ä')}/validate`;
    const direct = await upstream.direct(path, form('', { authorization: apiKeyAuth(), accept: 'application/json' }));
    const proxied = await fixture.request(`/core/v2/rest${path}`, form('', { authorization: apiKeyAuth(), accept: 'application/json' }));
    expect(proxied.status).toBe(200);
    expect(await proxied.text()).toBe(await direct.text());
  });

  test('errors: no credentials (401 with the Basic challenge), unknown licensee (400)', async () => {
    const challenge = await same('/licensee/L-1/validate', form(''));
    expect(challenge.status).toBe(401);
    expect(challenge.headers.get('www-authenticate')).toStartWith('Basic realm=');
    const unknown = await same('/licensee/NOPE/validate', form('', { authorization: apiKeyAuth(), accept: 'application/json' }));
    expect(unknown.status).toBe(400);
  });

  test('deprecated GET validate with query parameters', async () => {
    const res = await same('/licensee/L-1/validate?productModuleNumber0=M-SUB', { method: 'GET', headers: { authorization: apiKeyAuth() } });
    expect(await res.text()).toContain('methodIsDeprecated');
  });

  test('read calls (vendor credentials, admin API key) and their refusals', async () => {
    await same('/product/P-TEST', { headers: { authorization: vendorAuth() } });
    await same('/license?filter=licenseeNumber%3DL-1', { headers: { authorization: apiKeyAuth(ADMIN_API_KEY), accept: 'application/json' } });
    const denied = await same('/product/P-TEST', { headers: { authorization: apiKeyAuth() } });
    expect(denied.status).toBe(403);
  });

  test('the proxy forwards every call and answers nothing itself', () => {
    expect(fixture.proxy.stats.localAnswers + fixture.proxy.stats.cacheAnswers + fixture.proxy.stats.unavailableAnswers).toBe(0);
    expect(fixture.proxy.stats.forwarded).toBeGreaterThanOrEqual(9);
  });
});

describe('refresh of local assets after a successful validate', () => {
  test('the licensee, its licenses, the product and the API keys arrive in the local database, once per interval', async () => {
    await fixture.proxy.idle();
    const store = fixture.store;
    expect(store.getEntity('Licensee', 'L-1')?.props['productNumber']).toBe('P-TEST');
    expect(store.getEntity('Product', 'P-TEST')).toBeDefined();
    expect(store.children('License', 'L-1').map((l) => l.number)).toContain('LIC-PPU');
    expect(store.getEntity('Token', ADMIN_API_KEY)).toBeDefined();
    const refreshes = fixture.proxy.stats.refreshes;
    expect(refreshes).toBeGreaterThanOrEqual(1);
    // Within the interval another successful validate does not refresh again.
    await fixture.request('/rest/licensee/L-1/validate', form('', { authorization: apiKeyAuth() }));
    await fixture.proxy.idle();
    expect(fixture.proxy.stats.refreshes).toBe(refreshes);
    fixture.clock.advance(60_001);
    await fixture.request('/rest/licensee/L-1/validate', form('', { authorization: apiKeyAuth() }));
    await fixture.proxy.idle();
    expect(fixture.proxy.stats.refreshes).toBe(refreshes + 1);
  });

  test("refreshes of several licensees within the interval list the vendor's API keys once, and again after it", async () => {
    const tokenListings = () => upstream.seen.filter((r) => r.method === 'GET' && /\/token(\?|$)/.test(r.path)).length;
    const before = tokenListings();
    for (const licensee of ['L-1', 'L 2/ä', 'L-1']) expect(await fixture.proxy.refresh(licensee)).toBe(true);
    expect(tokenListings() - before).toBeLessThanOrEqual(1);
    const afterFirst = tokenListings();
    fixture.clock.advance(60_000);
    expect(await fixture.proxy.refresh('L 2/ä')).toBe(true);
    expect(tokenListings()).toBe(afterFirst + 1);
    // The keys are in the local copy all the same.
    expect(fixture.store.getEntity('Token', ADMIN_API_KEY)).toBeDefined();
  });

  test('a refresh replaces definitions: a license removed upstream disappears locally', async () => {
    upstream.store.importTransaction((tx) => tx.remove('License', 'LIC-QUOTA'));
    expect(await fixture.proxy.refresh('L-1')).toBe(true);
    expect(fixture.store.getEntity('License', 'LIC-QUOTA')).toBeUndefined();
    expect(fixture.store.getEntity('License', 'LIC-PPU')).toBeDefined();
  });
});
