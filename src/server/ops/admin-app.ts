/**
 * The admin listener's app (`--admin.port`, bound to 127.0.0.1 by default):
 *
 *   GET /health       liveness: 200 {"status":"ok"} while the process answers
 *   GET /ready        readiness: 200 or 503 with every named check
 *   GET /metrics      Prometheus text format
 *   GET /status       read-only HTML status page
 *   GET /status.json  the same data as JSON
 *
 * On loopback none of these need credentials, which is why they live on their
 * own listener instead of the licensing port: what they show (licensee
 * numbers, session ids, usage) is for the operator's machine. Bound beyond
 * loopback, `authorize` is set (unless TLS client certificates are required,
 * which authenticate already): /metrics and the status page then need the
 * vendor's credentials or an API key that may read entities, as the read
 * calls do; /health and /ready stay open for probes (they name no licensee).
 * `/health` is also answered on the main port (`withHealth`) for load
 * balancers; it tells nothing but "alive".
 *
 * What a serving mode knows beyond the database (run-agent-offline: its smart
 * card; run-agent: the upstream, breaker and replay) comes in as
 * AdminExtensions: metric families after the agent's own, tiles and warnings
 * on the status page, and one key of its own in /status.json.
 */
import { Hono } from 'hono';
import type { Clock } from '../../platform/clock.ts';
import { inspectDatabaseFiles, licenseeActivity, SCAN_IN_PAGES, type StatusReader, type StatusSnapshot } from '../../service/status.ts';
import type { AssetStore } from '../../store/asset-store.ts';
import type { FetchApp } from '../serve.ts';
import type { OpsMetrics } from './metrics.ts';
import { pathOfUrl } from './observer.ts';
import { STORE_ADMIN_CREDENTIALS } from '../auth.ts';
import { CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE, renderFamilies, type MetricFamily } from './prometheus.ts';
import type { Readiness } from './readiness.ts';
import type { Sampler } from './samples.ts';
import { renderStatusPage, type StatusTile } from './status-page.ts';

/** What a serving mode adds to the admin listener (see the header). Every part is optional. */
export interface AdminExtension {
  /** Its key in /status.json. */
  name: string;
  /** Rendered after the agent's own metric families, at every scrape. */
  metrics?(): MetricFamily[];
  /** Tiles on the status page, after the agent's own. */
  tiles?(): StatusTile[];
  /** Warnings at the top of the status page (what an operator should act on). */
  warnings?(): string[];
  /** Its entry in /status.json. */
  json?(): unknown;
}

export interface AdminDeps {
  store: AssetStore;
  status: StatusReader;
  metrics: OpsMetrics;
  readiness: Readiness;
  sampler: Sampler;
  sampleIntervalMs: number;
  clock: Clock;
  version: string;
  /** Expiry of the main listener's TLS certificate, when it has one. */
  tlsNotAfterMs?: number;
  /** Licensees listed on the status page at most. */
  activityLimit?: number;
  /** Whether an Authorization header may see /metrics and the status page; unset: everyone may. */
  authorize?: (authorization: string | null) => boolean | Promise<boolean>;
  /** Whose credentials `authorize` accepts, for the 401's text. */
  authorizeText?: string;
  /** Read at every request, so that extensions added after the listener started show too. */
  extensions?: readonly AdminExtension[];
}

/** Realm of the admin listener's Basic challenge. */
export const ADMIN_REALM = 'NetLicensing Agent admin';

const HEALTH_BODY = '{"status":"ok"}';

export function healthResponse(): Response {
  return new Response(HEALTH_BODY, { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' } });
}

/** Answers GET/HEAD /health itself and hands everything else to `app`. */
export function withHealth(app: FetchApp): FetchApp {
  return {
    fetch(request) {
      if ((request.method === 'GET' || request.method === 'HEAD') && pathOfUrl(request.url) === '/health') return healthResponse();
      return app.fetch(request);
    },
  };
}

function snapshotJson(snapshot: StatusSnapshot) {
  return {
    ...snapshot,
    definitions: { ...snapshot.definitions, modules: [...snapshot.definitions.modules.values()], quantityLicenseModule: undefined },
    runtime: {
      ...snapshot.runtime,
      seatsInUse: Object.fromEntries(snapshot.runtime.seatsInUse),
      quantityBooked: Object.fromEntries(snapshot.runtime.quantityBooked),
    },
  };
}

export function createAdminApp(deps: AdminDeps): Hono {
  const app = new Hono();
  const noStore = { 'cache-control': 'no-store' };
  const activityLimit = deps.activityLimit ?? 200;
  const extensions = deps.extensions ?? [];

  app.get('/health', () => healthResponse());

  app.get('/ready', async (c) => {
    const report = await deps.readiness.report();
    return c.json({ status: report.ready ? 'ready' : 'not ready', checks: report.checks }, report.ready ? 200 : 503, noStore);
  });

  const authorize = deps.authorize;
  if (authorize) {
    app.use('*', async (c, next) => {
      if (await authorize(c.req.header('authorization') ?? null)) return next();
      return c.text(`credentials required: ${deps.authorizeText ?? STORE_ADMIN_CREDENTIALS} (HTTP Basic)\n`, 401, {
        'www-authenticate': `Basic realm="${ADMIN_REALM}"`,
        ...noStore,
      });
    });
  }

  app.get('/metrics', async () => {
    const snapshot = await deps.status.snapshot(deps.clock.nowMs());
    const report = await deps.readiness.report();
    const files = inspectDatabaseFiles(deps.store.path);
    const body = deps.metrics.render(snapshot, {
      readiness: report.checks.map(({ name, ok }) => ({ name, ok })),
      ...(files ? { databaseBytes: files.sizeBytes } : {}),
      ...(deps.tlsNotAfterMs !== undefined ? { tlsNotAfterMs: deps.tlsNotAfterMs } : {}),
    });
    const more = extensions.flatMap((extension) => extension.metrics?.() ?? []);
    return new Response(more.length > 0 ? body + renderFamilies(more) : body, { headers: { 'content-type': PROMETHEUS_CONTENT_TYPE, ...noStore } });
  });

  app.get('/status', async (c) => {
    const nowMs = deps.clock.nowMs();
    const files = inspectDatabaseFiles(deps.store.path);
    const html = renderStatusPage({
      version: deps.version,
      snapshot: await deps.status.snapshot(nowMs),
      activity: await licenseeActivity(deps.store, nowMs, activityLimit, SCAN_IN_PAGES),
      samples: deps.sampler.ring.list(),
      sampleIntervalMs: deps.sampleIntervalMs,
      ...(files ? { files } : {}),
      readiness: await deps.readiness.report(),
      validateRequests: deps.metrics.validateRequests(),
      extraTiles: extensions.flatMap((extension) => extension.tiles?.() ?? []),
      extraWarnings: extensions.flatMap((extension) => extension.warnings?.() ?? []),
    });
    return c.html(html, 200, noStore);
  });

  app.get('/status.json', async (c) => {
    const nowMs = deps.clock.nowMs();
    return c.json(
      {
        version: deps.version,
        ...snapshotJson(await deps.status.snapshot(nowMs)),
        files: inspectDatabaseFiles(deps.store.path),
        readiness: await deps.readiness.report(),
        licensees: await licenseeActivity(deps.store, nowMs, activityLimit, SCAN_IN_PAGES),
        samples: deps.sampler.ring.list(),
        ...Object.fromEntries(extensions.flatMap((extension) => (extension.json ? [[extension.name, extension.json()]] : []))),
      },
      200,
      noStore,
    );
  });

  app.notFound((c) => c.text('not found: the admin listener serves /health, /ready, /metrics, /status and /status.json\n', 404));
  app.onError((error, c) => c.text(`internal error: ${error.message}\n`, 500));
  return app;
}
