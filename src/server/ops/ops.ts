/**
 * Wires the operator's features for `run-agent-offline`: metrics (the app's
 * request observer), readiness checks, the seats sampler and the admin
 * listener. run-agent-offline creates this once and stops it on shutdown.
 */
import type { Clock } from '../../platform/clock.ts';
import type { Logger } from '../../platform/log.ts';
import { createStatusReader, inspectDatabaseFiles, SCAN_IN_PAGES, type StatusReader } from '../../service/status.ts';
import type { AssetStore } from '../../store/asset-store.ts';
import { createAuthenticator, mayRead, storeCredentialSource } from '../auth.ts';
import { serveApp, type RunningServer } from '../serve.ts';
import { certificateNotAfterMs, type TlsConfig } from '../tls.ts';
import { createAdminApp } from './admin-app.ts';
import { createOpsMetrics, type BuildInfo, type OpsMetrics } from './metrics.ts';
import { cardRequirementCheck, createReadiness, storeCheck, type Readiness } from './readiness.ts';
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
  sampleIntervalMs?: number;
}

export interface Ops {
  metrics: OpsMetrics;
  readiness: Readiness;
  status: StatusReader;
  sampler: Sampler;
  sampleIntervalMs: number;
  /** Starts the admin listener; TLS applies only when it is given (see startAdmin in run-agent-offline). */
  /** `authorize`: see AdminDeps (set beyond loopback, adminCredentials). */
  listenAdmin(options: { host: string; port: number; tls?: TlsConfig; mainTls?: TlsConfig; authorize?: (authorization: string | null) => boolean }): RunningServer;
  /** Not ready from now on (load balancers drain the agent before it stops). */
  draining(): void;
  stop(): Promise<void>;
}

/**
 * Who may see the admin listener's /metrics and status page: undefined (everyone who reaches it)
 * on loopback, or when TLS client certificates are required (the handshake has authenticated the
 * caller); otherwise the vendor's credentials or an API key that may read entities (auth.ts).
 */
export function adminCredentials(
  host: string,
  tlsClientAuth: string | undefined,
  store: Parameters<typeof storeCredentialSource>[0],
): ((authorization: string | null) => boolean) | undefined {
  if (isLoopback(host) || tlsClientAuth === 'require') return undefined;
  const authenticator = createAuthenticator(storeCredentialSource(store), { allowAnonymous: false });
  return (authorization) => {
    const result = authenticator.authenticate(authorization);
    return result.ok && mayRead(result.principal);
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
  const readiness = createReadiness([storeCheck(store), cardRequirementCheck(store, { cardDisabled: options.cardDisabled })]);
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
  return {
    metrics,
    readiness,
    status,
    sampler,
    sampleIntervalMs,
    listenAdmin({ host, port, tls, mainTls, authorize }) {
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
      });
      const server = serveApp(app, { port, hostname: host, ...(tls ? { tls } : {}) });
      servers.push(server);
      return server;
    },
    draining: () => readiness.draining(),
    async stop() {
      sampler.stop();
      await Promise.all(servers.splice(0).map((s) => s.stop()));
    },
  };
}
