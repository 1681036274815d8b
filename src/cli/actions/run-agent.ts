/**
 * `--action=run-agent`: the caching proxy (src/proxy/proxy-app.ts,
 * docs/proxy.md). Forwards clients' calls to --core.base.host (the cloud or
 * another agent), keeps a local copy of the licensees it sees, answers from
 * it when the upstream cannot be reached and replays the changes afterwards.
 * Its admin listener (`--admin.*`, as run-agent-offline's) shows the local
 * copy and the upstream, breaker and replay figures.
 * Runs until SIGINT/SIGTERM, then drains and closes the database.
 */
import { join } from 'node:path';
import { NetLicensingRestClient, parseBaseUrl, type Credentials } from '../../export/netlicensing-rest.ts';
import { LocalProxyCache, type ProxyCache } from '../../proxy/cache.ts';
import { DEFAULT_COOL_DOWN_MS, DEFAULT_FAILURE_THRESHOLD } from '../../proxy/circuit-breaker.ts';
import { createProxy } from '../../proxy/proxy-app.ts';
import { hashCredential, type CredentialHash } from '../../platform/credentials.ts';
import { createAuthenticator } from '../../server/auth.ts';
import { RedisProxyCache } from '../../proxy/redis-cache.ts';
import { DEFAULT_REFRESH_INTERVAL_MS } from '../../proxy/refresh.ts';
import { DEFAULT_REPLAY_TIMEOUT_MS } from '../../proxy/replay.ts';
import { withHealth } from '../../server/ops/admin-app.ts';
import { createOps, observeRequests, type Ops } from '../../server/ops/ops.ts';
import { proxyExtension } from '../../server/ops/proxy-extension.ts';
import { localCopyCheck } from '../../server/ops/readiness.ts';
import { HTTP_LIMITS } from '../../server/limits.ts';
import { serveApp } from '../../server/serve.ts';
import { createSigner } from '../../server/signing.ts';
import { loadTlsConfig, TlsConfigError } from '../../server/tls.ts';
import { recordClockMarks, trustedClockForStore, type ClockMarks } from '../../service/trusted-clock.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import { claimRuntimeWriter, runtimeJournalLogging } from './runtime-writer-claim.ts';
import { adminPortOption, startAdminListener } from './admin-listener.ts';
import { buildInfo, versionText } from '../run.ts';
import { loadSigningKeyFile, parseSigningAlgorithm } from '../../wire/xmldsig.ts';
import type { ActionContext, ActionDef } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import type { CliOptions } from '../options.ts';
import { envInteger, nlicCredentials, parsePort, parseTtlMs, parseWholeNumber } from '../option-values.ts';

/** Tuning without options of the original agent (documented in docs/proxy.md). */
export const ENV_BREAKER_FAILURES = 'NLA_PROXY_BREAKER_FAILURES';
export const ENV_BREAKER_COOL_DOWN_MS = 'NLA_PROXY_BREAKER_COOLDOWN_MS';
export const ENV_REFRESH_INTERVAL_MS = 'NLA_PROXY_REFRESH_INTERVAL_MS';
export const ENV_BACKGROUND_TIMEOUT_MS = 'NLA_PROXY_BACKGROUND_TIMEOUT_MS';


export function parseUpstreamTimeoutMs(text: string): number {
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || seconds < 0.05 || seconds > 300) {
    throw new CliError(`--upstream.timeout must be seconds from 0.05 to 300 (e.g. 5 or 2.5), got "${text}"`, EXIT.usage);
  }
  return Math.round(seconds * 1000);
}


interface CacheChoice {
  type: 'local' | 'redis';
  host: string;
  port: number;
  database: number;
  keyPrefix: string;
}

function parseCacheOptions(options: CliOptions): CacheChoice {
  if (options.cacheType !== 'local' && options.cacheType !== 'redis') {
    throw new CliError(`--cache.type must be local or redis, got "${options.cacheType}"`, EXIT.usage);
  }
  const port = parseWholeNumber(options.cachePort);
  if (port === undefined || port < 1 || port > 65535) {
    throw new CliError(`--cache.port must be a number from 1 to 65535, got "${options.cachePort}"`, EXIT.usage);
  }
  const database = parseWholeNumber(options.cacheDatabase);
  if (database === undefined) {
    throw new CliError(`--cache.database must be a whole number ≥ 0, got "${options.cacheDatabase}"`, EXIT.usage);
  }
  if (options.cacheHost.trim() === '') throw new CliError('--cache.host is empty', EXIT.usage);
  return { type: options.cacheType, host: options.cacheHost, port, database, keyPrefix: options.cacheKeyPrefix };
}

function loadTls(options: ActionContext['options'], nowMs: number) {
  try {
    return loadTlsConfig({ cert: options.tlsCert, key: options.tlsKey, ca: options.tlsCa, clientAuth: options.tlsClientAuth }, nowMs);
  } catch (error) {
    if (!(error instanceof TlsConfigError)) throw error;
    throw new CliError(error.message, error.kind === 'usage' ? EXIT.usage : EXIT.server, { cause: error });
  }
}

/**
 * The admin listener's check beyond loopback: HTTP Basic with exactly the credentials run-agent was
 * started with. Checked by the agent's own authenticator (auth.ts), as the offline agent checks the
 * vendor's: the password against a salted scrypt hash (made at the first check), passed headers
 * remembered; an API key as the one key it knows.
 */
export function upstreamCredentialsCheck(credentials: Credentials): (authorization: string | null) => boolean | Promise<boolean> {
  let vendor: CredentialHash | undefined;
  const authenticator = createAuthenticator(
    {
      token: (key) =>
        credentials.kind === 'apiKey' && key === credentials.apiKey
          ? { kind: 'Token', number: key, props: { number: key, active: 'true', tokenType: 'APIKEY' } }
          : undefined,
      vendorCredentials: () =>
        credentials.kind === 'basic' ? (vendor ??= hashCredential(credentials.username, credentials.password)) : undefined,
    },
    { allowAnonymous: false },
  );
  return (authorization) => {
    const result = authenticator.authenticate(authorization);
    return result instanceof Promise ? result.then((settled) => settled.ok) : result.ok;
  };
}

export const runAgentAction: ActionDef = {
  name: 'run-agent',
  summary: 'caching proxy to NetLicensing that answers from local state during outages',
  async run({ options, log, cwd, clock, signal, io }) {
    const port = parsePort(options.port);
    const ttlMs = parseTtlMs(options.ttl);
    const timeoutMs = parseUpstreamTimeoutMs(options.upstreamTimeout);
    let baseUrl: string;
    try {
      baseUrl = parseBaseUrl(options.coreBaseHost);
    } catch (error) {
      throw new CliError(`--core.base.host: ${(error as Error).message}`, EXIT.usage);
    }
    const credentials = nlicCredentials(
      options,
      'run-agent needs NetLicensing credentials to keep its local copy fresh and to replay offline changes',
    );
    const cacheChoice = parseCacheOptions(options);
    const env = (name: string, fallback: number, min: number) => envInteger(io.env, name, fallback, min);
    const failureThreshold = env(ENV_BREAKER_FAILURES, DEFAULT_FAILURE_THRESHOLD, 1);
    const coolDownMs = env(ENV_BREAKER_COOL_DOWN_MS, DEFAULT_COOL_DOWN_MS, 0);
    const refreshIntervalMs = env(ENV_REFRESH_INTERVAL_MS, DEFAULT_REFRESH_INTERVAL_MS, 0);
    const backgroundTimeoutMs = env(ENV_BACKGROUND_TIMEOUT_MS, DEFAULT_REPLAY_TIMEOUT_MS, 1);
    const signingAlgorithm = parseSigningAlgorithm(options.signingAlgorithm);
    if (!signingAlgorithm) {
      throw new CliError(`--signing.algorithm must be rsa-sha1 or rsa-sha256, got "${options.signingAlgorithm}"`, EXIT.usage);
    }
    let operatorKey;
    if (options.signingKey) {
      try {
        operatorKey = loadSigningKeyFile(options.signingKey);
      } catch (error) {
        throw new CliError((error as Error).message, EXIT.server, { cause: error });
      }
    }
    const tls = loadTls(options, clock.nowMs());
    const adminPort = adminPortOption(options.adminPort);

    // The database is created on first use: run-agent fills it from the upstream.
    const store = openAssetStore(join(cwd, 'database'), { create: true, nowMs: clock.nowMs(), ...runtimeJournalLogging(log) });
    let cache: ProxyCache | undefined;
    let clockMarks: ClockMarks | undefined;
    let ops: Ops | undefined;
    try {
      claimRuntimeWriter(store, port, clock.nowMs());
      const meta = store.meta();
      // The proxy keeps its own cache database and seals nothing with a card; it must never
      // write unsealed counter changes into a database bound to a card (not even --without-card).
      const boundSerial = meta.cardBinding?.serial ?? meta.cardSerial;
      if (boundSerial !== undefined) {
        throw new CliError(
          `this working directory holds a database bound to smart card ${boundSerial} (for run-agent-offline); ` +
            'run-agent does not use a smart card: start it in a working directory of its own',
          EXIT.card,
        );
      }
      // Its local copy is never bound to a card: recorded, so that status, /metrics (nla_card_bound)
      // and the status page say "without card" instead of "not set yet".
      if (meta.withoutCard !== true) store.importTransaction((tx) => tx.setMeta({ ...tx.meta(), withoutCard: true }));
      if (cacheChoice.type === 'redis') {
        try {
          cache = await RedisProxyCache.connect({
            host: cacheChoice.host,
            port: cacheChoice.port,
            database: cacheChoice.database,
            keyPrefix: cacheChoice.keyPrefix,
            ssl: options.cacheSsl,
            log,
            clock,
            ...(options.cachePassword !== undefined ? { password: options.cachePassword } : {}),
          });
        } catch (error) {
          throw new CliError((error as Error).message, EXIT.server, { cause: error });
        }
      } else {
        cache = new LocalProxyCache(store, clock);
      }
      const licensingClock = trustedClockForStore(store, clock, ({ systemMs, highWaterMs }) =>
        log.warn(
          `system clock is ${Math.round((highWaterMs - systemMs) / 1000)} s behind the newest time this database has seen: ` +
            'local answers use that time until the clock catches up',
        ),
      );
      // As run-agent-offline: the newest time local answers were given at outlives a restart.
      clockMarks = recordClockMarks(store, licensingClock, { warn: (message) => log.warn(message) });
      const proxy = createProxy({
        store,
        clock,
        licensingClock,
        log,
        ttlMs,
        allowAnonymous: options.allowAnonymous,
        signXml: createSigner({ algorithm: signingAlgorithm, ...(operatorKey ? { operatorKey } : {}) }),
        upstream: { baseUrl, credentials, timeoutMs, backgroundTimeoutMs },
        breaker: { failureThreshold, coolDownMs },
        refreshIntervalMs,
        cache,
        assetSource: new NetLicensingRestClient({ baseUrl, credentials, timeoutMs: backgroundTimeoutMs, retries: 1 }),
      });
      // The admin listener shows the local copy as run-agent-offline shows its database, and the
      // upstream, breaker and replay besides (proxy-extension.ts).
      ops = createOps({ store, clock, log, build: buildInfo(), versionText: versionText(), cardDisabled: true, readinessChecks: [localCopyCheck(store)] });
      ops.extend(proxyExtension(proxy.stats, baseUrl));
      let server;
      try {
        // A client's request may wait for the upstream (--upstream.timeout, up to 300 s), then for a
        // local decision: serveApp keeps Bun's idle timer from cutting a GET off meanwhile.
        const requestTimeoutMs = timeoutMs + HTTP_LIMITS.requestTimeoutMs;
        server = serveApp(withHealth(observeRequests(proxy.app, ops.metrics)), { port, hostname: options.host, requestTimeoutMs, ...(tls ? { tls } : {}) });
      } catch (error) {
        await proxy.close();
        throw new CliError(`cannot listen on ${options.host}:${port}: ${(error as Error).message}`, EXIT.server, { cause: error });
      }
      let adminLine;
      try {
        adminLine = await startAdminListener({
          ops,
          host: options.adminHost,
          port: adminPort,
          tls,
          tlsClientAuth: options.tlsClientAuth,
          // The local copy holds no credentials of its own to check against: the operator's are
          // the ones run-agent was started with.
          accepts: upstreamCredentialsCheck(credentials),
          acceptsText: 'the credentials run-agent uses upstream (--nlic.*)',
          log,
          mainServer: server,
          // Its default port may be the one a run-agent-offline on the same host holds (see admin-listener.ts).
          optional: !options.adminPortGiven,
        });
      } catch (error) {
        await proxy.close();
        throw error;
      }
      log.info(
        `NetLicensing Agent proxying ${tls ? 'https' : 'http'}://${options.host}:${server.port}/rest/ (and /core/v2/rest/) to ${baseUrl}; ` +
          `timeout ${timeoutMs} ms, breaker opens after ${failureThreshold} failures for ${coolDownMs / 1000} s; cache: ${cache.description}`,
      );
      io.stdout(`listening on ${options.host}:${server.port}\n`);
      if (adminLine !== undefined) io.stdout(adminLine);
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
      log.info('stopping: draining in-flight requests');
      ops.draining();
      await server.stop();
      await proxy.close();
      const pending = proxy.stats.replayPending;
      if (pending > 0) log.warn(`${pending} request(s) answered offline still wait for replay; they are sent after the next start`);
      return EXIT.ok;
    } finally {
      await ops?.stop();
      await clockMarks?.stop();
      await cache?.close();
      await store.close();
    }
  },
};
