/**
 * run-agent: a caching proxy in front of the NetLicensing cloud (or another
 * agent, a "hub") that keeps answering when the upstream cannot be reached.
 * Behaviour in full: docs/proxy.md.
 *
 * Healthy: every call under /rest and /core/v2/rest goes upstream with the
 * client's own credentials, parameters and Accept header, and the answer
 * comes back unchanged (status, body bytes, content type). After a 200
 * validate answer, off the request path: the credentials are remembered
 * (salted hash), the licensee's assets are refreshed into the local
 * database (rate-limited, refresh.ts) and the answer is cached until its
 * ttl when the request changes no counter (cache.ts).
 *
 * Unreachable (timeout, connection failure, 5xx, or the circuit breaker
 * open): validate is answered by the offline path — the same hono app and
 * validateLicensee that run-agent-offline uses — over the local database,
 * so the answer is exactly what run-agent-offline would give. Runtime
 * changes are journaled together with a replay entry (the request's
 * parameters and the local decision) in one transaction; replay.ts sends
 * them upstream, in order, when the link returns. A licensee with entries
 * still waiting is answered locally even when the upstream is back, so its
 * requests reach the upstream in the order the clients made them.
 * A licensee not in the local database is answered from the cache (requests
 * that change no counter) or with 503. Read calls are answered from the
 * local database; other writes get 503.
 *
 * Clients cannot tell a local answer from an upstream one; operators can:
 * ProxyStats counters and a warning log line (at most one per second).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Entity } from '../core/entities.ts';
import type { ValidateOutcome } from '../core/validate-types.ts';
import type { AssetSource } from '../export/export-assets.ts';
import { NetLicensingRestClient, type Credentials } from '../export/netlicensing-rest.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/log.ts';
import { API_PREFIXES, createApp, type AppDeps } from '../server/app.ts';
import { ANONYMOUS_READ_REFUSED, createAuthenticator, mayValidate, REALM, storeCredentialSource, validateDeniedMessage } from '../server/auth.ts';
import { parseForm, queryOf } from '../server/form.ts';
import { HTTP_LIMITS } from '../server/limits.ts';
import { CONTENT_TYPE, envelopeResponse, negotiateFormat, type WireFormat } from '../server/negotiate.ts';
import type { AssetStore } from '../store/asset-store.ts';
import { LocalProxyCache, type ProxyCache } from './cache.ts';
import { CircuitBreaker, DEFAULT_COOL_DOWN_MS, DEFAULT_FAILURE_THRESHOLD } from './circuit-breaker.ts';
import { answerCacheKey, answerTtlMs, changesCounters, decisionOfEnvelope } from './decision.ts';
import { AssetRefresher, DEFAULT_REFRESH_INTERVAL_MS } from './refresh.ts';
import { DEFAULT_REPLAY_TIMEOUT_MS, Replayer, type DrainResult } from './replay.ts';
import { createProxyStats, type ProxyStats } from './stats.ts';
import { UpstreamCredentials } from './upstream-credentials.ts';
import { callUpstream, DEFAULT_UPSTREAM_TIMEOUT_MS, upstreamUrl, type UpstreamOutcome } from './upstream.ts';
import { apiCors } from '../server/cors.ts';

export interface ProxyOptions {
  store: AssetStore;
  /** System time: breaker cool-down, refresh rate limit, cache expiry. */
  clock: Clock;
  /** Time of local answers (run-agent passes the trusted clock, as run-agent-offline); default `clock`. */
  licensingClock?: Clock;
  log: Logger;
  /** ttl of local answers (--ttl), as run-agent-offline. */
  ttlMs: number;
  allowAnonymous: boolean;
  signXml?: AppDeps['signXml'];
  upstream: {
    /** protocol://host[:port] (parseBaseUrl). */
    baseUrl: string;
    /** The agent's own credentials: refreshes and replays. Clients' requests carry their own. */
    credentials: Credentials;
    /** Deadline for a client's request upstream (--upstream.timeout). */
    timeoutMs?: number;
    /** Deadline for replays and refreshes (off the request path). */
    backgroundTimeoutMs?: number;
    fetch?: (input: string, init: RequestInit) => Promise<Response>;
  };
  breaker?: { failureThreshold?: number; coolDownMs?: number };
  refreshIntervalMs?: number;
  /** Default: LocalProxyCache over the store. The caller closes a cache it passes. */
  cache?: ProxyCache;
  /** Source of refreshed assets; default: the REST client on the upstream with the agent's credentials. */
  assetSource?: AssetSource;
  /** false: no timers (no automatic replay retries, no cache purge); tests drive drainReplay(). */
  timers?: boolean;
  /** Schedules the replay's retries (default: a timer when `timers`); tests pass their own to fire them at will. */
  scheduleReplayRetry?: (ms: number, retry: () => void) => () => void;
}

export interface AgentProxy {
  app: Hono;
  stats: ProxyStats;
  breaker: CircuitBreaker;
  /** Replays what is waiting, in order, as far as the upstream answers. */
  drainReplay(): Promise<DrainResult>;
  /** Refreshes a licensee's local assets now (ignores the rate limit). */
  refresh(licenseeNumber: string): Promise<boolean>;
  /** Resolves once the background work started so far (refreshes, cache writes, replays) has settled. */
  idle(): Promise<void>;
  /** Stops timers and waits for background work; the caller then closes store and cache. */
  close(): Promise<void>;
}

/** Why a request was answered without the upstream. */
type LocalReason = 'timeout' | 'network' | 'server-error' | 'breaker-open' | 'backlog';

interface ProxiedRequest {
  method: string;
  pathname: string;
  search: string;
  headers: Headers;
  body?: Uint8Array;
  validate?: {
    /** The licensee as the client named it (number or alias). */
    number: string;
    /** The local licensee, if the database has it. */
    licensee?: Entity;
    licenseeNumber: string;
  };
}

/** Minimum time between two cache writes of the same answer key (answers differ only in ttl meanwhile). */
const CACHE_REWRITE_MS = 5_000;
const CACHE_THROTTLE_ENTRIES_MAX = 10_000;
const LOCAL_CACHE_PURGE_MS = 10 * 60_000;
const LOCAL_LOG_INTERVAL_MS = 1_000;

export function authorizationOf(credentials: Credentials): string {
  const pair = credentials.kind === 'apiKey' ? `apiKey:${credentials.apiKey}` : `${credentials.username}:${credentials.password}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

function formPairs(request: ProxiedRequest): Array<[string, string]> {
  const pairs = parseForm(queryOf(request.search));
  if (request.body !== undefined && request.body.length > 0) pairs.push(...parseForm(new TextDecoder().decode(request.body)));
  return pairs;
}

export function createProxy(options: ProxyOptions): AgentProxy {
  const { store, clock, log } = options;
  const baseUrl = options.upstream.baseUrl.replace(/\/+$/, '');
  const timeoutMs = options.upstream.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
  const backgroundTimeoutMs = options.upstream.backgroundTimeoutMs ?? DEFAULT_REPLAY_TIMEOUT_MS;
  const upstreamFetch = options.upstream.fetch;
  const timers = options.timers ?? true;
  const stats = createProxyStats();
  const cache = options.cache ?? new LocalProxyCache(store, clock);

  const background = new Set<Promise<unknown>>();
  const track = (work: Promise<unknown> | undefined) => {
    if (!work) return;
    const tracked: Promise<unknown> = work
      .catch((error: unknown) => log.error(`run-agent background task failed: ${(error as Error)?.stack ?? String(error)}`))
      .finally(() => background.delete(tracked));
    background.add(tracked);
  };
  /** Runs `work` after the current response has been handed to the server. */
  const later = (work: () => Promise<unknown> | undefined) =>
    track(new Promise<void>((resolve) => setImmediate(resolve)).then(work));

  const coolDownMs = options.breaker?.coolDownMs ?? DEFAULT_COOL_DOWN_MS;
  const breaker = new CircuitBreaker({
    failureThreshold: options.breaker?.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD,
    coolDownMs,
    clock,
    onStateChange: (_from, to) => {
      stats.breakerState = to;
      if (to === 'closed') stats.upstreamDownSinceMs = undefined;
      else stats.upstreamDownSinceMs ??= clock.nowMs();
      if (to === 'open') {
        stats.breakerOpened++;
        log.warn(`upstream ${baseUrl} is not answering: answering from local state; next try in ${coolDownMs / 1000} s`);
      } else if (to === 'closed') {
        log.info(`upstream ${baseUrl} answers again`);
      }
    },
  });

  const source =
    options.assetSource ??
    new NetLicensingRestClient({ baseUrl, credentials: options.upstream.credentials, timeoutMs: backgroundTimeoutMs, retries: 1 });
  const refresher = new AssetRefresher({
    store,
    source,
    clock,
    log,
    stats,
    intervalMs: options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS,
  });
  const replayer = new Replayer({
    store,
    breaker,
    stats,
    log,
    clock,
    upstream: {
      baseUrl,
      authorization: authorizationOf(options.upstream.credentials),
      timeoutMs: backgroundTimeoutMs,
      ...(upstreamFetch ? { fetch: upstreamFetch } : {}),
    },
    ...(options.scheduleReplayRetry
      ? { schedule: options.scheduleReplayRetry }
      : timers
        ? {
            schedule: (ms: number, retry: () => void) => {
              const timer = setTimeout(() => track(Promise.resolve().then(retry)), ms);
              timer.unref?.();
              return () => clearTimeout(timer);
            },
          }
        : {}),
    // The upstream now holds what was replayed: refresh so that the local copy agrees (and reconciles).
    onAcknowledged: (licensees) => {
      for (const number of licensees) track(refresher.request(number, true));
    },
  });
  const upstreamCredentials = new UpstreamCredentials(cache, clock);

  // ---- the offline path, with replay recording
  const replayContext = new AsyncLocalStorage<{ form: string }>();
  const recordingStore: AssetStore = {
    ...store,
    commitRuntime(licenseeNumber, atMs, decide) {
      const request = replayContext.getStore();
      // Only validate writes runtime state, and every local validate runs inside replayContext.
      if (!request) return store.commitRuntime(licenseeNumber, atMs, decide);
      let recordedSeq: number | undefined;
      return store
        .commitRuntimeWithReplay(licenseeNumber, atMs, decide, (result, seq) => {
          recordedSeq = seq;
          const envelope = (result as unknown as ValidateOutcome).envelope;
          const failed = envelope.items.length === 0 && envelope.infos.some((info) => info.type === 'ERROR');
          return { form: request.form, decision: decisionOfEnvelope(failed ? 400 : 200, envelope) };
        })
        .then((result) => {
          if (recordedSeq !== undefined) replayer.noteRecorded(licenseeNumber, recordedSeq);
          return result;
        });
    },
  };
  const localApp = createApp({
    store: recordingStore,
    clock: options.licensingClock ?? clock,
    log,
    ttlMs: options.ttlMs,
    // Authentication happens here before the local app is asked (see answerLocally).
    allowAnonymous: true,
    anonymousReadsVouchedFor: true,
    ...(options.signXml ? { signXml: options.signXml } : {}),
  });
  const storeAuth = createAuthenticator(storeCredentialSource(store), { allowAnonymous: options.allowAnonymous });

  let lastLocalLogMs = Number.NEGATIVE_INFINITY;
  let unloggedLocal = 0;
  const noteLocal = (what: string, request: ProxiedRequest, reason: LocalReason) => {
    const now = clock.nowMs();
    if (now - lastLocalLogMs < LOCAL_LOG_INTERVAL_MS) {
      unloggedLocal++;
      return;
    }
    const more = unloggedLocal > 0 ? ` (+${unloggedLocal} more since the last such line)` : '';
    log.warn(`answered from ${what} (${reason}): ${request.method} ${request.pathname}${more}`);
    lastLocalLogMs = now;
    unloggedLocal = 0;
  };

  function unavailable(request: ProxiedRequest, format: WireFormat, reason: LocalReason, what: string): Response {
    stats.unavailableAnswers++;
    noteLocal('nothing (503)', request, reason);
    return envelopeResponse(
      format,
      503,
      'ServiceUnavailableException',
      `NetLicensing cannot be reached (${reason}) and this agent ${what}. Try again later.`,
      { 'retry-after': String(Math.max(1, Math.ceil(breaker.retryInMs() / 1000))) },
    );
  }

  async function answerLocally(request: ProxiedRequest, reason: LocalReason): Promise<Response> {
    const format = negotiateFormat(request.headers.get('accept'));
    const isRead = request.method === 'GET' || request.method === 'HEAD';
    if (!request.validate && !isRead) return unavailable(request, format, reason, `cannot serve ${request.method} ${request.pathname} without it`);

    const header = request.headers.get('authorization');
    const headers = new Headers(request.headers);
    const auth = await storeAuth.authenticate(header);
    // --allow-anonymous covers validate only: the entities include the API keys (app.ts, readEntities).
    if (auth.ok && auth.principal.kind === 'anonymous' && !request.validate) {
      stats.localAnswers++;
      noteLocal('local state', request, reason);
      return envelopeResponse(format, 401, 'NotAuthorizedException', ANONYMOUS_READ_REFUSED, {
        'www-authenticate': `Basic realm="${REALM}"`,
      });
    }
    const unknownLicensee = request.validate !== undefined && request.validate.licensee === undefined;
    if (!auth.ok) {
      const accepted = header ? await upstreamCredentials.accepts(header, request.validate?.licenseeNumber) : false;
      // Credentials for a licensee the agent knows nothing about may well be valid upstream: 503, not 401.
      if (!accepted && header && unknownLicensee) return unavailable(request, format, reason, `has no local copy of licensee '${request.validate!.number}' yet`);
      if (!accepted) {
        stats.localAnswers++;
        noteLocal('local state', request, reason);
        return envelopeResponse(format, 401, 'NotAuthorizedException', auth.message, { 'www-authenticate': `Basic realm="${REALM}"` });
      }
      // Authenticated by what the upstream accepted earlier: the local app sees an anonymous caller.
      headers.delete('authorization');
    }

    if (request.validate && unknownLicensee) {
      // The cache holds answers without the credentials they were given to: a key this agent knows
      // is held to its licensee here, as upstream and the local app hold it (403 both).
      if (auth.ok && !mayValidate(auth.principal, request.validate.number)) {
        stats.localAnswers++;
        noteLocal('local state', request, reason);
        return envelopeResponse(format, 403, 'AccessDeniedException', validateDeniedMessage(request.validate.number));
      }
      let pairs: Array<[string, string]> | undefined;
      try {
        pairs = formPairs(request);
      } catch {
        pairs = undefined;
      }
      if (pairs && !changesCounters(pairs)) {
        const cached = await cache.getAnswer(answerCacheKey(request.validate.number, format, pairs));
        if (cached) {
          stats.cacheAnswers++;
          noteLocal('the validation cache', request, reason);
          return new Response(Buffer.from(cached.body, 'base64'), { status: cached.status, headers: { 'content-type': cached.contentType } });
        }
      }
      return unavailable(request, format, reason, `has no local copy of licensee '${request.validate.number}' yet`);
    }

    stats.localAnswers++;
    noteLocal('local state', request, reason);
    const local = new Request(`http://agent.local${request.pathname}${request.search}`, {
      method: request.method,
      headers,
      ...(request.body !== undefined && !isRead ? { body: request.body } : {}),
    });
    if (!request.validate) return localApp.fetch(local);
    let form = '';
    try {
      form = new URLSearchParams(formPairs(request)).toString();
    } catch {
      // Malformed form data: the local app answers 400 and records nothing.
    }
    return replayContext.run({ form }, () => localApp.fetch(local));
  }

  const lastCachedMs = new Map<string, number>();
  /**
   * Claims the right to (re)write the cache entry of this raw request: at most once per
   * CACHE_REWRITE_MS, checked cheaply on the request path so that under load most answers
   * schedule no cache work at all.
   */
  function claimCacheWrite(request: ProxiedRequest): boolean {
    const now = clock.nowMs();
    const rawKey = `${request.validate!.number}\u0000${request.headers.get('accept') ?? ''}\u0000${request.search}\u0000${request.body ? Buffer.from(request.body).toString('latin1') : ''}`;
    const last = lastCachedMs.get(rawKey);
    if (last !== undefined && now - last < CACHE_REWRITE_MS) return false;
    if (lastCachedMs.size >= CACHE_THROTTLE_ENTRIES_MAX) lastCachedMs.clear();
    lastCachedMs.set(rawKey, now);
    return true;
  }

  async function cacheAnswer(request: ProxiedRequest, outcome: Extract<UpstreamOutcome, { kind: 'answer' }>): Promise<void> {
    if (!request.validate) return;
    const now = clock.nowMs();
    const format = negotiateFormat(request.headers.get('accept'));
    let pairs: Array<[string, string]>;
    try {
      pairs = formPairs(request);
    } catch {
      return;
    }
    if (changesCounters(pairs)) return;
    const body = new TextDecoder().decode(outcome.body);
    const ttlMs = answerTtlMs(body, format);
    if (ttlMs === undefined) return;
    const lifetimeMs = ttlMs - now;
    if (lifetimeMs <= 0) return;
    const key = answerCacheKey(request.validate.number, format, pairs);
    await cache.putAnswer(
      key,
      { status: outcome.status, contentType: outcome.headers.get('content-type') ?? CONTENT_TYPE[format], body: Buffer.from(outcome.body).toString('base64') },
      lifetimeMs,
    );
  }

  function afterValidateAnswer(request: ProxiedRequest, outcome: Extract<UpstreamOutcome, { kind: 'answer' }>): void {
    const validate = request.validate!;
    const header = request.headers.get('authorization');
    if (outcome.status === 401 && header) later(() => upstreamCredentials.forget(header));
    if (outcome.status !== 200) return;
    const rememberCredentials = header !== null && !upstreamCredentials.isRemembered(header, validate.licenseeNumber);
    const refresh = refresher.isDue(validate.licenseeNumber);
    const writeCache = claimCacheWrite(request);
    if (!rememberCredentials && !refresh && !writeCache) return;
    later(() =>
      Promise.all([
        rememberCredentials ? upstreamCredentials.remember(header, validate.licenseeNumber) : undefined,
        refresh ? refresher.request(validate.licenseeNumber) : undefined,
        writeCache ? cacheAnswer(request, outcome) : undefined,
      ]),
    );
  }

  async function forwardOrLocal(request: ProxiedRequest): Promise<Response> {
    const url = upstreamUrl(baseUrl, request.pathname, request.search);
    if (url === undefined) return localApp.fetch(new Request(`http://agent.local${request.pathname}${request.search}`, { method: request.method, headers: request.headers }));
    if (breaker.acquire() === 'reject') {
      stats.breakerRejected++;
      return answerLocally(request, 'breaker-open');
    }
    const outcome = await callUpstream({
      method: request.method,
      url,
      headers: request.headers,
      ...(request.body !== undefined ? { body: request.body } : {}),
      timeoutMs,
      ...(upstreamFetch ? { fetch: upstreamFetch } : {}),
    });
    if (outcome.kind === 'failure') {
      breaker.failure();
      if (outcome.reason === 'timeout') stats.upstreamTimeouts++;
      else if (outcome.reason === 'network') stats.upstreamNetworkErrors++;
      else stats.upstreamServerErrors++;
      log.debug(`upstream ${request.method} ${url}: ${outcome.message}`);
      return answerLocally(request, outcome.reason);
    }
    breaker.success();
    stats.forwarded++;
    if (request.validate) afterValidateAnswer(request, outcome);
    if (stats.replayPending > 0) track(replayer.kick());
    return new Response(outcome.body, { status: outcome.status, headers: outcome.headers });
  }

  async function proxiedRequest(c: Context): Promise<ProxiedRequest> {
    const url = new URL(c.req.url);
    const method = c.req.method;
    const body = method === 'GET' || method === 'HEAD' ? undefined : new Uint8Array(await c.req.arrayBuffer());
    return { method, pathname: url.pathname, search: url.search, headers: c.req.raw.headers, ...(body ? { body } : {}) };
  }

  const app = new Hono();
  app.use('*', apiCors());
  app.use(
    '*',
    bodyLimit({
      maxSize: HTTP_LIMITS.bodyBytesMax,
      onError: (c) =>
        envelopeResponse(negotiateFormat(c.req.header('accept')), 413, 'MalformedRequestException', `Request body exceeds ${HTTP_LIMITS.bodyBytesMax} bytes`),
    }),
  );
  app.onError((error, c) => {
    log.error(`run-agent: unexpected error on ${c.req.method} ${c.req.path}: ${error.stack ?? String(error)}`);
    return envelopeResponse(negotiateFormat(c.req.header('accept')), 500, 'InternalServerErrorException', 'Internal error in NetLicensing Agent');
  });
  for (const prefix of API_PREFIXES) {
    app.on(['GET', 'POST'], `${prefix}/licensee/:number{.+}/validate`, async (c) => {
      const request = await proxiedRequest(c);
      const number = c.req.param('number');
      const licensee = store.resolveLicensee(number);
      const licenseeNumber = licensee?.number ?? number;
      request.validate = { number, licenseeNumber, ...(licensee ? { licensee } : {}) };
      if (replayer.hasBacklog(licenseeNumber)) {
        stats.backlogAnswers++;
        if (breaker.state === 'closed') track(replayer.kick());
        return answerLocally(request, 'backlog');
      }
      return forwardOrLocal(request);
    });
    app.all(`${prefix}/*`, async (c) => forwardOrLocal(await proxiedRequest(c)));
  }
  // Anything else is not NetLicensing's: the local app answers (404 envelope).
  app.all('*', (c) => localApp.fetch(c.req.raw));

  let purgeTimer: ReturnType<typeof setInterval> | undefined;
  if (timers) {
    if (cache instanceof LocalProxyCache) {
      purgeTimer = setInterval(() => track(cache.purge()), LOCAL_CACHE_PURGE_MS);
      purgeTimer.unref?.();
    }
    if (stats.replayPending > 0) track(replayer.kick());
  }
  if (stats.replayPending > 0) {
    log.info(`${stats.replayPending} request(s) answered offline are waiting to be replayed to ${baseUrl}`);
  }

  const idle = async () => {
    // Settled work may start more (a replay asks for refreshes): wait until nothing is left.
    while (background.size > 0 || refresher.busy) {
      await Promise.allSettled([...background]);
      await refresher.idle();
    }
  };

  return {
    app,
    stats,
    breaker,
    drainReplay: () => replayer.drain(),
    refresh: (licenseeNumber) => refresher.request(licenseeNumber, true) ?? Promise.resolve(false),
    idle,
    async close() {
      if (purgeTimer) clearInterval(purgeTimer);
      await replayer.close();
      await idle();
    },
  };
}
