/**
 * The admin listener of the serving actions (run-agent-offline and run-agent):
 * `--admin.port` read, and the listener started once the main listener is
 * bound, with the line that scripts wait for. What it serves is
 * server/ops/admin-app.ts; who may see it, server/ops/ops.ts (adminCredentials).
 */
import type { Logger } from '../../platform/log.ts';
import { adminCredentials, isLoopback, parseAdminPort, type Ops } from '../../server/ops/ops.ts';
import type { RunningServer } from '../../server/serve.ts';
import type { TlsConfig } from '../../server/tls.ts';
import { CliError, EXIT } from '../exit-codes.ts';

/** `--admin.port`, or a usage error (exit 2). */
export function adminPortOption(text: string): number | 'off' {
  const port = parseAdminPort(text);
  if (port === undefined) throw new CliError(`--admin.port must be a number from 0 to 65535 or "off", got "${text}"`, EXIT.usage);
  return port;
}

export interface AdminListenerOptions {
  ops: Ops;
  host: string;
  port: number | 'off';
  /** The main listener's TLS: the admin listener takes it beyond loopback. */
  tls: TlsConfig | undefined;
  tlsClientAuth: string;
  /** Whom the admin listener lets see /metrics and the status page beyond loopback (ops.ts, adminCredentials). */
  accepts: Parameters<typeof adminCredentials>[2];
  /** What `accepts` accepts, for the log line. */
  acceptsText: string;
  log: Logger;
  /** Stopped when the admin port cannot be bound, before the start fails. */
  mainServer: RunningServer;
  /**
   * A port that cannot be bound is logged and the start goes on without the admin listener, instead
   * of failing (run-agent on its default port: it had none before, so a host that already runs
   * run-agent-offline next to it would not start it after an upgrade).
   */
  optional?: boolean;
}

/**
 * Starts the admin listener (nothing with `off`) and returns the line to print on stdout once
 * everything is bound: a script waiting for "listening" must not take a start that then fails on
 * the admin port (exit 8) for a running agent. A port that cannot be bound stops the main
 * listener and ends the start with exit 8.
 */
export async function startAdminListener(options: AdminListenerOptions): Promise<string | undefined> {
  const { ops, host, port, tls, log } = options;
  if (port === 'off') return undefined;
  // Beyond loopback the admin listener gets the main listener's TLS (and client-certificate policy),
  // and asks for credentials unless client certificates are required (ops.ts, adminCredentials).
  const adminTls = tls && !isLoopback(host) ? tls : undefined;
  const authorize = adminCredentials(host, tls ? options.tlsClientAuth : undefined, options.accepts);
  let admin;
  try {
    admin = ops.listenAdmin({
      host,
      port,
      ...(adminTls ? { tls: adminTls } : {}),
      ...(tls ? { mainTls: tls } : {}),
      ...(authorize ? { authorize, authorizeText: options.acceptsText } : {}),
    });
  } catch (error) {
    if (options.optional) {
      log.warn(`admin listener not started: cannot listen on ${host}:${port} (${(error as Error).message}); give this agent an --admin.port of its own, or --admin.port=off`);
      return undefined;
    }
    await options.mainServer.stop();
    throw new CliError(`cannot listen on ${host}:${port} (--admin.port): ${(error as Error).message}`, EXIT.server, { cause: error });
  }
  if (!isLoopback(host) && !adminTls) {
    log.warn(`admin listener on ${host} without TLS: the credentials it asks for, and what it shows (licensee numbers, usage), cross the network in clear`);
  }
  ops.sampler.start(ops.sampleIntervalMs);
  const access = authorize ? `; /metrics and /status need ${options.acceptsText}` : '';
  log.info(`admin listener on ${adminTls ? 'https' : 'http'}://${host}:${admin.port}/ (/health /ready /metrics /status${access})`);
  return `admin listening on ${host}:${admin.port}\n`;
}
