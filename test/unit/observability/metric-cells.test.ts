import { Counter, Gauge, Registry } from "prom-client";
import { ScrapedCells } from "../../../gateway/src/observability/metric-cells";

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
