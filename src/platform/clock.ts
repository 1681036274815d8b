/**
 * The only source of the current time. Everything time-dependent takes a
 * Clock (or a `nowMs` computed from one), so tests can drive time by hand.
 */
export interface Clock {
  /** Wall-clock time, ms since epoch. */
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private currentMs: number) {}
  nowMs(): number {
    return this.currentMs;
  }
  set(ms: number): void {
    this.currentMs = ms;
  }
  advance(ms: number): void {
    this.currentMs += ms;
  }
}
