/**
 * Test support for run-agent (tests/proxy): a stand-in upstream and a proxy
 * factory.
 *
 * The stand-in upstream is a real offline agent (createApp over a seeded
 * store, tests/support/seed-store.ts) on Bun.serve at 127.0.0.1, behind a
 * fault switch: healthy, slow (requests are held until released), failing
 * (503 envelopes) and unreachable (the listener is stopped; `restart()`
 * listens again on the same port). It serves /core/v2/rest like the cloud,
 * so validate semantics, the read API for refreshes and replays are real.
 * Every request it receives is logged (method, path, user agent).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Entity } from '../../src/core/entities.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { createLogger, silentLogger, type Logger } from '../../src/platform/log.ts';
import { createProxy, type AgentProxy, type ProxyOptions } from '../../src/proxy/proxy-app.ts';
import { createApp } from '../../src/server/app.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { tempDir } from '../helpers.ts';
import { demoEntities, seedStore, VENDOR } from '../support/seed-store.ts';

export const NOW = Date.parse('2026-11-15T12:00:00.000Z');
export const REPLAY_USER_AGENT = 'netlicensing-agent run-agent (replay)';

export type UpstreamMode = 'healthy' | 'slow' | 'failing';

export interface SeenRequest {
  method: string;
  path: string;
  userAgent: string;
}

/** Not an API path: restart() asks it until the listener answers; not recorded in `seen`. */
const READY_PATH = '/__ready';

export class StandinUpstream {
  mode: UpstreamMode = 'healthy';
  readonly seen: SeenRequest[] = [];
  private server: ReturnType<typeof Bun.serve> | undefined;
  private held: Array<() => void> = [];
  port = 0;

  private constructor(
    readonly store: AssetStore,
    readonly app: ReturnType<typeof createApp>,
  ) {}

  static start(entities: Entity[] = demoEntities()): StandinUpstream {
    const { store } = seedStore(entities);
    const app = createApp({ store, clock: new ManualClock(NOW), log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
    const upstream = new StandinUpstream(store, app);
    upstream.listen(0);
    return upstream;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Validate requests received (replays included). */
  validateHits(): number {
    return this.seen.filter((r) => r.path.endsWith('/validate')).length;
  }

  replayHits(): number {
    return this.seen.filter((r) => r.userAgent === REPLAY_USER_AGENT).length;
  }

  private listen(port: number): void {
    this.server = Bun.serve({
      port,
      hostname: '127.0.0.1',
      fetch: async (request) => {
        const url = new URL(request.url);
        if (url.pathname === READY_PATH) return new Response(null, { status: 204 });
        this.seen.push({ method: request.method, path: decodeURIComponent(url.pathname), userAgent: request.headers.get('user-agent') ?? '' });
        if (this.mode === 'failing') {
          return new Response('<netlicensing xmlns="http://netlicensing.labs64.com/schema/context"><infos><info id="ServiceUnavailable" type="error">down for maintenance</info></infos></netlicensing>', {
            status: 503,
            headers: { 'content-type': 'application/xml' },
          });
        }
        if (this.mode === 'slow') await new Promise<void>((resolve) => this.held.push(resolve));
        return this.app.fetch(request);
      },
    });
    this.port = this.server.port ?? port;
  }

  /** Answers the requests held in slow mode (they then get real answers). */
  release(): void {
    for (const resolve of this.held.splice(0)) resolve();
  }

  /** Unreachable: connections are refused. */
  async stop(): Promise<void> {
    this.release();
    await this.server?.stop(true);
    this.server = undefined;
  }

  /**
   * Listens again on the same port; resolves once a fetch is answered there. Without that wait,
   * the proxy's first request right after the restart was now and then refused (3 in 100 runs of
   * replay.test.ts: ECONNREFUSED in the replay, while a fetch and a connect made just after the
   * failure were both accepted; why is not known). The proxy answers that by retrying after its
   * cool-down; the tests check what happens once the upstream is back. With the wait: no failure
   * in 160 runs, and the wait's own fetch never needed a second try.
   */
  async restart(): Promise<void> {
    if (!this.server) this.listen(this.port);
    for (let attempt = 1; ; attempt++) {
      try {
        await (await fetch(`http://127.0.0.1:${this.port}${READY_PATH}`)).arrayBuffer();
        return;
      } catch (error) {
        if (attempt === 50) throw error;
        await Bun.sleep(10);
      }
    }
  }

  /** A request straight to the upstream app (works while stopped): what a client of the cloud would see. */
  direct(path: string, init: RequestInit): Promise<Response> {
    return Promise.resolve(this.app.request(`/core/v2/rest${path}`, init));
  }

  async close(): Promise<void> {
    await this.stop();
    await this.store.close();
  }
}

export interface ProxyFixture {
  proxy: AgentProxy;
  store: AssetStore;
  clock: ManualClock;
  dir: string;
  logText(): string;
  request(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export const COOL_DOWN_MS = 10_000;

/** A proxy over a database in `dir` (created if needed), in-process (app.request), timers off. */
export function startProxy(
  upstream: StandinUpstream,
  { dir: givenDir, failWrites, ...overrides }: Partial<ProxyOptions> & { dir?: string; clock?: ManualClock; failWrites?: () => Error | undefined } = {},
): ProxyFixture {
  const dir = givenDir ?? tempDir('nla-proxy-');
  mkdirSync(dir, { recursive: true });
  const store = openAssetStore(join(dir, 'database'), { create: true, nowMs: NOW, ...(failWrites ? { failWrites } : {}) });
  const clock = overrides.clock ?? new ManualClock(NOW);
  let text = '';
  const log: Logger = createLogger({ verbose: true, stream: { write: (chunk: string) => ((text += chunk), true) } as unknown as NodeJS.WritableStream });
  const proxy = createProxy({
    store,
    clock,
    log,
    ttlMs: 600_000,
    allowAnonymous: false,
    upstream: { baseUrl: upstream.baseUrl, credentials: { kind: 'basic', username: VENDOR.user, password: VENDOR.password }, timeoutMs: 2_000, backgroundTimeoutMs: 2_000 },
    breaker: { failureThreshold: 1, coolDownMs: COOL_DOWN_MS },
    refreshIntervalMs: 60_000,
    timers: false,
    ...overrides,
  });
  return {
    proxy,
    store,
    clock,
    dir,
    logText: () => text,
    request: async (path, init) => proxy.app.request(path, init),
    async close() {
      await proxy.close();
      await store.close();
    },
  };
}

export const form = (body: string, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  body,
});

/** remainingQuantity of a module in a JSON validate answer. */
export async function moduleProperty(response: Response, module: string, name: string): Promise<string | undefined> {
  const body = (await response.json()) as { items: { item: { type: string; property: { name: string; value: string }[] }[] } };
  const item = body.items.item.find((i) => i.property.some((p) => p.name === 'productModuleNumber' && p.value === module));
  return item?.property.find((p) => p.name === name)?.value;
}
