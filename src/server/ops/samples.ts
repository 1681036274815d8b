/**
 * A small in-memory history for the status page's chart: a fixed-size ring
 * of samples (seats in use, seat capacity, validate requests in the interval),
 * taken every `intervalMs`. Lost on restart by design — it is for a person
 * glancing at the page, Prometheus keeps the real history.
 */

export interface Sample {
  atMs: number;
  seatsInUse: number;
  seatCapacity: number;
  /** Validate requests answered since the previous sample. */
  validations: number;
}

export class SampleRing {
  private readonly buffer: Sample[] = [];
  private next = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`ring capacity must be a positive integer, got ${capacity}`);
  }

  push(sample: Sample): void {
    if (this.buffer.length < this.capacity) this.buffer.push(sample);
    else this.buffer[this.next] = sample;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Oldest first. */
  list(): Sample[] {
    if (this.buffer.length < this.capacity) return [...this.buffer];
    return [...this.buffer.slice(this.next), ...this.buffer.slice(0, this.next)];
  }
}

const FIRST_SAMPLE_DELAY_MS = 2000;

export interface Sampler {
  readonly ring: SampleRing;
  /** Takes one sample now (the timer calls this; tests call it by hand). Skipped while one is being taken. */
  sample(): Promise<void>;
  start(intervalMs: number): void;
  stop(): void;
}

/** `read` returns the current seat figures and the running count of validate requests. */
export function createSampler(
  ring: SampleRing,
  nowMs: () => number,
  read: () => Promise<{ seatsInUse: number; seatCapacity: number; validateRequests: number }>,
  onError: (error: Error) => void = () => {},
): Sampler {
  let timer: ReturnType<typeof setInterval> | undefined;
  let firstTimer: ReturnType<typeof setTimeout> | undefined;
  let lastCount: number | undefined;
  let busy = false;
  const sample = async () => {
    if (busy) return;
    busy = true;
    try {
      const atMs = nowMs();
      const figures = await read();
      const validations = lastCount === undefined ? 0 : figures.validateRequests - lastCount;
      lastCount = figures.validateRequests;
      ring.push({ atMs, seatsInUse: figures.seatsInUse, seatCapacity: figures.seatCapacity, validations });
    } catch (error) {
      onError(error as Error);
    } finally {
      busy = false;
    }
  };
  return {
    ring,
    sample,
    start(intervalMs) {
      if (timer !== undefined) return;
      // The first sample (which scans the definitions once) waits a moment, so that it does
      // not compete with the first requests after a start.
      const first = setTimeout(() => void sample(), Math.min(intervalMs, FIRST_SAMPLE_DELAY_MS));
      timer = setInterval(() => void sample(), intervalMs);
      // The sampler alone must not keep the process alive.
      for (const t of [first, timer]) (t as { unref?: () => void }).unref?.();
      firstTimer = first;
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      if (firstTimer !== undefined) clearTimeout(firstTimer);
      timer = undefined;
      firstTimer = undefined;
    },
  };
}
