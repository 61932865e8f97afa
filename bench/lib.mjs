// Shared by bench/run.mjs and bench/compare.mjs: starting the servers, pinning them to cores, running the
// load generator, and reading each server's CPU time and memory from /proc.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { get, createServer } from "node:http";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(BENCH_DIR, "..");
export const GATEWAY_MAIN = join(ROOT, "dist/gateway/src/main.js");
/**
 * The V8 flags the gateway ships with (Dockerfile CMD, `npm start`, `make run`): measure what users run.
 * Without a bounded young generation V8 grows it to 64 MiB semi-spaces under load: peak RSS past 250 MiB.
 */
export const GATEWAY_NODE_FLAGS = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).config.nodeFlags.split(
  " ",
);
export const GATEWAY_ARGS = [...GATEWAY_NODE_FLAGS, GATEWAY_MAIN];
export const HOST = "127.0.0.1";
export const PATH = "/v1/chat/completions";

/** The one request body every server gets: a short chat turn with the usual sampling fields. */
export const BODY = JSON.stringify({
  model: "bench",
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "Hello, how are you today?" },
  ],
  temperature: 0.7,
  max_tokens: 64,
});
export const STREAM_BODY = JSON.stringify({ ...JSON.parse(BODY), stream: true });

/** Every child we start, so that any way out of the benchmark stops them all. */
const children = new Set();
export function stopAll() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
}
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    stopAll();
    process.exit(130);
  });
}

export function sleep(ms) {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

/**
 * Which cores take what. The server under test gets a core of its own; the load generator and any upstream
 * behind the server under test share the others (on two cores: the second one). Without `taskset`, or on a
 * single core, nothing is pinned and the report says so.
 */
export function cpuPlan() {
  const cores = availableParallelism();
  const hasTaskset = spawnSync("taskset", ["-c", "0", "true"]).status === 0;
  if (!hasTaskset || cores < 2)
    return { pinned: false, cores, server: null, serverPair: null, load: null, behind: null };
  const last = cores - 1;
  return {
    pinned: true,
    cores,
    server: "0",
    serverPair: "0,1",
    load: String(last),
    behind: cores >= 3 ? "1" : String(last),
  };
}

export function describePlan(plan) {
  if (!plan.pinned)
    return `not pinned (${plan.cores} core(s), taskset ${plan.cores < 2 ? "present but one core" : "missing"}): every process shares every core`;
  return `pinned with taskset: server under test on CPU ${plan.server}; load generator on CPU ${plan.load}; the upstream behind a proxy or gateway on CPU ${plan.behind}; WORKERS=2 runs on CPUs ${plan.serverPair}`;
}

function pinnedCommand(cpus, command, args) {
  return cpus === null ? [command, args] : ["taskset", ["-c", cpus, command, ...args]];
}

/** Moves a running process (every thread) to `cpus`; its cluster workers, if any, move with it. */
export function repin(pids, cpus) {
  if (cpus === null) return;
  for (const pid of pids) spawnSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
}

/** A port nothing listens on right now, for a server that must be told its port up front. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, HOST, () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

/** Whether something answers HTTP on `port` (any status will do). */
function answers(port) {
  return new Promise((resolveProbe) => {
    const probe = get({ host: HOST, port, path: "/health", agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolveProbe(true);
    });
    probe.on("error", () => resolveProbe(false));
    probe.on("timeout", () => (probe.destroy(), resolveProbe(false)));
  });
}

/**
 * Starts a server script on a free port (its PORT) and waits, bounded, until it answers HTTP. Its stdout
 * goes to `logFile` (the gateway's access log: a file, as a log shipper would read it) or is dropped.
 */
export async function startServer({ name, cpus, args, env = {}, logFile }) {
  const port = await freePort();
  const [command, argv] = pinnedCommand(cpus, process.execPath, args);
  const out = openSync(logFile ?? "/dev/null", "w");
  const child = spawn(command, argv, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env, PORT: String(port) },
    stdio: ["ignore", out, "pipe"],
  });
  closeSync(out);
  children.add(child);
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk.toString()));
  for (let i = 0; i < 200 && child.exitCode === null; i++) {
    // With taskset in front, the pid we hold is taskset's until it execs node: the same pid either way.
    if (await answers(port))
      return { name, child, pid: child.pid, port, url: `http://${HOST}:${port}`, logFile, stderr: () => stderr };
    await sleep(50);
  }
  child.kill("SIGKILL");
  throw new Error(`${name} did not start:\n${stderr}`);
}

/** The process and, for a cluster primary, its workers: whose CPU and memory a server's numbers sum. */
export function processTree(pid) {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    try {
      const kids = readFileSync(`/proc/${pids[i]}/task/${pids[i]}/children`, "utf8").trim();
      if (kids !== "") pids.push(...kids.split(/\s+/).map(Number));
    } catch {
      // The process is gone, or the kernel does not list children: count what we have.
    }
  }
  return pids;
}

const TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** User + system CPU seconds used so far by `pids`. */
export function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Exited: its CPU time is no longer ours to count.
    }
  }
  return ticks / TICKS_PER_SECOND;
}

/** Resident memory now and at its peak (VmHWM), in MiB, summed over `pids`. */
export function memoryMiB(pids) {
  let rss = 0;
  let peak = 0;
  for (const pid of pids) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      rss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      peak += Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
    } catch {
      // Exited.
    }
  }
  return { rss, peak };
}

/**
 * Runs bench/loadgen.mjs on the load core and resolves to its result. `onWindow(edge)` is called at the
 * start and end of the measured window, so the caller can read the server's CPU time over exactly that span.
 */
export function loadgen(plan, spec, onWindow = () => undefined) {
  return loadgenProcess(plan, "loadgen.mjs", spec, onWindow, (spec.warmupSeconds ?? 0) + (spec.seconds ?? 0));
}

/** As loadgen, with any client script of bench/ that speaks the same lines (stream-client.mjs too). */
export function loadgenProcess(plan, script, spec, onWindow, expectedSeconds) {
  const [command, argv] = pinnedCommand(plan.load, process.execPath, [join(BENCH_DIR, script), JSON.stringify(spec)]);
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk.toString()));
  let result;
  createInterface({ input: child.stdout }).on("line", (line) => {
    if (line === "window-start" || line === "window-end") onWindow(line);
    else if (line.startsWith("{")) result = JSON.parse(line);
  });
  // Generous but finite: a run that hangs must fail the benchmark, not hold it forever.
  const limit = setTimeout(() => child.kill("SIGKILL"), (expectedSeconds + 60) * 1000);
  return new Promise((resolveRun, reject) => {
    child.on("exit", (code) => {
      clearTimeout(limit);
      children.delete(child);
      if (code === 0 && result !== undefined) resolveRun(result);
      else reject(new Error(`${script} failed (exit ${code}): ${stderr}`));
    });
  });
}

/** A closed-loop run against `server`: requests per second, and the server's CPU time per request. */
export async function throughput(plan, server, { body = BODY, headers = {}, connections, warmupSeconds, seconds }) {
  const pids = processTree(server.pid);
  let cpuStart = 0;
  let cpuEnd = 0;
  const result = await loadgen(
    plan,
    { mode: "closed", host: HOST, port: server.port, path: PATH, body, headers, connections, warmupSeconds, seconds },
    (edge) => {
      if (edge === "window-start") cpuStart = cpuSeconds(pids);
      else cpuEnd = cpuSeconds(pids);
    },
  );
  if (result.failed > 0 || result.ok === 0)
    throw new Error(`${server.name}: ${result.failed} failed of ${result.ok + result.failed} requests`);
  return {
    rps: result.rps,
    cpuPerRequestUs: ((cpuEnd - cpuStart) * 1e6) / result.ok,
    cpuUse: (cpuEnd - cpuStart) / result.seconds,
  };
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), "gateway-bench-"));
}

/** A gateway config whose one backend, `bench`, is the given type: so every server gets the same body. */
export function writeGatewayConfig(dir, name, backendYaml) {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `default_backend: bench\nbackends:\n  - name: bench\n${backendYaml.map((line) => `    ${line}`).join("\n")}\n`,
  );
  return file;
}

export function gatewayEnv(configFile, extra = {}) {
  return { NODE_ENV: "production", CONFIG_FILE: configFile, HOST, LOG_LEVEL: "info", ...extra };
}

export function git(args) {
  try {
    return execFileSync("git", args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
}
