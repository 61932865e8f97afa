// The benchmark behind `make bench`: what the gateway adds to every request, as ratios against a bare
// node:http upstream measured in the same run. Prints the tables and writes them, with the machine, the
// versions and the exact command, to bench/RESULTS.md. See bench/README.md for what each number means.
//
//   node bench/run.mjs [--rounds=3] [--seconds=3] [--latency-seconds=8] [--stream-rounds=3] [--quick]
//                      [--out=bench/RESULTS.md] [--gateway-node-options=...]
//
// Needs the production build (`npm run build`; `make bench` does it). Bounded: about 8 minutes by default.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join, relative } from "node:path";
import {
  BENCH_DIR,
  BODY,
  GATEWAY_ARGS,
  GATEWAY_MAIN,
  GATEWAY_NODE_FLAGS,
  HOST,
  PATH,
  ROOT,
  STREAM_BODY,
  cpuPlan,
  describePlan,
  gatewayEnv,
  git,
  loadgen,
  median,
  memoryMiB,
  processTree,
  repin,
  sleep,
  startServer,
  stopAll,
  tempDir,
  throughput,
  writeGatewayConfig,
} from "./lib.mjs";
import { CHUNKS_PER_STREAM, STREAMS_BODY, measureLevel, parseLevel, streamServers } from "./streams.mjs";
import { LIMITS_STORE_HEADER, limitsStoreRows, measureLimitsStore } from "./limits-store.mjs";

const options = {
  rounds: 3,
  seconds: 3,
  warmup: 1,
  latencySeconds: 8,
  connections: 32,
  out: join(BENCH_DIR, "RESULTS.md"),
  gatewayNodeOptions: "",
  streamRounds: 3,
  quick: false,
};
for (const arg of process.argv.slice(2)) {
  const match = /^--([\w-]+)(?:=(.*))?$/.exec(arg);
  if (match === null) throw new Error(`unknown argument ${arg}`);
  const [, key, value] = match;
  if (key === "quick")
    Object.assign(options, { rounds: 1, seconds: 1, warmup: 0.5, latencySeconds: 2, streamRounds: 1, quick: true });
  else if (key === "stream-rounds") options.streamRounds = Number(value);
  else if (key === "out") options.out = value;
  else if (key === "latency-seconds") options.latencySeconds = Number(value);
  // For trying V8 flags on the gateway alone, e.g. --gateway-node-options=--max-semi-space-size=16.
  else if (key === "gateway-node-options") options.gatewayNodeOptions = value ?? "";
  else if (key in options) options[key] = Number(value);
  else throw new Error(`unknown option --${key}`);
}
if (!existsSync(GATEWAY_MAIN)) {
  process.stderr.write(`bench: ${relative(ROOT, GATEWAY_MAIN)} is missing: run \`npm run build\` (make bench does)\n`);
  process.exit(1);
}

const started = Date.now();
const loadBefore = loadavg();
const plan = cpuPlan();
const say = (text) => process.stdout.write(`${text}\n`);
say(`bench: ${describePlan(plan)}`);

const dir = tempDir();
const gatewayExtra = options.gatewayNodeOptions === "" ? {} : { NODE_OPTIONS: options.gatewayNodeOptions };
const echoConfig = writeGatewayConfig(dir, "echo", ["type: echo"]);

// ---- servers ------------------------------------------------------------------------------------------
const upstream = await startServer({ name: "upstream", cpus: plan.behind, args: ["bench/upstream.mjs"] });
const httpConfig = writeGatewayConfig(dir, "http", ["type: http", `url: ${upstream.url}`]);
// Three identical targets (the same upstream three times, each with its own pool): what balancing costs.
const poolConfig = writeGatewayConfig(dir, "pool", [
  "type: http",
  "targets:",
  ...["a", "b", "c"].map((name) => `  - {url: "${upstream.url}", name: ${name}}`),
]);
const gatewayLog = (name) => join(dir, `${name}.log`);
const servers = {
  upstream,
  proxy: await startServer({
    name: "proxy",
    cpus: plan.server,
    args: ["bench/proxy.mjs"],
    env: { UPSTREAM: upstream.url },
  }),
  expressUndici: await startServer({
    name: "expressUndici",
    cpus: plan.server,
    args: ["bench/express-undici.mjs"],
    env: { UPSTREAM: upstream.url },
  }),
  echo: await startServer({
    name: "echo",
    cpus: plan.server,
    args: GATEWAY_ARGS,
    env: gatewayEnv(echoConfig, gatewayExtra),
    logFile: gatewayLog("echo"),
  }),
  http: await startServer({
    name: "http",
    cpus: plan.server,
    args: GATEWAY_ARGS,
    env: gatewayEnv(httpConfig, gatewayExtra),
    logFile: gatewayLog("http"),
  }),
  pool: await startServer({
    name: "pool",
    cpus: plan.server,
    args: GATEWAY_ARGS,
    env: gatewayEnv(poolConfig, gatewayExtra),
    logFile: gatewayLog("pool"),
  }),
  echo2: await startServer({
    name: "echo2",
    cpus: plan.serverPair,
    args: GATEWAY_ARGS,
    env: gatewayEnv(echoConfig, { ...gatewayExtra, WORKERS: "2" }),
    logFile: gatewayLog("echo2"),
  }),
  http2: await startServer({
    name: "http2",
    cpus: plan.serverPair,
    args: GATEWAY_ARGS,
    env: gatewayEnv(httpConfig, { ...gatewayExtra, WORKERS: "2" }),
    logFile: gatewayLog("http2"),
  }),
};
// A cluster answers once its first worker listens; give the second one time to join before measuring.
await sleep(1500);
const LABELS = {
  upstream: "bare node:http upstream (baseline)",
  proxy: "bare node:http proxy (floor of a Node hop)",
  expressUndici: "Express 5 + undici Pool, JSON round trip, nothing else",
  echo: "gateway, echo backend",
  http: "gateway, http backend",
  pool: "gateway, http backend over 3 identical targets (least_outstanding)",
  echo2: "gateway, echo backend, WORKERS=2",
  http2: "gateway, http backend, WORKERS=2",
};
const isCluster = (name) => name === "echo2" || name === "http2";
/** SIGSTOP or SIGCONT for a server and, for a cluster, its workers. */
const signal = (server, name) => {
  for (const pid of processTree(server.pid)) process.kill(pid, name);
};

/**
 * Puts `name` on the server core(s), and the upstream on its own unless the upstream is what is measured.
 * Every other server is stopped (SIGSTOP) meanwhile: an idle neighbour on the same core still runs its GC's
 * memory reducer after its own run, and those pauses landed in whichever server was measured next (the http
 * path's p99 at 1000 req/s read 12-56 ms over the upstream's with its neighbours running, 3-4 ms without).
 */
function place(name) {
  for (const [other, server] of Object.entries(servers))
    signal(server, other === name || (other === "upstream" && name !== "upstream") ? "SIGCONT" : "SIGSTOP");
  const server = servers[name];
  repin(processTree(server.pid), isCluster(name) ? plan.serverPair : plan.server);
  if (name !== "upstream") repin([upstream.pid], plan.behind);
}

// ---- memory at rest ----------------------------------------------------------------------------------
const idle = {};
for (const [name, server] of Object.entries(servers)) {
  place(name);
  // A few requests first, so that what is measured is a server that has served, not one still loading.
  await loadgen(plan, {
    mode: "closed",
    host: HOST,
    port: server.port,
    path: PATH,
    body: BODY,
    connections: 1,
    warmupSeconds: 0,
    seconds: 0.3,
  });
}
await sleep(500);
for (const [name, server] of Object.entries(servers)) idle[name] = memoryMiB(processTree(server.pid)).rss;

// ---- latency: open loop at fixed rates ---------------------------------------------------------------
// Measured before the throughput runs, on servers warmed up at the same kind of rate: what is measured is
// each server's steady state at that rate, not its recovery from a flat-out run a moment before.
// Express with undici and nothing else is in the latency runs too: at 1000 req/s on one core its own GC
// pauses show in the tail, and the gateway cannot be expected to beat the framework it is built on.
const latencyTargets = ["upstream", "proxy", "expressUndici", "echo", "http"];
const latency = {};
say("bench: warming up for the latency runs");
for (const name of latencyTargets) {
  place(name);
  await loadgen(plan, {
    mode: "open",
    host: HOST,
    port: servers[name].port,
    path: PATH,
    body: BODY,
    rate: 1000,
    warmupSeconds: 0,
    seconds: 3 * options.warmup,
    preconnect: 4,
  });
}
for (const rate of [200, 1000]) {
  latency[rate] = {};
  for (const name of latencyTargets) {
    say(`bench: latency at ${rate} req/s: ${name}`);
    place(name);
    latency[rate][name] = await loadgen(plan, {
      mode: "open",
      host: HOST,
      port: servers[name].port,
      path: PATH,
      body: BODY,
      rate,
      warmupSeconds: 1,
      seconds: options.latencySeconds,
      preconnect: 4,
    });
  }
}

// ---- streaming: time to first byte -------------------------------------------------------------------
say("bench: time to first byte of a stream");
const ttfb = {};
for (const name of ["upstream", "http"]) {
  place(name);
  ttfb[name] = await loadgen(plan, {
    mode: "ttfb",
    host: HOST,
    port: servers[name].port,
    path: PATH,
    body: STREAM_BODY,
    warmup: 50,
    count: options.rounds * 100,
    gapMs: 5,
  });
}

// ---- throughput: closed loop, interleaved rounds -----------------------------------------------------
const order = Object.keys(servers);
// One unmeasured pass first: the JIT has optimised the hot paths before any round counts.
say("bench: warming up every server");
for (const name of order) {
  place(name);
  await throughput(plan, servers[name], {
    body: BODY,
    connections: options.connections,
    warmupSeconds: 0,
    seconds: options.warmup * 2,
  });
}
const runs = Object.fromEntries(order.map((name) => [name, []]));
for (let round = 0; round < options.rounds; round++) {
  say(`bench: throughput round ${round + 1} of ${options.rounds}`);
  for (let i = 0; i < order.length; i++) {
    // Each round starts one server later, so a slow spell of a shared machine does not always hit the same one.
    const name = order[(i + round) % order.length];
    place(name);
    runs[name].push(
      await throughput(plan, servers[name], {
        body: BODY,
        connections: options.connections,
        warmupSeconds: options.warmup,
        seconds: options.seconds,
      }),
    );
  }
}
const rps = (name) => median(runs[name].map((run) => run.rps));
const cpuUs = (name) => median(runs[name].map((run) => run.cpuPerRequestUs));
const baseline = rps("upstream");

// ---- memory at peak, and the access log written all along --------------------------------------------
const peak = Object.fromEntries(
  Object.entries(servers).map(([name, server]) => [name, memoryMiB(processTree(server.pid)).peak]),
);
const accessLines = Object.fromEntries(
  ["echo", "http", "pool", "echo2", "http2"].map((name) => [
    name,
    readFileSync(gatewayLog(name), "utf8")
      .split("\n")
      .filter((line) => line.includes('"message":"request"')).length,
  ]),
);
for (const server of Object.values(servers)) signal(server, "SIGCONT");
stopAll();

// ---- concurrent streams: many long streams open at once (bench/streams.mjs) ---------------------------
const streamLevels = options.quick ? ["200x10", "600x5"] : ["1000x10", "3000x3"];
const streamRuns = [];
for (const level of streamLevels.map(parseLevel)) {
  say(`bench: concurrent streams, ${level.streams} open x ${level.rate} chunks/s each`);
  streamRuns.push(
    await measureLevel(plan, level, streamServers(), {
      rounds: options.streamRounds,
      seconds: options.quick ? 2 : 5,
      warmupSeconds: options.quick ? 1 : 2,
      rampSeconds: options.quick ? 1 : 3,
      dir,
    }),
  );
}
stopAll();

// ---- the shared limits store: what a decision in Valkey adds over the in-process limiter (limits-store.mjs)
say("bench: limits in a shared store (Valkey) against the in-process limiter");
const limitsStore = await measureLimitsStore(plan, {
  rounds: options.quick ? 1 : 3,
  seconds: options.quick ? 1 : 5,
  rate: 200,
  dir,
});
stopAll();
const loadAfter = loadavg();
const elapsedSeconds = (Date.now() - started) / 1000;

// ---- report ------------------------------------------------------------------------------------------
const f0 = (n) => (n === null || n === undefined ? "–" : n.toFixed(0));
const f2 = (n) => (n === null || n === undefined ? "–" : n.toFixed(2));
const ratio = (n) => `${n.toFixed(3)}x`;
const table = (header, rows) =>
  [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ].join("\n");

const throughputTable = table(
  ["server", "req/s (median)", "rounds", "vs upstream", "CPU µs/req", "RSS idle MiB", "RSS peak MiB"],
  order.map((name) => [
    LABELS[name],
    f0(rps(name)),
    runs[name].map((run) => f0(run.rps)).join(", "),
    ratio(rps(name) / baseline),
    f0(cpuUs(name)),
    f0(idle[name]),
    f0(peak[name]),
  ]),
);

const latencyRows = [];
for (const rate of [200, 1000]) {
  const base = latency[rate].upstream.latencyMs;
  for (const name of latencyTargets) {
    const result = latency[rate][name];
    const ms = result.latencyMs;
    const added = (key) => (name === "upstream" ? "–" : f2(ms[key] - base[key]));
    latencyRows.push([
      `${rate}`,
      LABELS[name],
      f0(result.achievedRps),
      `${f2(ms.p50)} / ${f2(ms.p99)} / ${f2(ms.p999)}`,
      `${added("p50")} / ${added("p99")} / ${added("p999")}`,
      String(result.maxInFlight),
      String(result.failed),
    ]);
  }
}
const latencyTable = table(
  [
    "req/s offered",
    "server",
    "req/s answered",
    "p50 / p99 / p99.9 ms",
    "added over upstream, ms",
    "most in flight",
    "failed",
  ],
  latencyRows,
);

const ttfbTable = table(
  ["stream", "first byte p50 ms", "first byte p99 ms", "whole stream p50 ms", "failed"],
  ["upstream", "http"].map((name) => [
    name === "upstream" ? "upstream directly" : "through the gateway (http backend)",
    f2(ttfb[name].firstByteMs.p50),
    f2(ttfb[name].firstByteMs.p99),
    f2(ttfb[name].totalMs.p50),
    String(ttfb[name].failed),
  ]),
);
const ttfbAdded = ttfb.http.firstByteMs.p50 - ttfb.upstream.firstByteMs.p50;

const scalingTable = table(
  ["path", "WORKERS=1 req/s", "WORKERS=2 req/s", "scaling"],
  [
    ["echo", f0(rps("echo")), f0(rps("echo2")), `${(rps("echo2") / rps("echo")).toFixed(2)}x`],
    ["http", f0(rps("http")), f0(rps("http2")), `${(rps("http2") / rps("http")).toFixed(2)}x`],
  ],
);

const STREAM_LABELS = {
  proxy: "bare node:http proxy (floor of a Node hop)",
  gateway: "gateway, http backend",
  gateway2: "gateway, http backend, WORKERS=2",
};
const streamRows = [];
for (const results of streamRuns)
  for (const r of results) {
    const errors = Object.entries(r.errors)
      .map(([kind, count]) => `${count} ${kind}`)
      .join(", ");
    streamRows.push([
      `${r.level.streams} x ${r.level.rate}`,
      STREAM_LABELS[r.label] ?? r.label,
      `${f0(r.chunksPerSecond)} (${r.schedule})`,
      f0(r.cpuUse * 100) + "%",
      f2(r.cpuPerChunkUs),
      `${r.cpuVsFirst.toFixed(2)}x`,
      `${f0(r.idleRss)} / ${r.rssOpen.map(f0).join(", ")} / ${f0(r.peakRss)}`,
      f2(r.rssPerStreamKiB),
      `${f2(r.firstByteMs.p50)} / ${f2(r.firstByteMs.p99)}`,
      f0(r.maxGapP99Ms),
      errors === "" ? "0" : errors,
    ]);
  }
const streamTable = table(
  [
    "open streams x chunks/s each",
    "server",
    "chunks/s delivered (schedule)",
    "CPU",
    "CPU µs/chunk",
    "vs proxy (paired)",
    "RSS MiB idle / with the streams open, each round / peak",
    "RSS KiB per open stream",
    "first byte p50 / p99 ms",
    "largest gap p99 ms",
    "errors",
  ],
  streamRows,
);
const streamResult = (levelIndex, label) => streamRuns[levelIndex]?.find((r) => r.label === label);
const low = streamResult(0, "gateway");
const lowProxy = streamResult(0, "proxy");
const high = streamResult(1, "gateway");
const high2 = streamResult(1, "gateway2");
/** What one more open stream costs: the RSS slope between the two levels, fixed costs (heap, code) apart. */
const marginalKiB =
  low === undefined || high === undefined
    ? null
    : ((median(high.rssOpen) - median(low.rssOpen)) * 1024) / (high.level.streams - low.level.streams);
const lastGrowth = (r) =>
  r.rssOpen.length < 3 ? null : (r.rssOpen[r.rssOpen.length - 1] - r.rssOpen[r.rssOpen.length - 2]) / r.rssOpen[1];
const keepsSchedule = (r) => r.chunksPerSecond >= 0.97 * r.schedule;
const errorCount = (r) => (r === undefined ? 0 : Object.values(r.errors).reduce((sum, n) => sum + n, 0));

const check = (ok) => (ok ? "met" : "NOT met");
const lat200 = latency[200];
const lat1000 = latency[1000];
const targets = table(
  ["target", "measured", ""],
  [
    ["http path >= 0.13x upstream", ratio(rps("http") / baseline), check(rps("http") / baseline >= 0.13)],
    ["echo path >= 0.15x upstream", ratio(rps("echo") / baseline), check(rps("echo") / baseline >= 0.15)],
    ["http path >= 0.20x upstream (issue 13)", ratio(rps("http") / baseline), check(rps("http") / baseline >= 0.2)],
    [
      "balancing over 3 targets adds < 20 µs CPU per request (issue 15)",
      `${f2(cpuUs("pool") - cpuUs("http"))} µs (${f0(cpuUs("pool"))} vs ${f0(cpuUs("http"))} µs per request; ${ratio(rps("pool") / rps("http"))} the req/s)`,
      check(cpuUs("pool") - cpuUs("http") < 20),
    ],
    [
      "http added p50 <= 1 ms at 200 req/s",
      `${f2(lat200.http.latencyMs.p50 - lat200.upstream.latencyMs.p50)} ms`,
      check(lat200.http.latencyMs.p50 - lat200.upstream.latencyMs.p50 <= 1),
    ],
    [
      "http added p99 <= 5 ms at 200 req/s",
      `${f2(lat200.http.latencyMs.p99 - lat200.upstream.latencyMs.p99)} ms`,
      check(lat200.http.latencyMs.p99 - lat200.upstream.latencyMs.p99 <= 5),
    ],
    [
      "http sustains 1000 req/s without queueing",
      `${f0(lat1000.http.achievedRps)} req/s answered, ${lat1000.http.failed} failed, at most ${lat1000.http.maxInFlight} in flight, p99 ${f2(lat1000.http.latencyMs.p99 - lat1000.upstream.latencyMs.p99)} ms over the upstream's (Express + undici alone: ${f2(lat1000.expressUndici.latencyMs.p99 - lat1000.upstream.latencyMs.p99)} ms, at most ${lat1000.expressUndici.maxInFlight} in flight)`,
      check(
        lat1000.http.achievedRps >= 990 &&
          lat1000.http.failed === 0 &&
          lat1000.http.latencyMs.p99 - lat1000.upstream.latencyMs.p99 <= 5,
      ),
    ],
    ["RSS < 100 MiB idle (http, one process)", `${f0(idle.http)} MiB`, check(idle.http < 100)],
    ...(limitsStore.skipped !== undefined
      ? [["limits store adds < 0.5 ms p50 at 200 req/s (issue 14)", "not measured (no Docker or no image)", "–"]]
      : [
          [
            "limits store adds < 0.5 ms p50 at 200 req/s (issue 14)",
            `+${f2(limitsStore.store.p50 - limitsStore.local.p50)} ms p50, +${f2(limitsStore.store.p99 - limitsStore.local.p99)} ms p99 over the in-process limiter`,
            check(limitsStore.store.p50 - limitsStore.local.p50 < 0.5),
          ],
        ]),
    ["RSS < 160 MiB at peak (http, one process)", `${f0(peak.http)} MiB`, check(peak.http < 160)],
    ["stream first byte within 2 ms of the upstream's", `+${f2(ttfbAdded)} ms (p50)`, check(ttfbAdded <= 2)],
    ...(low === undefined || lowProxy === undefined || high === undefined
      ? []
      : [
          [
            `CPU per relayed chunk <= 1.2x the bare pipe proxy's at ${low.level.streams} open streams`,
            `${low.cpuVsFirst.toFixed(2)}x (${f2(low.cpuPerChunkUs)} vs ${f2(lowProxy.cpuPerChunkUs)} µs, median of paired rounds)`,
            check(low.cpuVsFirst <= 1.2),
          ],
          [
            "the gateway keeps the upstream's schedule wherever the proxy does",
            streamRuns
              .map((results) => {
                const [proxy, gateway] = [
                  results.find((r) => r.label === "proxy"),
                  results.find((r) => r.label === "gateway"),
                ];
                return `${gateway.level.streams} x ${gateway.level.rate}: proxy ${f0(proxy.chunksPerSecond)}, gateway ${f0(gateway.chunksPerSecond)} of ${gateway.schedule}`;
              })
              .join("; "),
            check(
              streamRuns.every((results) => {
                const [proxy, gateway] = [
                  results.find((r) => r.label === "proxy"),
                  results.find((r) => r.label === "gateway"),
                ];
                return !keepsSchedule(proxy) || keepsSchedule(gateway);
              }),
            ),
          ],
          [
            `0 errors and 0 resets at ${high.level.streams} open streams`,
            `gateway ${errorCount(high)}, WORKERS=2 ${errorCount(high2)} (ramp included)`,
            check(errorCount(high) === 0 && errorCount(high2) === 0),
          ],
          [
            "RSS per open stream <= 40 KiB",
            `${f2(marginalKiB)} KiB (slope between ${low.level.streams} and ${high.level.streams} open streams); ${f2(high.rssPerStreamKiB)} KiB counting all of the RSS above idle at ${high.level.streams}`,
            check(marginalKiB !== null && marginalKiB <= 40),
          ],
          [
            "no RSS growth across rounds",
            `with the streams open, each round: ${low.rssOpen.map(f0).join(", ")} MiB (${low.level.streams}), ${high.rssOpen.map(f0).join(", ")} MiB (${high.level.streams}); last round ${lastGrowth(low) === null ? "–" : `${(lastGrowth(low) * 100).toFixed(0)}%`} over the one before`,
            check(lastGrowth(low) !== null && lastGrowth(low) <= 0.05),
          ],
        ]),
  ],
);

function version(pkg) {
  try {
    return JSON.parse(readFileSync(join(ROOT, "node_modules", pkg, "package.json"), "utf8")).version;
  } catch {
    return "?";
  }
}
const commit = git(["rev-parse", "--short", "HEAD"]);
const dirty = git(["status", "--porcelain", "--", "gateway", "bench", "package.json", "package-lock.json"]) !== "";
const command = `node ${relative(ROOT, join(BENCH_DIR, "run.mjs"))}${process.argv.length > 2 ? ` ${process.argv.slice(2).join(" ")}` : ""}`;
const cpu = cpus()[0]?.model ?? "unknown CPU";

const report = `# Benchmark results

Written by \`make bench\` (\`${command}\`, after \`npm run build\`) on ${new Date(started).toISOString()}, in ${f0(elapsedSeconds)} s.
Every ratio compares servers measured in this one run; compare ratios across machines, not raw req/s.
How to read each number: [bench/README.md](README.md).

- Machine: ${cpu}, ${cpus().length} cores seen by Node, ${f0(totalmem() / 2 ** 30)} GiB, Linux ${release()}; load average ${loadBefore.map((n) => n.toFixed(2)).join(" ")} before, ${loadAfter.map((n) => n.toFixed(2)).join(" ")} after (the benchmark's own load included).
- Pinning: ${describePlan(plan)}; every server not being measured (the upstream apart, when it is behind the one measured) is stopped with SIGSTOP meanwhile.
- Versions: Node ${process.version}; gateway ${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version} at ${commit || "unknown commit"}${dirty ? " with uncommitted changes" : ""}; express ${version("express")}, undici ${version("undici")}, prom-client ${version("prom-client")}, winston ${version("winston")}.
- Gateway: \`node ${GATEWAY_NODE_FLAGS.join(" ")} dist/gateway/src/main.js\` (as shipped) with NODE_ENV=production${options.gatewayNodeOptions === "" ? "" : `, NODE_OPTIONS=${options.gatewayNodeOptions}`}, LOG_LEVEL=info (an access log line per request, to a file: ${Object.entries(
  accessLines,
)
  .map(([name, count]) => `${name} ${count}`)
  .join(", ")} lines), /metrics on, request validation on.
- Load: closed loop with ${options.connections} keep-alive connections, ${options.rounds} interleaved rounds of ${options.warmup} s warm-up + ${options.seconds} s measured per server; latency from an open-loop generator on a fixed schedule, ${options.latencySeconds} s per rate after 1 s of warm-up, timed from each request's scheduled send time. Request body (the same for every server): \`${BODY}\`.

## Throughput on one core

${throughputTable}

## Latency at a fixed rate

${latencyTable}

## Streaming: time to first byte

${ttfbTable}

Through the gateway the first byte comes ${f2(ttfbAdded)} ms (p50) after the upstream's own.

## Multi-core: WORKERS=1 and WORKERS=2

${scalingTable}

${plan.pinned && plan.cores <= 2 ? "On this 2-core machine the second worker shares its core with the load generator and the upstream, so this understates what a second core of its own gives." : ""}

## Concurrent streams

Each stream is a \`"stream": true\` request (\`${STREAMS_BODY}\`) answered with ${CHUNKS_PER_STREAM} chunks at the level's pace by one upstream driving all its streams from one timer (bench/sse-upstream.mjs); the client (bench/stream-client.mjs) keeps that many open, replacing each that ends. ${options.streamRounds} rounds per server, interleaved; "vs proxy" is the median of per-round ratios of CPU per chunk. RSS per open stream counts all of the RSS above idle; the targets below also give the slope between the levels.

${streamTable}

${
  high2 === undefined || high === undefined
    ? ""
    : `WORKERS=2 at ${high.level.streams} open streams: ${f0(high2.chunksPerSecond)} chunks/s at ${f0(high2.cpuUse * 100)}% CPU (${f2(high2.cpuPerChunkUs)} µs per chunk) against one process's ${f0(high.chunksPerSecond)} at ${f0(high.cpuUse * 100)}%; its second worker shares CPU 1 with the client and the upstream.`
}

## Limits in a shared store

${
  limitsStore.skipped !== undefined
    ? `Not measured: ${limitsStore.skipped}.`
    : `One gateway counting its clients' limits in-process, one counting them in Valkey ${limitsStore.valkeyVersion} (\`limits_store\`, a container on the host's network at 127.0.0.1, on CPU ${plan.load ?? "any"} with the load generator), echo backend, every request one client's (limits high enough never to refuse: a decision each). ${limitsStore.rate} req/s open loop, then flat out with ${options.connections} connections; ${limitsStore.rounds} interleaved rounds of ${limitsStore.seconds} s, medians. Flat out, the store shares its core with the load generator: read CPU per request, not req/s.

${table(LIMITS_STORE_HEADER, limitsStoreRows(limitsStore))}`
}

## The issue's targets, in this run

${targets}
`;
writeFileSync(options.out, report);
say("");
say(report);
say(`bench: wrote ${relative(process.cwd(), options.out)}`);
