/**
 * The only source of the current time. Everything time-dependent takes a
 * Clock (or a `nowMs` computed from one), so tests can drive time by hand.
 */
export interface Clock {
  /** Wall-clock time, ms since epoch. */
  nowMs(): number;
  /**
   * Time that only ever moves forward, in ms from an arbitrary origin: what setting the wall clock
   * does not change (service/trusted-clock.ts measures time passing with it). Optional for fakes.
   */
  monotonicMs?(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now(), monotonicMs: () => performance.now() };

/**
 * A clock tests move by hand: `advance` is time passing (wall and monotonic clock move together),
 * `set` a wall clock set to another time (the monotonic clock does not move), and a negative
 * `advance` a wall clock slewed back.
 */
export class ManualClock implements Clock {
  private monotonic = 0;
  constructor(private currentMs: number) {}
  nowMs(): number {
    return this.currentMs;
  }
  monotonicMs(): number {
    return this.monotonic;
  }
  set(ms: number): void {
    this.currentMs = ms;
  }
  advance(ms: number): void {
    this.currentMs += ms;
    if (ms > 0) this.monotonic += ms;
  }
}
