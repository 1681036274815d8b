// Goal: the HTTP layer answers like the cloud — auth challenge, negotiation,
// error envelopes, read calls, limits. Method: in-process `app.request` over a
// real LMDB store seeded with one licensee per model; fixed clock.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { ManualClock } from '../../src/platform/clock.ts';
import { createLogger, silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { ADMIN_API_KEY, apiKeyAuth, basic, demoEntities, entity, seedStore, vendorAuth } from '../support/seed-store.ts';

const NOW = Date.parse('2026-11-15T12:00:00.000Z');
let store: AssetStore;
let app: ReturnType<typeof createApp>;

beforeAll(() => {
  const entities = demoEntities();
  entities.push(entity('Token', 'scoped-key', { tokenType: 'APIKEY', licenseeNumber: 'L 2/ä' }));
  entities.push(entity('Token', 'signing-key', { tokenType: 'APIKEY', privateKey: 'MIIEsecret' }));
  ({ store } = seedStore(entities));
  app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
});
afterAll(async () => {
  await store.close();
});

const form = (body: string, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: apiKeyAuth(), ...headers },
  body,
});

describe('authentication', () => {
  test('no Authorization header: 401 with a Basic challenge and an XML envelope', async () => {
    const res = await app.request('/rest/licensee/L-1/validate', { method: 'POST' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toStartWith('Basic realm=');
    expect(res.headers.get('content-type')).toStartWith('application/xml');
    expect(await res.text()).toContain('type="error"');
  });

  test('unknown API key and wrong vendor password: 401', async () => {
    expect((await app.request('/rest/licensee/L-1/validate', form('', { authorization: apiKeyAuth('nope') }))).status).toBe(401);
    expect((await app.request('/rest/licensee/L-1/validate', form('', { authorization: basic('vendor', 'wrong') }))).status).toBe(401);
  });

  test('a vendor password check that fails to run answers 500 and is not remembered: the next request checks again', async () => {
    let fail = true;
    const flaky = createApp({
      store,
      clock: new ManualClock(NOW),
      log: silentLogger(),
      ttlMs: 600_000,
      allowAnonymous: false,
      verifyVendorPassword: async () => (fail ? Promise.reject(new Error('scrypt: memory limit exceeded')) : true),
    });
    expect((await flaky.request('/rest/licensee/L-1/validate', form('', { authorization: vendorAuth() }))).status).toBe(500);
    fail = false;
    expect((await flaky.request('/rest/licensee/L-1/validate', form('', { authorization: vendorAuth() }))).status).toBe(200);
  });

  test('vendor credentials validate', async () => {
    const res = await app.request('/rest/licensee/L-1/validate', form('', { authorization: vendorAuth() }));
    expect(res.status).toBe(200);
  });

  test('a licensee-scoped API key validates only its licensee, and cannot tell which others exist', async () => {
    const ok = await app.request(`/rest/licensee/${encodeURIComponent('L 2/ä')}/validate`, form('', { authorization: apiKeyAuth('scoped-key') }));
    expect(ok.status).toBe(200);
    // An existing licensee and one that does not exist get the same 403 (the second was a 400 NotFoundException).
    for (const other of ['L-1', 'NOPE']) {
      const denied = await app.request(`/rest/licensee/${other}/validate`, form('', { authorization: apiKeyAuth('scoped-key'), accept: 'application/json' }));
      expect(denied.status, other).toBe(403);
      expect(await denied.text()).toContain(`This API key may not validate licensee '${other}'`);
    }
  });

  test('a write is authenticated first: 401 with the challenge without credentials, then 405 not offline', async () => {
    for (const [method, path] of [['PUT', '/core/v2/rest/licensee/L-1'], ['DELETE', '/core/v2/rest/license/LIC-PPU'], ['POST', '/core/v2/rest/licensee'], ['POST', '/rest/licensee/L-1/transfer']] as const) {
      const anonymous = await app.request(path, { method });
      expect(anonymous.status, `${method} ${path}`).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toStartWith('Basic realm=');
      expect((await app.request(path, { method, headers: { authorization: basic('vendor', 'wrong') } })).status).toBe(401);
      expect((await app.request(path, { method, headers: { authorization: vendorAuth() } })).status).toBe(405);
    }
  });
});

describe('validate', () => {
  test('unknown licensee: 400 NotFoundException, lower-case type in XML, upper-case in JSON', async () => {
    const xml = await app.request('/rest/licensee/NOPE/validate', form(''));
    expect(xml.status).toBe(400);
    expect(await xml.text()).toContain('<ns2:info id="NotFoundException" type="error">');
    const json = await app.request('/core/v2/rest/licensee/NOPE/validate', form('', { accept: 'application/json' }));
    expect(json.status).toBe(400);
    const body = (await json.json()) as { infos: { info: { id: string; type: string }[] }; items: unknown };
    expect(body.infos.info[0]).toMatchObject({ id: 'NotFoundException', type: 'ERROR' });
    // The modern empty collection, not the older captures' null (docs/semantics.md).
    expect(body.items).toEqual({ item: [], pagenumber: null, itemsnumber: null, totalpages: null, totalitems: null, hasnext: null });
  });

  test('JSON answer: every value a string, ttl an ISO string, productModuleNumber on every item', async () => {
    const res = await app.request('/core/v2/rest/licensee/L-1/validate', form('', { accept: 'application/json' }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toStartWith('application/json');
    const body = (await res.json()) as {
      ttl: string;
      items: { item: { type: string; property: { name: string; value: unknown }[] }[] };
    };
    expect(body.ttl).toBe('2026-11-15T12:10:00.000Z');
    expect(body.items.item.length).toBeGreaterThan(0);
    for (const item of body.items.item) {
      expect(item.type).toBe('ProductModuleValidation');
      expect(item.property.find((p) => p.name === 'productModuleNumber')).toBeDefined();
      for (const p of item.property) expect(typeof p.value).toBe('string');
    }
  });

  test('XML by default and for */*, in the cloud namespace layout', async () => {
    for (const accept of [undefined, '*/*', 'application/xml']) {
      const res = await app.request('/rest/licensee/L-1/validate', form('', accept ? { accept } : {}));
      const text = await res.text();
      expect(text).toStartWith(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><ns2:netlicensing xmlns="http://www.w3.org/2000/09/xmldsig#" xmlns:ns2="http://netlicensing.labs64.com/schema/context" ttl="2026-11-15T12:10:00.000Z"><ns2:infos/><ns2:items>',
      );
    }
  });

  test('alias, missing Content-Type with empty body, + and %20 in values, unknown extra parameters', async () => {
    const res = await app.request('/rest/licensee/alias-one/validate', {
      method: 'POST',
      headers: { authorization: apiKeyAuth() },
    });
    expect(res.status).toBe(200);
    const res2 = await app.request(
      '/rest/licensee/L-1/validate',
      form('foo=a+b&productModuleNumber0=M-QUOTA&bar=%20x&paramKey0=paramValue&vendorNumber=V1'),
    );
    expect(res2.status).toBe(200);
    expect(await res2.text()).toContain('<ns2:property name="quota">35</ns2:property>');
  });

  test('a form body without Content-Type is read as a form; a text/plain one is refused', async () => {
    const remaining = async (headers: Record<string, string>, body: string) => {
      const res = await app.request('/rest/licensee/L-1/validate', { method: 'POST', headers: { authorization: apiKeyAuth(), accept: 'application/json', ...headers }, body });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as { items: { item: { property: { name: string; value: string }[] }[] } };
      const ppu = answer.items.item.find((i) => i.property.some((p) => p.value === 'M-PPU'))!;
      return ppu.property.find((p) => p.name === 'remainingQuantity')!.value;
    };
    const params = 'productModuleNumber0=M-PPU&usedQuantity0=5&dryRun=true';
    const asForm = await remaining({ 'content-type': 'application/x-www-form-urlencoded' }, params);
    // (Bun's Request adds no Content-Type for a string body.)
    expect(await remaining({}, params)).toBe(asForm);
    expect(await remaining({}, '')).toBe(String(Number(asForm) + 5));
    // What browsers' `fetch` send for a string body: not a form, so not guessed at.
    const plain = await app.request('/rest/licensee/L-1/validate', {
      method: 'POST',
      headers: { authorization: apiKeyAuth(), 'content-type': 'text/plain;charset=UTF-8' },
      body: params,
    });
    expect(plain.status).toBe(415);
    expect(await plain.text()).toContain("Unsupported Content-Type 'text/plain;charset=UTF-8'");
  });

  test('deprecated GET validate carries the methodIsDeprecated warning', async () => {
    const res = await app.request('/rest/licensee/L-1/validate?productModuleNumber0=M-QUOTA', {
      headers: { authorization: apiKeyAuth() },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain(
      `<ns2:info id="methodIsDeprecated" type="warning">'GET' method for licensee validate is deprecated, use 'POST' instead</ns2:info>`,
    );
  });

  test('malformed percent-encoding and a wrong Content-Type get 4xx envelopes', async () => {
    const bad = await app.request('/rest/licensee/L-1/validate', form('a=%ZZ'));
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('MalformedRequestException');
    const ct = await app.request('/rest/licensee/L-1/validate', form('{}', { 'content-type': 'application/json' }));
    expect(ct.status).toBe(415);
  });

  test('HEAD on validate is refused (405, Allow: GET, POST) and changes nothing', async () => {
    const read = async () => {
      const res = await app.request('/rest/licensee/L-1/validate', form('productModuleNumber0=M-PPU', { accept: 'application/json' }));
      const body = (await res.json()) as { items: { item: { property: { name: string; value: string }[] }[] } };
      const ppu = body.items.item.find((i) => i.property.some((p) => p.value === 'M-PPU'))!;
      return ppu.property.find((p) => p.name === 'remainingQuantity')!.value;
    };
    const before = await read();
    // Percent-encoded spellings of the same path once passed a check of the raw URL, and booked.
    const query = '?productModuleNumber0=M-PPU&usedQuantity0=3';
    for (const path of ['/rest/licensee/L-1/validate', '/core/v2/rest/licensee/L-1/validate', '/core/v2/rest/licensee/L-1/%76alidate', '/core/v2/%72est/licensee/L-1/validat%65', '/%72est/licensee/L%2D1/validate'].map((p) => p + query)) {
      for (const headers of [{ authorization: apiKeyAuth() }, { authorization: apiKeyAuth(), origin: 'https://app.example' }] as Record<string, string>[]) {
        const head = await app.request(path, { method: 'HEAD', headers });
        expect(head.status).toBe(405);
        expect(head.headers.get('allow')).toBe('GET, POST');
      }
    }
    expect(await read()).toBe(before);
  });

  test('a client value with characters XML does not allow still gives a well-formed XML answer', async () => {
    for (const [path, body] of [
      ['/rest/licensee/L-1/validate', 'productModuleNumber0=M-PPU&usedQuantity0=%01'],
      ['/rest/licensee/%01x/validate', 'productNumber=P'],
    ] as const) {
      const text = await (await app.request(path, form(body))).text();
      expect(text).not.toMatch(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/);
      expect(text).toContain('\uFFFD');
    }
    const unknown = await (await app.request('/rest/foo%01', { headers: { authorization: vendorAuth() } })).text();
    expect(unknown).not.toContain('\u0001');
  });

  test('the access log (--verbose) writes the path as sent: a %0D%0A in it cannot begin a forged line', async () => {
    let logged = '';
    const log = createLogger({ verbose: true, stream: { write: (chunk: string) => ((logged += chunk), true) } as unknown as NodeJS.WritableStream });
    const verbose = createApp({ store, clock: new ManualClock(NOW), log, ttlMs: 600_000, allowAnonymous: false });
    await verbose.request('/core/v2/rest/x%0D%0A[debug]%20GET%20/core/v2/rest/licensee/L-1%20200%200.3ms');
    expect(logged).toContain('/core/v2/rest/x%0D%0A[debug]%20GET');
    expect(logged.trim().split('\n')).toHaveLength(1);
  });

  test('other methods get what the resource allows (OPTIONS without an Origin: 204), not a 404 for a resource that exists', async () => {
    const validateOptions = await app.request('/core/v2/rest/licensee/L-1/validate', { method: 'OPTIONS' });
    expect(validateOptions.status).toBe(204);
    expect(validateOptions.headers.get('allow')).toBe('GET, POST, OPTIONS');
    const readOptions = await app.request('/core/v2/rest/licensee/L-1', { method: 'OPTIONS' });
    expect(readOptions.status).toBe(204);
    expect(readOptions.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    const propfind = await app.request('/core/v2/rest/licensee/L-1', { method: 'PROPFIND', headers: { authorization: vendorAuth() } });
    expect(propfind.status).toBe(405);
    expect(propfind.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    expect((await app.request('/core/v2/rest/nothing/L-1', { method: 'OPTIONS' })).status).toBe(404);
  });

  test('a trailing slash is the path without it, as JAX-RS matches it', async () => {
    expect((await app.request('/core/v2/rest/licensee/L-1/validate/', form('productModuleNumber0=M-PPU'))).status).toBe(200);
    expect((await app.request('/core/v2/rest/licensee/L-1/?x=1', { headers: { authorization: vendorAuth() } })).status).toBe(200);
    const list = await app.request('/core/v2/rest/licensee//', { headers: { authorization: vendorAuth(), accept: 'application/json' } });
    expect(list.status).toBe(200);
    expect(await list.text()).toContain('"L-1"');
  });

  test('an entity number with a line break takes the same route with and without an Origin', async () => {
    for (const headers of [{}, { origin: 'https://app.example' }] as Record<string, string>[]) {
      const res = await app.request('/rest/licensee/L-1%0AX/validate', form('', { accept: 'application/json', ...headers }));
      expect(res.status).toBe(400);
      expect(await res.text()).toContain('NotFoundException');
    }
  });

  test('Accept is read case-insensitively, and q=0 refuses a type', async () => {
    const format = async (accept: string) => (await app.request('/rest/licensee/L-1/validate', form('', { accept }))).headers.get('content-type');
    expect(await format('APPLICATION/JSON')).toStartWith('application/json');
    expect(await format('Application/Json; q=0.5, application/xml; q=0.4')).toStartWith('application/json');
    expect(await format('application/json;q=0')).toStartWith('application/xml');
    expect(await format('application/json;q=0, application/xml')).toStartWith('application/xml');
  });

  test('a damaged database: 500 with an envelope that says so, and one log line a minute that says what to do', async () => {
    let logged = '';
    const log = createLogger({ stream: { write: (chunk: string) => ((logged += chunk), true) } as unknown as NodeJS.WritableStream });
    const damaged: AssetStore = {
      ...store,
      // What lmdb-js throws where a read meets a damaged page.
      children: () => {
        throw new Error('MDB_PAGE_NOTFOUND: Requested page not found');
      },
    };
    const damagedApp = createApp({ store: damaged, clock: new ManualClock(NOW), log, ttlMs: 600_000, allowAnonymous: false });
    for (let i = 0; i < 3; i++) {
      const res = await damagedApp.request('/rest/licensee/L-1/validate', form('', { accept: 'application/json' }));
      expect(res.status).toBe(500);
      expect(await res.text()).toContain("The agent's database is damaged: its administrator must restore it");
    }
    const lines = logged.split('\n').filter((line) => line.includes('damaged'));
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain('store: the database is damaged (MDB_PAGE_NOTFOUND: Requested page not found): stop the agent and restore the latest backup');
  });

  test('a body over the limit is refused with 413 and an envelope', async () => {
    const res = await app.request('/rest/licensee/L-1/validate', form(`x=${'a'.repeat(70_000)}`));
    expect(res.status).toBe(413);
    expect(await res.text()).toContain('<ns2:info id="MalformedRequestException" type="error">');
  });
});

describe('read calls', () => {
  test('--allow-anonymous answers validate without credentials, but no read: the API keys are cloud credentials', async () => {
    const open = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: true });
    expect((await open.request('/rest/licensee/L-1/validate', { method: 'POST' })).status).toBe(200);
    for (const path of ['/core/v2/rest/token', `/core/v2/rest/token/${ADMIN_API_KEY}`, '/core/v2/rest/licensee', '/rest/license']) {
      const res = await open.request(path);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toStartWith('Basic realm=');
      expect(await res.text()).not.toContain(ADMIN_API_KEY);
    }
    expect((await open.request('/core/v2/rest/token', { headers: { authorization: vendorAuth() } })).status).toBe(200);
  });

  test('a ROLE_APIKEY_LICENSEE key may not read entities; vendor and admin keys may', async () => {
    expect((await app.request('/rest/licensee', { headers: { authorization: apiKeyAuth() } })).status).toBe(403);
    expect((await app.request('/rest/licensee', { headers: { authorization: vendorAuth() } })).status).toBe(200);
    expect((await app.request('/rest/licensee', { headers: { authorization: apiKeyAuth(ADMIN_API_KEY) } })).status).toBe(200);
  });

  test('list with filter and paging: pagination values are strings', async () => {
    const res = await app.request('/core/v2/rest/productmodule?filter=productNumber%3DP-TEST%3Bpage%3D1%3Bitems%3D2', {
      headers: { authorization: vendorAuth(), accept: 'application/json' },
    });
    const body = (await res.json()) as { items: { item: unknown[]; pagenumber: string; totalpages: string; totalitems: string; hasnext: string } };
    expect(body.items.item.length).toBe(2);
    expect(body.items).toMatchObject({ pagenumber: '1', totalitems: '6', totalpages: '3', hasnext: 'true' });
  });

  test('a filtered list over every entity of a kind pages consistently and shows a change of the definitions at once', async () => {
    const page = async (filter: string) => {
      const res = await app.request(`/core/v2/rest/token?filter=${encodeURIComponent(filter)}`, { headers: { authorization: vendorAuth(), accept: 'application/json' } });
      const body = (await res.json()) as { items: { item: { property: { name: string; value: string }[] }[]; totalitems: string } };
      return { total: body.items.totalitems, numbers: body.items.item.map((i) => i.property.find((p) => p.name === 'number')!.value) };
    };
    const all = await page('tokenType=APIKEY;items=1000');
    const paged: string[] = [];
    for (let n = 0; n < Number(all.total); n++) paged.push(...(await page(`tokenType=APIKEY;page=${n};items=1`)).numbers);
    expect(paged).toEqual(all.numbers);
    expect(all.numbers).toContain('scoped-key');
    // The order of the filter's parts does not matter; another value is another list.
    expect(await page('items=1000;tokenType=APIKEY')).toEqual(all);
    expect((await page('tokenType=NONE')).total).toBe('0');
    const licensees = async (filter: string) => {
      const res = await app.request(`/core/v2/rest/licensee?filter=${encodeURIComponent(filter)}`, { headers: { authorization: vendorAuth(), accept: 'application/json' } });
      return ((await res.json()) as { items: { totalitems: string } }).items.totalitems;
    };
    expect(await licensees('crmCustomerId=cust-1;active=true')).toBe('1');
    expect(await licensees('active=true;crmCustomerId=cust-1')).toBe('1');
    expect(await licensees('active=true;crmCustomerId=cust-2')).toBe('0');
    expect(await licensees('active=false;crmCustomerId=cust-1')).toBe('0');
    // An import in between: the next page already shows it (the kept matches belong to the old definitions).
    store.importTransaction((tx) => tx.put(entity('Token', 'added-key', { tokenType: 'APIKEY' })));
    const after = await page('tokenType=APIKEY;items=1000');
    expect(Number(after.total)).toBe(Number(all.total) + 1);
    expect(after.numbers).toContain('added-key');
    store.importTransaction((tx) => tx.remove('Token', 'added-key'));
    expect(await page('tokenType=APIKEY;items=1000')).toEqual(all);
  });

  test('get by number with a space, a slash and non-ASCII in it', async () => {
    const res = await app.request('/rest/licensee/L%202/%C3%A4', { headers: { authorization: vendorAuth() } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('<ns2:item type="Licensee"><ns2:property name="number">L 2/ä</ns2:property>');
  });

  test('unknown entity: 400 NotFoundException; private keys of tokens are never sent', async () => {
    const missing = await app.request('/rest/product/NOPE', { headers: { authorization: vendorAuth() } });
    expect(missing.status).toBe(400);
    const token = await app.request('/rest/token/signing-key', { headers: { authorization: vendorAuth() } });
    const text = await token.text();
    expect(text).toContain('signing-key');
    expect(text).not.toContain('privateKey');
  });

  test('writes are refused as not available offline; unknown paths are 404 envelopes', async () => {
    const post = await app.request('/rest/licensee', { method: 'POST', headers: { authorization: vendorAuth() } });
    expect(post.status).toBe(405);
    expect(await post.text()).toContain('IllegalOperationException');
    const del = await app.request('/core/v2/rest/license/LIC-SUB', { method: 'DELETE', headers: { authorization: vendorAuth() } });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET');
    const unknown = await app.request('/nothing/here', { headers: { accept: 'application/json' } });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { infos: { info: { type: string }[] } }).infos.info[0]!.type).toBe('ERROR');
    // A write to a resource the cloud does not have is a 404, as its read is, not "not available offline".
    for (const [method, path] of [['POST', '/rest/nothing'], ['PUT', '/rest/licensees/L-1'], ['DELETE', '/core/v2/rest/nothing/x']] as const) {
      const res = await app.request(path, { method, headers: { authorization: vendorAuth() } });
      expect(res.status).toBe(404);
      expect(await res.text()).toContain('NotFoundException');
    }
    // Validate answers GET and POST: its 405 says so.
    const put = await app.request('/rest/licensee/L-1/validate', { method: 'PUT', headers: { authorization: vendorAuth() } });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, POST');
  });

  test('CORS preflight is answered', async () => {
    const res = await app.request('/core/v2/rest/licensee/L-1/validate', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,x-requested-with',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
  });
});
