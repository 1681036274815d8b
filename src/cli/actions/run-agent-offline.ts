/**
 * `--action=run-agent-offline`: serve validate and the read calls from the
 * local database until SIGINT/SIGTERM, then drain and close the store.
 */
import { join } from 'node:path';
import { createApp } from '../../server/app.ts';
import { createSigner } from '../../server/signing.ts';
import { loadSigningKeyFile, parseSigningAlgorithm } from '../../wire/xmldsig.ts';
import { serveApp } from '../../server/serve.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import type { ActionDef } from '../actions.ts';
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
      const app = createApp({
        store,
        clock,
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
        server = serveApp(app, { port, hostname: options.host });
      } catch (error) {
        throw new CliError(`cannot listen on ${options.host}:${port}: ${(error as Error).message}`, EXIT.server, { cause: error });
      }
      log.info(`NetLicensing Agent serving offline on http://${options.host}:${server.port}/rest/ (and /core/v2/rest/)`);
      io.stdout(`listening on ${options.host}:${server.port}\n`);
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
      log.info('stopping: draining in-flight requests');
      await server.stop();
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
};
