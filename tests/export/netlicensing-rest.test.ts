/**
 * Goal: the NetLicensing REST client reads the cloud's JSON envelopes into
 * entities, follows paging, encodes paths and filters correctly, and turns
 * every failure (cloud refusal, network, timeout, TLS, garbage) into a
 * RemoteError with the cloud's wording and a bounded number of retries.
 * Method: envelope parsing against recorded fixtures; the client against the
 * stand-in cloud on 127.0.0.1 (switchable faults) and against hand-made fetch
 * functions for answers the stand-in does not produce. Retries use an
 * injected sleep that records the backoff delays instead of waiting.
 */
import { afterEach, describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EnvelopeFormatError, itemToEntity, parseJsonEnvelope } from '../../src/export/json-envelope.ts';
import {
  NetLicensingRestClient,
  RemoteError,
  encodePathSegment,
  filterValue,
  parseBaseUrl,
  type RestClientOptions,
} from '../../src/export/netlicensing-rest.ts';
import {
  PLAN_REFUSAL,
  STANDIN_API_KEY,
  STANDIN_LICENSEES,
  STANDIN_VENDOR,
  standinDataSet,
  startStandinCloud,
  type StandinCloud,
} from '../support/standin-cloud.ts';

const FIXTURES = join(import.meta.dir, 'fixtures');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');

let cloud: StandinCloud | undefined;
afterEach(async () => {
  await cloud?.stop();
  cloud = undefined;
});

function clientFor(url: string, overrides: Partial<RestClientOptions> = {}) {
  const sleeps: number[] = [];
  const client = new NetLicensingRestClient({
    baseUrl: url,
    credentials: { kind: 'basic', username: STANDIN_VENDOR.username, password: STANDIN_VENDOR.password },
    sleep: async (ms) => void sleeps.push(ms),
    ...overrides,
  });
  return { client, sleeps };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const value of iterable) out.push(value);
  return out;
}

async function remoteErrorOf(promise: Promise<unknown>): Promise<RemoteError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RemoteError) return error;
    throw error;
  }
  throw new Error('expected a RemoteError, got success');
}

function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

describe('JSON envelope parsing', () => {
  test('modern shape: every property kept as a string, lists empty', () => {
    const envelope = parseJsonEnvelope(fixture('java-mock--netlicensing-license-list.json'));
    expect(envelope.infos).toEqual([]);
    expect(envelope.items).toHaveLength(3);
    const license = itemToEntity(envelope.items[0]!, 'License');
    expect(license.number).toBe('LC001-TEST');
    expect(license.props).toMatchObject({
      number: 'LC001-TEST',
      active: 'true',
      price: '10.00',
      licenseeNumber: 'L001-TEST',
      parentFeature: 'LC001-PARENT',
      startDate: '2014-07-07T21:30:45.574Z',
    });
    expect(license.lists).toBeUndefined();
    expect(envelope.paging).toEqual({ pagenumber: '0', itemsnumber: '3', totalpages: '1', totalitems: '3', hasnext: 'false' });
  });

  test('2016 shape: Signature, null collections, discount lists, HTML and CR/LF in values', () => {
    const envelope = parseJsonEnvelope(fixture('product_list.json'));
    const products = envelope.items.map((item) => itemToEntity(item, 'Product'));
    const demo = products.find((p) => p.number === 'P001-DEMO')!;
    expect(demo.props['customProperty']).toBe('You may add arbitrary properties to your product, e.g. ERP reference.');
    expect(demo.lists).toEqual([
      { name: 'discount', props: { totalPrice: '10.00', currency: 'EUR', amountFix: '9.00' } },
      { name: 'discount', props: { totalPrice: '100.00', currency: 'EUR', amountPercent: '10' } },
    ]);
    expect(products.find((p) => p.number === '101')!.props['description']).toBe(
      '<p>This is a test licence for QTPro product</p>\r\n',
    );
    expect(products.find((p) => p.number === '12345')!.props['description']).toBe('ааавава');
    expect(products.find((p) => p.number === '123')!.lists).toBeUndefined();
    expect(envelope.paging.hasnext).toBe('false');
  });

  test('error envelope: infos with upper-case type, items null', () => {
    const envelope = parseJsonEnvelope(fixture('licensee_validate_failed.json'));
    expect(envelope.items).toEqual([]);
    expect(envelope.infos).toEqual([
      {
        id: 'NotFoundException',
        type: 'ERROR',
        value: 'Requested licensee does not exist and the productNumber is not provided',
      },
    ]);
  });

  test('lower-case info types are normalised; numbers and booleans become text; null values are dropped', () => {
    const envelope = parseJsonEnvelope(
      JSON.stringify({
        infos: { info: [{ id: 'x', type: 'warning', value: 'careful' }] },
        items: {
          item: [
            {
              type: 'Licensee',
              property: [
                { name: 'number', value: 'L1' },
                { name: 'count', value: 3 },
                { name: 'flag', value: true },
                { name: 'gone', value: null },
              ],
              list: [{ name: 'outer', property: [{ name: 'a', value: '1' }], list: [{ name: 'inner', property: [] }] }],
            },
          ],
        },
      }),
    );
    expect(envelope.infos[0]!.type).toBe('WARNING');
    const entity = itemToEntity(envelope.items[0]!, 'Licensee');
    expect(entity.props).toEqual({ number: 'L1', count: '3', flag: 'true' });
    expect(entity.lists).toEqual([{ name: 'outer', props: { a: '1' }, lists: [{ name: 'inner', props: {} }] }]);
  });

  test.each([
    ['not JSON', '<html>oops</html>', /not JSON/],
    ['no infos or items', '{"foo":1}', /neither "infos" nor "items"/],
    ['array top level', '[1,2]', /top level/],
    ['item without type', '{"items":{"item":[{"property":[]}]}}', /has no type/],
    ['property without name', '{"items":{"item":[{"type":"Product","property":[{"value":"x"}]}]}}', /has no name/],
    ['items not an object', '{"items":"x"}', /"items" is not an object/],
  ])('rejects %s', (_label, body, message) => {
    expect(() => parseJsonEnvelope(body)).toThrow(message);
    expect(() => parseJsonEnvelope(body)).toThrow(EnvelopeFormatError);
  });

  test('itemToEntity rejects a wrong type and a missing number', () => {
    expect(() => itemToEntity({ type: 'Product', props: { number: 'P' }, lists: [] }, 'Licensee')).toThrow(
      /expected an item of type Licensee, got Product/,
    );
    expect(() => itemToEntity({ type: 'Licensee', props: {}, lists: [] }, 'Licensee')).toThrow(/without a number/);
  });
});

describe('URL building', () => {
  test('parseBaseUrl accepts protocol://host[:port] and strips a trailing slash', () => {
    expect(parseBaseUrl('https://go.netlicensing.io')).toBe('https://go.netlicensing.io');
    expect(parseBaseUrl('http://hub:8080/')).toBe('http://hub:8080');
    expect(parseBaseUrl('HTTP://Hub:8080')).toBe('http://hub:8080');
  });

  test.each([
    ['go.netlicensing.io', /not a URL/],
    ['ftp://host', /only http/],
    ['https://host/core/v2/rest', /only protocol:\/\/host/],
    ['https://user:pw@host', /credentials/],
    ['https://host?x=1', /only protocol/],
  ])('parseBaseUrl rejects %s', (text, message) => {
    expect(() => parseBaseUrl(text)).toThrow(message);
  });

  test('path segments keep spaces, non-ASCII, slashes and reserved characters inside the segment', () => {
    expect(encodePathSegment('Kunde Müller 01')).toBe('Kunde%20M%C3%BCller%2001');
    expect(encodePathSegment('a/b?c#d&e%f')).toBe('a%2Fb%3Fc%23d%26e%25f');
    expect(() => encodePathSegment('..')).toThrow(/cannot be used/);
    expect(() => encodePathSegment('.')).toThrow(/cannot be used/);
  });

  test('filter values: k=v;k2=v2, criteria that contain ";" are left out', () => {
    expect(filterValue({ productNumber: 'P 1', page: '0', items: '100' })).toBe('productNumber=P 1;page=0;items=100');
    expect(filterValue({ licenseeNumber: 'a;b', page: '2' })).toBe('page=2');
  });
});

describe('requests against the stand-in cloud', () => {
  test('get sends GET with Basic auth and Accept JSON, percent-encodes the number, returns the entity', async () => {
    cloud = await startStandinCloud();
    const { client } = clientFor(cloud.url);
    const licensee = await client.get('licensee', STANDIN_LICENSEES.NodeLocked);
    expect(licensee).toEqual(standinDataSet().find((e) => e.number === STANDIN_LICENSEES.NodeLocked)!);
    expect(licensee.props['note']).toBe('line 1\r\nline 2 & <tags> "quoted"');
    const request = cloud.requests.at(-1)!;
    expect(request.method).toBe('GET');
    expect(request.rawPath).toBe('/core/v2/rest/licensee/Kunde%20M%C3%BCller%2001');
    expect(request.accept).toBe('application/json');
    const expectedAuth = `Basic ${Buffer.from(`${STANDIN_VENDOR.username}:${STANDIN_VENDOR.password}`, 'utf8').toString('base64')}`;
    expect(request.authorization).toBe(expectedAuth);
  });

  test('API key authentication uses Basic apiKey:<key>', async () => {
    cloud = await startStandinCloud();
    const { client } = clientFor(cloud.url, { credentials: { kind: 'apiKey', apiKey: STANDIN_API_KEY } });
    const product = await client.get('product', 'P-AGENT-DEMO');
    expect(product.lists).toHaveLength(2);
    expect(cloud.requests.at(-1)!.authorization).toBe(`Basic ${btoa(`apiKey:${STANDIN_API_KEY}`)}`);
  });

  test('list follows every page (2 items each) and sends criteria, page and size in filter', async () => {
    cloud = await startStandinCloud();
    const { client } = clientFor(cloud.url, { pageSize: 50 });
    const templates = await collect(client.list('licensetemplate', { productModuleNumber: 'M-RENTAL' }));
    const expected = standinDataSet().filter((e) => e.kind === 'LicenseTemplate');
    expect(templates.map((t) => t.number)).toEqual(expected.map((t) => t.number));
    expect(cloud.requests).toHaveLength(Math.ceil(expected.length / 2));
    expect(cloud.requests.map((r) => r.filter)).toEqual(
      cloud.requests.map((_, page) => `productModuleNumber=M-RENTAL;page=${page};items=50`),
    );
    expect(cloud.requests[1]!.rawQuery).toBe('filter=productModuleNumber%3DM-RENTAL%3Bpage%3D1%3Bitems%3D50');
    expect(cloud.requests.every((r) => r.method === 'GET')).toBe(true);
  });

  test('the 2016 JSON shape works for get and list', async () => {
    cloud = await startStandinCloud({ legacyJson: true });
    const { client } = clientFor(cloud.url);
    expect((await client.get('product', 'P-AGENT-DEMO')).props['erpReference']).toBe('ERP-4711');
    const tokens = await collect(client.list('token', { tokenType: 'APIKEY' }));
    expect(tokens).toHaveLength(standinDataSet().filter((e) => e.kind === 'Token').length);
    expect(tokens[0]!.lists).toBeUndefined();
  });

  test('401 carries the cloud text and status, is not retried', async () => {
    cloud = await startStandinCloud();
    const { client, sleeps } = clientFor(cloud.url, {
      credentials: { kind: 'basic', username: STANDIN_VENDOR.username, password: 'wrong' },
    });
    const error = await remoteErrorOf(client.get('licensee', 'L-TRYBUY'));
    expect(error.kind).toBe('http');
    expect(error.status).toBe(401);
    expect(error.message).toContain('HTTP 401');
    expect(error.message).toContain('Bad credentials');
    expect(error.message).toContain(cloud.url);
    expect(sleeps).toEqual([]);
    expect(cloud.requests).toHaveLength(1);
  });

  test('403 names the credentials options', async () => {
    cloud = await startStandinCloud();
    cloud.addFault({ fault: { kind: 'status', status: 403, id: 'AccessDeniedException', message: 'Access is denied' } });
    const error = await remoteErrorOf(clientFor(cloud.url).client.get('licensee', 'L-TRYBUY'));
    expect(error.message).toContain('HTTP 403 Forbidden: Access is denied');
    expect(error.message).toContain('--nlic.apikey');
  });

  test('402 plan refusal is reported with the exact cloud wording', async () => {
    cloud = await startStandinCloud();
    cloud.addFault({ fault: { kind: 'status', status: 402, id: 'PaymentRequiredException', message: PLAN_REFUSAL } });
    const error = await remoteErrorOf(clientFor(cloud.url).client.get('licensee', 'L-TRYBUY'));
    expect(error.status).toBe(402);
    expect(error.message.endsWith(`HTTP 402 Payment Required: ${PLAN_REFUSAL}`)).toBe(true);
    expect(error.isNotFound).toBe(false);
  });

  test.each([400, 404] as const)('unknown licensee answered with %d is recognised as not found', async (status) => {
    cloud = await startStandinCloud({ notFoundStatus: status });
    const error = await remoteErrorOf(clientFor(cloud.url).client.get('licensee', 'NOPE'));
    expect(error.isNotFound).toBe(true);
    expect(error.status).toBe(status);
    expect(error.message).toContain("Licensee with the number 'NOPE' does not exist.");
  });

  test('a connection dropped mid-list is retried with backoff and the list completes', async () => {
    cloud = await startStandinCloud();
    const { client, sleeps } = clientFor(cloud.url);
    // Bun's fetch silently repeats a request once when a reused connection breaks, so the
    // fault is bound to the client's own retries, not to a count of requests.
    cloud.addFault({ fault: { kind: 'drop' }, match: /page%3D2%3B/, while: () => sleeps.length < 2 });
    const modules = await collect(client.list('productmodule', { productNumber: 'P-AGENT-DEMO' }));
    expect(modules.map((m) => m.number)).toEqual(
      standinDataSet().filter((e) => e.kind === 'ProductModule').map((m) => m.number),
    );
    expect(sleeps).toEqual([500, 1000]);
  });

  test('a connection that keeps dropping fails after a bounded number of attempts', async () => {
    cloud = await startStandinCloud();
    cloud.addFault({ fault: { kind: 'drop' }, match: /page%3D1%3B/ });
    const attempts: number[] = [];
    const { client, sleeps } = clientFor(cloud.url, { onRequest: (e) => void attempts.push(e.attempt) });
    const error = await remoteErrorOf(collect(client.list('productmodule')));
    expect(error.kind).toBe('network');
    expect(error.message).toContain(`cannot reach ${cloud.url}`);
    expect(error.message).toContain('connection closed by the server');
    expect(error.message).toContain('gave up after 4 attempts');
    expect(sleeps).toEqual([500, 1000, 2000]);
    expect(attempts).toEqual([1, 1, 2, 3, 4]);
    // At least one request per attempt reached the server (Bun may repeat one on a reused connection).
    expect(cloud.requests.filter((r) => r.filter?.includes('page=1;')).length).toBeGreaterThanOrEqual(4);
  });

  test('a slow answer times out per attempt and is retried', async () => {
    cloud = await startStandinCloud();
    cloud.addFault({ fault: { kind: 'slow', delayMs: 5_000 }, times: 1 });
    const { client, sleeps } = clientFor(cloud.url, { timeoutMs: 100 });
    const licensee = await client.get('licensee', 'L-QUOTA');
    expect(licensee.number).toBe('L-QUOTA');
    expect(sleeps).toEqual([500]);
  });

  test('a server that stays slow gives a timeout error naming host and limit', async () => {
    cloud = await startStandinCloud();
    cloud.addFault({ fault: { kind: 'slow', delayMs: 5_000 } });
    const { client } = clientFor(cloud.url, { timeoutMs: 100, retries: 1 });
    const error = await remoteErrorOf(client.get('licensee', 'L-QUOTA'));
    expect(error.kind).toBe('timeout');
    expect(error.message).toContain(`${cloud.url} did not answer GET /core/v2/rest/licensee/L-QUOTA within 0.1 s`);
    expect(error.message).toContain('gave up after 2 attempts');
  });

  test('5xx answers are retried; a proxy error page without envelope still gives a clear message', async () => {
    cloud = await startStandinCloud();
    cloud.addFault({ fault: { kind: 'raw', status: 502, body: '<html>Bad Gateway</html>' } });
    const { client, sleeps } = clientFor(cloud.url, { retries: 2 });
    const error = await remoteErrorOf(client.get('product', 'P-AGENT-DEMO'));
    expect(error.status).toBe(502);
    expect(error.message).toContain('HTTP 502');
    expect(error.message).not.toContain('<html>');
    expect(sleeps).toEqual([500, 1000]);

    cloud.faults.length = 0;
    cloud.addFault({ fault: { kind: 'status', status: 503, id: 'ServiceUnavailable', message: 'maintenance' }, times: 1 });
    expect((await client.get('product', 'P-AGENT-DEMO')).number).toBe('P-AGENT-DEMO');
  });

  test('connection refused names the host and the cause', async () => {
    cloud = await startStandinCloud();
    const url = cloud.url;
    await cloud.stop();
    cloud = undefined;
    const { client, sleeps } = clientFor(url, { retries: 1 });
    const error = await remoteErrorOf(client.get('licensee', 'L-QUOTA'));
    expect(error.kind).toBe('network');
    expect(error.message).toContain(`cannot reach ${url}`);
    expect(error.message).toContain('connection refused');
    expect(sleeps).toEqual([500]);
  });

  test('an untrusted TLS certificate fails at once with a TLS message', async () => {
    cloud = await startStandinCloud({
      tls: { cert: fixture('self-signed.cert.pem'), key: fixture('self-signed.key.pem') },
    });
    const attempts: number[] = [];
    const { client, sleeps } = clientFor(cloud.url, { onRequest: (e) => void attempts.push(e.attempt) });
    const error = await remoteErrorOf(client.get('licensee', 'L-QUOTA'));
    expect(error.kind).toBe('tls');
    expect(error.message).toContain(`TLS connection to ${cloud.url} failed`);
    expect(attempts).toEqual([1]);
    expect(sleeps).toEqual([]);
  });
});

describe('answers the stand-in does not produce', () => {
  const fakeClient = (respond: (url: string) => Response | Promise<Response>, overrides: Partial<RestClientOptions> = {}) =>
    clientFor('https://cloud.example', { fetch: async (url) => respond(url), ...overrides });

  test('get refuses an item with another number', async () => {
    const { client } = fakeClient(() => jsonResponse(fixture('java-mock--netlicensing-licensee-get.json')));
    const error = await remoteErrorOf(client.get('licensee', 'L999'));
    expect(error.kind).toBe('protocol');
    expect(error.message).toContain('asked for Licensee "L999", got "L001-TEST"');
  });

  test('get refuses an answer without an item of the expected type', async () => {
    const { client } = fakeClient(() => jsonResponse({ infos: { info: [] }, items: { item: [] } }));
    expect((await remoteErrorOf(client.get('product', 'P1'))).message).toContain('contains no Product item');
  });

  test('a 200 answer carrying an ERROR info is a refusal', async () => {
    const { client } = fakeClient(() =>
      jsonResponse({ infos: { info: [{ id: 'SomethingWrong', type: 'ERROR', value: 'not today' }] }, items: null }),
    );
    const error = await remoteErrorOf(client.get('product', 'P1'));
    expect(error.kind).toBe('http');
    expect(error.message).toContain('HTTP 200');
    expect(error.message).toContain('not today');
  });

  test('a 200 answer that is not an envelope is a protocol error and not retried', async () => {
    let calls = 0;
    const { client } = fakeClient(() => {
      calls++;
      return new Response('<netlicensing/>', { status: 200, headers: { 'content-type': 'application/xml' } });
    });
    const error = await remoteErrorOf(client.get('product', 'P1'));
    expect(error.kind).toBe('protocol');
    expect(error.message).toContain('not a NetLicensing JSON envelope');
    expect(calls).toBe(1);
  });

  test('redirects are not followed (credentials stay with the named host)', async () => {
    const seen: RequestInit[] = [];
    const { client } = clientFor('https://cloud.example', {
      fetch: async (_url, init) => {
        seen.push(init);
        return new Response('', { status: 302, headers: { location: 'https://elsewhere.example/' } });
      },
    });
    const error = await remoteErrorOf(client.get('product', 'P1'));
    expect(seen[0]!.redirect).toBe('manual');
    expect(error.message).toContain('HTTP 302');
    expect(error.message).toContain('redirect to https://elsewhere.example/');
  });

  test('a list without paging attributes is one page', async () => {
    const urls: string[] = [];
    const { client } = fakeClient((url) => {
      urls.push(url);
      return jsonResponse(fixture('java-mock--netlicensing-licensee-get.json'));
    });
    expect((await collect(client.list('licensee'))).map((e) => e.number)).toEqual(['L001-TEST']);
    expect(urls).toHaveLength(1);
  });

  test('a server that ignores the page parameter is detected instead of looping', async () => {
    const page0 = { items: { item: [{ type: 'Licensee', property: [{ name: 'number', value: 'A' }] }], pagenumber: '0', totalpages: '3', hasnext: 'true' } };
    const { client } = fakeClient(() => jsonResponse(page0));
    const error = await remoteErrorOf(collect(client.list('licensee')));
    expect(error.message).toContain('asked for page 1, got page 0');
  });

  test('paging by totalpages when hasnext is missing; repeated numbers are yielded once', async () => {
    const pages = [
      { items: { item: [{ type: 'Token', property: [{ name: 'number', value: 'A' }] }], pagenumber: '0', totalpages: '2' } },
      {
        items: {
          item: [
            { type: 'Token', property: [{ name: 'number', value: 'A' }] },
            { type: 'Token', property: [{ name: 'number', value: 'B' }] },
            { type: 'Country', property: [{ name: 'code', value: 'DE' }] },
          ],
          pagenumber: '1',
          totalpages: '2',
        },
      },
    ];
    let call = 0;
    const { client } = fakeClient(() => jsonResponse(pages[call++]!));
    expect((await collect(client.list('token'))).map((e) => e.number)).toEqual(['A', 'B']);
    expect(call).toBe(2);
  });

  test('hasnext="true" on the last page by totalpages ends the list', async () => {
    const urls: string[] = [];
    const { client } = fakeClient((url) => {
      urls.push(url);
      return jsonResponse({
        items: { item: [{ type: 'Token', property: [{ name: 'number', value: 'A' }] }], pagenumber: '0', totalpages: '1', hasnext: 'true' },
      });
    });
    expect((await collect(client.list('token'))).map((e) => e.number)).toEqual(['A']);
    expect(urls).toHaveLength(1);
  });

  test('cancellation stops without retrying', async () => {
    const controller = new AbortController();
    const { client, sleeps } = fakeClient(
      () => {
        controller.abort();
        throw new DOMException('aborted', 'AbortError');
      },
      { signal: controller.signal },
    );
    const error = await remoteErrorOf(client.get('product', 'P1'));
    expect(error.kind).toBe('aborted');
    expect(sleeps).toEqual([]);
  });
});
