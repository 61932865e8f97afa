import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { CellHistogram, ScrapedCells } from "../../../gateway/src/observability/metric-cells";

async function values(metric: Counter<"k"> | Gauge<"k">): Promise<[string | number | undefined, number][]> {
  return (await metric.get()).values.map((value) => [value.labels.k, value.value]);
}

describe("ScrapedCells", () => {
  it("adds each cell's count to a counter and starts it again from 0", async () => {
    const cells = new ScrapedCells<"k">();
    const counter = new Counter({ name: "c", help: "c", labelNames: ["k"] as const, registers: [new Registry()] });
    const a = cells.add({ k: "a" });
    cells.add({ k: "b" });
    a.value += 3;
    cells.addTo(counter);
    expect(a.value).toBe(0);
    a.value += 2;
    cells.addTo(counter);
    expect(await values(counter)).toEqual([
      ["a", 5],
      ["b", 0],
    ]);
  });

  it("adds nothing for a count that is not finite", async () => {
    const cells = new ScrapedCells<"k">();
    const counter = new Counter({ name: "c", help: "c", labelNames: ["k"] as const, registers: [new Registry()] });
    cells.add({ k: "a" }).value = Number.POSITIVE_INFINITY;
    cells.addTo(counter);
    expect(await values(counter)).toEqual([["a", 0]]);
  });

  it("sets a gauge to each cell's current level, without resetting it", async () => {
    const cells = new ScrapedCells<"k">();
    const gauge = new Gauge({ name: "g", help: "g", labelNames: ["k"] as const, registers: [new Registry()] });
    const a = cells.add({ k: "a" });
    a.value = 4;
    cells.setOn(gauge);
    expect(a.value).toBe(4);
    expect(await values(gauge)).toEqual([["a", 4]]);
  });
});

/** A value's `metricName`: present on a histogram's values, absent from prom-client's general JSON type. */
function nameOf(value: object): unknown {
  return "metricName" in value ? value.metricName : undefined;
}

describe("CellHistogram", () => {
  const buckets = [0.01, 0.1, 1, 10];
  const observed: [string, number][] = [
    ["a", 0.005],
    ["a", 0.01],
    ["a", 0.5],
    ["a", 42],
    ["b", 0.1],
    ["b", 0.2],
  ];

  /** A prom-client Histogram and a CellHistogram, each alone in a registry, fed the same observations. */
  function both(): { reference: Registry; cells: Registry; cellHistogram: CellHistogram<"k"> } {
    const reference = new Registry();
    const histogram = new Histogram({
      name: "h",
      help: "h",
      labelNames: ["k"] as const,
      buckets,
      registers: [reference],
    });
    const cells = new Registry();
    const cellHistogram = new CellHistogram({
      name: "h",
      help: "h",
      labelNames: ["k"] as const,
      buckets,
      registers: [cells],
    });
    const byKey = { a: cellHistogram.cell({ k: "a" }), b: cellHistogram.cell({ k: "b" }) };
    for (const [k, value] of observed) {
      histogram.observe({ k }, value);
      byKey[k === "a" ? "a" : "b"].observe(value);
    }
    return { reference, cells, cellHistogram };
  }

  it("exposes exactly what prom-client's Histogram does for the same observations", async () => {
    const { reference, cells } = both();
    expect(await cells.metrics()).toBe(await reference.metrics());
    // The JSON the cluster's primary sums over workers: the same series (prom-client adds empty exemplars).
    const series = async (registry: Registry) =>
      (await registry.getMetricsAsJSON()).map(({ name, type, aggregator, values }) => ({
        name,
        type,
        aggregator,
        values: values.map((value) => ({ labels: value.labels, value: value.value, metricName: nameOf(value) })),
      }));
    expect(await series(cells)).toEqual(await series(reference));
  });

  it("starts every series at 0 when reset, and ignores a value that is not finite", async () => {
    const { cells, cellHistogram } = both();
    cellHistogram.reset();
    const series = cellHistogram.cell({ k: "c" });
    series.observe(Number.NaN);
    series.observe(Number.POSITIVE_INFINITY);
    const counts = (await cells.getMetricsAsJSON())[0]?.values.filter((value) => nameOf(value) === "h_count");
    expect(counts?.map((value) => [value.labels.k, value.value])).toEqual([
      ["a", 0],
      ["b", 0],
      ["c", 0],
    ]);
  });
});
