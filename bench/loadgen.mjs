// The load generator, run as its own process so it can be pinned to its own core. One JSON argument says
// what to do; it prints progress lines ("window-start", "window-end", so the caller can read the server's
// CPU time over exactly the measured window) and one final JSON line with the result.
//
//   closed: `connections` connections, each sending its next request as soon as the last one is answered,
//           for `warmupSeconds` unmeasured then `seconds` measured: throughput.
//   open:   requests sent on a fixed schedule (request i at start + i/rate), whether or not earlier ones have
//           been answered, each on an idle connection or a new one: latency, measured from the scheduled
//           time so that a server falling behind shows as latency instead of a slower schedule.
//   ttfb:   `count` streamed requests one after another: time to the first byte of the body.
import { Connection, buildRequest } from "./http-client.mjs";

const spec = JSON.parse(process.argv[2] ?? "{}");
const request = buildRequest({
  host: spec.host,
  port: spec.port,
  path: spec.path,
  body: spec.body,
  headers: spec.headers,
});
const MAX_CONNECTIONS = 512;
const IDLE_REUSE_MS = 4000;

function say(line) {
  process.stdout.write(`${typeof line === "string" ? line : JSON.stringify(line)}\n`);
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function summary(latencies) {
  const sorted = Float64Array.from(latencies).sort();
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length === 0 ? null : sorted[sorted.length - 1],
  };
}

async function closed() {
  const connections = [];
  for (let i = 0; i < spec.connections; i++) connections.push(new Connection(spec.host, spec.port));
  await Promise.all(connections.map((c) => c.ready));
  let measuring = false;
  let stopping = false;
  let ok = 0;
  let failed = 0;
  const loop = (connection) => {
    if (stopping || !connection.open) return;
    connection.send(request, (status) => {
      if (measuring) {
        if (status >= 200 && status < 300) ok++;
        else failed++;
      }
      loop(connection);
    });
  };
  for (const connection of connections) loop(connection);
  await new Promise((resolve) => setTimeout(resolve, spec.warmupSeconds * 1000));
  say("window-start");
  measuring = true;
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, spec.seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  say("window-end");
  stopping = true;
  for (const connection of connections) connection.close();
  say({ mode: "closed", ok, failed, seconds: elapsed, rps: ok / elapsed });
}

async function open() {
  const idle = [];
  let opened = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const newConnection = async () => {
    opened++;
    const connection = new Connection(spec.host, spec.port);
    await connection.ready;
    return connection;
  };
  for (let i = 0; i < spec.preconnect; i++) {
    const connection = await newConnection();
    connection.idleSince = performance.now();
    idle.push(connection);
  }
  const total = Math.round(spec.rate * spec.seconds);
  const warmup = Math.round(spec.rate * spec.warmupSeconds);
  const latencies = [];
  let failed = 0;
  let maxLateMs = 0;
  let answered = 0;
  let allAnswered;
  const finished = new Promise((resolve) => (allAnswered = resolve));

  const fire = (index, scheduled) => {
    const issue = (connection) => {
      inFlight++;
      if (inFlight > maxInFlight) maxInFlight = inFlight;
      connection.send(request, (status) => {
        const done = performance.now();
        inFlight--;
        if (index >= warmup) {
          if (status >= 200 && status < 300) latencies.push(done - scheduled);
          else failed++;
        }
        if (connection.open) {
          connection.idleSince = done;
          idle.push(connection);
        }
        if (++answered === warmup + total) allAnswered();
      });
    };
    // Like a real client's pool (undici keeps an idle socket 4 s), an idle connection is not reused once the
    // server may be closing it (Node's default keepAliveTimeout is 5 s): that race would count as a failure.
    let connection = idle.pop();
    while (connection !== undefined && (!connection.open || performance.now() - connection.idleSince > IDLE_REUSE_MS)) {
      connection.close();
      connection = idle.pop();
    }
    if (connection !== undefined) issue(connection);
    else if (opened < MAX_CONNECTIONS)
      newConnection().then(issue, () => (failed++, ++answered === warmup + total && allAnswered()));
    else (failed++, ++answered === warmup + total && allAnswered());
  };

  const start = performance.now() + 20;
  const interval = 1000 / spec.rate;
  let next = 0;
  let windowStarted = false;
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (next < warmup + total && start + next * interval <= now) {
        if (next === warmup && !windowStarted) {
          windowStarted = true;
          say("window-start");
        }
        const scheduled = start + next * interval;
        if (next >= warmup && now - scheduled > maxLateMs) maxLateMs = now - scheduled;
        fire(next, scheduled);
        next++;
      }
      if (next >= warmup + total) return resolve();
      // Sleep until the next request is due: the generator must not spin, since it shares its core.
      setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
    };
    tick();
  });
  const sendEnd = performance.now();
  // Answers still on their way are waited for, but not forever: a server that fell over must not hang us.
  await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  say("window-end");
  const measuredSeconds = Math.max(sendEnd - (start + warmup * interval), 1) / 1000;
  say({
    mode: "open",
    rate: spec.rate,
    sent: total,
    ok: latencies.length,
    failed,
    achievedRps: latencies.length / measuredSeconds,
    connectionsOpened: opened,
    maxInFlight,
    maxGeneratorLateMs: maxLateMs,
    latencyMs: summary(latencies),
  });
  process.exit(0);
}

async function ttfb() {
  const connection = new Connection(spec.host, spec.port);
  await connection.ready;
  const firstByte = [];
  const total = [];
  let failed = 0;
  for (let i = 0; i < spec.warmup + spec.count; i++) {
    const started = performance.now();
    let first = 0;
    const status = await new Promise((resolve) => connection.send(request, resolve, () => (first = performance.now())));
    const done = performance.now();
    if (i < spec.warmup) continue;
    if (status !== 200 || first === 0) failed++;
    else {
      firstByte.push(first - started);
      total.push(done - started);
    }
    // Spaced out, as real chat requests are: back to back would measure a busy loop, not a first byte.
    await new Promise((resolve) => setTimeout(resolve, spec.gapMs ?? 5));
  }
  connection.close();
  say({ mode: "ttfb", failed, firstByteMs: summary(firstByte), totalMs: summary(total) });
}

const modes = { closed, open, ttfb };
const mode = modes[spec.mode];
if (mode === undefined) {
  process.stderr.write(`loadgen: unknown mode ${spec.mode}\n`);
  process.exit(2);
}
await mode();
process.exit(0);
