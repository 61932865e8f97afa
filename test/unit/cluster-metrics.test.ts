import { Counter, Gauge, Histogram, Registry } from "prom-client";
import {
  ClusterMetrics,
  exposition,
  retire,
  SNAPSHOT_REQUEST,
  type Snapshot,
  type SnapshotRequest,
  type SnapshotSource,
} from "../../gateway/src/cluster-metrics";
import { parseExposition, select, total } from "../support/exposition";

/** A worker's registry as the gateway's has them: a counter, a histogram, a summed gauge, a "min" and a "first" gauge. */
function workerRegistry() {
  const registry = new Registry();
  const registers = [registry];
  return {
    registry,
    requests: new Counter({ name: "requests_total", help: "h", labelNames: ["code"] as const, registers }),
    duration: new Histogram({ name: "duration_seconds", help: "h", buckets: [0.1, 1], registers }),
    inFlight: new Gauge({ name: "in_flight", help: "h", registers }),
    up: new Gauge({ name: "up", help: "h", aggregator: "min", registers }),
    build: new Gauge({ name: "build_info", help: "h", aggregator: "first", registers }),
  };
}

async function snapshotOf(worker: ReturnType<typeof workerRegistry>): Promise<Snapshot> {
  // Over IPC the snapshot is JSON: no functions, no shared objects with the worker.
  return JSON.parse(JSON.stringify(await worker.registry.getMetricsAsJSON())) as Snapshot;
}

function busyWorker(requests: number, code = "200") {
  const worker = workerRegistry();
  worker.requests.inc({ code }, requests);
  for (let i = 0; i < requests; i++) worker.duration.observe(0.5);
  worker.inFlight.set(3);
  worker.up.set(1);
  worker.build.set(1);
  return worker;
}

describe("retire", () => {
  it("keeps a dead worker's counters and histograms, and drops its gauges", async () => {
    const retired = retire([], await snapshotOf(busyWorker(5)));
    expect(retired.map((metric) => metric.name).sort()).toEqual(["duration_seconds", "requests_total"]);
    const samples = parseExposition(await exposition([retired]));
    expect(total(samples, "requests_total", { code: "200" })).toBe(5);
    expect(total(samples, "duration_seconds_count")).toBe(5);
    expect(total(samples, "duration_seconds_bucket", { le: "1" })).toBe(5);
  });

  it("adds each death into one total, series by series", async () => {
    const first = await snapshotOf(busyWorker(5));
    const second = await snapshotOf(busyWorker(2, "502"));
    const third: Snapshot = [
      {
        name: "requests_total",
        help: "h",
        type: "counter",
        aggregator: "sum",
        values: [{ labels: { code: "200" }, value: 1 }],
      },
    ];
    const retired = retire(retire(retire([], first), second), third);
    expect(retired.filter((metric) => metric.name === "requests_total")).toHaveLength(1);
    const samples = parseExposition(await exposition([retired]));
    expect(total(samples, "requests_total", { code: "200" })).toBe(6);
    expect(total(samples, "requests_total", { code: "502" })).toBe(2);
    expect(total(samples, "duration_seconds_count")).toBe(7);
    // One series per label set, not one per death.
    expect(select(samples, "duration_seconds_count")).toHaveLength(1);
  });

  it("takes two label objects with the same pairs in another order for the same series", () => {
    const counter = (labels: Record<string, string>, value: number): Snapshot => [
      { name: "c_total", help: "h", type: "counter", aggregator: "sum", values: [{ labels, value }] },
    ];
    const retired = retire(retire([], counter({ a: "1", b: "2" }, 1)), counter({ b: "2", a: "1" }, 2));
    expect(retired[0]?.values).toEqual([{ labels: { a: "1", b: "2" }, value: 3 }]);
  });
});

describe("exposition of live snapshots and the retired total", () => {
  it("sums counters with the dead worker's, and takes gauges from the live workers only", async () => {
    const retired = retire([], await snapshotOf(busyWorker(5)));
    const live = [await snapshotOf(busyWorker(1)), await snapshotOf(busyWorker(2))];
    const samples = parseExposition(await exposition([...live, retired]));
    expect(total(samples, "requests_total")).toBe(8);
    expect(total(samples, "duration_seconds_sum")).toBeCloseTo(4);
    expect(total(samples, "in_flight")).toBe(6);
    expect(total(samples, "up")).toBe(1);
    expect(total(samples, "build_info")).toBe(1);
  });
});

/** A worker as the primary sees it: `answer()` replies to the question it was last sent. */
class FakeWorker implements SnapshotSource {
  readonly asked: SnapshotRequest[] = [];
  connected = true;
  constructor(
    readonly id: number,
    private readonly metrics: ClusterMetrics,
    readonly registry = busyWorker(0),
  ) {}
  isConnected(): boolean {
    return this.connected;
  }
  send(message: SnapshotRequest): boolean {
    this.asked.push(message);
    return true;
  }
  async answer(): Promise<void> {
    this.metrics.answered(this.id, await snapshotOf(this.registry));
  }
}

/** Lets a scrape send its questions before the test plays the workers' part. */
function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe("ClusterMetrics", () => {
  async function requestsAfter(scrape: Promise<string>): Promise<number> {
    return total(parseExposition(await scrape), "requests_total");
  }

  it("asks every worker and sums their answers", async () => {
    const metrics = new ClusterMetrics(60_000);
    const workers = [new FakeWorker(1, metrics), new FakeWorker(2, metrics)];
    for (const worker of workers) metrics.join(worker);
    workers[0]?.registry.requests.inc({ code: "200" }, 3);
    workers[1]?.registry.requests.inc({ code: "200" }, 4);
    const scrape = metrics.scrape();
    await tick();
    expect(workers.map((worker) => worker.asked)).toEqual([[{ type: SNAPSHOT_REQUEST }], [{ type: SNAPSHOT_REQUEST }]]);
    for (const worker of workers) await worker.answer();
    expect(await requestsAfter(scrape)).toBe(7);
  });

  it("never goes backwards when a worker dies, even mid-scrape, and does not wait on the dead one", async () => {
    const metrics = new ClusterMetrics(60_000);
    const [survivor, victim] = [new FakeWorker(1, metrics), new FakeWorker(2, metrics)];
    metrics.join(survivor);
    metrics.join(victim);
    survivor.registry.requests.inc({ code: "200" }, 3);
    victim.registry.requests.inc({ code: "200" }, 4);
    const first = metrics.scrape();
    await tick();
    await survivor.answer();
    await victim.answer();
    expect(await requestsAfter(first)).toBe(7);

    const second = metrics.scrape();
    await tick();
    await survivor.answer();
    metrics.exited(victim.id); // no answer from it: the scrape goes on with its last snapshot, retired
    expect(await requestsAfter(second)).toBe(7);
    // A late answer from the dead worker is not counted a second time.
    await victim.answer();
    const replacement = new FakeWorker(3, metrics);
    metrics.join(replacement);
    replacement.registry.requests.inc({ code: "200" });
    const third = metrics.scrape();
    await tick();
    await survivor.answer();
    await replacement.answer();
    const samples = parseExposition(await third);
    expect(total(samples, "requests_total")).toBe(8);
    expect(total(samples, "build_info")).toBe(1);
    // 3 from each live worker; the dead one's 3 went with it.
    expect(total(samples, "in_flight")).toBe(6);
  });

  it("answers with a silent worker's last snapshot once its time is up", async () => {
    const metrics = new ClusterMetrics(20);
    const [talker, silent] = [new FakeWorker(1, metrics), new FakeWorker(2, metrics)];
    metrics.join(talker);
    metrics.join(silent);
    silent.registry.requests.inc({ code: "200" }, 5);
    const first = metrics.scrape();
    await tick();
    await talker.answer();
    await silent.answer();
    expect(await requestsAfter(first)).toBe(5);
    const second = metrics.scrape();
    await tick();
    await talker.answer();
    expect(await requestsAfter(second)).toBe(5);
  });

  it("asks a worker once while a question is in flight, and not at all once its channel closed", async () => {
    const metrics = new ClusterMetrics(60_000);
    const worker = new FakeWorker(1, metrics);
    const closed = new FakeWorker(2, metrics);
    closed.connected = false;
    metrics.join(worker);
    metrics.join(closed);
    const scrapes = [metrics.scrape(), metrics.scrape(), metrics.refresh()];
    await tick();
    expect(worker.asked).toHaveLength(1);
    expect(closed.asked).toHaveLength(0);
    await worker.answer();
    await Promise.all(scrapes);
  });
});
