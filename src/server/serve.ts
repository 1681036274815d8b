/**
 * Runs the app on Bun.serve: listens, applies transport limits, and on
 * shutdown stops accepting, lets in-flight requests finish (their durable
 * writes included) and only then returns, so the caller can close the store.
 */
import { HTTP_LIMITS } from './limits.ts';
import { envelopeResponse, negotiateFormat } from './negotiate.ts';

/** What serveApp runs: a Hono app, or any handler with the same fetch (e.g. one that adds /health). */
export interface FetchApp {
  fetch(request: Request): Response | Promise<Response>;
}

export interface RunningServer {
  /** The bound port (useful with port 0 in tests). */
  port: number;
  hostname: string;
  /** Stops accepting connections and waits for in-flight requests. */
  stop(): Promise<void>;
}

export interface ServeOptions {
  port: number;
  hostname: string;
  /** PEM texts; see tls.ts for how the client-auth policy maps onto requestCert/rejectUnauthorized. */
  tls?: { cert: string; key: string; ca?: string; requestCert?: boolean; rejectUnauthorized?: boolean };
  /**
   * The longest the app may take before it answers on its own (its 503 after the request time
   * limit, app.ts). Past the idle timeout a GET must not be cut off first (see holdsPastIdle).
   */
  requestTimeoutMs?: number;
  /** Bun.serve's idleTimeout (default HTTP_LIMITS.idleTimeoutSeconds; tests shorten it). */
  idleTimeoutSeconds?: number;
}

/** Collapses `//` in the path (the C++ and JS clients produce it with a trailing-slash base URL). */
function normalisePath(request: Request): Request {
  const url = request.url;
  const schemeEnd = url.indexOf('://') + 3;
  const pathStart = url.indexOf('/', schemeEnd);
  const queryStart = url.indexOf('?', pathStart);
  const path = queryStart === -1 ? url.slice(pathStart) : url.slice(pathStart, queryStart);
  if (!path.includes('//')) return request;
  const fixed = url.slice(0, pathStart) + path.replace(/\/{2,}/g, '/') + (queryStart === -1 ? '' : url.slice(queryStart));
  return new Request(fixed, request);
}

/** 414 in the cloud's error envelope, in the format the client asked for. */
function uriTooLong(request: Request): Response {
  const format = negotiateFormat(request.headers.get('accept'));
  return envelopeResponse(format, 414, 'MalformedRequestException', `Request URI exceeds ${HTTP_LIMITS.urlBytesMax} bytes`);
}

/**
 * Bun applies its idle timeout to a request without a body while the handler still runs, and
 * closes the connection with no answer (a POST with a body is not cut off). When the app may
 * legitimately take that long (strict card sealing with a long interval, run-agent-offline's
 * requestTimeoutMsFor), a GET's idle timer is switched off until its answer is ready and then
 * set back: Bun keeps a request's timeout for the connection, so leaving it off would keep idle
 * keep-alive connections open for ever (both measured, tests/server/limits.test.ts). The margin
 * covers Bun's coarse idle timer, which counts in 4 s ticks (1 s and 2 s timeouts both fired after 4 s).
 */
const IDLE_TIMER_MARGIN_MS = 5_000;

export function serveApp(app: FetchApp, options: ServeOptions): RunningServer {
  const idleTimeoutSeconds = options.idleTimeoutSeconds ?? HTTP_LIMITS.idleTimeoutSeconds;
  const holdsPastIdle = options.requestTimeoutMs !== undefined && options.requestTimeoutMs + IDLE_TIMER_MARGIN_MS > idleTimeoutSeconds * 1000;
  const addressForUrls = `${options.hostname.includes(':') ? `[${options.hostname}]` : options.hostname}:${options.port}`;
  const server = Bun.serve({
    port: options.port,
    hostname: options.hostname,
    maxRequestBodySize: HTTP_LIMITS.transportBodyBytesMax,
    idleTimeout: idleTimeoutSeconds,
    ...(options.tls ? { tls: options.tls } : {}),
    fetch(request, bunServer) {
      if (request.url.length > HTTP_LIMITS.urlBytesMax) return uriTooLong(request);
      // Without a usable Host header (HTTP/1.0, an empty or malformed one) Bun gives the bare path
      // as the URL; the routes read absolute URLs, so the agent's own address stands in.
      const routed =
        request.url.charCodeAt(0) === 47 /* '/' */ ? new Request(`${options.tls ? 'https' : 'http'}://${addressForUrls}${request.url}`, request) : request;
      if (!holdsPastIdle || request.method !== 'GET') return app.fetch(normalisePath(routed));
      bunServer.timeout(request, 0);
      return Promise.resolve(app.fetch(normalisePath(routed))).finally(() => bunServer.timeout(request, idleTimeoutSeconds));
    },
    error(error) {
      return new Response(`internal error: ${error.message}`, { status: 500 });
    },
  });
  return {
    port: server.port ?? options.port,
    hostname: server.hostname ?? options.hostname,
    async stop() {
      await server.stop(false);
    },
  };
}
