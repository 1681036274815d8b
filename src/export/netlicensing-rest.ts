/**
 * A read-only HTTP client for the NetLicensing REST API (or another agent
 * serving it): `GET <host>/core/v2/rest/<resource>[/<number>]` with Basic
 * auth, JSON envelopes parsed into Entity values, lists followed page by page.
 *
 * Why JSON: values arrive exactly as stored (no XML whitespace or line-end
 * normalisation), no XML parser is needed, and both the cloud and our agent
 * answer it (`Accept: application/json`). See docs/export.md.
 *
 * Robustness: every call has a per-attempt timeout; network failures,
 * timeouts and 5xx/429 answers are retried a bounded number of times with
 * exponential backoff (GETs are idempotent). Errors carry the cloud's own
 * wording (`infos`) and the HTTP status. Nothing returned is trusted: `get`
 * checks type and number; `list` callers check every entity against what
 * they asked for (servers may ignore `filter`).
 */
import { RESOURCE_KIND, type Entity, type EntityKind, type RestResource } from '../core/entities.ts';
import {
  EnvelopeFormatError,
  itemToEntity,
  parseJsonEnvelope,
  type EnvelopeInfo,
  type ParsedEnvelope,
} from './json-envelope.ts';

export const REST_BASE_PATH = '/core/v2/rest';
/** Per-attempt timeout (connect + full body). */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Retries after the first attempt (so at most 4 attempts). */
export const DEFAULT_RETRIES = 3;
/** First backoff delay; doubles per retry (0.5 s, 1 s, 2 s), capped at MAX_BACKOFF_MS. */
export const DEFAULT_BACKOFF_MS = 500;
export const MAX_BACKOFF_MS = 8_000;
/** Items requested per list page (`filter=…;page=N;items=M`). */
export const DEFAULT_PAGE_SIZE = 100;
/** A list that claims more pages than this is treated as a broken server. */
const MAX_PAGES = 100_000;

export { RESOURCE_KIND, type RestResource } from '../core/entities.ts';

export type Credentials =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'apiKey'; apiKey: string };

export interface RequestEvent {
  method: 'GET';
  url: string;
  attempt: number;
}

export interface RestClientOptions {
  /** `protocol://host[:port]`, no path (validated by parseBaseUrl). */
  baseUrl: string;
  credentials: Credentials;
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
  pageSize?: number;
  /** Injected in tests so retries do not wait. */
  sleep?: (ms: number) => Promise<void>;
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** Cancels the whole operation (not retried). */
  signal?: AbortSignal;
  /** Called before every attempt (verbose logging, tests). */
  onRequest?: (event: RequestEvent) => void;
}

export type RemoteErrorKind = 'http' | 'network' | 'timeout' | 'tls' | 'protocol' | 'aborted';

/** The server refused the request or could not be reached; `message` is meant for the user. */
export class RemoteError extends Error {
  constructor(
    message: string,
    readonly kind: RemoteErrorKind,
    readonly details: { url: string; status?: number; infos?: EnvelopeInfo[]; attempts?: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RemoteError';
  }

  get status(): number | undefined {
    return this.details.status;
  }

  /** True when the server said the requested entity does not exist (400/404 NotFoundException, or a bare 404). */
  get isNotFound(): boolean {
    if (this.kind !== 'http') return false;
    if (this.details.infos?.some((info) => info.id === 'NotFoundException')) return true;
    return this.details.status === 404;
  }
}

/** Checks `--core.base.host` and returns it without trailing slash; throws Error with a user message. */
export function parseBaseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL; expected protocol://host[:port], e.g. https://go.netlicensing.io`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`"${text}": only http:// and https:// are supported`);
  }
  if (url.username || url.password) {
    throw new Error(`"${text}": put credentials in --nlic.username/--nlic.password or --nlic.apikey, not in the URL`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new Error(`"${text}": give only protocol://host[:port]; the client adds ${REST_BASE_PATH}/ itself`);
  }
  return `${url.protocol}//${url.host}`;
}

/**
 * One path segment, percent-encoded so that spaces, non-ASCII and `/`
 * stay inside the segment. `.` and `..` cannot be sent at all: URL
 * parsers resolve them (even percent-encoded) as dot segments.
 */
export function encodePathSegment(value: string): string {
  if (value === '' || value === '.' || value === '..') {
    throw new Error(`"${value}" cannot be used as a number in a URL path`);
  }
  return encodeURIComponent(value);
}

/**
 * The NetLicensing `filter` value `k=v;k2=v2`. A value containing `;` cannot
 * be expressed and is left out (the caller checks every entity anyway).
 */
export function filterValue(criteria: Record<string, string>): string {
  return Object.entries(criteria)
    .filter(([, value]) => !value.includes(';'))
    .map(([key, value]) => `${key}=${value}`)
    .join(';');
}

function authorizationHeader(credentials: Credentials): string {
  const pair =
    credentials.kind === 'apiKey' ? `apiKey:${credentials.apiKey}` : `${credentials.username}:${credentials.password}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

const TLS_CODE = /CERT|TLS|SSL|EPROTO|SELF_SIGNED|UNABLE_TO_(VERIFY|GET)|HOSTNAME|ALTNAME/i;

function describeNetworkFailure(error: unknown): { kind: 'network' | 'tls'; cause: string } {
  const err = error as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof err?.code === 'string' ? err.code : typeof err?.cause?.code === 'string' ? err.cause.code : '';
  const message = typeof err?.message === 'string' ? err.message : String(error);
  const friendly: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection closed by the server before the answer was complete',
    ENOTFOUND: 'host name not found (DNS)',
    EAI_AGAIN: 'host name lookup failed temporarily (DNS)',
    ETIMEDOUT: 'connection timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
  };
  const isTls = TLS_CODE.test(code);
  const text = friendly[code] ?? message.replace(/\s*For more information, pass `verbose: true`.*$/s, '');
  return { kind: isTls ? 'tls' : 'network', cause: code && !text.includes(code) ? `${text} (${code})` : text };
}

function errorInfos(envelope: ParsedEnvelope): EnvelopeInfo[] {
  return envelope.infos.filter((info) => info.type === 'ERROR');
}

function infosText(infos: EnvelopeInfo[]): string {
  return infos.map((info) => info.value.trim() || info.id).join('; ');
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class NetLicensingRestClient {
  readonly baseUrl: string;
  private readonly authorization: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  readonly pageSize: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly fetchImpl: (input: string, init: RequestInit) => Promise<Response>;
  private readonly signal: AbortSignal | undefined;
  private readonly onRequest: ((event: RequestEvent) => void) | undefined;

  constructor(options: RestClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.authorization = authorizationHeader(options.credentials);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retries = Math.max(0, options.retries ?? DEFAULT_RETRIES);
    this.backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
    this.pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    this.sleep = options.sleep ?? defaultSleep;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.signal = options.signal;
    this.onRequest = options.onRequest;
  }

  /** `GET <resource>/<number>`: the entity, checked to be of the right type and number. */
  async get(resource: RestResource, number: string): Promise<Entity> {
    const kind = RESOURCE_KIND[resource];
    const path = `${resource}/${encodePathSegment(number)}`;
    const { envelope, url } = await this.request(path, undefined);
    const item = envelope.items.find((candidate) => candidate.type === kind);
    if (!item) throw this.protocolError(url, `the answer contains no ${kind} item`);
    let entity: Entity;
    try {
      entity = itemToEntity(item, kind);
    } catch (error) {
      throw this.protocolError(url, (error as Error).message);
    }
    if (entity.number !== number) {
      throw this.protocolError(url, `asked for ${kind} "${number}", got "${entity.number}"`);
    }
    return entity;
  }

  /**
   * `GET <resource>?filter=<criteria>;page=N;items=M`, following the pages.
   * Yields every item of the resource's type, each number once. The server
   * may ignore the criteria: callers must check what they get.
   */
  async *list(resource: RestResource, criteria: Record<string, string> = {}): AsyncGenerator<Entity> {
    const kind = RESOURCE_KIND[resource];
    const seen = new Set<string>();
    for (let page = 0; ; page++) {
      if (page >= MAX_PAGES) throw this.protocolError(`${this.baseUrl}${REST_BASE_PATH}/${resource}`, `more than ${MAX_PAGES} pages`);
      const filter = filterValue({ ...criteria, page: String(page), items: String(this.pageSize) });
      const { envelope, url } = await this.request(resource, filter);
      for (const item of envelope.items) {
        if (item.type !== kind) continue;
        let entity: Entity;
        try {
          entity = itemToEntity(item, kind);
        } catch (error) {
          throw this.protocolError(url, (error as Error).message);
        }
        if (seen.has(entity.number)) continue;
        seen.add(entity.number);
        yield entity;
      }
      const paging = envelope.paging;
      // No paging attributes: the server sent everything at once (e.g. an older agent).
      if (paging.pagenumber === undefined && paging.hasnext === undefined && paging.totalpages === undefined) return;
      if (paging.pagenumber !== undefined && Number(paging.pagenumber) !== page) {
        throw this.protocolError(url, `asked for page ${page}, got page ${paging.pagenumber} (paging not supported?)`);
      }
      const totalPages = paging.totalpages === undefined ? Number.NaN : Number(paging.totalpages);
      const morePagesByCount = Number.isFinite(totalPages) ? page + 1 < totalPages : undefined;
      const hasNext = paging.hasnext !== undefined ? paging.hasnext === 'true' : (morePagesByCount ?? false);
      // When both are sent, a contradicting totalpages ends the list: a server that keeps
      // saying hasnext="true" must not make the export loop.
      if (!hasNext || morePagesByCount === false) return;
    }
  }

  private protocolError(where: string, problem: string): RemoteError {
    return new RemoteError(`unexpected answer from ${where}: ${problem}`, 'protocol', { url: where });
  }

  /** One GET with retries; returns the parsed envelope of a successful (2xx, no ERROR info) answer. */
  private async request(path: string, filter: string | undefined): Promise<{ envelope: ParsedEnvelope; url: string }> {
    const url = `${this.baseUrl}${REST_BASE_PATH}/${path}${filter === undefined ? '' : `?filter=${encodeURIComponent(filter)}`}`;
    const what = `GET ${REST_BASE_PATH}/${path}`;
    const attempts = this.retries + 1;
    let lastError: RemoteError | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) {
        await this.sleep(Math.min(this.backoffMs * 2 ** (attempt - 2), MAX_BACKOFF_MS));
      }
      if (this.signal?.aborted) throw new RemoteError(`${what} cancelled`, 'aborted', { url });
      this.onRequest?.({ method: 'GET', url, attempt });
      const outcome = await this.attempt(url, what);
      if (!(outcome instanceof RemoteError)) return { envelope: outcome, url };
      lastError = outcome;
      const retryable =
        outcome.kind === 'network' ||
        outcome.kind === 'timeout' ||
        (outcome.kind === 'http' && isRetryableStatus(outcome.details.status ?? 0));
      if (!retryable) throw outcome;
    }
    const error = lastError!;
    const suffix = attempts > 1 ? ` (gave up after ${attempts} attempts)` : '';
    throw new RemoteError(`${error.message}${suffix}`, error.kind, { ...error.details, attempts }, { cause: error });
  }

  private async attempt(url: string, what: string): Promise<ParsedEnvelope | RemoteError> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = this.signal ? AbortSignal.any([this.signal, timeout]) : timeout;
    let status: number;
    let statusText: string;
    let body: string;
    let location: string | null = null;
    try {
      const response = await this.fetchImpl(url, {
        method: 'GET',
        headers: {
          Accept: 'application/json',
          Authorization: this.authorization,
          'User-Agent': 'netlicensing-agent export-assets',
        },
        redirect: 'manual',
        signal,
      });
      status = response.status;
      statusText = response.statusText || STATUS_TEXT[status] || '';
      location = response.headers.get('location');
      body = await response.text();
    } catch (error) {
      if (this.signal?.aborted) return new RemoteError(`${what} cancelled`, 'aborted', { url }, { cause: error });
      if (timeout.aborted || (error as Error)?.name === 'TimeoutError') {
        return new RemoteError(
          `${this.baseUrl} did not answer ${what} within ${this.timeoutMs / 1000} s`,
          'timeout',
          { url },
          { cause: error },
        );
      }
      const { kind, cause } = describeNetworkFailure(error);
      const message =
        kind === 'tls'
          ? `TLS connection to ${this.baseUrl} failed (${what}): ${cause}`
          : `cannot reach ${this.baseUrl} (${what}): ${cause}`;
      return new RemoteError(message, kind, { url }, { cause: error });
    }

    let envelope: ParsedEnvelope | undefined;
    let formatProblem: string | undefined;
    try {
      envelope = parseJsonEnvelope(body);
    } catch (error) {
      if (!(error instanceof EnvelopeFormatError)) throw error;
      formatProblem = error.message;
    }
    const refusal = envelope ? errorInfos(envelope) : [];
    const statusLabel = `HTTP ${status}${statusText ? ` ${statusText}` : ''}`;
    if (status < 200 || status >= 300 || refusal.length > 0) {
      const infos = envelope ? (refusal.length > 0 ? refusal : envelope.infos) : [];
      const cloudText = infosText(infos);
      let message = `${this.baseUrl} refused ${what}: ${statusLabel}`;
      // Redirects are not followed: credentials must not travel to a host the user did not name.
      if (status >= 300 && status < 400) message += ` (redirect to ${location ?? '?'}; check --core.base.host)`;
      if (cloudText) message += `: ${cloudText}`;
      if ((status === 401 || status === 403) && !cloudText.toLowerCase().includes('credential')) {
        message += ' (check --nlic.username/--nlic.password or --nlic.apikey)';
      }
      return new RemoteError(message, 'http', { url, status, infos });
    }
    if (!envelope) {
      return new RemoteError(
        `unexpected answer from ${this.baseUrl} to ${what} (${statusLabel}): not a NetLicensing JSON envelope: ${formatProblem}`,
        'protocol',
        { url, status },
      );
    }
    return envelope;
  }
}
