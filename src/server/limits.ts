/**
 * Transport limits. Going over one gives a 4xx in the cloud's envelope,
 * never a crash or a hang — with two exceptions Bun imposes (below, and
 * transportBodyBytesMax).
 *
 * Bun parses the request head (request line and headers) before any of our
 * code runs, and refuses a head over 16 KiB (its --max-http-header-size
 * default; Bun.serve has no option for it) with a bare 431 and a closed
 * connection: no envelope can be sent there. So the URL limit below is
 * smaller, and a long URL gets our 414 envelope (tests/server/limits.test.ts).
 */
export const HTTP_LIMITS = {
  /** A validate body with dozens of modules is a few KiB; 64 KiB leaves ample room. */
  bodyBytesMax: 64 * 1024,
  /**
   * What Bun.serve may buffer of a body (maxRequestBodySize): a body declared longer gets Bun's
   * own bare 413. Far above bodyBytesMax, so that ours answers in every other case: a declared
   * length is checked before the body is read, a body without one (chunked) is read only up to
   * bodyBytesMax (app.ts), long before Bun's limit. Kept finite so that no client can make Bun
   * buffer more than this per request.
   */
  transportBodyBytesMax: 1024 * 1024,
  /** Whole URL (scheme, host, path and query) length: below Bun's head limit, so that it is ours that answers. */
  urlBytesMax: 8 * 1024,
  /**
   * Longest wait for the decision of a validate (or a license read): its change being stored, the
   * smart card sealing it, LMDB taking a checkpoint. Past it the client gets a 503 envelope
   * (app.ts, withinRequestTime) instead of waiting on a hung disk. run-agent-offline adds the seal
   * interval under strict card sealing, which holds writes that long by design. Shorter than the
   * idle timeout, which Bun also applies to a bodyless request whose handler is still running,
   * closing the connection without an answer; a longer limit (strict sealing) makes serve.ts hold
   * a GET's idle timer until its answer is ready.
   */
  requestTimeoutMs: 20_000,
  /**
   * Bun.serve's idleTimeout: a connection without traffic for this long is closed (keep-alive
   * connections, and clients that stop sending a request's head or body half-way).
   */
  idleTimeoutSeconds: 30,
} as const;
