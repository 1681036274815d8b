/**
 * Replays upstream what the agent decided while the upstream was
 * unreachable: every validate request answered locally that changed runtime
 * state (used quantities, floating check-outs/check-ins, trial and
 * evaluation starts, start dates, node secrets) was stored as a replay entry
 * in the same transaction as the change (store.commitRuntimeWithReplay).
 *
 * Order: strictly by entry sequence, one request at a time; entry N+1 is
 * not sent before entry N is acknowledged.
 *
 * "Exactly once", as far as the API allows (it has no idempotency key):
 * an entry is re-sent with the agent's own upstream credentials and the
 * client's original parameters; when the upstream answers, the answer (and
 * a conflict record if it contradicts the local decision) is stored and the
 * durable replay cursor advanced past the entry in ONE transaction
 * (store.acknowledgeReplay). An entry behind the cursor is never sent again.
 * The window: when the outcome of the one request in flight is unknown —
 * the agent crashes or its disk write fails after the upstream processed the
 * request but before the acknowledgement is durable, or the answer is lost
 * (timeout, connection reset after sending) — that single request is sent
 * again later, so the upstream may count it twice. At most one request per
 * such event; docs/proxy.md.
 *
 * Answers that are not acknowledgements: timeouts, network errors and 5xx
 * (the breaker counts them; retried after its cool-down), and 401/403/407/429
 * (the upstream refuses the agent's credentials or throttles it; retried
 * later, logged as errors). Every other answer — 200, 400 NotFoundException,
 * 402 … — is an acknowledgement; if it contradicts the local decision it is
 * a conflict: logged, counted and stored (store.replayConflicts), never dropped.
 */
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/log.ts';
import type { AssetStore, ReplayAck, ReplayConflict, ReplayEntry } from '../store/asset-store.ts';
import type { CircuitBreaker } from './circuit-breaker.ts';
import { conflictBetween, decisionOfJsonAnswer } from './decision.ts';
import type { ProxyStats } from './stats.ts';
import { callUpstream } from './upstream.ts';

export const DEFAULT_REPLAY_TIMEOUT_MS = 30_000;
/** Wait before retrying after a refusal, or after a failure that did not open the breaker. */
export const REPLAY_RETRY_MS = 5_000;
const REFUSED = new Set([401, 403, 407, 429]);

export interface ReplayUpstream {
  baseUrl: string;
  /** The agent's own Authorization header (--nlic.*). */
  authorization: string;
  timeoutMs: number;
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
}

export interface ReplayerDeps {
  store: AssetStore;
  breaker: CircuitBreaker;
  stats: ProxyStats;
  log: Logger;
  clock: Clock;
  upstream: ReplayUpstream;
  /** Runs `retry` after `ms`; returns a cancel function. Absent: no automatic retries (tests call drain()). */
  schedule?: (ms: number, retry: () => void) => () => void;
  /** After a drain acknowledged entries: the licensees concerned (the proxy refreshes them). */
  onAcknowledged?(licensees: string[]): void;
}

export interface DrainResult {
  replayed: number;
  conflicts: number;
  /** Why the drain stopped with entries left; undefined when the backlog is empty. */
  stopped?: 'breaker-open' | 'upstream-failure' | 'refused' | 'store-failure';
}

export class Replayer {
  /** Entries not yet acknowledged, by licensee (sequence numbers: notes and acks may arrive in either order). */
  private readonly backlog = new Map<string, Set<number>>();
  private draining: Promise<DrainResult> | undefined;
  private cancelRetry: (() => void) | undefined;
  private closed = false;

  constructor(private readonly deps: ReplayerDeps) {
    for (const entry of deps.store.replayBacklog()) this.add(entry.licenseeNumber, entry.seq);
  }

  private add(licenseeNumber: string, seq: number): void {
    let seqs = this.backlog.get(licenseeNumber);
    if (!seqs) this.backlog.set(licenseeNumber, (seqs = new Set()));
    if (seqs.has(seq)) return;
    seqs.add(seq);
    this.deps.stats.replayPending++;
  }

  /** Does the licensee have requests waiting for replay? (Then it is answered locally, to keep its order.) */
  hasBacklog(licenseeNumber: string): boolean {
    return this.backlog.has(licenseeNumber);
  }

  get pending(): number {
    return this.deps.stats.replayPending;
  }

  /** A local answer stored replay entry `seq` for the licensee (a drain may have acknowledged it already). */
  noteRecorded(licenseeNumber: string, seq: number): void {
    if (seq <= this.deps.store.replayCursor()) return;
    this.add(licenseeNumber, seq);
    // Nothing else may start the replay: with the breaker open, a licensee's later requests are
    // answered locally without asking the breaker, and no other licensee's request may come. So a
    // local answer that leaves something to replay makes sure a retry is due (after the cool-down).
    if (!this.draining && this.cancelRetry === undefined) this.retryLater(this.deps.breaker.retryInMs() || REPLAY_RETRY_MS);
  }

  /** Starts a drain when there is something to replay and none is running. */
  kick(): Promise<DrainResult> | undefined {
    if (this.closed || this.deps.stats.replayPending === 0 || this.draining) return undefined;
    return this.drain();
  }

  /** Replays entries in order until the backlog is empty or the upstream stops answering. Single-flight. */
  drain(): Promise<DrainResult> {
    this.draining ??= this.run().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cancelRetry?.();
    await this.draining;
  }

  private retryLater(ms: number): void {
    if (this.closed || !this.deps.schedule) return;
    this.cancelRetry?.();
    this.cancelRetry = this.deps.schedule(Math.max(ms, 1), () => {
      this.cancelRetry = undefined;
      void this.kick();
    });
  }

  private async run(): Promise<DrainResult> {
    const { store, breaker, stats, log } = this.deps;
    const result: DrainResult = { replayed: 0, conflicts: 0 };
    const acknowledged = new Set<string>();
    try {
      for (;;) {
        if (this.closed) break;
        // A replay entry reaches the database with a checkpoint, after its change was acknowledged.
        try {
          await store.settled();
        } catch (error) {
          stats.replayStalls++;
          result.stopped = 'store-failure';
          log.error(`replay waits: the database cannot take the newest changes yet: ${(error as Error).message}`);
          this.retryLater(REPLAY_RETRY_MS);
          break;
        }
        const entry = first(store.replayBacklog());
        if (!entry) break;
        const permit = breaker.acquire();
        if (permit === 'reject') {
          result.stopped = 'breaker-open';
          // Half-open with another request out as the probe, retryInMs() is 0: without the fallback
          // this retried every millisecond until the probe ended (if it succeeds, the forwarded answer
          // starts the replay at once anyway).
          this.retryLater(breaker.retryInMs() || REPLAY_RETRY_MS);
          break;
        }
        const outcome = await this.send(entry);
        if (outcome.kind === 'failure') {
          breaker.failure();
          stats.replayStalls++;
          result.stopped = 'upstream-failure';
          log.warn(`replay of request ${entry.seq} (licensee "${entry.licenseeNumber}") failed: ${outcome.message}; will retry`);
          this.retryLater(breaker.retryInMs() || REPLAY_RETRY_MS);
          break;
        }
        breaker.success();
        const body = new TextDecoder().decode(outcome.body);
        if (REFUSED.has(outcome.status)) {
          stats.replayStalls++;
          result.stopped = 'refused';
          log.error(
            `replay of request ${entry.seq} (licensee "${entry.licenseeNumber}") refused by the upstream with HTTP ${outcome.status}` +
              ' (check --nlic.username/--nlic.password or --nlic.apikey); will retry',
          );
          this.retryLater(REPLAY_RETRY_MS);
          break;
        }
        const now = this.deps.clock.nowMs();
        const decision = decisionOfJsonAnswer(outcome.status, body);
        const message = conflictBetween(entry.decision, decision);
        const ack: ReplayAck = { atMs: now, status: outcome.status, decision, conflict: message !== undefined };
        const conflict: ReplayConflict | undefined =
          message === undefined
            ? undefined
            : {
                seq: entry.seq,
                licenseeNumber: entry.licenseeNumber,
                offlineAtMs: entry.atMs,
                detectedAtMs: now,
                form: entry.form,
                local: entry.decision,
                upstream: decision,
                message,
              };
        try {
          await store.acknowledgeReplay(entry.seq, ack, conflict);
        } catch (error) {
          // The upstream has processed the request; resending it later is the documented window.
          stats.replayStalls++;
          result.stopped = 'store-failure';
          log.error(`replay of request ${entry.seq}: cannot record the upstream's answer: ${(error as Error).message}; it will be sent again`);
          this.retryLater(REPLAY_RETRY_MS);
          break;
        }
        this.acknowledgedOne(entry.licenseeNumber, entry.seq);
        acknowledged.add(entry.licenseeNumber);
        result.replayed++;
        stats.replayed++;
        if (conflict) {
          result.conflicts++;
          stats.replayConflicts++;
          // The parameters stay in the stored record: they may carry node secrets.
          log.warn(
            `replay conflict for licensee "${entry.licenseeNumber}" (request ${entry.seq}, answered offline at ` +
              `${new Date(entry.atMs).toISOString()}): ${conflict.message}`,
          );
        }
      }
    } finally {
      if (result.replayed > 0) {
        log.info(
          `replayed ${result.replayed} request(s) answered offline to the upstream` +
            (result.conflicts > 0 ? `, ${result.conflicts} conflict(s)` : '') +
            (this.deps.stats.replayPending > 0 ? `, ${this.deps.stats.replayPending} still waiting` : ''),
        );
      }
      if (acknowledged.size > 0) this.deps.onAcknowledged?.([...acknowledged]);
    }
    return result;
  }

  private acknowledgedOne(licenseeNumber: string, seq: number): void {
    const seqs = this.backlog.get(licenseeNumber);
    if (!seqs?.delete(seq)) return;
    if (seqs.size === 0) this.backlog.delete(licenseeNumber);
    this.deps.stats.replayPending--;
  }

  private send(entry: ReplayEntry) {
    const { upstream } = this.deps;
    return callUpstream({
      method: 'POST',
      url: `${upstream.baseUrl}/core/v2/rest/licensee/${encodeURIComponent(entry.licenseeNumber)}/validate`,
      headers: new Headers({
        authorization: upstream.authorization,
        accept: 'application/json',
        'content-type': 'application/x-www-form-urlencoded',
        'user-agent': 'netlicensing-agent run-agent (replay)',
      }),
      body: new TextEncoder().encode(entry.form),
      timeoutMs: upstream.timeoutMs,
      ...(upstream.fetch ? { fetch: upstream.fetch } : {}),
    });
  }
}

function first<T>(items: Iterable<T>): T | undefined {
  for (const item of items) return item;
  return undefined;
}
