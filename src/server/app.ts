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
import { bodyLimit } from 'hono/body-limit';
import { errorEnvelope, type Envelope } from '../core/envelope.ts';
import { parseValidateParameters } from '../core/params.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/log.ts';
import { getEntity, kindOfResource, listEntities, CLOUD_ONLY_RESOURCES, type EntityResult } from '../service/entity-service.ts';
import type { EntityKind } from '../core/entities.ts';
import { licenseeNotFound, validateLicensee, type WriteSealing } from '../service/validate-service.ts';
import type { AssetStore } from '../store/asset-store.ts';
import { createDefinitionsCache } from '../store/definitions-cache.ts';
import { StoreError } from '../store/errors.ts';
import { createAuthenticator, mayRead, mayValidate, REALM, type Principal } from './auth.ts';
import { MalformedRequestError, parseForm, queryOf } from './form.ts';
import { routeOf, type RequestObserver } from './ops/observer.ts';
import { HTTP_LIMITS } from './limits.ts';
import { CONTENT_TYPE, negotiateFormat, renderEnvelope, type WireFormat } from './negotiate.ts';
import { apiCors } from './cors.ts';

export interface AppDeps {
  store: AssetStore;
  clock: Clock;
  log: Logger;
  /** How long clients may cache a validate answer. */
  ttlMs: number;
  allowAnonymous: boolean;
  /** Signs XML validate answers for API keys that carry a private key (optional). */
  signXml?: (envelope: Envelope, principal: Principal) => string | undefined;
  /** Operator metrics (src/server/ops): told about every request and validate answer. */
  observer?: RequestObserver;
  /** Smart-card sealing of validate writes (503 while the card is unavailable); absent without a card. */
  sealing?: WriteSealing;
}

export const API_PREFIXES = ['/rest', '/core/v2/rest'] as const;

function formatOf(c: Context): WireFormat {
  return negotiateFormat(c.req.header('accept'));
}

function send(c: Context, status: number, envelope: Envelope, body?: string): Response {
  const format = formatOf(c);
  return new Response(body ?? renderEnvelope(envelope, format), {
    status,
    headers: { 'content-type': CONTENT_TYPE[format] },
  });
}

function sendError(c: Context, status: number, id: string, message: string, headers: Record<string, string> = {}): Response {
  const format = formatOf(c);
  return new Response(renderEnvelope(errorEnvelope(id, message), format), {
    status,
    headers: { 'content-type': CONTENT_TYPE[format], ...headers },
  });
}

function unauthorized(c: Context, message: string): Response {
  return sendError(c, 401, 'NotAuthorizedException', message, {
    'www-authenticate': `Basic realm="${REALM}"`,
  });
}

export function createApp(deps: AppDeps): Hono {
  const { store, log } = deps;
  const definitions = createDefinitionsCache(store);
  const serviceDeps = { ...deps, definitions };
  const auth = createAuthenticator(
    {
      token: (number) => definitions.token(number),
      vendorCredentials: () => store.meta().vendorCredentials,
    },
    { allowAnonymous: deps.allowAnonymous },
  );
  const app = new Hono();

  // Access log (--verbose) and metrics. Logs method, path and status only: never headers
  // (Authorization) or the query/body (a client may put anything there).
  const observer = deps.observer;
  if (observer || log.level >= 4) {
    app.use('*', async (c, next) => {
      const startedMs = performance.now();
      await next();
      const durationMs = performance.now() - startedMs;
      const status = c.res.status;
      observer?.request({ route: routeOf(c.req.path), method: c.req.method, status, durationMs });
      if (log.level >= 4) log.debug(`${c.req.method} ${c.req.path} ${status} ${durationMs.toFixed(1)}ms`);
    });
  }
  app.use('*', apiCors());
  app.use(
    '*',
    bodyLimit({
      maxSize: HTTP_LIMITS.bodyBytesMax,
      onError: (c) =>
        sendError(c, 413, 'MalformedRequestException', `Request body exceeds ${HTTP_LIMITS.bodyBytesMax} bytes`),
    }),
  );

  app.onError((error, c) => {
    if (error instanceof MalformedRequestError) return sendError(c, 400, 'MalformedRequestException', error.message);
    if (error instanceof StoreError) {
      log.error(`store: ${error.message}`);
      const status = error.code === 'disk_full' ? 507 : 503;
      return sendError(c, status, 'ServiceUnavailableException', `The agent cannot store this change now: ${error.code}`);
    }
    log.error(`unexpected error on ${c.req.method} ${c.req.path}: ${(error as Error).stack ?? String(error)}`);
    return sendError(c, 500, 'InternalServerErrorException', 'Internal error in NetLicensing Agent');
  });
  app.notFound((c) => sendError(c, 404, 'NotFoundException', `Resource ${c.req.path} not found`));

  for (const prefix of API_PREFIXES) {
    app.on(['GET', 'POST'], `${prefix}/licensee/:number{.+}/validate`, async (c) => {
      const authResult = auth.authenticate(c.req.header('authorization'));
      if (!authResult.ok) return unauthorized(c, authResult.message);
      const number = c.req.param('number');
      const isGet = c.req.method === 'GET';
      const pairs = parseForm(queryOf(c.req.url));
      if (!isGet) {
        const contentType = c.req.header('content-type') ?? '';
        // No Content-Type means "no parameters" for old clients; a body is still read leniently.
        if (contentType !== '' && !/^application\/x-www-form-urlencoded\b/i.test(contentType)) {
          return sendError(c, 415, 'MalformedRequestException', `Unsupported Content-Type '${contentType}': use application/x-www-form-urlencoded`);
        }
        pairs.push(...parseForm(await c.req.text()));
      }
      const request = parseValidateParameters(pairs, isGet);
      const licensee = definitions.resolveLicensee(number);
      if (!licensee) {
        const result = licenseeNotFound(number, pairs.some(([k]) => k === 'productNumber'));
        return send(c, result.kind === 'error' ? result.status : 400, result.envelope);
      }
      if (!mayValidate(authResult.principal, licensee.number)) {
        return sendError(c, 403, 'AccessDeniedException', `This API key may not validate licensee '${number}'`);
      }
      const result = await validateLicensee(serviceDeps, licensee, request, deps.clock.nowMs());
      if (result.kind === 'error') return send(c, result.status, result.envelope);
      observer?.validated(result.envelope);
      const signed = formatOf(c) === 'xml' ? deps.signXml?.(result.envelope, authResult.principal) : undefined;
      return send(c, 200, result.envelope, signed);
    });

    app.post(`${prefix}/licensee/:number{.+}/transfer`, (c) => notOffline(c));

    const readEntities = (c: Context, read: (kind: EntityKind) => EntityResult): Response => {
      const authResult = auth.authenticate(c.req.header('authorization'));
      if (!authResult.ok) return unauthorized(c, authResult.message);
      const resource = c.req.param('resource') ?? '';
      const kind = kindOfResource(resource);
      if (!kind) return unknownResource(c, resource);
      if (!mayRead(authResult.principal)) return readDenied(c);
      const result = read(kind);
      return send(c, result.status, result.envelope);
    };
    app.get(`${prefix}/:resource/:number{.+}`, (c) => readEntities(c, (kind) => getEntity(store, kind, c.req.param('number'))));
    app.get(`${prefix}/:resource`, (c) => readEntities(c, (kind) => listEntities(store, kind, c.req.query('filter'))));

    app.on(['POST', 'PUT', 'DELETE', 'PATCH'], [`${prefix}/:resource`, `${prefix}/:resource/*`], (c) => notOffline(c));
  }
  return app;
}

function notOffline(c: Context): Response {
  return sendError(
    c,
    405,
    'IllegalOperationException',
    `${c.req.method} ${c.req.path} is not available in NetLicensing Agent offline mode: change assets in NetLicensing and re-import them`,
    { allow: 'GET' },
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
