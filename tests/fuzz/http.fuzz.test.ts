// Goal: hostile input never crashes the agent, never hangs it, and never gets a
// 5xx: random form bodies, query strings, paths (encoded or not) and headers.
// Method: fast-check (seeded, bounded runs) against parseForm,
// parseValidateParameters and the whole in-process app over a seeded store.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import fc from 'fast-check';
import { parseValidateParameters } from '../../src/core/params.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp } from '../../src/server/serve.ts';
import { MalformedRequestError, parseForm } from '../../src/server/form.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { connectRaw } from '../helpers.ts';
import { apiKeyAuth, demoEntities, seedStore, vendorAuth } from '../support/seed-store.ts';

const seed = Number(process.env['AGENT_SEED'] ?? Date.now() % 2 ** 31);
let store: AssetStore;
let app: ReturnType<typeof createApp>;
beforeAll(() => {
  ({ store } = seedStore(demoEntities()));
  app = createApp({ store, clock: new ManualClock(Date.parse('2026-11-15T12:00:00Z')), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
});
afterAll(async () => {
  await store.close();
});

const formChar = fc.constantFrom(...'abcXYZ019=&%+;,./ äé\u0000\u001f\ud800'.split(''), '%20', '%2', '%ZZ', '%C3%A4', '%E0%A4', 'productModuleNumber0', 'action0', 'usedQuantity0', 'sessionId0', 'dryRun=true', 'M-FLOAT', 'M-PPU', 'checkOut', '-1', '99999999999999999999');
const formText = fc.array(formChar, { maxLength: 40 }).map((parts) => parts.join(''));

test('parseForm: pairs or a MalformedRequestError, nothing else', () => {
  fc.assert(
    fc.property(formText, (body) => {
      try {
        const pairs = parseForm(body);
        parseValidateParameters(pairs, false);
      } catch (error) {
        expect(error).toBeInstanceOf(MalformedRequestError);
      }
    }),
    { seed, numRuns: 3000 },
  );
});

const pathSegment = fc.oneof(
  fc.constantFrom('licensee', 'L-1', 'alias-one', 'validate', 'product', 'license', 'token', 'utility', 'transfer', '', '..', '%2e%2e', '%', '%zz', 'L%202', '%C3%A4', '%00', 'x'.repeat(2000)),
  fc.string({ maxLength: 12 }).map((s) => encodeURIComponent(s)),
);
const path = fc.tuple(fc.constantFrom('/rest', '/core/v2/rest', '', '/rest/', '//rest'), fc.array(pathSegment, { maxLength: 5 })).map(([p, segs]) => `${p}/${segs.join('/')}`);

test('the app answers random requests without a 5xx (and without hanging)', async () => {
  await fc.assert(
    fc.asyncProperty(
      path,
      fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'OPTIONS', 'PATCH'),
      formText,
      fc.constantFrom(undefined, apiKeyAuth(), vendorAuth(), 'Basic', 'Basic !!!', 'Bearer x', `Basic ${btoa('apiKey:')}`),
      fc.constantFrom(undefined, 'application/json', 'application/xml', '*/*', 'text/html;q=0.1, application/json;q=0.9', 'garbage'),
      fc.constantFrom(undefined, 'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x'),
      fc.string({ maxLength: 30 }),
      async (p, method, body, authorization, accept, contentType, query) => {
        let url: string;
        try {
          url = new URL(`http://agent${p}?${encodeURIComponent(query)}=${body}`).toString();
        } catch {
          return;
        }
        const headers: Record<string, string> = {};
        if (authorization) headers['authorization'] = authorization;
        if (accept) headers['accept'] = accept;
        if (contentType) headers['content-type'] = contentType;
        const hasBody = method !== 'GET' && method !== 'OPTIONS';
        const res = await app.request(url, { method, headers, ...(hasBody ? { body } : {}) });
        const text = await res.text();
        expect(res.status).toBeLessThan(500);
        if (res.status >= 400 && res.status !== 404) expect(text.length).toBeGreaterThan(0);
      },
    ),
    { seed, numRuns: 1500 },
  );
});

test('the server itself (Bun.serve, path normalising, the URL limit) answers raw request lines without a 5xx', async () => {
  // app.request above never reaches src/server/serve.ts: its `//` collapsing, the absolute-URL
  // rewrite and the 414 check. Raw requests over a socket do.
  const server = serveApp(app, { port: 0, hostname: '127.0.0.1' });
  const pathPart = fc.constantFrom('/', '//', '///', 'rest', 'core', 'v2', 'licensee', 'L-1', 'L%202%2F%C3%A4', 'validate', 'product', '%zz', '%2F', '..', '.', '*', '?', '#', 'x'.repeat(9000), 'ä');
  const target = fc.oneof(
    fc.array(pathPart, { maxLength: 8 }).map((parts) => `/${parts.join('/')}`),
    fc.constantFrom('*', 'http://agent/rest/licensee/L-1/validate', 'http://other:9/core/v2/rest//licensee//L-1//validate', 'rest/licensee/L-1/validate', ''),
  );
  const host = fc.constantFrom(undefined, '', 'agent', 'agent:8080', '[::1]:8080', 'bad host', 'a'.repeat(300));
  const statuses = new Map<string, number>();
  try {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST', 'OPTIONS', 'HEAD'), target, host, fc.constantFrom('HTTP/1.1', 'HTTP/1.0'), async (method, path, hostHeader, version) => {
        const body = method === 'POST' ? 'productModuleNumber0=M-PPU&dryRun=true' : '';
        const head =
          `${method} ${path} ${version}\r\n` +
          (hostHeader === undefined ? '' : `Host: ${hostHeader}\r\n`) +
          `Authorization: ${apiKeyAuth()}\r\nConnection: close\r\n` +
          (body ? `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n` : '') +
          '\r\n';
        const connection = await connectRaw(server.port);
        connection.socket.write(head + body);
        // The server answers and closes (Connection: close), or refuses the request line and closes.
        await Promise.race([connection.whenClosed, Bun.sleep(5_000)]);
        connection.socket.end();
        const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(connection.received());
        const status = statusLine?.[1] ?? 'closed unanswered';
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (statusLine) expect(`${method} ${path.slice(0, 80)} -> ${status}`).toMatch(/ -> [1-4]\d\d$/);
      }),
      { seed, numRuns: 300 },
    );
    // Most requests are answered (a request line Bun cannot parse is closed unanswered: 400 at most).
    const answered = [...statuses].filter(([status]) => status !== 'closed unanswered').reduce((sum, [, n]) => sum + n, 0);
    expect(answered, JSON.stringify([...statuses])).toBeGreaterThan(150);
    // And it still serves.
    const res = await fetch(`http://127.0.0.1:${server.port}/rest/licensee/L-1/validate`, {
      method: 'POST',
      headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'productModuleNumber0=M-QUOTA',
    });
    expect(res.status).toBe(200);
  } finally {
    await server.stop();
  }
}, 120_000);
