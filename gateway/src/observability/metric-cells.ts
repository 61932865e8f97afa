import type { Counter, Gauge, LabelValues } from "prom-client";

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
