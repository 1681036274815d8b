/**
 * The HTTP layer: routes, authentication, negotiation and error envelopes.
 * Thin by design: each route parses the request, calls one service
 * function and renders its envelope. createApp never listens (serve.ts does),
 * so tests call `app.request(...)` in-process.
 *
 * Paths: the original agent serves `/rest/...`, the cloud `/core/v2/rest/...`;
 * both are served identically.
 */
import { Hono, type Context } from 'hono';
import type { Envelope } from '../core/envelope.ts';
import { parseValidateParameters } from '../core/params.ts';
import type { Clock } from '../platform/clock.ts';
import { logEvery, type Logger } from '../platform/log.ts';
import { getEntity, kindOfResource, listEntities, CLOUD_ONLY_RESOURCES, type EntityResult } from '../service/entity-service.ts';
import type { EntityKind } from '../core/entities.ts';
import { licenseeNotFound, validateLicensee, type WriteSealing } from '../service/validate-service.ts';
import type { AssetStore } from '../store/asset-store.ts';
import { createDefinitionsCache } from '../store/definitions-cache.ts';
import { damagedDatabaseAdvice, isDatabaseDamage, StoreError } from '../store/errors.ts';
import { ANONYMOUS_READ_REFUSED, createAuthenticator, mayRead, mayValidate, REALM, validateDeniedMessage, type AuthenticatorOptions, type AuthResult } from './auth.ts';
import { MalformedRequestError, parseForm, queryOf } from './form.ts';
import { routeOf, type RequestObserver } from './ops/observer.ts';
import { HTTP_LIMITS } from './limits.ts';
import { CONTENT_TYPE, envelopeResponse, negotiateFormat, renderEnvelope, type WireFormat } from './negotiate.ts';
import { apiCors } from './cors.ts';
import { createAnswerCache, renderAnswer } from './answer-cache.ts';
import type { XmlSignerFor } from './signing.ts';

export interface AppDeps {
  store: AssetStore;
  clock: Clock;
  log: Logger;
  /** How long clients may cache a validate answer. */
  ttlMs: number;
  allowAnonymous: boolean;
  /**
   * Anonymous callers may read entities: only for run-agent's local app, which is asked only after
   * run-agent itself checked the caller (proxy-app.ts, answerLocally). Never with --allow-anonymous alone.
   */
  anonymousReadsVouchedFor?: boolean;
  /** How a vendor password is checked (auth.ts; default scrypt on a worker thread): tests make it fail. */
  verifyVendorPassword?: AuthenticatorOptions['verify'];
  /** Signs XML validate answers for API keys that carry a private key, or all with an operator key (signing.ts). */
  signXml?: XmlSignerFor;
  /** Operator metrics (src/server/ops): told about every request and validate answer. */
  observer?: RequestObserver;
  /** Smart-card sealing of validate writes (503 while the card is unavailable); absent without a card. */
  sealing?: WriteSealing;
  /**
   * Reuse rendered read-only answers (answer-cache.ts) and modules' earlier decisions
   * (core/validate.ts); default true. Off: every answer is computed in full (tests, benchmarks).
   */
  reuseAnswers?: boolean;
  /** Longest wait for a decision before a 503 answer (limits.ts); tests shorten it. */
  requestTimeoutMs?: number;
}

export const API_PREFIXES = ['/rest', '/core/v2/rest'] as const;

/** Anything with the request's headers: a hono Context or a plain Request (the validate fast path). */
type HasHeaders = Context | Request;

function formatOf(c: HasHeaders): WireFormat {
  return negotiateFormat(c instanceof Request ? c.headers.get('accept') : c.req.header('accept'));
}

function send(c: HasHeaders, status: number, envelope: Envelope, body?: string): Response {
  const format = formatOf(c);
  return new Response(body ?? renderEnvelope(envelope, format), {
    status,
    headers: { 'content-type': CONTENT_TYPE[format] },
  });
}

function sendError(c: HasHeaders, status: number, id: string, message: string, headers: Record<string, string> = {}): Response {
  return envelopeResponse(formatOf(c), status, id, message, headers);
}

function unauthorized(c: HasHeaders, message: string): Response {
  return sendError(c, 401, 'NotAuthorizedException', message, {
    'www-authenticate': `Basic realm="${REALM}"`,
  });
}

/**
 * Headers of a successful validate answer, made once: a Response copies the Headers it is given
 * (so sharing them is safe); converting an object literal on every answer took 0.42 µs instead of
 * 0.29 µs (microbenchmark).
 */
const VALIDATE_HEADERS: Record<WireFormat, Headers> = {
  xml: new Headers({ 'content-type': CONTENT_TYPE.xml }),
  json: new Headers({ 'content-type': CONTENT_TYPE.json }),
};

/** A URL whose path (below the root) ends in slashes: the URL without them, and the query. */
const TRAILING_SLASHES = /^([a-z]+:\/\/[^/?#]+\/[^?#]*?)\/+([?#].*)?$/;

/** The validate path with its licensee number (still percent-encoded), as the fast path recognises it. */
const VALIDATE_URL = /^[a-z]+:\/\/[^/]+\/(?:core\/v2\/)?rest\/licensee\/([^/?#]+)\/validate(?:[?#]|$)/;

export function createApp(deps: AppDeps): Hono {
  const { log } = deps;
  // The definitions version (an LMDB read) is read at most once per event-loop turn
  // (asset-store.ts, definitionsVersionOfTurn): a request never mixes two imports
  // (see definitions-cache.ts), and sees an import from the turn after it was committed.
  const store: AssetStore = { ...deps.store, definitionsVersion: () => deps.store.definitionsVersionOfTurn() };
  const definitions = createDefinitionsCache(store);
  // Off with answer reuse: "every answer computed" then means every module decided in full too.
  const serviceDeps = { ...deps, definitions, reuseModuleResults: deps.reuseAnswers !== false };
  const answers = createAnswerCache({ ttlMs: deps.ttlMs });
  const requestTimeoutMs = deps.requestTimeoutMs ?? HTTP_LIMITS.requestTimeoutMs;
  const authenticator = createAuthenticator(
    {
      token: (number) => definitions.token(number),
      vendorCredentials: () => store.meta().vendorCredentials,
    },
    { allowAnonymous: deps.allowAnonymous, ...(deps.verifyVendorPassword ? { verify: deps.verifyVendorPassword } : {}) },
  );
  // Results by Authorization header, for the definitions (API keys, vendor credentials) they were
  // decided with; bounded, so wrong keys sent in bulk cannot grow it.
  // A vendor password being hashed is kept as its promise: the same header sent meanwhile waits for that hash.
  const authResults = new Map<string, AuthResult | Promise<AuthResult>>();
  let authResultsVersion = -1;
  const auth = {
    authenticate(header: string | null | undefined): AuthResult | Promise<AuthResult> {
      if (!header) return authenticator.authenticate(header);
      const version = store.definitionsVersion();
      if (version !== authResultsVersion) {
        authResults.clear();
        authResultsVersion = version;
      }
      let result = authResults.get(header);
      if (result === undefined) {
        const decided = (result = authenticator.authenticate(header));
        if (authResults.size >= 1024) authResults.clear();
        authResults.set(header, decided);
        if (decided instanceof Promise) {
          decided.then(
            (settled) => authResults.get(header) === decided && authResults.set(header, settled),
            // A check that failed to run is not an answer: the next request with the header checks again.
            () => authResults.get(header) === decided && authResults.delete(header),
          );
        }
      }
      return result;
    },
  };
  /** A write: authenticated first, as the cloud does (a 401 to a client without credentials), then refused as not offline. */
  const writeRefused = async (c: Context): Promise<Response> => {
    const authResult = await auth.authenticate(c.req.header('authorization'));
    return authResult.ok ? notOffline(c) : unauthorized(c, authResult.message);
  };
  const app = new Hono();

  // Access log (--verbose) and metrics. Logs method, path and status only: never headers
  // (Authorization) or the query/body (a client may put anything there).
  const observer = deps.observer;
  const observed = observer !== undefined || log.level >= 4;
  if (observed) {
    app.use('*', async (c, next) => {
      const startedMs = performance.now();
      await next();
      const durationMs = performance.now() - startedMs;
      const status = c.res.status;
      observer?.request({ route: routeOf(c.req.path), method: c.req.method, status, durationMs });
      // The path as sent (still percent-encoded): decoded, a %0A in it would begin a forged log line.
      if (log.level >= 4) log.debug(`${c.req.method} ${new URL(c.req.url).pathname} ${status} ${durationMs.toFixed(1)}ms`);
    });
  }
  app.use('*', apiCors());
  // Body limit: a declared length is checked here; a chunked body (no length) while the validate
  // route reads it (bodyTextWithin), the only route that reads a body. Cheaper than hono's
  // bodyLimit, which streams every body through a counting reader.
  app.use('*', (c, next) => {
    const declared = c.req.header('content-length');
    if (declared !== undefined && Number(declared) > HTTP_LIMITS.bodyBytesMax) return Promise.resolve(bodyTooLarge(c));
    return next();
  });

  const storeErrorsLogged = logEvery(60_000);
  /** Every request fails the same way while the disk is full or the database damaged: one line a minute, with a count. */
  const logStoreProblem = (kind: string, message: string) => {
    const { log: due, suppressed } = storeErrorsLogged(kind, Date.now());
    if (due) log.error(`store: ${message}${suppressed > 0 ? ` (${suppressed} more requests failed so since the last report)` : ''}`);
  };
  const errorResponse = (error: unknown, c: HasHeaders, method: string, path: string): Response => {
    if (error instanceof MalformedRequestError) return sendError(c, 400, 'MalformedRequestException', error.message);
    if (error instanceof StoreError) {
      logStoreProblem(error.code, error.message);
      const status = error.code === 'disk_full' ? 507 : 503;
      const text = error.mayBeStored
        ? `The agent could not store this change for certain: ${error.code}; it may still be stored: check before repeating it`
        : `The agent cannot store this change now: ${error.code}`;
      return sendError(c, status, 'ServiceUnavailableException', text);
    }
    if (isDatabaseDamage(error)) {
      // LMDB read a damaged page (reads are not wrapped on the hot path: the error arrives as LMDB's).
      logStoreProblem('damaged', `the database is damaged (${(error as Error).message}): stop the agent and ${damagedDatabaseAdvice(store.path)}`);
      return sendError(c, 500, 'InternalServerErrorException', "The agent's database is damaged: its administrator must restore it");
    }
    log.error(`unexpected error on ${method} ${path}: ${(error as Error).stack ?? String(error)}`);
    return sendError(c, 500, 'InternalServerErrorException', 'Internal error in NetLicensing Agent');
  };
  app.onError((error, c) => errorResponse(error, c, c.req.method, c.req.path));
  app.notFound((c) => sendError(c, 404, 'NotFoundException', `Resource ${c.req.path} not found`));

  /** POST/GET …/licensee/{number}/validate on the plain Request, so that the fast path below needs no hono. */
  const validateRoute = async (c: Request, number: string): Promise<Response> => {
    const declaredLength = c.headers.get('content-length');
    if (declaredLength !== null && Number(declaredLength) > HTTP_LIMITS.bodyBytesMax) return bodyTooLarge(c);
    const authenticated = auth.authenticate(c.headers.get('authorization'));
    const authResult = authenticated instanceof Promise ? await authenticated : authenticated;
    if (!authResult.ok) return unauthorized(c, authResult.message);
    const isGet = c.method === 'GET';
    const query = queryOf(c.url);
    let body = '';
    if (!isGet) {
      const contentType = c.headers.get('content-type') ?? '';
      // No Content-Type means "no parameters" for old clients; a body is still read leniently.
      if (contentType !== '' && !/^application\/x-www-form-urlencoded\b/i.test(contentType)) {
        return sendError(c, 415, 'MalformedRequestException', `Unsupported Content-Type '${contentType}': use application/x-www-form-urlencoded`);
      }
      // A declared length was checked above; a chunked body (no length) is read up to the limit only.
      const chunked = declaredLength === null && /chunked/i.test(c.headers.get('transfer-encoding') ?? '');
      let text: string | undefined;
      try {
        text = chunked ? await bodyTextWithin(c, HTTP_LIMITS.bodyBytesMax) : await c.text();
      } catch (error) {
        // The client closed the connection, or stopped sending, before its body was complete: its
        // doing, not the agent's (no ERROR line, no 5xx in the metrics); there is no one left to
        // answer in the first case, the answer is for the second.
        log.debug(`validate: request body not read: ${(error as Error).message || (error as Error).name}`);
        return sendError(c, 400, 'MalformedRequestException', 'The request body could not be read: the client closed the connection or stopped sending');
      }
      // (A body with neither length nor chunking, as in-process Requests have, is checked once read.)
      if (text === undefined || (text.length > HTTP_LIMITS.bodyBytesMax / 4 && Buffer.byteLength(text) > HTTP_LIMITS.bodyBytesMax)) return bodyTooLarge(c);
      body = text;
    }
    // Parsed where needed: an answer reused for these exact bytes was parsed without error before.
    const parsePairs = (): Array<[string, string]> => {
      const pairs = parseForm(query);
      if (body !== '') pairs.push(...parseForm(body));
      return pairs;
    };
    // Read before the definitions themselves: an import landing in between makes the entry stale, never wrong.
    const definitionsVersion = store.definitionsVersion();
    const licensee = definitions.resolveLicensee(number);
    // A key scoped to another licensee is refused alike whether this one exists or not: it may
    // not learn which licensee numbers do.
    if (!licensee && !mayValidate(authResult.principal, number)) {
      parsePairs();
      return sendError(c, 403, 'AccessDeniedException', validateDeniedMessage(number));
    }
    if (!licensee) {
      const result = licenseeNotFound(number, parsePairs().some(([k]) => k === 'productNumber'));
      return send(c, result.kind === 'error' ? result.status : 400, result.envelope);
    }
    if (!mayValidate(authResult.principal, licensee.number)) {
      parsePairs(); // a malformed body is reported first, as for every other request
      return sendError(c, 403, 'AccessDeniedException', validateDeniedMessage(number));
    }
    const format = formatOf(c);
    const headers = VALIDATE_HEADERS[format];
    // Signed answers are signed one by one (their ttl is signed too): never reused.
    const signer = format === 'xml' ? deps.signXml?.(authResult.principal) : undefined;
    const signs = signer !== undefined;
    const cacheKey = signs || deps.reuseAnswers === false ? undefined : `${c.method} ${format} ${licensee.number}\u0000${query}\u0000${body}`;
    const nowMs = deps.clock.nowMs();
    const runtimeRevision = store.runtimeRevision(licensee.number);
    if (cacheKey !== undefined) {
      const hit = answers.lookup(cacheKey, definitionsVersion, runtimeRevision, nowMs);
      if (hit) {
        observer?.validated(hit.envelope);
        return new Response(hit.body, { status: 200, headers });
      }
    }
    const request = parseValidateParameters(parsePairs(), isGet);
    const result = await withinRequestTime(validateLicensee(serviceDeps, licensee, request, nowMs), requestTimeoutMs);
    if (result === TOO_LATE) return tooLate(c);
    if (result.kind === 'error') return send(c, result.status, result.envelope);
    observer?.validated(result.envelope);
    if (signer) return send(c, 200, result.envelope, signer(result.envelope));
    if (cacheKey === undefined || result.wrote || result.stableUntilMs <= nowMs) {
      return new Response(renderEnvelope(result.envelope, format), { status: 200, headers });
    }
    const rendered = renderAnswer(result.envelope, format);
    if (rendered.parts) {
      answers.remember(cacheKey, {
        ...rendered.parts,
        envelope: result.envelope,
        definitionsVersion,
        runtimeRevision,
        fromMs: nowMs,
        untilMs: result.stableUntilMs,
      });
    }
    return new Response(rendered.body, { status: 200, headers });
  };


  for (const prefix of API_PREFIXES) {
    // hono answers HEAD with a GET route, and a GET validate may change state (a check-out, a
    // booking, a trial start): HEAD, which must be safe, is refused here, where every spelling of
    // the path arrives decoded (`%76alidate`, `%72est` passed a check of the raw URL).
    app.on(['GET', 'POST'], `${prefix}/licensee/:number{${ANY_NUMBER}}/validate`, (c) =>
      c.req.raw.method === 'HEAD' ? headRefused(c.req.raw) : validateRoute(c.req.raw, c.req.param('number')),
    );

    app.post(`${prefix}/licensee/:number{${ANY_NUMBER}}/transfer`, (c) => writeRefused(c));

    const readEntities = async (c: Context, read: (kind: EntityKind) => EntityResult): Promise<Response> => {
      const authResult = await auth.authenticate(c.req.header('authorization'));
      if (!authResult.ok) return unauthorized(c, authResult.message);
      // The entities include the imported API keys, live credentials for the cloud.
      const vouched = authResult.principal.kind === 'anonymous' && deps.anonymousReadsVouchedFor === true;
      if (authResult.principal.kind === 'anonymous' && !vouched) return unauthorized(c, ANONYMOUS_READ_REFUSED);
      const resource = c.req.param('resource') ?? '';
      const kind = kindOfResource(resource);
      if (!kind) return unknownResource(c, resource);
      if (!vouched && !mayRead(authResult.principal)) return readDenied(c);
      // A license shows its runtime state as LMDB holds it: wait for the changes already acknowledged.
      if (kind === 'License') {
        let settled: unknown;
        try {
          settled = await withinRequestTime(store.settled(), requestTimeoutMs);
        } catch (error) {
          // The checkpoint that brings them there fails (a full disk): the read is refused as a read,
          // not with the message of a change that cannot be stored. Everything else is still answered.
          if (!(error instanceof StoreError)) throw error;
          logStoreProblem(error.code, error.message);
          return sendError(
            c,
            503,
            'ServiceUnavailableException',
            `License reads wait until the agent's database holds its newest changes, which it cannot write now (${error.code}); validate and the other reads are answered`,
            { 'retry-after': '10' },
          );
        }
        if (settled === TOO_LATE) return tooLate(c);
      }
      const result = read(kind);
      return send(c, result.status, result.envelope);
    };
    app.get(`${prefix}/:resource/:number{${ANY_NUMBER}}`, (c) => readEntities(c, (kind) => getEntity(store, kind, c.req.param('number'))));
    app.get(`${prefix}/:resource`, (c) => readEntities(c, (kind) => listEntities(store, kind, c.req.query('filter'))));

    // A write to a resource the cloud has is refused as not available offline; to one it does not
    // have, the same 404 a read gets.
    app.on(['POST', 'PUT', 'DELETE', 'PATCH'], [`${prefix}/:resource`, `${prefix}/:resource/*`], (c) => {
      const resource = c.req.param('resource') ?? '';
      const known = kindOfResource(resource) !== undefined || CLOUD_ONLY_RESOURCES.has(resource.toLowerCase());
      return known ? writeRefused(c) : unknownResource(c, resource);
    });

    // Any other method on a resource (OPTIONS without an Origin, which CORS answers; TRACE,
    // PROPFIND, …): what it allows, as JAX-RS answers, instead of a 404 for a resource that exists.
    app.all(`${prefix}/:resource/*`, (c) => {
      const resource = c.req.param('resource') ?? '';
      if (kindOfResource(resource) === undefined) return unknownResource(c, resource);
      const allow = /\/validate$/.test(c.req.path) ? `${VALIDATE_METHODS}, OPTIONS` : 'GET, HEAD, OPTIONS';
      if (c.req.method === 'OPTIONS') return c.body(null, 204, { allow });
      return sendError(c, 405, 'IllegalOperationException', `${c.req.method} is not supported on ${c.req.path}`, { allow });
    });
  }

  // Fast path: a validate without an Origin header (every non-browser client) goes straight to
  // validateRoute, skipping hono's routing and middleware — measured as a third of the time of an
  // answer reused from the answer cache. Anything else, or anything this does not recognise
  // (malformed escapes, CORS), takes the hono route above, which behaves the same.
  const honoFetch = app.fetch;
  const fastValidate = async (request: Request, number: string): Promise<Response> => {
    const startedMs = observed ? performance.now() : 0;
    let response: Response;
    try {
      response = await validateRoute(request, number);
    } catch (error) {
      response = errorResponse(error, request, request.method, new URL(request.url).pathname);
    }
    if (observed) {
      const durationMs = performance.now() - startedMs;
      observer?.request({ route: 'validate', method: request.method, status: response.status, durationMs });
      if (log.level >= 4) log.debug(`${request.method} ${new URL(request.url).pathname} ${response.status} ${durationMs.toFixed(1)}ms`);
    }
    return response;
  };
  app.fetch = (request, ...rest) => {
    if ((request.method === 'POST' || request.method === 'GET') && !request.headers.has('origin')) {
      const match = VALIDATE_URL.exec(request.url);
      if (match) {
        const encoded = match[1]!;
        if (!encoded.includes('%')) return fastValidate(request, encoded);
        try {
          return fastValidate(request, decodeURIComponent(encoded));
        } catch {
          // Malformed escape: hono's route answers it.
        }
      }
    }
    // JAX-RS matches a path with a trailing slash as the path without it (`licensee/L-1/`, `validate/`).
    const trimmed = TRAILING_SLASHES.exec(request.url);
    if (trimmed) return app.fetch(new Request(trimmed[1]! + (trimmed[2] ?? ''), request), ...rest);
    return honoFetch(request, ...rest);
  };
  return app;
}

/** What withinRequestTime gives when the time ran out. */
const TOO_LATE: unique symbol = Symbol('too late');

/**
 * `work`'s outcome, or TOO_LATE once `ms` have passed: a client is answered even when a disk hangs.
 * The work goes on (a change may still be stored); its outcome is then dropped. Used only where a
 * request waits (a decision, a checkpoint), so that answers reused from the cache pay no timer.
 */
function withinRequestTime<T>(work: Promise<T>, ms: number): Promise<T | typeof TOO_LATE> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(TOO_LATE), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function tooLate(c: HasHeaders): Response {
  return sendError(
    c,
    503,
    'ServiceUnavailableException',
    'The agent could not complete this request in time (its change is not yet stored, or the smart card did not answer); ' +
      'a change it makes may still be stored: check before repeating it',
  );
}

/**
 * A chunked body (no declared length) as text; undefined once it passes `maxBytes` (the rest is
 * left unread, so no more than about that is buffered). Clients send a length; this path is for
 * the rest.
 */
async function bodyTextWithin(request: Request, maxBytes: number): Promise<string | undefined> {
  if (request.body === null) return '';
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks, size));
}

function bodyTooLarge(c: HasHeaders): Response {
  return sendError(c, 413, 'MalformedRequestException', `Request body exceeds ${HTTP_LIMITS.bodyBytesMax} bytes`);
}

/**
 * An entity number in a route: anything, slashes and line breaks included (`.` stops at a line
 * break, and `L-1%0AX` then fell through to other routes, answered differently with an Origin).
 */
const ANY_NUMBER = '[\\s\\S]+';

/** What validate answers; `Allow` of its 405s. */
const VALIDATE_METHODS = 'GET, POST';

function headRefused(request: Request): Response {
  return sendError(request, 405, 'IllegalOperationException', 'HEAD is not supported for validate: use POST', { allow: VALIDATE_METHODS });
}

function notOffline(c: Context): Response {
  return sendError(
    c,
    405,
    'IllegalOperationException',
    `${c.req.method} ${c.req.path} is not available in NetLicensing Agent offline mode: change assets in NetLicensing and re-import them`,
    { allow: /\/validate$/.test(c.req.path) ? VALIDATE_METHODS : 'GET' },
  );
}

function unknownResource(c: Context, resource: string): Response {
  if (CLOUD_ONLY_RESOURCES.has(resource.toLowerCase())) {
    return sendError(c, 404, 'NotFoundException', `Resource '${resource}' is not available in NetLicensing Agent offline mode`);
  }
  return sendError(c, 404, 'NotFoundException', `Resource ${c.req.path} not found`);
}

function readDenied(c: Context): Response {
  return sendError(c, 403, 'AccessDeniedException', 'This API key may only validate; reading entities needs vendor credentials or an API key with a read role');
}
