/**
 * One HTTP call to the upstream (the NetLicensing cloud or another agent)
 * with a hard deadline covering connect, headers and the whole body.
 *
 * The outcome is either the upstream's answer, kept byte for byte, or a
 * failure that makes the agent answer locally: a timeout, a connection
 * failure, or a 5xx answer (the cloud's own wording for "I cannot serve you
 * now"). Everything else (200, 401, 400 NotFoundException, 429 …) is an
 * answer and is passed through unchanged.
 *
 * Only the headers a NetLicensing client sends are forwarded, and only
 * those a client reads come back; `accept-encoding` is not forwarded, so
 * the body arrives uncompressed and can be passed on (and cached) as is.
 */

export const DEFAULT_UPSTREAM_TIMEOUT_MS = 5_000;

/** Request headers passed upstream (lower case). */
const FORWARDED_REQUEST_HEADERS = [
  'authorization',
  'accept',
  'content-type',
  'user-agent',
  'x-requested-with',
  'netlicensing-origin',
  'accept-language',
] as const;

/** Response headers passed back to the client (lower case). */
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'www-authenticate', 'allow', 'retry-after', 'cache-control'] as const;

export type UpstreamFailureReason = 'timeout' | 'network' | 'server-error';

export type UpstreamOutcome =
  | { kind: 'answer'; status: number; headers: Headers; body: Uint8Array }
  | { kind: 'failure'; reason: UpstreamFailureReason; status?: number; message: string };

export interface UpstreamCall {
  method: string;
  /** Full upstream URL. */
  url: string;
  /** The client's headers (only FORWARDED_REQUEST_HEADERS are sent). */
  headers: Headers;
  body?: Uint8Array;
  timeoutMs: number;
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
}

export async function callUpstream(call: UpstreamCall): Promise<UpstreamOutcome> {
  const headers = new Headers();
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = call.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  const signal = AbortSignal.timeout(call.timeoutMs);
  const doFetch = call.fetch ?? ((input: string, init: RequestInit) => fetch(input, init));
  try {
    const response = await doFetch(call.url, {
      method: call.method,
      headers,
      ...(call.body !== undefined && call.method !== 'GET' && call.method !== 'HEAD' ? { body: call.body } : {}),
      redirect: 'manual',
      signal,
    });
    const body = new Uint8Array(await response.arrayBuffer());
    if (response.status >= 500) {
      return { kind: 'failure', reason: 'server-error', status: response.status, message: `upstream answered HTTP ${response.status}` };
    }
    const back = new Headers();
    for (const name of FORWARDED_RESPONSE_HEADERS) {
      const value = response.headers.get(name);
      if (value !== null) back.set(name, value);
    }
    return { kind: 'answer', status: response.status, headers: back, body };
  } catch (error) {
    if (signal.aborted || (error as Error)?.name === 'TimeoutError') {
      return { kind: 'failure', reason: 'timeout', message: `no answer within ${call.timeoutMs} ms` };
    }
    const err = error as { code?: unknown; message?: unknown };
    const code = typeof err?.code === 'string' ? ` (${err.code})` : '';
    return { kind: 'failure', reason: 'network', message: `${typeof err?.message === 'string' ? err.message : String(error)}${code}` };
  }
}

/** The upstream URL for a request to `/rest/…` or `/core/v2/rest/…` of the agent. */
export function upstreamUrl(baseUrl: string, pathname: string, search: string): string | undefined {
  const rest = pathname.startsWith('/core/v2/rest/')
    ? pathname.slice('/core/v2/rest'.length)
    : pathname.startsWith('/rest/')
      ? pathname.slice('/rest'.length)
      : undefined;
  return rest === undefined ? undefined : `${baseUrl}/core/v2/rest${rest}${search}`;
}
