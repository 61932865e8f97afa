// What the shared limits store (`limits_store`, a Valkey on loopback) adds to a request over the in-process
// limiter: latency at a fixed rate (open loop) and throughput with CPU per request (closed loop), the two
// gateways measured in interleaved rounds of the same run. Every request counts against one client (auth
// off: the client address), with limits set high enough never to refuse: a decision per request is measured,
// not a refusal.
//
//   node bench/limits-store.mjs [--rounds=3] [--seconds=5] [--rate=200]
//
// Valkey runs in a container (valkey/valkey:8, the tag of deploy/swarm/stack.yml) on the host's network at
// 127.0.0.1, on the load generator's core. Without Docker, or without the image, it says so and measures nothing.
// make bench (bench/run.mjs) runs it too.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parse } from "yaml";
import {
  BODY,
  GATEWAY_ARGS,
  HOST,
  PATH,
  ROOT,
  cpuPlan,
  describePlan,
  freePort,
  gatewayEnv,
  loadgen,
  median,
  processTree,
  repin,
  sleep,
  startServer,
  stopAll,
  tempDir,
  throughput,
} from "./lib.mjs";

/** The tag of deploy/swarm/stack.yml's Valkey, where it is written once. */
export const VALKEY_IMAGE = parse(readFileSync(join(ROOT, "deploy", "swarm", "stack.yml"), "utf8")).services.valkey
  .image;

function docker(args) {
  return execFileSync("docker", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 }).trim();
}

/** A Valkey container on 127.0.0.1 (a free port), or why there is none. */
export async function startValkey(cpus) {
  try {
    docker(["image", "inspect", VALKEY_IMAGE]);
  } catch {
    return { skipped: `no Docker engine, or no ${VALKEY_IMAGE} image (docker pull ${VALKEY_IMAGE})` };
  }
  // The host's network, listening on 127.0.0.1 only: a published port would put Docker's userland proxy
  // (another hop, ~0.1 ms) between the gateway and the store, which no deployment has.
  const port = await freePort();
  const id = docker([
    "run",
    "-d",
    "--rm",
    "--network",
    "host",
    ...(cpus === null ? [] : ["--cpuset-cpus", cpus]),
    VALKEY_IMAGE,
    "valkey-server",
    "--bind",
    "127.0.0.1",
    "--port",
    String(port),
    "--protected-mode",
    "no",
    "--save",
    "",
    "--appendonly",
    "no",
  ]);
  const stop = () => {
    try {
      docker(["rm", "-f", id]);
    } catch {
      // Already gone.
    }
  };
  process.on("exit", stop);
  for (let i = 0; i < 100; i++) {
    try {
      if (docker(["exec", id, "valkey-cli", "ping"]) === "PONG") break;
    } catch {
      // Not up yet.
    }
    await sleep(100);
  }
  const version = docker(["exec", id, "valkey-server", "--version"]).match(/v=([\d.]+)/)?.[1] ?? "?";
  return { id, port, url: `redis://${HOST}:${port}`, version, stop };
}

/** One client limited far above what the run can send: every request is a decision, none a refusal. */
const HIGH_LIMITS = ["limits:", "  requests_per_minute: 10000000", "  tokens_per_minute: 1000000000000"];

function writeConfig(dir, name, extra) {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    ["default_backend: bench", "backends:", "  - name: bench", "    type: echo", ...HIGH_LIMITS, ...extra, ""].join(
      "\n",
    ),
  );
  return file;
}

/**
 * Both gateways (in-process limiter, store) at `rate` req/s open loop and flat out, `rounds` interleaved
 * rounds each. Resolves to the medians, or `{ skipped }`.
 */
export async function measureLimitsStore(plan, { rounds = 3, seconds = 5, rate = 200, dir = tempDir() } = {}) {
  const valkey = await startValkey(plan.load);
  if (valkey.skipped !== undefined) return { skipped: valkey.skipped };
  try {
    const servers = {
      local: await startServer({
        name: "local",
        cpus: plan.server,
        args: GATEWAY_ARGS,
        env: gatewayEnv(writeConfig(dir, "limits-local", [])),
      }),
      store: await startServer({
        name: "store",
        cpus: plan.server,
        args: GATEWAY_ARGS,
        env: gatewayEnv(writeConfig(dir, "limits-store", ["limits_store:", `  url: ${valkey.url}`])),
      }),
    };
    const place = (name) => {
      for (const [other, server] of Object.entries(servers))
        for (const pid of processTree(server.pid)) process.kill(pid, other === name ? "SIGCONT" : "SIGSTOP");
      repin(processTree(servers[name].pid), plan.server);
    };
    const open = (name) =>
      loadgen(plan, {
        mode: "open",
        host: HOST,
        port: servers[name].port,
        path: PATH,
        body: BODY,
        rate,
        warmupSeconds: 1,
        seconds,
        preconnect: 4,
      });
    const runs = { local: { latency: [], throughput: [] }, store: { latency: [], throughput: [] } };
    for (const name of Object.keys(servers)) {
      place(name);
      await open(name);
    }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ["local", "store"] : ["store", "local"];
      for (const name of order) {
        place(name);
        runs[name].latency.push(await open(name));
        runs[name].throughput.push(
          await throughput(plan, servers[name], { connections: 32, warmupSeconds: 1, seconds }),
        );
      }
    }
    for (const server of Object.values(servers))
      for (const pid of processTree(server.pid)) process.kill(pid, "SIGCONT");
    const summary = (name) => {
      const latency = runs[name].latency;
      const failed = latency.reduce((sum, run) => sum + run.failed, 0);
      return {
        p50: median(latency.map((run) => run.latencyMs.p50)),
        p99: median(latency.map((run) => run.latencyMs.p99)),
        answered: median(latency.map((run) => run.achievedRps)),
        failed,
        rps: median(runs[name].throughput.map((run) => run.rps)),
        cpuUs: median(runs[name].throughput.map((run) => run.cpuPerRequestUs)),
      };
    };
    return { valkeyVersion: valkey.version, rate, rounds, seconds, local: summary("local"), store: summary("store") };
  } finally {
    valkey.stop();
  }
}

/** The table rows of a result, for bench/RESULTS.md and the console. */
export function limitsStoreRows(result) {
  const f2 = (n) => n.toFixed(2);
  const row = (label, r) => [
    label,
    `${r.answered.toFixed(0)} (${r.failed} failed)`,
    `${f2(r.p50)} / ${f2(r.p99)}`,
    r.rps.toFixed(0),
    r.cpuUs.toFixed(0),
  ];
  return [
    row("gateway, echo, limits counted in-process", result.local),
    row(`gateway, echo, limits in Valkey ${result.valkeyVersion} on loopback`, result.store),
    [
      "store over in-process",
      "",
      `+${f2(result.store.p50 - result.local.p50)} / +${f2(result.store.p99 - result.local.p99)}`,
      `${(result.store.rps / result.local.rps).toFixed(2)}x`,
      `${(result.store.cpuUs / result.local.cpuUs).toFixed(2)}x`,
    ],
  ];
}

export const LIMITS_STORE_HEADER = [
  "server",
  "req/s answered at the fixed rate",
  "p50 / p99 ms",
  "req/s flat out",
  "CPU µs/req",
];

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const options = { rounds: 3, seconds: 5, rate: 200 };
  for (const arg of process.argv.slice(2)) {
    const match = /^--(rounds|seconds|rate)=(\d+(?:\.\d+)?)$/.exec(arg);
    if (match === null) throw new Error(`unknown argument ${arg}`);
    options[match[1]] = Number(match[2]);
  }
  const plan = cpuPlan();
  process.stdout.write(`limits store bench: ${describePlan(plan)}\n`);
  const result = await measureLimitsStore(plan, options);
  stopAll();
  if (result.skipped !== undefined) {
    process.stdout.write(`skipped: ${result.skipped}\n`);
  } else {
    const rows = [LIMITS_STORE_HEADER, ...limitsStoreRows(result)];
    for (const row of rows) process.stdout.write(`| ${row.join(" | ")} |\n`);
    process.stdout.write(`(${result.rate} req/s offered, ${result.rounds} rounds of ${result.seconds} s, medians)\n`);
  }
}
