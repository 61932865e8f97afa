import {
  type Counter,
  type Gauge,
  Histogram,
  type HistogramConfiguration,
  type LabelValues,
  type MetricObject,
  type MetricObjectWithValues,
  type MetricValueWithName,
} from "prom-client";

/** One series' number, kept on the request path as a plain field (a count, or a gauge's level). */
export class Cell<L extends string> {
  value = 0;
  constructor(readonly labels: LabelValues<L>) {}
}

/**
 * The cells of one counter or gauge, handed to prom-client by the metric's `collect()` hook on every
 * scrape: prom-client hashes the label object on every `inc()`, which costs too much per request (see
 * bench/README.md). Every cell's series exists from the first scrape, at 0 or more.
 */
export class ScrapedCells<L extends string> {
  private readonly cells: Cell<L>[] = [];

  add(labels: LabelValues<L>): Cell<L> {
    const cell = new Cell(labels);
    this.cells.push(cell);
    return cell;
  }

  /** For a counter: adds what each cell counted since the last scrape, and starts it again from 0. */
  addTo(counter: Counter<L>): void {
    for (const cell of this.cells) {
      const count = cell.value;
      cell.value = 0;
      // An upstream reporting absurd usage (1e308 tokens) must not make every later scrape throw.
      counter.inc(cell.labels, Number.isFinite(count) ? count : 0);
    }
  }

  /** For a gauge: sets each series to its cell's current value. */
  setOn(gauge: Gauge<L>): void {
    for (const cell of this.cells) gauge.set(cell.labels, cell.value);
  }
}

/** One histogram series' observations, kept on the request path: a count per bucket, the sum and the count. */
export class HistogramCell {
  /** Observations per bucket (not cumulative); the last slot counts those above every bound (+Inf only). */
  private readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    // prom-client throws on a non-finite value; a duration never is one, and a metric must not fail a request.
    if (!Number.isFinite(value)) return;
    let bucket = 0;
    while (bucket < this.bounds.length && value > (this.bounds[bucket] ?? 0)) bucket++;
    this.counts[bucket] = (this.counts[bucket] ?? 0) + 1;
    this.sum += value;
    this.count++;
  }

  /** The observations at or below bound `i`, as the `le` series counts them. */
  cumulative(): number[] {
    let total = 0;
    return this.bounds.map((_, i) => (total += this.counts[i] ?? 0));
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/**
 * A prom-client Histogram whose series live in HistogramCells: `observe` on a cell is a bucket search and
 * three additions, where prom-client's own `observe(labels, value)` validates and hashes the label object
 * every time (two per request cost about 5% of the gateway's CPU per request, bench/README.md). The
 * exposition is prom-client's, built from the cells at scrape time; `get()` also serves the cluster's
 * aggregation. Series exist from their cell's creation, at 0.
 */
export class CellHistogram<L extends string> extends Histogram<L> {
  private readonly bounds: readonly number[];
  /** Undefined only inside prom-client's constructor, which calls reset() before this class's fields exist. */
  private readonly series: { readonly labels: LabelValues<L>; readonly cell: HistogramCell }[] | undefined = [];

  constructor(config: HistogramConfiguration<L> & { readonly buckets: readonly number[] }) {
    super({ ...config, buckets: [...config.buckets] });
    this.bounds = [...config.buckets].sort((a, b) => a - b);
  }

  /** The cell of one label set; call once per label set and keep it. */
  cell(labels: LabelValues<L>): HistogramCell {
    const cell = new HistogramCell(this.bounds);
    this.series?.push({ labels, cell });
    return cell;
  }

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<L>>> {
    return Promise.resolve(this.snapshot());
  }

  /** prom-client's registry calls this instead of get() when a metric has it (its Histogram does). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<L>>> {
    return Promise.resolve(this.snapshot());
  }

  override reset(): void {
    for (const { cell } of this.series ?? []) cell.reset();
  }

  private snapshot(): MetricObjectWithValues<MetricValueWithName<L>> {
    // Fields every prom-client metric has at run time, left out of its typings for Histogram.
    const { name, help, type, aggregator, collect } = this as unknown as MetricObject;
    const values: MetricValueWithName<L>[] = [];
    const bucket = `${name}_bucket`;
    for (const { labels, cell } of this.series ?? []) {
      const cumulative = cell.cumulative();
      this.bounds.forEach((bound, i) =>
        values.push({ labels: { le: bound, ...labels }, value: cumulative[i] ?? 0, metricName: bucket }),
      );
      values.push(
        { labels: { le: "+Inf", ...labels }, value: cell.count, metricName: bucket },
        { labels: { ...labels }, value: cell.sum, metricName: `${name}_sum` },
        { labels: { ...labels }, value: cell.count, metricName: `${name}_count` },
      );
    }
    return { name, help, type, aggregator, collect, values };
  }
}
