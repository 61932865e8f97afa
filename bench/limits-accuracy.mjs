// How exact a shared limit is across replicas: 3 gateway replicas x WORKERS=2, all counting in one Valkey
// (`limits_store`), one API key limited to 300 requests per minute, offered 2000 req/s spread over the three
// for 75 s (past the minute, so the window's turn is in it). Reports how many were admitted in the worst
// 60 s window (by the time each answer arrived), per replica, and what else came back.
//
//   node bench/limits-accuracy.mjs [--rate=2000] [--seconds=75] [--limit=300]
//
// Valkey runs in a container (valkey/valkey:8) on the host's network at 127.0.0.1. Needs the production build.
import { Agent, request } from "node:http";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { GATEWAY_ARGS, HOST, PATH, gatewayEnv, sleep, startServer, stopAll, tempDir } from "./lib.mjs";
import { startValkey } from "./limits-store.mjs";

const options = { rate: 2000, seconds: 75, limit: 300, replicas: 3, workers: 2 };
for (const arg of process.argv.slice(2)) {
  const match = /^--(rate|seconds|limit|replicas|workers)=(\d+)$/.exec(arg);
  if (match === null) throw new Error(`unknown argument ${arg}`);
  options[match[1]] = Number(match[2]);
}
const KEY = "bench-accuracy-key-5d8f2a9c1e7b";
const BODY = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "hi" }] });
/** Requests waiting for an answer at once, at most; past it a scheduled request is counted as not sent. */
const MAX_IN_FLIGHT = 4000;

const say = (text) => process.stdout.write(`${text}\n`);
const valkey = await startValkey(null);
if (valkey.skipped !== undefined) {
  say(`skipped: ${valkey.skipped}`);
  process.exit(0);
}
const dir = tempDir();
const config = join(dir, "accuracy.yaml");
writeFileSync(
  config,
  `default_backend: bench
backends:
  - name: bench
    type: echo
auth:
  keys:
    - name: team
      key_env: BENCH_KEY
      limits:
        requests_per_minute: ${options.limit}
limits_store:
  url: ${valkey.url}
  expected_replicas: ${options.replicas}
`,
);
try {
  const replicas = [];
  for (let i = 0; i < options.replicas; i++)
    replicas.push(
      await startServer({
        name: `replica-${i}`,
        cpus: null,
        args: GATEWAY_ARGS,
        env: gatewayEnv(config, { WORKERS: String(options.workers), BENCH_KEY: KEY, LOG_LEVEL: "warn" }),
      }),
    );
  // Every worker listening before the clock starts.
  await sleep(1500);
  // Idle sockets are dropped after 4 s, before the gateway's 5 s keep-alive timeout closes them: otherwise a
  // request sent on a socket the server is closing meets ECONNRESET (12 and 29 in two 75 s runs; 0 with this).
  const agents = replicas.map(() => new Agent({ keepAlive: true, maxSockets: 128, timeout: 4000 }));
  const admitted = [];
  const byReplica = replicas.map(() => 0);
  const statuses = {};
  let inFlight = 0;
  let sent = 0;
  let notSent = 0;
  let errors = 0;
  const errorCodes = {};
  const start = performance.now();
  const send = (index) => {
    inFlight++;
    sent++;
    const req = request(
      {
        host: HOST,
        port: replicas[index].port,
        path: PATH,
        method: "POST",
        agent: agents[index],
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(BODY),
          authorization: `Bearer ${KEY}`,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          inFlight--;
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          if (res.statusCode === 200) {
            admitted.push(performance.now() - start);
            byReplica[index]++;
          }
        });
      },
    );
    req.on("error", (error) => {
      inFlight--;
      errors++;
      errorCodes[error.code ?? error.message] = (errorCodes[error.code ?? error.message] ?? 0) + 1;
    });
    req.end(BODY);
  };
  // Open loop: request i is due at start + i / rate, sent on a 5 ms tick, whatever came back meanwhile.
  let due = 0;
  let next = 0;
  await new Promise((resolveRun) => {
    const tick = setInterval(() => {
      const elapsed = (performance.now() - start) / 1000;
      if (elapsed >= options.seconds) {
        clearInterval(tick);
        resolveRun();
        return;
      }
      const target = Math.floor(elapsed * options.rate);
      for (; due < target; due++) {
        if (inFlight >= MAX_IN_FLIGHT) notSent++;
        else send(next++ % replicas.length);
      }
    }, 5);
  });
  for (let i = 0; i < 200 && inFlight > 0; i++) await sleep(50);
  admitted.sort((a, b) => a - b);
  let worst = 0;
  let worstAt = 0;
  for (let i = 0, j = 0; j < admitted.length; j++) {
    while (admitted[j] - admitted[i] >= 60_000) i++;
    if (j - i + 1 > worst) {
      worst = j - i + 1;
      worstAt = admitted[i];
    }
  }
  say(
    `limits accuracy: ${options.replicas} replicas x WORKERS=${options.workers}, one key at ${options.limit} requests/minute, Valkey ${valkey.version}`,
  );
  say(
    `offered ${options.rate} req/s for ${options.seconds} s: sent ${sent} (${(sent / options.seconds).toFixed(0)} req/s), not sent ${notSent}, connection errors ${errors} ${JSON.stringify(errorCodes)}, still in flight ${inFlight}`,
  );
  say(`answers by status: ${JSON.stringify(statuses)}`);
  say(`admitted: ${admitted.length} in all; per replica ${byReplica.join(", ")}`);
  say(
    `most admitted in any 60 s window: ${worst} (limit ${options.limit}), the window starting ${(worstAt / 1000).toFixed(2)} s in`,
  );
  const firstMinute = admitted.filter((t) => t < 60_000).length;
  say(`admitted in the first 60 s: ${firstMinute}; after: ${admitted.length - firstMinute}`);
  // Decisions made without the store (a command past timeout_ms): each is its process's share, not the store's.
  const without = [];
  for (const replica of replicas) {
    const text = await (await fetch(`${replica.url}/metrics`)).text();
    const count = (outcome) =>
      Number(
        new RegExp(`^gateway_limits_decisions_without_store_total\\{outcome="${outcome}"\\} (\\S+)$`, "m").exec(
          text,
        )?.[1] ?? NaN,
      );
    without.push(`${count("admitted")} admitted / ${count("refused")} refused`);
  }
  say(`decided without the store, per replica: ${without.join("; ")}`);
} finally {
  stopAll();
  valkey.stop();
}
