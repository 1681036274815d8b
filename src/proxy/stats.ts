/**
 * Counters of run-agent, one plain mutable object per proxy: the request
 * path increments them, run-agent's admin listener shows them
 * (server/ops/proxy-extension.ts: /metrics, the status page, /status.json),
 * tests read them. Gauges (breakerState, replayPending, upstreamDownSinceMs)
 * hold the current value.
 */
import type { BreakerState } from './circuit-breaker.ts';

export interface ProxyStats {
  /** Upstream answers passed through to clients (any status below 500). */
  forwarded: number;
  /** Upstream calls that failed, by cause. */
  upstreamTimeouts: number;
  upstreamNetworkErrors: number;
  upstreamServerErrors: number;
  breakerState: BreakerState;
  /** When the breaker last opened after being closed; undefined while it is closed. */
  upstreamDownSinceMs: number | undefined;
  /** Times the breaker opened. */
  breakerOpened: number;
  /** Requests answered locally without trying upstream because the breaker was open. */
  breakerRejected: number;
  /** Validate and read calls answered from the local database (offline path). */
  localAnswers: number;
  /** Validate calls answered from the validation cache (licensee not in the local database). */
  cacheAnswers: number;
  /** Requests answered 503: upstream unreachable and nothing local to answer with. */
  unavailableAnswers: number;
  /** Local answers given because the licensee still had requests waiting for replay. */
  backlogAnswers: number;
  refreshes: number;
  refreshFailures: number;
  /** Replay entries not yet acknowledged upstream. */
  replayPending: number;
  replayed: number;
  replayConflicts: number;
  /** Replay attempts stopped by a failure or refusal (retried later). */
  replayStalls: number;
}

export function createProxyStats(): ProxyStats {
  return {
    forwarded: 0,
    upstreamTimeouts: 0,
    upstreamNetworkErrors: 0,
    upstreamServerErrors: 0,
    breakerState: 'closed',
    upstreamDownSinceMs: undefined,
    breakerOpened: 0,
    breakerRejected: 0,
    localAnswers: 0,
    cacheAnswers: 0,
    unavailableAnswers: 0,
    backlogAnswers: 0,
    refreshes: 0,
    refreshFailures: 0,
    replayPending: 0,
    replayed: 0,
    replayConflicts: 0,
    replayStalls: 0,
  };
}
