/**
 * The Prometheus text exposition format (version 0.0.4), written by hand:
 * counters and histograms that live in memory, and a writer for metric
 * families whose samples are computed at scrape time. Small enough that a
 * client library would add more than it saves.
 *
 * Format rules kept here: one `# HELP` and one `# TYPE` line per family,
 * label values escaped (\\, \", \n), histogram buckets cumulative with a
 * final `le="+Inf"` equal to `_count`, numbers in Go's float syntax
 * (`+Inf`, `-Inf`, `NaN`).
 */

export type Labels = Readonly<Record<string, string>>;
export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface Sample {
  /** Appended to the family name (`_bucket`, `_sum`, `_count`); empty for plain samples. */
  suffix?: string;
  labels?: Labels;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function formatLabels(labels: Labels | undefined): string {
  if (labels === undefined) return '';
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')}}`;
}

export function renderFamilies(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    if (!NAME.test(family.name)) throw new Error(`invalid metric name ${family.name}`);
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      for (const name of Object.keys(sample.labels ?? {})) {
        if (!LABEL_NAME.test(name)) throw new Error(`invalid label name ${name} on ${family.name}`);
      }
      lines.push(`${family.name}${sample.suffix ?? ''}${formatLabels(sample.labels)} ${formatNumber(sample.value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** One series of a Counter: its labels and its count. */
export interface CounterSeries {
  readonly labels: Labels;
  value: number;
}

interface SeriesNode {
  next: Map<string, SeriesNode>;
  entry?: CounterSeries;
}

/** A monotonically increasing counter per label set. */
export class Counter {
  // Series found by walking their label values (label order is fixed by the caller): counted on
  // every validate (several times), where building a key string per call cost more than the rest.
  private readonly root: SeriesNode = { next: new Map() };
  private readonly series: CounterSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    this.seriesOf(labels).value += by;
  }

  /**
   * The series of `labels`, created at 0 if new: a caller that counts the same label set again
   * and again keeps it and adds to `value` itself (no label walk per increment).
   */
  seriesOf(labels: Labels): CounterSeries {
    let node = this.root;
    for (const name in labels) {
      const value = labels[name]!;
      let next = node.next.get(value);
      if (next === undefined) node.next.set(value, (next = { next: new Map() }));
      node = next;
    }
    if (node.entry === undefined) this.series.push((node.entry = { labels: { ...labels }, value: 0 }));
    return node.entry;
  }

  total(): number {
    let sum = 0;
    for (const entry of this.series) sum += entry.value;
    return sum;
  }

  family(): MetricFamily {
    return {
      name: this.name,
      help: this.help,
      type: 'counter',
      samples: this.series.map(({ labels, value }) => ({ labels, value })),
    };
  }
}

/** A histogram with fixed upper bounds (seconds); one observe is a short linear scan. */
export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[],
  ) {
    this.counts = bounds.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count += 1;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]!) {
        this.counts[i]! += 1;
        return;
      }
    }
  }

  family(): MetricFamily {
    const samples: Sample[] = [];
    let cumulative = 0;
    this.bounds.forEach((bound, i) => {
      cumulative += this.counts[i]!;
      samples.push({ suffix: '_bucket', labels: { le: formatNumber(bound) }, value: cumulative });
    });
    samples.push({ suffix: '_bucket', labels: { le: '+Inf' }, value: this.count });
    samples.push({ suffix: '_sum', value: this.sum });
    samples.push({ suffix: '_count', value: this.count });
    return { name: this.name, help: this.help, type: 'histogram', samples };
  }
}

export function gauge(name: string, help: string, samples: Sample[]): MetricFamily {
  return { name, help, type: 'gauge', samples };
}

/** A counter family from values kept elsewhere (the Counter class keeps its own). */
export function counter(name: string, help: string, samples: Sample[]): MetricFamily {
  return { name, help, type: 'counter', samples };
}
