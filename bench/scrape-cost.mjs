// What one /metrics scrape costs per configured backend: builds the metrics the gateway builds for N echo
// backends (dist/, so `npx tsc -p tsconfig.build.json` first) and times registry.metrics() in-process.
// Usage: node bench/scrape-cost.mjs [N ...]   (default 100 1000 10000). Nothing here asserts a time.
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const require = createRequire(import.meta.url);
const { Registry } = require("prom-client");
const { createMetrics } = require("../dist/gateway/src/observability/metrics.js");
const { createAccessMetrics } = require("../dist/gateway/src/access/metrics.js");

const ROUNDS = 5;
const sizes = process.argv.slice(2).map(Number);
for (const n of sizes.length > 0 ? sizes : [100, 1000, 10000]) {
  const names = Array.from({ length: n }, (_, i) => `backend-${i}`);
  const built = performance.now();
  const metrics = createMetrics(new Registry(), names, new Map(names.map((name) => [name, []])));
  createAccessMetrics(metrics.registry, [], () => 0);
  const buildMs = performance.now() - built;
  // The first scrape also hands the request path's cells over; time the steady state after it.
  let text = await metrics.registry.metrics();
  const times = [];
  const cpu = [];
  for (let round = 0; round < ROUNDS; round++) {
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    text = await metrics.registry.metrics();
    const used = process.cpuUsage(cpuStarted);
    times.push(performance.now() - started);
    // CPU time moves less than wall time on a shared machine.
    cpu.push((used.user + used.system) / 1000);
  }
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)];
  const ms = median(times);
  const cpuMs = median(cpu);
  const bytes = Buffer.byteLength(text);
  const series = text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).length;
  console.log(
    `N=${n}: scrape ${ms.toFixed(1)} ms wall, ${cpuMs.toFixed(1)} ms CPU (medians of ${ROUNDS}), ${(bytes / 1e6).toFixed(2)} MB, ${series} samples; ` +
      `per backend ${((ms * 1000) / n).toFixed(1)} µs, ${Math.round(bytes / n)} bytes; createMetrics ${buildMs.toFixed(0)} ms`,
  );
}
