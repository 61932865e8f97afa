// The concurrent-streams scenario: many long streams open at once, each at a model's pace, relayed by the
// server under test from bench/sse-upstream.mjs to bench/stream-client.mjs. Per level (open streams x chunks
// per second each) and server: chunks delivered against the schedule, the server's CPU µs per chunk (from
// /proc over the measured window), RSS with the streams open and per open stream, time to first byte, the
// largest gap between two chunks of a stream, and errors by kind. make bench runs it (bench/run.mjs);
// alone, to compare builds:
//
//   node bench/streams.mjs [--levels=1000x10,3000x3] [--rounds=2] [--seconds=8] [--chunks=100] \
//     proxy=bench/proxy.mjs,UPSTREAM={upstream} gateway=dist/gateway/src/main.js [label=main.js,KEY=VALUE ...]
//
// Each server is started fresh for each level (so its peak RSS is that level's), with a fresh upstream;
// `rounds` measured windows follow one another on the same process, so RSS growth between rounds shows.
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BENCH_DIR,
  GATEWAY_NODE_FLAGS,
  HOST,
  PATH,
  ROOT,
  cpuPlan,
  cpuSeconds,
  describePlan,
  gatewayEnv,
  loadgenProcess,
  median,
  memoryMiB,
  processTree,
  sleep,
  startServer,
  stopAll,
  tempDir,
} from "./lib.mjs";

/** A streamed chat request asking for usage, as the OpenAI SDK sends it. */
export const STREAMS_BODY = JSON.stringify({
  model: "bench",
  messages: [{ role: "user", content: "Tell me a long story." }],
  stream: true,
  stream_options: { include_usage: true },
});
export const CHUNKS_PER_STREAM = 100;

/** "1000x10" -> { streams: 1000, rate: 10 }. */
export function parseLevel(text) {
  const match = /^(\d+)x(\d+(?:\.\d+)?)$/.exec(text);
  if (match === null) throw new Error(`a level is STREAMSxRATE, e.g. 1000x10 (got ${text})`);
  return { streams: Number(match[1]), rate: Number(match[2]) };
}

/**
 * The gateway's config for this benchmark: one http backend to the level's upstream, with the admission cap
 * and the per-client share (half the cap by default) raised past the level, since every stream comes from
 * the one address of the benchmark's client.
 */
function writeStreamsConfig(dir, upstreamUrl) {
  const file = join(dir, `streams-${new URL(upstreamUrl).port}.yaml`);
  writeFileSync(
    file,
    `max_concurrent_requests: 20000\nlimits:\n  concurrent_requests: 20000\ndefault_backend: bench\nbackends:\n  - name: bench\n    type: http\n    url: ${upstreamUrl}\n`,
  );
  return file;
}

/**
 * Runs every server of `specs` ({ label, args, env, gateway, cluster }) at one level: one upstream for the
 * level, a fresh process per server, then `rounds` rounds in which each server in turn has the streams
 * (the order rotates each round; servers not measured are stopped with SIGSTOP meanwhile, as in run.mjs).
 * `{upstream}` in a server's environment is the upstream's URL. Each result carries, per round, its ratio
 * of CPU per chunk to the first server's in the same round: on a shared machine the steadier figure.
 */
export async function measureLevel(
  plan,
  level,
  specs,
  { rounds = 2, seconds = 8, warmupSeconds = 3, rampSeconds = 3, chunks = CHUNKS_PER_STREAM, dir },
) {
  const upstream = await startServer({
    name: "sse-upstream",
    cpus: plan.behind,
    args: [join(BENCH_DIR, "sse-upstream.mjs")],
    env: { RATE: String(level.rate), CHUNKS: String(chunks) },
  });
  const servers = [];
  try {
    for (const spec of specs) {
      const env = Object.fromEntries(
        Object.entries(spec.env).map(([key, value]) => [key, value.replace("{upstream}", upstream.url)]),
      );
      if (spec.gateway) Object.assign(env, gatewayEnv(writeStreamsConfig(dir, upstream.url), env));
      const server = await startServer({
        name: spec.label,
        cpus: spec.cluster ? plan.serverPair : plan.server,
        args: spec.args,
        env,
        logFile: join(dir, `${spec.label}-${level.streams}.log`),
      });
      if (spec.cluster) await sleep(1500);
      const pids = processTree(server.pid);
      servers.push({ spec, server, pids, idleRss: memoryMiB(pids).rss, runs: [] });
      signalAll(pids, "SIGSTOP");
    }
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < servers.length; i++) {
        const entry = servers[(i + round) % servers.length];
        signalAll(entry.pids, "SIGCONT");
        entry.runs[round] = await oneRound(plan, level, entry, { seconds, warmupSeconds, rampSeconds });
        // The streams closed: let the server settle before it is stopped.
        await sleep(500);
        signalAll(entry.pids, "SIGSTOP");
      }
    }
    for (const entry of servers) entry.peakRss = memoryMiB(entry.pids).peak;
  } finally {
    for (const entry of servers) {
      signalAll(entry.pids, "SIGCONT");
      // A profiled server (NODE_FLAGS=--cpu-prof ...) writes its profile only on a clean exit.
      if (entry.spec.args.some((arg) => arg.startsWith("--cpu-prof"))) await stopGently(entry.server.child);
      entry.server.child.kill("SIGKILL");
    }
    upstream.child.kill("SIGKILL");
  }
  const cpuPerChunk = (run) => (run.cpuSeconds * 1e6) / Math.max(1, run.chunks);
  return servers.map(({ spec, idleRss, runs, peakRss }) => {
    const errors = {};
    for (const run of runs)
      for (const [kind, count] of Object.entries(run.errors)) errors[kind] = (errors[kind] ?? 0) + count;
    const rssOpen = runs.map((run) => run.rssOpen);
    return {
      label: spec.label,
      level,
      schedule: level.streams * level.rate,
      chunksPerSecond: median(runs.map((run) => run.chunksPerSecond)),
      cpuPerChunkUs: median(runs.map(cpuPerChunk)),
      cpuVsFirst: median(runs.map((run, round) => cpuPerChunk(run) / cpuPerChunk(servers[0].runs[round]))),
      cpuUse: median(runs.map((run) => run.cpuSeconds / run.seconds)),
      idleRss,
      rssOpen,
      peakRss,
      rssPerStreamKiB: ((median(rssOpen) - idleRss) * 1024) / level.streams,
      firstByteMs: {
        p50: median(runs.map((run) => run.firstByteMs.p50)),
        p99: median(runs.map((run) => run.firstByteMs.p99)),
      },
      maxGapP99Ms: median(runs.map((run) => run.maxGapMs.p99)),
      completed: runs.reduce((sum, run) => sum + run.completed, 0),
      errors,
    };
  });
}

/** SIGTERM, then up to 15 s for the drain and exit. */
async function stopGently(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await Promise.race([exited, sleep(15_000)]);
}

function signalAll(pids, signal) {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already: nothing to stop or continue.
    }
  }
}

/** One measured window of `level` streams against one server: the client's result, CPU and RSS. */
async function oneRound(plan, level, { server, pids }, { seconds, warmupSeconds, rampSeconds }) {
  let cpuStart = 0;
  let cpuEnd = 0;
  let rssOpen = 0;
  const result = await loadgenProcess(
    plan,
    "stream-client.mjs",
    {
      host: HOST,
      port: server.port,
      path: PATH,
      body: STREAMS_BODY,
      streams: level.streams,
      // Arrivals spread over a few seconds, as users arrive (--ramp=0: all at once).
      rampSeconds,
      warmupSeconds,
      seconds,
    },
    (edge) => {
      if (edge === "window-start") cpuStart = cpuSeconds(pids);
      else {
        cpuEnd = cpuSeconds(pids);
        rssOpen = memoryMiB(pids).rss;
      }
    },
    rampSeconds + warmupSeconds + seconds,
  );
  return { ...result, cpuSeconds: cpuEnd - cpuStart, rssOpen };
}

/** The servers compared at each level: the bare pipe proxy (the floor), the gateway, the gateway with WORKERS=2. */
export function streamServers({ workers2 = true, gatewayMain = join(ROOT, "dist/gateway/src/main.js") } = {}) {
  const list = [
    { label: "proxy", args: [join(BENCH_DIR, "proxy.mjs")], env: { UPSTREAM: "{upstream}" } },
    { label: "gateway", args: [...GATEWAY_NODE_FLAGS, gatewayMain], env: {}, gateway: true },
  ];
  if (workers2)
    list.push({
      label: "gateway2",
      args: [...GATEWAY_NODE_FLAGS, gatewayMain],
      env: { WORKERS: "2" },
      gateway: true,
      cluster: true,
    });
  return list;
}

// ---- alone: node bench/streams.mjs ... ---------------------------------------------------------------
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const options = { levels: "1000x10,3000x3", rounds: 2, seconds: 8, warmup: 3, ramp: 3, chunks: CHUNKS_PER_STREAM };
  const specs = [];
  for (const arg of process.argv.slice(2)) {
    const option = /^--(\w+)=(.*)$/.exec(arg);
    if (option !== null) {
      options[option[1]] = option[1] === "levels" ? option[2] : Number(option[2]);
      continue;
    }
    // label=path/to/main.js[,KEY=VALUE...]; a path under dist/ or ending in gateway/src/main.js is a gateway.
    const [head, ...pairs] = arg.split(",");
    const [label, main] = head.split("=");
    const path = resolve(ROOT, main);
    const gateway = path.endsWith("gateway/src/main.js");
    const env = Object.fromEntries(pairs.map((pair) => [pair.split("=")[0], pair.split("=").slice(1).join("=")]));
    // NODE_FLAGS="--a --b" in a variant replaces the gateway's shipped V8 flags (to price another setting) or
    // gives another server flags (--cpu-prof: the profile is written when the run ends).
    const given = env.NODE_FLAGS?.split(" ").filter(Boolean);
    delete env.NODE_FLAGS;
    specs.push({
      label,
      args: [...(given ?? (gateway ? GATEWAY_NODE_FLAGS : [])), path],
      env,
      gateway,
      cluster: Number(env.WORKERS ?? 1) > 1,
    });
  }
  if (specs.length === 0) specs.push(...streamServers());
  const plan = cpuPlan();
  process.stdout.write(`${describePlan(plan)}\n`);
  const dir = tempDir();
  try {
    for (const level of options.levels.split(",").map(parseLevel)) {
      const results = await measureLevel(plan, level, specs, {
        rounds: options.rounds,
        seconds: options.seconds,
        warmupSeconds: options.warmup,
        rampSeconds: options.ramp,
        chunks: options.chunks,
        dir,
      });
      for (const result of results) process.stdout.write(`${formatResult(result)}\n`);
    }
  } finally {
    stopAll();
  }
}

export function formatResult(r) {
  const errors =
    Object.entries(r.errors)
      .map(([kind, count]) => `${count} ${kind}`)
      .join(", ") || "0";
  return [
    `${r.level.streams}x${r.level.rate}`.padEnd(8),
    r.label.padEnd(10),
    `${r.chunksPerSecond.toFixed(0)}/${r.schedule} chunks/s`.padEnd(20),
    `cpu ${(r.cpuUse * 100).toFixed(0)}%`.padEnd(9),
    `${r.cpuPerChunkUs.toFixed(1)} µs/chunk (${r.cpuVsFirst.toFixed(2)}x first)`.padEnd(30),
    `rss idle ${r.idleRss.toFixed(0)} open ${r.rssOpen.map((v) => v.toFixed(0)).join("/")} peak ${r.peakRss.toFixed(0)} MiB`,
    `${r.rssPerStreamKiB.toFixed(1)} KiB/stream`,
    `ttfb ${r.firstByteMs.p50?.toFixed(1)}/${r.firstByteMs.p99?.toFixed(1)} ms`,
    `gap p99 ${r.maxGapP99Ms?.toFixed(0)} ms`,
    `errors ${errors}`,
  ].join("  ");
}
