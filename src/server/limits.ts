/**
 * Transport limits. Going over one gives a 4xx in the cloud's envelope,
 * never a crash or a hang.
 */
export const HTTP_LIMITS = {
  /** A validate body with dozens of modules is a few KiB; 64 KiB leaves ample room. */
  bodyBytesMax: 64 * 1024,
  /** Whole URL (path + query) length. */
  urlBytesMax: 16 * 1024,
  /** Time a request may take end to end, including waiting for a durable write. */
  requestTimeoutMs: 30_000,
  /** Idle keep-alive connections are closed after this many seconds (Bun.serve idleTimeout). */
  idleTimeoutSeconds: 30,
} as const;
