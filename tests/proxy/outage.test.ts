// Goal: when the upstream fails (5xx), is unreachable or slow, run-agent
// answers from local state — the same bytes run-agent-offline would give —
// within the upstream timeout; the circuit breaker keeps later requests from
// waiting at all and probes again after its cool-down; operators see every
// local answer in ProxyStats and the log. Method: stand-in upstream with a
// fault switch (tests/proxy/support.ts), the proxy in-process with a manual
// clock; "does not wait" is shown by counting the requests the upstream
// received, never by measuring time.
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { apiKeyAuth, basic, vendorAuth, VENDOR } from '../support/seed-store.ts';
import { COOL_DOWN_MS, form, moduleProperty, startProxy, StandinUpstream, type ProxyFixture } from './support.ts';

let upstream: StandinUpstream;
let fixture: ProxyFixture;
const SUB = form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth(), accept: 'application/json' });

/** Upstream healthy, one validate through the proxy (vendor credentials), refresh done. */
async function warmUp(f: ProxyFixture): Promise<void> {
  const res = await f.request('/rest/licensee/L-1/validate', form('productModuleNumber0=M-SUB', { authorization: vendorAuth(), accept: 'application/json' }));
  expect(res.status).toBe(200);
  await f.proxy.idle();
  expect(f.store.getEntity('Licensee', 'L-1')).toBeDefined();
}

beforeEach(() => {
  upstream = StandinUpstream.start();
});
afterEach(async () => {
  await fixture.close();
  await upstream.close();
});

describe('local answers', () => {
  test('failing upstream (503): the local answer equals the upstream answer byte for byte', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    const expected = await (await upstream.direct('/licensee/L-1/validate', SUB)).text();
    upstream.mode = 'failing';
    const res = await fixture.request('/rest/licensee/L-1/validate', SUB);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toStartWith('application/json');
    expect(await res.text()).toBe(expected);
    expect(fixture.proxy.stats.upstreamServerErrors).toBe(1);
    expect(fixture.proxy.stats.localAnswers).toBe(1);
    expect(fixture.logText()).toContain('answered from local state (server-error): POST /rest/licensee/L-1/validate');
  });

  test('unreachable upstream: XML local answer', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    const init = form('productModuleNumber0=M-SUB', { authorization: apiKeyAuth() });
    const expected = await (await upstream.direct('/licensee/L-1/validate', init)).text();
    await upstream.stop();
    const res = await fixture.request('/rest/licensee/L-1/validate', init);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(expected);
    expect(fixture.proxy.stats.upstreamNetworkErrors).toBe(1);
  });

  test('slow upstream: answered locally after the timeout, and the breaker spares the next request the wait', async () => {
    fixture = startProxy(upstream, {
      upstream: { baseUrl: upstream.baseUrl, credentials: { kind: 'basic', username: VENDOR.user, password: VENDOR.password }, timeoutMs: 300 },
    });
    await warmUp(fixture);
    upstream.mode = 'slow';
    const hits = upstream.validateHits();
    const first = await fixture.request('/rest/licensee/L-1/validate', SUB);
    expect(first.status).toBe(200);
    expect(await moduleProperty(first, 'M-SUB', 'valid')).toBe('true');
    expect(fixture.proxy.stats.upstreamTimeouts).toBe(1);
    expect(upstream.validateHits()).toBe(hits + 1);
    // Breaker open (K=1): the second request is answered without asking the upstream.
    const second = await fixture.request('/rest/licensee/L-1/validate', SUB);
    expect(second.status).toBe(200);
    expect(upstream.validateHits()).toBe(hits + 1);
    expect(fixture.proxy.stats.breakerRejected).toBe(1);
    expect(fixture.proxy.stats.localAnswers).toBe(2);
  });

  test('a licensee the agent has no copy of: 503 ServiceUnavailableException', async () => {
    fixture = startProxy(upstream);
    upstream.mode = 'failing';
    const res = await fixture.request('/rest/licensee/L-1/validate', SUB);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { infos: { info: { id: string; type: string }[] } };
    expect(body.infos.info[0]).toMatchObject({ id: 'ServiceUnavailableException', type: 'ERROR' });
    expect(fixture.proxy.stats.unavailableAnswers).toBe(1);
  });

  test('authentication while offline: API keys from the copy, vendor credentials the upstream accepted, nothing else', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    upstream.mode = 'failing';
    const validate = (authorization?: string) =>
      fixture.request('/rest/licensee/L-1/validate', form('', { accept: 'application/json', ...(authorization ? { authorization } : {}) }));
    expect((await validate(apiKeyAuth())).status).toBe(200);
    expect((await validate(vendorAuth())).status).toBe(200);
    expect((await validate(basic(VENDOR.user, 'wrong'))).status).toBe(401);
    expect((await validate(apiKeyAuth('99999999-9999-4999-8999-999999999999'))).status).toBe(401);
    const none = await validate();
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toStartWith('Basic realm=');
  });

  test('--allow-anonymous while offline: validate without credentials, reads only with them (the copy holds API keys)', async () => {
    fixture = startProxy(upstream, { allowAnonymous: true });
    await warmUp(fixture);
    await upstream.stop();
    expect((await fixture.request('/rest/licensee/L-1/validate', form('', { accept: 'application/json' }))).status).toBe(200);
    for (const path of ['/core/v2/rest/token', '/rest/licensee/L-1']) {
      const anonymous = await fixture.request(path, { headers: { accept: 'application/json' } });
      expect(anonymous.status, path).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toStartWith('Basic realm=');
    }
    // Vendor credentials the upstream accepted earlier still read (the local app is told they were checked).
    expect((await fixture.request('/rest/licensee/L-1', { headers: { authorization: vendorAuth(), accept: 'application/json' } })).status).toBe(200);
  });

  test('read calls come from the local copy; other writes get 503', async () => {
    fixture = startProxy(upstream);
    await warmUp(fixture);
    await upstream.stop();
    const read = await fixture.request('/rest/licensee/L-1', { headers: { authorization: vendorAuth(), accept: 'application/json' } });
    expect(read.status).toBe(200);
    expect(await read.text()).toContain('"L-1"');
    const write = await fixture.request('/rest/licensee/L-1', form('name=x', { authorization: vendorAuth() }));
    expect(write.status).toBe(503);
    expect(fixture.proxy.stats.unavailableAnswers).toBe(1);
  });
});

describe('circuit breaker', () => {
  test('opens after K consecutive failures, probes once after the cool-down, closes when the probe succeeds', async () => {
    fixture = startProxy(upstream, { breaker: { failureThreshold: 2, coolDownMs: COOL_DOWN_MS } });
    await warmUp(fixture);
    upstream.mode = 'failing';
    const hits = upstream.validateHits();
    for (let i = 0; i < 4; i++) expect((await fixture.request('/rest/licensee/L-1/validate', SUB)).status).toBe(200);
    // Two failures reached the upstream; the breaker then answered the other two locally at once.
    expect(upstream.validateHits()).toBe(hits + 2);
    expect(fixture.proxy.stats.breakerState).toBe('open');
    expect(fixture.proxy.stats.breakerOpened).toBe(1);
    expect(fixture.proxy.stats.breakerRejected).toBe(2);

    // Cool-down over, upstream still failing: one probe, open again.
    fixture.clock.advance(COOL_DOWN_MS);
    await fixture.request('/rest/licensee/L-1/validate', SUB);
    expect(upstream.validateHits()).toBe(hits + 3);
    expect(fixture.proxy.stats.breakerState).toBe('open');
    await fixture.request('/rest/licensee/L-1/validate', SUB);
    expect(upstream.validateHits()).toBe(hits + 3);

    // Upstream back: the next probe closes the breaker and requests are forwarded again.
    upstream.mode = 'healthy';
    fixture.clock.advance(COOL_DOWN_MS);
    const forwarded = fixture.proxy.stats.forwarded;
    await fixture.request('/rest/licensee/L-1/validate', SUB);
    await fixture.request('/rest/licensee/L-1/validate', SUB);
    expect(fixture.proxy.stats.breakerState).toBe('closed');
    expect(fixture.proxy.stats.forwarded).toBe(forwarded + 2);
    expect(upstream.validateHits()).toBe(hits + 5);
    expect(fixture.logText()).toContain('answers again');
  });
});
