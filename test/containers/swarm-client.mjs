// The client of test/containers/swarm.test.ts, run inside the swarm stack's network (`docker run --network
// STACK_default`), where `tasks.gateway` resolves to every gateway task (DNS round robin). Prints one JSON line.
//
//   ready             until every one of EXPECT tasks answers /health and (REMOTE_TARGETS) has that many
//                     mock-remote tasks up in its `remote` backend (bounded), the task addresses
//   limit             COUNT requests with KEY, one after another, spread over the tasks: statuses per task
//   load              SECONDS of RATE plain requests/s and STREAMS streamed requests/s (through the `remote`
//                     backend, each stream ~1 s long) with KEY, spread over the tasks as they come and go:
//                     how many failed and how many streams were cut, and why (and when: the first 20)
//   metrics           each task's gateway_requests_total by backend, and Prometheus' sum of the same; how many
//                     targets of `remote` (mock-remote tasks found by DNS) each task has up
//
// Every request goes on a connection of its own, to the address of a task resolved moments before: what a
// load balancer in front of the tasks does. Bounded everywhere: every request has a timeout.
import { resolve4 } from "node:dns/promises";
import { request } from "node:http";

const mode = process.argv[2];
const env = (name, fallback) => process.env[name] ?? fallback;
const KEY = env("KEY", "");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

async function tasks() {
  try {
    return (await resolve4("tasks.gateway")).sort();
  } catch {
    return [];
  }
}

/** One HTTP exchange on a fresh connection: status, body, or the error that ended it. */
function exchange(ip, path, body, timeoutMs = 30_000, port = 8080) {
  return new Promise((resolve) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: ip,
        port,
        path,
        method: payload === undefined ? "GET" : "POST",
        agent: false,
        timeout: timeoutMs,
        headers: {
          ...(payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
          ...(KEY === "" ? {} : { authorization: `Bearer ${KEY}` }),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode, text }));
        res.on("error", (error) => resolve({ error: `response: ${error.code ?? error.message}`, text }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (error) => resolve({ error: error.code ?? error.message }));
    req.end(payload);
  });
}

const messages = [{ role: "user", content: "hello swarm" }];

/** How many targets of `remote` a gateway's /metrics text says are up. */
function countRemoteUp(text) {
  return (text ?? "").match(/^gateway_target_up\{backend="remote",target="[^"]+"\} 1$/gm)?.length ?? 0;
}

async function ready() {
  const expect = Number(env("EXPECT", "3"));
  const remoteTargets = Number(env("REMOTE_TARGETS", "0"));
  const deadline = Date.now() + Number(env("TIMEOUT_MS", "90000"));
  let seen = [];
  while (Date.now() < deadline) {
    seen = await tasks();
    if (seen.length === expect) {
      const answers = await Promise.all(seen.map((ip) => exchange(ip, "/health", undefined, 2000)));
      // Up, and (REMOTE_TARGETS) each gateway has found and reached that many mock-remote tasks.
      const metrics =
        remoteTargets === 0 ? [] : await Promise.all(seen.map((ip) => exchange(ip, "/metrics", undefined, 2000)));
      if (
        answers.every((answer) => answer.status === 200) &&
        metrics.every((answer) => countRemoteUp(answer.text) >= remoteTargets)
      )
        return print({ ready: true, tasks: seen });
    }
    await sleep(500);
  }
  print({ ready: false, tasks: seen });
}

async function limit() {
  const count = Number(env("COUNT", "60"));
  const statuses = {};
  const byTask = {};
  for (let i = 0; i < count; i++) {
    const ips = await tasks();
    const ip = ips[i % ips.length];
    const answer = await exchange(ip, "/v1/chat/completions", { model: "local", messages });
    const status = answer.status ?? answer.error;
    statuses[status] = (statuses[status] ?? 0) + 1;
    byTask[ip] ??= {};
    byTask[ip][status] = (byTask[ip][status] ?? 0) + 1;
  }
  print({ statuses, byTask });
}

/** A refusal as `status 503 backend_unavailable`: the status and, when the body is an OpenAI error, its code. */
function refusal(answer) {
  let code;
  try {
    code = JSON.parse(answer.text).error?.code;
  } catch {
    code = undefined;
  }
  return typeof code === "string" ? `status ${answer.status} ${code}` : `status ${answer.status}`;
}

/** A streamed answer is whole when it ends with [DONE] and carries no error event. */
function streamProblem(answer) {
  if (answer.error !== undefined) return answer.error;
  if (answer.status !== 200) return refusal(answer);
  if (answer.text.includes('"error"')) return "error event";
  if (!answer.text.trimEnd().endsWith("data: [DONE]")) return "no [DONE]";
  return undefined;
}

async function load() {
  const seconds = Number(env("SECONDS", "40"));
  const rate = Number(env("RATE", "20"));
  const streams = Number(env("STREAMS", "5"));
  let ips = await tasks();
  const seen = new Set(ips);
  const refresh = setInterval(async () => {
    const fresh = await tasks();
    if (fresh.length > 0) ips = fresh;
    for (const ip of fresh) seen.add(ip);
  }, 250);
  const result = { plain: { ok: 0, failed: 0, errors: {} }, streams: { ok: 0, cut: 0, errors: {} } };
  const failures = [];
  const pending = [];
  let next = 0;
  const start = Date.now();
  const send = (streamed) => {
    const ip = ips[next++ % ips.length];
    const body = streamed
      ? { model: "remote", messages, stream: true, mock: { chunks: 10, chunk_delay_ms: 100 } }
      : { model: "remote", messages };
    pending.push(
      exchange(ip, "/v1/chat/completions", body).then((answer) => {
        const bucket = streamed ? result.streams : result.plain;
        const problem = streamed
          ? streamProblem(answer)
          : answer.status === 200
            ? undefined
            : (answer.error ?? refusal(answer));
        if (problem === undefined) bucket.ok++;
        else {
          if (streamed) bucket.cut++;
          else bucket.failed++;
          bucket.errors[`${problem} (${ip})`] = (bucket.errors[`${problem} (${ip})`] ?? 0) + 1;
          // When, for the gateway's log lines of the moment (the test prints them on a failure).
          if (failures.length < 20) failures.push({ problem, ip, at: new Date().toISOString() });
        }
      }),
    );
  };
  let sentPlain = 0;
  let sentStreams = 0;
  while (Date.now() - start < seconds * 1000) {
    const elapsed = (Date.now() - start) / 1000;
    while (sentPlain < elapsed * rate) (send(false), sentPlain++);
    while (sentStreams < elapsed * streams) (send(true), sentStreams++);
    await sleep(20);
  }
  await Promise.all(pending);
  clearInterval(refresh);
  print({ ...result, failures, tasksSeen: [...seen].sort() });
}

/** `gateway_requests_total` summed by backend, from one exposition text. */
function byBackend(text) {
  const sums = {};
  for (const line of text.split("\n")) {
    const match = /^gateway_requests_total\{([^}]*)\} (\S+)$/.exec(line);
    if (match === null) continue;
    const backend = /backend="([^"]*)"/.exec(match[1])?.[1] ?? "";
    sums[backend] = (sums[backend] ?? 0) + Number(match[2]);
  }
  return sums;
}

async function metrics() {
  const direct = {};
  /** Per gateway task: how many targets of `remote` (the mock-remote tasks it discovered) are up. */
  const remoteTargetsUp = [];
  const ips = await tasks();
  for (const ip of ips) {
    const answer = await exchange(ip, "/metrics", undefined, 5000);
    for (const [backend, value] of Object.entries(byBackend(answer.text ?? "")))
      direct[backend] = (direct[backend] ?? 0) + value;
    remoteTargetsUp.push(countRemoteUp(answer.text));
  }
  const query = encodeURIComponent("sum by (backend) (gateway_requests_total)");
  let prometheus = {};
  let targets = 0;
  try {
    const [prometheusIp] = await resolve4("prometheus");
    const sums = JSON.parse((await exchange(prometheusIp, `/api/v1/query?query=${query}`, undefined, 5000, 9090)).text);
    prometheus = Object.fromEntries(sums.data.result.map((r) => [r.metric.backend, Number(r.value[1])]));
    const up = JSON.parse((await exchange(prometheusIp, "/api/v1/query?query=up", undefined, 5000, 9090)).text);
    targets = up.data.result.filter((r) => r.value[1] === "1").length;
  } catch (error) {
    prometheus = { error: String(error) };
  }
  print({ tasks: ips, direct, prometheus, targets, remoteTargetsUp });
}

const modes = { ready, limit, load, metrics };
if (modes[mode] === undefined) {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
await modes[mode]();
