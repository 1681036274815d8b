/**
 * Wires the operator's features for the serving actions: metrics (the app's
 * request observer), readiness checks, the seats sampler and the admin
 * listener. run-agent-offline and run-agent create this once and stop it on
 * shutdown; what each knows beyond the database comes in through `extend`
 * (admin-app.ts, AdminExtension).
 */
import type { Clock } from '../../platform/clock.ts';
import type { Logger } from '../../platform/log.ts';
import { createStatusReader, inspectDatabaseFiles, SCAN_IN_PAGES, type StatusReader } from '../../service/status.ts';
import type { AssetStore } from '../../store/asset-store.ts';
import { createAuthenticator, mayRead, storeCredentialSource, type AuthResult } from '../auth.ts';
import { serveApp, type FetchApp, type RunningServer } from '../serve.ts';
import { certificateNotAfterMs, type TlsConfig } from '../tls.ts';
import { createAdminApp, type AdminExtension } from './admin-app.ts';
import { pathOfUrl, routeOf, type RequestObserver } from './observer.ts';
import { createOpsMetrics, type BuildInfo, type OpsMetrics } from './metrics.ts';
import { cardRequirementCheck, createReadiness, storeCheck, type Readiness, type ReadinessCheck } from './readiness.ts';
import { createSampler, SampleRing, type Sampler } from './samples.ts';

/** One sample a minute, six hours of history. */
export const SAMPLE_INTERVAL_MS = 60_000;
export const SAMPLE_COUNT = 360;

export interface OpsOptions {
  store: AssetStore;
  clock: Clock;
  log: Logger;
  build: BuildInfo;
  /** Full version line for the status page. */
  versionText: string;
  /** --without-card given: the card readiness check passes. */
  cardDisabled: boolean;
  /** Readiness checks in place of the store and card checks of run-agent-offline (run-agent: localCopyCheck). */
  readinessChecks?: ReadinessCheck[];
  sampleIntervalMs?: number;
}

export interface Ops {
  metrics: OpsMetrics;
  readiness: Readiness;
  status: StatusReader;
  sampler: Sampler;
  sampleIntervalMs: number;
  /**
   * Starts the admin listener (cli/actions/admin-listener.ts decides TLS and `authorize`); TLS
   * applies only when it is given. `authorize`: see AdminDeps (set beyond loopback, adminCredentials).
   */
  listenAdmin(options: {
    host: string;
    port: number;
    tls?: TlsConfig;
    mainTls?: TlsConfig;
    authorize?: (authorization: string | null) => boolean | Promise<boolean>;
    /** Whose credentials `authorize` accepts, for its 401 (default: STORE_ADMIN_CREDENTIALS, auth.ts). */
    authorizeText?: string;
  }): RunningServer;
  /** Adds what the serving mode shows beyond the database (metrics, status tiles and warnings, a status.json key). */
  extend(extension: AdminExtension): void;
  /** Not ready from now on (load balancers drain the agent before it stops). */
  draining(): void;
  stop(): Promise<void>;
}

/**
 * Who may see the admin listener's /metrics and status page: undefined (everyone who reaches it)
 * on loopback, or when TLS client certificates are required (the handshake has authenticated the
 * caller); otherwise whom `accepts` accepts: for run-agent-offline a credential store (the vendor's
 * credentials, or an API key that may read entities, auth.ts), for run-agent its own check (the
 * credentials it uses upstream).
 */
export function adminCredentials(
  host: string,
  tlsClientAuth: string | undefined,
  accepts: Parameters<typeof storeCredentialSource>[0] | ((authorization: string | null) => boolean | Promise<boolean>),
): ((authorization: string | null) => boolean | Promise<boolean>) | undefined {
  if (isLoopback(host) || tlsClientAuth === 'require') return undefined;
  if (typeof accepts === 'function') return accepts;
  const authenticator = createAuthenticator(storeCredentialSource(accepts), { allowAnonymous: false });
  const decide = (result: AuthResult) => result.ok && mayRead(result.principal);
  return (authorization) => {
    const result = authenticator.authenticate(authorization);
    return result instanceof Promise ? result.then(decide) : decide(result);
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** `--admin.port`: a port number, or "off". */
export function parseAdminPort(text: string): number | 'off' | undefined {
  if (text === 'off') return 'off';
  // Decimal digits only (as --port): Number alone reads "0x1F90" and " 80 " too.
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

export function createOps(options: OpsOptions): Ops {
  const { store, clock, log } = options;
  const sampleIntervalMs = options.sampleIntervalMs ?? SAMPLE_INTERVAL_MS;
  for (const loose of inspectDatabaseFiles(store.path)?.loose ?? []) {
    log.warn(`database file readable by others: ${loose}; it holds licensing secrets: chmod go= it`);
  }
  const metrics = createOpsMetrics(options.build, clock.nowMs());
  const status = createStatusReader(store, SCAN_IN_PAGES);
  const readiness = createReadiness(
    options.readinessChecks ?? [storeCheck(store), cardRequirementCheck(store, { cardDisabled: options.cardDisabled })],
  );
  const sampler = createSampler(
    new SampleRing(SAMPLE_COUNT),
    () => clock.nowMs(),
    async () => {
      const snapshot = await status.snapshot(clock.nowMs());
      let seatCapacity = 0;
      for (const module of snapshot.definitions.modules.values()) seatCapacity += module.floatingCapacity;
      return { seatsInUse: snapshot.runtime.seatsInUseTotal, seatCapacity, validateRequests: metrics.validateRequests() };
    },
    (error) => log.warn(`status sampler: ${error.message}`),
  );
  const servers: RunningServer[] = [];
  const extensions: AdminExtension[] = [];
  return {
    metrics,
    readiness,
    status,
    sampler,
    sampleIntervalMs,
    listenAdmin({ host, port, tls, mainTls, authorize, authorizeText }) {
      const app = createAdminApp({
        store,
        status,
        metrics,
        readiness,
        sampler,
        sampleIntervalMs,
        clock,
        version: options.versionText,
        ...(mainTls ? { tlsNotAfterMs: certificateNotAfterMs(mainTls) } : {}),
        ...(authorize ? { authorize } : {}),
        ...(authorizeText !== undefined ? { authorizeText } : {}),
        extensions,
      });
      const server = serveApp(app, { port, hostname: host, ...(tls ? { tls } : {}) });
      servers.push(server);
      return server;
    },
    extend: (extension) => void extensions.push(extension),
    draining: () => readiness.draining(),
    async stop() {
      sampler.stop();
      await Promise.all(servers.splice(0).map((s) => s.stop()));
    },
  };
}

/**
 * `app` with every request reported to `observer` (route, method, status, duration), for an app
 * that does not report its requests itself: run-agent's proxy. (app.ts reports its own, on its
 * fast path.) A request that throws is counted as a 500, as serveApp answers it.
 */
export function observeRequests(app: FetchApp, observer: RequestObserver): FetchApp {
  return {
    async fetch(request) {
      const startedMs = performance.now();
      let status = 500;
      try {
        const response = await app.fetch(request);
        status = response.status;
        return response;
      } finally {
        observer.request({ route: routeOf(pathOfUrl(request.url)), method: request.method, status, durationMs: performance.now() - startedMs });
      }
    },
  };
}
