import { AggregatorRegistry, type MetricType } from "prom-client";

/**
 * The primary's side of the summed `/metrics` under WORKERS > 1: the last snapshot of each live worker's
 * registry, and one "retired" total of the counters and histograms of every worker that died. The scrape is
 * the two combined, so a summed counter never goes backwards while the primary lives: a worker's death would
 * otherwise look like a counter reset to Prometheus (a false spike in rate()) and lose its counts.
 */

/** The primary asks a worker for its registry; the worker answers with a SnapshotReply. */
export const SNAPSHOT_REQUEST = "gateway:snapshot";
export const SNAPSHOT_REPLY = "gateway:snapshot-reply";

export interface SnapshotRequest {
  readonly type: typeof SNAPSHOT_REQUEST;
}

export interface SnapshotReply {
  readonly type: typeof SNAPSHOT_REPLY;
  /** Absent when the worker could not collect its metrics. */
  readonly metrics?: Snapshot;
}

/** One sample as `Registry.getMetricsAsJSON()` gives it; histogram samples name their `_bucket`/`_sum`/`_count`. */
export interface SampleJson {
  readonly value: number;
  readonly labels: Readonly<Partial<Record<string, string | number>>>;
  readonly metricName?: string;
}

/** One metric as `Registry.getMetricsAsJSON()` gives it (and as it arrives over IPC, without its functions). */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  /** "counter", "gauge", "histogram" or "summary" at run time, whatever prom-client's typings say. */
  readonly type: string | MetricType;
  readonly aggregator: string;
  readonly values: readonly SampleJson[];
}

/** A whole registry at one moment. */
export type Snapshot = readonly MetricJson[];

/**
 * Metric types whose values only grow within a process, so a dead worker's last values stay part of the
 * sum. Its gauges (in flight, backend up, memory) described a process that is gone, and are dropped.
 */
const CUMULATIVE_TYPES: ReadonlySet<string> = new Set(["counter", "histogram"]);

/** The series' identity within its metric: sample name and labels, whatever order the labels came in. */
function sampleKey(sample: SampleJson): string {
  const labels = Object.entries(sample.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([sample.metricName ?? "", labels]);
}

/**
 * `retired` plus the counters and histograms of `last`, a dead worker's last snapshot, added series by
 * series. One merged snapshot, however many workers have died, so a crash loop does not grow memory.
 */
export function retire(retired: Snapshot, last: Snapshot): Snapshot {
  const merged = new Map<string, { metric: MetricJson; samples: Map<string, SampleJson> }>();
  for (const metric of [...retired, ...last]) {
    if (!CUMULATIVE_TYPES.has(String(metric.type))) continue;
    let entry = merged.get(metric.name);
    if (entry === undefined) {
      entry = { metric, samples: new Map() };
      merged.set(metric.name, entry);
    }
    for (const sample of metric.values) {
      const key = sampleKey(sample);
      const previous = entry.samples.get(key);
      entry.samples.set(key, previous === undefined ? sample : { ...sample, value: previous.value + sample.value });
    }
  }
  return [...merged.values()].map(({ metric, samples }) => ({
    name: metric.name,
    help: metric.help,
    type: metric.type,
    aggregator: metric.aggregator,
    values: [...samples.values()],
  }));
}

/**
 * The exposition text of `snapshots` combined, each metric by its own aggregator (sum by default; "min" for
 * gateway_backend_up, "first" for gateway_build_info). prom-client takes a metric's aggregator from the
 * first snapshot that has it, so a live worker's (its own definition) wins over the retired total's.
 */
export function exposition(snapshots: readonly Snapshot[]): Promise<string> {
  return AggregatorRegistry.aggregate([...snapshots]).metrics();
}

/** What the primary needs of a worker; node:cluster's Worker has all of it. */
export interface SnapshotSource {
  readonly id: number;
  isConnected(): boolean;
  send(message: SnapshotRequest): boolean;
}

interface Live {
  readonly source: SnapshotSource;
  snapshot: Snapshot;
  /** The question in flight, if any: at most one per worker, so its answers arrive in order. */
  asking?: { readonly answered: Promise<void>; settle(): void };
}

/**
 * The primary's bookkeeping: asks workers for snapshots, keeps the last one of each, retires a worker's on
 * its death. The owner wires node:cluster to it: `join` when a worker listens (so it can answer),
 * `answered` on its SnapshotReply, `exited` on its exit.
 */
export class ClusterMetrics {
  private readonly live = new Map<number, Live>();
  private retired: Snapshot = [];

  /** `timeoutMs`: how long a question waits for a worker before the worker's last snapshot is used. */
  constructor(private readonly timeoutMs: number) {}

  join(source: SnapshotSource): void {
    this.live.set(source.id, { source, snapshot: [] });
  }

  /** A worker's answer (undefined: it failed to collect). One from a worker already retired is ignored. */
  answered(id: number, snapshot: Snapshot | undefined): void {
    const worker = this.live.get(id);
    if (worker === undefined) return;
    if (snapshot !== undefined) worker.snapshot = snapshot;
    worker.asking?.settle();
  }

  /** A worker died: its counters and histograms stay in the sum, as they were when last seen. */
  exited(id: number): void {
    const worker = this.live.get(id);
    if (worker === undefined) return;
    this.live.delete(id);
    this.retired = retire(this.retired, worker.snapshot);
    worker.asking?.settle();
  }

  /**
   * Asks every live worker for its snapshot; resolves once each has answered, died or timed out. Never
   * rejects: a worker that does not answer keeps its previous snapshot.
   */
  refresh(): Promise<void> {
    return Promise.all([...this.live.values()].map((worker) => this.ask(worker))).then(() => undefined);
  }

  /** The summed exposition after a refresh: every live worker's latest snapshot, plus the retired total. */
  async scrape(): Promise<string> {
    await this.refresh();
    return exposition([...[...this.live.values()].map((worker) => worker.snapshot), this.retired]);
  }

  private ask(worker: Live): Promise<void> {
    if (worker.asking !== undefined) return worker.asking.answered;
    if (!worker.source.isConnected()) return Promise.resolve();
    let settle = (): void => undefined;
    const answered = new Promise<void>((resolve) => {
      // Unref'd: a question left open must not keep a stopping primary alive.
      const timer = setTimeout(() => settle(), this.timeoutMs).unref();
      settle = () => {
        clearTimeout(timer);
        worker.asking = undefined;
        resolve();
      };
    });
    worker.asking = { answered, settle };
    const request: SnapshotRequest = { type: SNAPSHOT_REQUEST };
    try {
      worker.source.send(request);
    } catch {
      settle(); // its channel closed between isConnected() and send(): the exit event follows
    }
    return answered;
  }
}
