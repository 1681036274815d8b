/**
 * Circuit breaker for the upstream link of run-agent, so that an outage
 * costs one timeout per cool-down instead of one per client request.
 *
 *   closed     every request goes upstream; K consecutive failures open it
 *   open       nothing goes upstream (callers answer locally at once) until
 *              the cool-down has passed since it opened
 *   half-open  exactly one request (the probe) goes upstream; its success
 *              closes the breaker, its failure opens it for another cool-down
 *
 * A failure is a timeout, a connection failure or a 5xx answer; any other
 * answer (200, 4xx) proves the upstream reachable. Time comes from the
 * injected clock. Every `acquire()` that returns 'pass' or 'probe' must be
 * followed by exactly one `success()` or `failure()`.
 */
import type { Clock } from '../platform/clock.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';
export type BreakerPermit = 'pass' | 'probe' | 'reject';

export interface BreakerOptions {
  /** Consecutive failures that open the breaker (K ≥ 1). */
  failureThreshold: number;
  /** How long it stays open before one probe is let through. */
  coolDownMs: number;
  clock: Clock;
  onStateChange?(from: BreakerState, to: BreakerState): void;
}

export const DEFAULT_FAILURE_THRESHOLD = 3;
export const DEFAULT_COOL_DOWN_MS = 10_000;

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private consecutiveFailures = 0;
  private openedAtMs = 0;
  private probeInFlight = false;

  constructor(private readonly options: BreakerOptions) {
    if (!Number.isInteger(options.failureThreshold) || options.failureThreshold < 1) {
      throw new Error(`failureThreshold must be a whole number ≥ 1, got ${options.failureThreshold}`);
    }
    if (!(options.coolDownMs >= 0)) throw new Error(`coolDownMs must be ≥ 0, got ${options.coolDownMs}`);
  }

  get state(): BreakerState {
    return this.current;
  }

  /** May a request go upstream now? */
  acquire(): BreakerPermit {
    if (this.current === 'closed') return 'pass';
    if (this.current === 'open') {
      if (this.options.clock.nowMs() - this.openedAtMs < this.options.coolDownMs) return 'reject';
      this.transition('half-open');
    }
    if (this.probeInFlight) return 'reject';
    this.probeInFlight = true;
    return 'probe';
  }

  success(): void {
    this.consecutiveFailures = 0;
    this.probeInFlight = false;
    if (this.current !== 'closed') this.transition('closed');
  }

  failure(): void {
    this.consecutiveFailures++;
    this.probeInFlight = false;
    if (this.current === 'half-open') {
      this.open();
    } else if (this.current === 'closed' && this.consecutiveFailures >= this.options.failureThreshold) {
      this.open();
    }
    // Already open: late failures of requests sent before it opened do not delay the probe.
  }

  /** Milliseconds until a probe may go upstream (0 when closed or due). */
  retryInMs(): number {
    if (this.current !== 'open') return 0;
    return Math.max(0, this.openedAtMs + this.options.coolDownMs - this.options.clock.nowMs());
  }

  private open(): void {
    this.openedAtMs = this.options.clock.nowMs();
    this.transition('open');
  }

  private transition(to: BreakerState): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.options.onStateChange?.(from, to);
  }
}
