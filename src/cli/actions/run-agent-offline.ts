/**
 * `--action=run-agent-offline`: serve validate and the read calls from the
 * local database until SIGINT/SIGTERM, then drain and close the store.
 */
import { join } from 'node:path';
import { createApp } from '../../server/app.ts';
import { createSigner } from '../../server/signing.ts';
import { trustedClockForStore } from '../../service/trusted-clock.ts';
import { loadSigningKeyFile, parseSigningAlgorithm } from '../../wire/xmldsig.ts';
import { serveApp } from '../../server/serve.ts';
import { withHealth } from '../../server/ops/admin-app.ts';
import { createOps, isLoopback, parseAdminPort } from '../../server/ops/ops.ts';
import { loadTlsConfig, TlsConfigError, type TlsConfig } from '../../server/tls.ts';
import { buildInfo, versionText } from '../run.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import type { ActionContext, ActionDef } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';

export function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new CliError(`--port must be a number from 0 to 65535, got "${text}"`, EXIT.usage);
  }
  return port;
}

export function parseTtlMs(text: string): number {
  const seconds = Number(text);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 30 * 86_400) {
    throw new CliError(`--ttl must be whole seconds from 1 to 2592000, got "${text}"`, EXIT.usage);
  }
  return seconds * 1000;
}

function loadOperatorKey(path: string) {
  try {
    return loadSigningKeyFile(path);
  } catch (error) {
    throw new CliError((error as Error).message, EXIT.server, { cause: error });
  }
}

function loadTls(options: ActionContext['options'], nowMs: number): TlsConfig | undefined {
  try {
    return loadTlsConfig(
      { cert: options.tlsCert, key: options.tlsKey, ca: options.tlsCa, clientAuth: options.tlsClientAuth },
      nowMs,
    );
  } catch (error) {
    if (!(error instanceof TlsConfigError)) throw error;
    throw new CliError(error.message, error.kind === 'usage' ? EXIT.usage : EXIT.server, { cause: error });
  }
}

export const runAgentOfflineAction: ActionDef = {
  name: 'run-agent-offline',
  summary: 'serve validate (and the read calls) from the local database',
  async run({ options, log, cwd, clock, signal, io }) {
    const port = parsePort(options.port);
    const ttlMs = parseTtlMs(options.ttl);
    const signingAlgorithm = parseSigningAlgorithm(options.signingAlgorithm);
    if (!signingAlgorithm) {
      throw new CliError(`--signing.algorithm must be rsa-sha1 or rsa-sha256, got "${options.signingAlgorithm}"`, EXIT.usage);
    }
    const adminPort = parseAdminPort(options.adminPort);
    if (adminPort === undefined) {
      throw new CliError(`--admin.port must be a number from 0 to 65535 or "off", got "${options.adminPort}"`, EXIT.usage);
    }
    const tls = loadTls(options, clock.nowMs());
    const store = openAssetStore(join(cwd, 'database'));
    try {
      const meta = store.meta();
      if (!meta.lastImport) {
        throw new CliError('the database holds no imported assets yet: run --action=import-assets first', EXIT.store);
      }
      if (!meta.withoutCard && !options.withoutCard) {
        throw new CliError(
          `this database is bound to smart card ${meta.cardSerial ?? '(unknown serial)'}, but smart-card support is not available in this build`,
          EXIT.card,
        );
      }
      // Time never runs backwards for the licensing models (see service/trusted-clock.ts).
      const trustedClock = trustedClockForStore(store, clock, ({ systemMs, highWaterMs }) =>
          log.warn(
            `system clock is ${Math.round((highWaterMs - systemMs) / 1000)} s behind the newest time this database has seen ` +
              `(${new Date(highWaterMs).toISOString()}): licensing uses that time until the clock catches up`,
          ),
      );
      const ops = createOps({ store, clock, log, build: buildInfo(), versionText: versionText(), cardDisabled: options.withoutCard });
      const app = createApp({
        observer: ops.metrics,
        store,
        clock: trustedClock,
        log,
        ttlMs,
        allowAnonymous: options.allowAnonymous,
        signXml: createSigner({
          algorithm: signingAlgorithm,
          ...(options.signingKey ? { operatorKey: loadOperatorKey(options.signingKey) } : {}),
        }),
      });
      let server;
      try {
        server = serveApp(withHealth(app), { port, hostname: options.host, ...(tls ? { tls } : {}) });
      } catch (error) {
        throw new CliError(`cannot listen on ${options.host}:${port}: ${(error as Error).message}`, EXIT.server, { cause: error });
      }
      log.info(`NetLicensing Agent serving offline on ${tls ? 'https' : 'http'}://${options.host}:${server.port}/rest/ (and /core/v2/rest/)`);
      if (options.tlsClientAuth === 'optional') log.warn('--tls.client-auth=optional requests client certificates but does not enforce them');
      io.stdout(`listening on ${options.host}:${server.port}\n`);
      if (adminPort !== 'off') {
        // Beyond loopback the admin listener gets the main listener's TLS (and client-certificate policy).
        const adminTls = tls && !isLoopback(options.adminHost) ? tls : undefined;
        let admin;
        try {
          admin = ops.listenAdmin({ host: options.adminHost, port: adminPort, ...(adminTls ? { tls: adminTls } : {}), ...(tls ? { mainTls: tls } : {}) });
        } catch (error) {
          await server.stop();
          throw new CliError(`cannot listen on ${options.adminHost}:${adminPort} (--admin.port): ${(error as Error).message}`, EXIT.server, { cause: error });
        }
        if (!isLoopback(options.adminHost) && !adminTls) {
          log.warn(`admin listener on ${options.adminHost} without TLS: whoever reaches it reads licensee numbers and usage`);
        }
        ops.sampler.start(ops.sampleIntervalMs);
        log.info(`admin listener on ${adminTls ? 'https' : 'http'}://${options.adminHost}:${admin.port}/ (/health /ready /metrics /status)`);
        io.stdout(`admin listening on ${options.adminHost}:${admin.port}\n`);
      }
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
      log.info('stopping: draining in-flight requests');
      ops.draining();
      await server.stop();
      await ops.stop();
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
};
