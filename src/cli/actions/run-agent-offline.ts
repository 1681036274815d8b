/**
 * `--action=run-agent-offline`: serve validate and the read calls from the
 * local database until SIGINT/SIGTERM, then drain and close the store.
 *
 * A database bound to a smart card runs only with that card
 * (docs/smart-card.md): the startup verification refuses a wrong card, a
 * rolled-back or cloned database and a clock set back (exit 6 with the
 * reason and how to recover), a startup checkpoint is sealed before the
 * first request, and validate writes are sealed (`--card.seal`). A
 * database imported without card runs without one.
 */
import { join } from 'node:path';
import type { BatcherMode } from '../../card/checkpoint.ts';
import { openBoundCard } from '../../card/open.ts';
import { readCardPin } from '../../card/pin.ts';
import { DEFAULT_SEAL_INTERVAL_MS, startCardSession, type CardSession } from '../../card/session.ts';
import { CardError } from '../../card/types.ts';
import { createApp } from '../../server/app.ts';
import type { OpsMetrics } from '../../server/ops/metrics.ts';
import { gauge } from '../../server/ops/prometheus.ts';
import { createSigner } from '../../server/signing.ts';
import { sealedJournalSeqOf, sealedSeqIn, verifyDatabase } from '../../service/verify-database.ts';
import { createTrustedClock, recordClockMarks, trustedClockForStore, type ClockMarks, type ClockRollback, type TrustedClock } from '../../service/trusted-clock.ts';
import { loadSigningKeyFile, parseSigningAlgorithm } from '../../wire/xmldsig.ts';
import { HTTP_LIMITS } from '../../server/limits.ts';
import { serveApp } from '../../server/serve.ts';
import { withHealth, type AdminExtension } from '../../server/ops/admin-app.ts';
import { createOps } from '../../server/ops/ops.ts';
import { STORE_ADMIN_CREDENTIALS } from '../../server/auth.ts';
import { loadTlsConfig, TlsConfigError, type TlsConfig } from '../../server/tls.ts';
import { buildInfo, versionText } from '../run.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import { claimRuntimeWriter, runtimeJournalLogging } from './runtime-writer-claim.ts';
import { adminPortOption, startAdminListener } from './admin-listener.ts';
import type { ActionContext, ActionDef } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { parsePort, parseTtlMs, parseWholeNumber } from '../option-values.ts';



/**
 * How long a validate may wait before its 503 (limits.ts). Strict sealing holds a write until a card
 * checkpoint covers it, and checkpoints start up to the seal interval apart: that wait is the
 * operator's choice, not a hung disk, so it is added.
 */
export function requestTimeoutMsFor(seal: { mode: BatcherMode; intervalMs: number } | undefined): number {
  return HTTP_LIMITS.requestTimeoutMs + (seal?.mode === 'strict' ? seal.intervalMs : 0);
}

/** `--card.seal` and `--card.seal-interval-ms`. */
export function parseCardSeal(options: ActionContext['options']): { mode: BatcherMode; intervalMs: number } {
  const mode = options.cardSeal;
  if (mode !== 'strict' && mode !== 'relaxed') {
    throw new CliError(`--card.seal must be strict or relaxed, got "${mode}"`, EXIT.usage);
  }
  const text = options.cardSealIntervalMs;
  if (text === undefined) return { mode, intervalMs: DEFAULT_SEAL_INTERVAL_MS[mode] };
  const intervalMs = parseWholeNumber(text);
  if (intervalMs === undefined || intervalMs > 86_400_000) {
    throw new CliError(`--card.seal-interval-ms must be whole milliseconds from 0 to 86400000, got "${text}"`, EXIT.usage);
  }
  return { mode, intervalMs };
}

/** The card's counter and availability, next to the ops metrics (OpsMetrics counts checkpoints only). */
function cardExtension(session: CardSession): AdminExtension {
  return {
    name: 'card',
    metrics: () => [
      gauge('nla_card_signature_counter', "The smart card's signature counter as of the newest checkpoint (at most 16777215).", [
        { value: session.cardCounter() },
      ]),
      gauge('nla_card_available', '1 while the smart card seals writes, 0 while validate writes are refused.', [{ value: session.available() ? 1 : 0 }]),
    ],
  };
}

/** Card errors at startup say which card the database needs; the code (exit 6) stays. */
function inCardContext(error: unknown, serial: string): unknown {
  if (!(error instanceof CardError)) return error;
  return new CardError(error.code, `this database is bound to smart card ${serial}: ${error.message}`, { cause: error, details: error.details });
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
    const adminPort = adminPortOption(options.adminPort);
    const seal = parseCardSeal(options);
    const tls = loadTls(options, clock.nowMs());
    const store = openAssetStore(join(cwd, 'database'), runtimeJournalLogging(log));
    let cardSession: CardSession | undefined;
    let clockMarks: ClockMarks | undefined;
    try {
      claimRuntimeWriter(store, port, clock.nowMs());
      const meta = store.meta();
      if (!meta.lastImport) {
        throw new CliError('the database holds no imported assets yet: run --action=import-assets first', EXIT.store);
      }
      const binding = meta.cardBinding;
      if (binding && options.withoutCard) {
        throw new CliError(
          `this database is bound to smart card ${binding.serial} and cannot run with --without-card (the card protects its counters against rollback): ` +
            'insert the card and start without --without-card; to run without a card, import a --without-card export into an empty working directory',
          EXIT.card,
        );
      }
      if (!binding && !meta.withoutCard) {
        throw new CliError(
          `this database is bound to smart card ${meta.cardSerial ?? '(unknown serial)'} but holds no card binding: its import did not finish; import the export again`,
          EXIT.card,
        );
      }
      // The server stops on SIGINT/SIGTERM, or when the card was used by someone else (fatal).
      let fatal: CardError | undefined;
      const stopRequested = new AbortController();
      if (signal.aborted) stopRequested.abort();
      else signal.addEventListener('abort', () => stopRequested.abort(), { once: true });
      // Checkpoint latencies measured before the ops metrics exist (the startup seal) are reported once they do.
      let metrics: OpsMetrics | undefined;
      const earlyCheckpointsMs: number[] = [];
      // The card seals licensing time (its clock mark): the trusted clock once it exists (below), so
      // that a clock kept behind does not seal the same mark over and over; the system clock for the
      // startup seal before it, which the card checks against its newest mark.
      let licensingClock: TrustedClock | undefined;
      const sealingClock = { nowMs: () => (licensingClock ?? clock).nowMs() };
      if (binding) {
        const serial = binding.serial;
        // The card seals the journal's head; the counters served are the runtime records. Before the
        // card is asked, they must be what the journal replays to (verify-database's check), or an
        // edit of a runtime record would be served, and sealed (the issue-5 review did it: a booking
        // undone by editing one record, with the bound card in place, went unnoticed).
        const startedCheckMs = clock.nowMs();
        // Given the entry the card sealed, it also refuses a journal base the card has not sealed
        // (a missing or forged checkpoint is the card check's to refuse, just below).
        const sealed = sealedJournalSeqOf(store);
        const journalCheck = verifyDatabase(store, 3, sealedSeqIn(sealed));
        if (!journalCheck.ok) {
          throw new CliError(
            `smart card ${serial}: the database's runtime state does not match its journal (${journalCheck.problems.join('; ')}): ` +
              'it was changed outside the agent. Put back the newest copy of database/ that last ran with this card (--action=verify-database names what differs)',
            EXIT.card,
          );
        }
        log.debug(`runtime state matches the journal (${journalCheck.entries} entries, ${journalCheck.licensees} licensees) in ${clock.nowMs() - startedCheckMs} ms`);
        try {
          const { pin, warning } = readCardPin(
            { ...(options.cardPinFile === undefined ? {} : { pinFile: options.cardPinFile }), env: io.env },
            'starting the agent',
          );
          if (warning) log.warn(warning);
          const card = await openBoundCard(binding, { pin });
          try {
            cardSession = await startCardSession({
              card,
              binding,
              db: store,
              clock: sealingClock,
              mode: seal.mode,
              intervalMs: seal.intervalMs,
              onSealed: ({ durationMs }) => (metrics ? metrics.cardCheckpoint(durationMs) : earlyCheckpointsMs.push(durationMs)),
              onAvailability: (available, problem) => {
                if (available) log.info(`smart card ${serial} answers again: validate writes are accepted`);
                else log.error(`smart card ${serial} is not available (${problem?.message ?? 'unknown'}): validate writes get 503 until it is back; reads continue`);
              },
              onFatal: (error) => {
                // During the startup seal the error is thrown (and reported) by startCardSession itself.
                if (!cardSession) return;
                fatal = error;
                log.error(`smart card ${serial}: ${error.message}; the agent stops`);
                stopRequested.abort();
              },
            });
          } catch (error) {
            await card.close().catch(() => undefined);
            throw error;
          }
        } catch (error) {
          throw inCardContext(error, serial);
        }
        log.info(cardSession.startupMessage);
        log.info(
          `smart card ${serial}: ${seal.mode} sealing, ${seal.mode === 'strict' ? 'at most one checkpoint per' : 'a checkpoint every'} ${seal.intervalMs} ms`,
        );
      }
      const ops = createOps({ store, clock, log, build: buildInfo(), versionText: versionText(), cardDisabled: options.withoutCard });
      metrics = ops.metrics;
      for (const durationMs of earlyCheckpointsMs.splice(0)) metrics.cardCheckpoint(durationMs);
      if (cardSession) {
        const session = cardSession;
        ops.readiness.replace({ name: 'card', run: () => session.readiness() });
        ops.extend(cardExtension(session));
      }
      // Time never runs backwards for the licensing models (see service/trusted-clock.ts);
      // with a card, it starts no earlier than the newest time the card sealed.
      const onRollback = ({ systemMs, highWaterMs }: ClockRollback) =>
        log.warn(
          `system clock is ${Math.round((highWaterMs - systemMs) / 1000)} s behind the newest time this database has seen ` +
            `(${new Date(highWaterMs).toISOString()}): licensing uses that time until the clock catches up`,
        );
      const storeClock = trustedClockForStore(store, clock, onRollback);
      const trustedClock = cardSession
        ? createTrustedClock(clock, Math.max(storeClock.highWaterMs(), cardSession.clockHighWaterMs()), { onRollback })
        : storeClock;
      licensingClock = trustedClock;
      // The newest time answered at outlives the process (also when nothing was written meanwhile).
      clockMarks = recordClockMarks(store, trustedClock, { warn: (message) => log.warn(message) });
      const requestTimeoutMs = requestTimeoutMsFor(cardSession ? seal : undefined);
      const app = createApp({
        observer: ops.metrics,
        store,
        ...(cardSession ? { sealing: cardSession } : {}),
        requestTimeoutMs,
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
        server = serveApp(withHealth(app), { port, hostname: options.host, requestTimeoutMs, ...(tls ? { tls } : {}) });
      } catch (error) {
        throw new CliError(`cannot listen on ${options.host}:${port}: ${(error as Error).message}`, EXIT.server, { cause: error });
      }
      // Both listeners are bound before anything says "listening" (admin-listener.ts).
      const adminLine = await startAdminListener({
        ops,
        host: options.adminHost,
        port: adminPort,
        tls,
        tlsClientAuth: options.tlsClientAuth,
        accepts: store,
        acceptsText: STORE_ADMIN_CREDENTIALS,
        log,
        mainServer: server,
      });
      log.info(`NetLicensing Agent serving offline on ${tls ? 'https' : 'http'}://${options.host}:${server.port}/rest/ (and /core/v2/rest/)`);
      if (options.tlsClientAuth === 'optional') log.warn('--tls.client-auth=optional requests client certificates but does not enforce them');
      io.stdout(`listening on ${options.host}:${server.port}\n`);
      if (adminLine !== undefined) io.stdout(adminLine);
      await new Promise<void>((resolve) => {
        if (stopRequested.signal.aborted) resolve();
        else stopRequested.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      log.info('stopping: draining in-flight requests');
      ops.draining();
      await server.stop();
      if (cardSession) {
        // Final checkpoint: what was written since the last one is sealed too (once LMDB holds it).
        await store.settled().catch(() => undefined);
        const warning = await cardSession.close();
        cardSession = undefined;
        if (warning) log.warn(`smart card: ${warning}`);
      }
      await ops.stop();
      if (fatal) throw fatal;
      return EXIT.ok;
    } finally {
      // The last mark, after a stop or a failed start (then only what was answered, if anything).
      await clockMarks?.stop();
      await cardSession?.close();
      await store.close();
    }
  },
};
