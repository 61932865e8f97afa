/**
 * Secrets never leak. The built gateway runs as a process with auth on and debug logging, its secrets in
 * the environment, a `.env` file and the config file; traffic of every kind goes through it (right keys,
 * near misses, keys in the wrong place, upstream auth failures that quote the upstream key, streams,
 * errors, scrapes, a shutdown). Then everything it printed, every answer it gave, its /metrics and every
 * request it sent upstream is searched for each secret.
 */
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../support/ports";
import { startGatewayProcess } from "../support/process";
import { bearer, type RunningMock, startMock, userMessage } from "../support/servers";

const APP_KEY = "gw-leak-app-6b1f0c2d9e8a7f34";
const HASHED_KEY = "gw-leak-hashed-0e4d8c2b6a9f1e37";
const METRICS_KEY = "gw-leak-metrics-5c7a9e1b3d2f4a68";
// Random-looking, so that no 4-character piece of it occurs by chance in anything the gateway prints.
const UPSTREAM_KEY = "sk-Lk8uPs3Tr9Qm2Wd7Xv4Bn6Hc1Zf5Ga0";
const SECRETS = { APP_KEY, HASHED_KEY, METRICS_KEY, UPSTREAM_KEY };
/** Where the gateway cuts upstream messages it quotes. */
const QUOTE_LIMIT = 300;

/** Every 4-character piece of `secret` (what is left of a key cut short still gives most of it away). */
function piecesOf(secret: string): string[] {
  return Array.from({ length: secret.length - 3 }, (_, start) => secret.slice(start, start + 4));
}
const HASHED_KEY_SHA256 = createHash("sha256").update(HASHED_KEY).digest("hex");

let mock: RunningMock;
let child: ChildProcess | undefined;
let dir = "";
let output = "";
/** Every status line, header and body the gateway answered with. */
const answers: string[] = [];

async function call(url: string, init: RequestInit = {}): Promise<number> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  const headers = [...response.headers].map(([name, value]) => `${name}: ${value}`).join("\n");
  answers.push(`${response.status}\n${headers}\n\n${await response.text()}`);
  return response.status;
}

function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
  return call(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

beforeAll(async () => {
  mock = await startMock();
  dir = mkdtempSync(join(tmpdir(), "gateway-leak-"));
  const down = await freePort();
  writeFileSync(
    join(dir, "config.yaml"),
    [
      "default_backend: local",
      "backends:",
      "  - name: local",
      "    type: echo",
      "  - name: remote",
      "    type: http",
      `    url: ${mock.url}`,
      "    api_key_env: UPSTREAM_KEY",
      "    retries: 1",
      "  - name: down",
      "    type: http",
      `    url: http://127.0.0.1:${down}`,
      "    api_key_env: UPSTREAM_KEY",
      "    retries: 1",
      "    fallbacks: [remote]",
      // Answers 401s by design below: its circuit must stay closed for all of them.
      "  - name: quoting",
      "    type: http",
      `    url: ${mock.url}`,
      "    api_key_env: UPSTREAM_KEY",
      "    circuit_breaker: false",
      "auth:",
      "  keys:",
      "    - name: app",
      "      key_env: APP_KEY",
      "    - name: hashed",
      `      sha256: ${HASHED_KEY_SHA256}`,
      "  metrics_key:",
      "    key_env: METRICS_KEY",
      "",
    ].join("\n"),
  );
  // World-readable on purpose: the gateway must warn about both files, naming no secret.
  chmodSync(join(dir, "config.yaml"), 0o644);
  writeFileSync(join(dir, ".env"), `APP_KEY=${APP_KEY}\nMETRICS_KEY=${METRICS_KEY}\n`);
  chmodSync(join(dir, ".env"), 0o644);

  const started = await startGatewayProcess(dir, {
    CONFIG_FILE: "config.yaml",
    LOG_LEVEL: "silly",
    DRAIN_DELAY: "0",
    UPSTREAM_KEY,
  });
  child = started.child;
  const url = started.url;

  // Right keys, on every path and kind of answer.
  for (const key of [APP_KEY, HASHED_KEY]) {
    await post(url, { model: "local", messages: userMessage("Hello") }, bearer(key));
    await post(url, { model: "remote", messages: userMessage("Hello") }, bearer(key));
    await post(url, { model: "remote", stream: true, messages: userMessage("Hello stream") }, bearer(key));
    await post(url, { model: "down", messages: userMessage("Hello fallback") }, bearer(key));
    await call(`${url}/v1/models`, { headers: bearer(key) });
  }
  // Upstream failures, one of which quotes the upstream key; a broken stream; bad input.
  await post(url, { model: "remote", messages: userMessage("Hello"), mock: { status: 401 } }, bearer(APP_KEY));
  await post(url, { model: "remote", messages: userMessage("Hello"), mock: { status: 500 } }, bearer(APP_KEY));
  await post(
    url,
    { model: "remote", stream: true, messages: userMessage("Hello"), mock: { fault: "reset", after: 1 } },
    bearer(APP_KEY),
  );
  // The upstream quotes the client's `user` before the key: every placement of the key around the point
  // where the gateway cuts quoted messages (300 characters), in an error answer and in a stream's error event.
  const before = "User : Incorrect API key provided: ".length;
  for (let offset = QUOTE_LIMIT - UPSTREAM_KEY.length - 2; offset <= QUOTE_LIMIT + 2; offset++) {
    const user = "u".repeat(offset - before);
    await post(url, { model: "quoting", user, messages: userMessage("Hello"), mock: { status: 401 } }, bearer(APP_KEY));
    await post(
      url,
      { model: "quoting", user, stream: true, messages: userMessage("Hello"), mock: { fault: "error", after: 1 } },
      bearer(APP_KEY),
    );
  }
  await call(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...bearer(APP_KEY) },
    body: "{ not json",
  });
  await call(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "text/plain", ...bearer(APP_KEY) },
    body: "{}",
  });
  // Wrong keys: near misses, keys in the wrong place, the wrong scheme.
  for (const key of [
    `${APP_KEY}x`,
    APP_KEY.slice(0, -1),
    APP_KEY.toUpperCase(),
    METRICS_KEY,
    UPSTREAM_KEY,
    HASHED_KEY_SHA256,
  ]) {
    await post(url, { messages: userMessage("Hello") }, bearer(key));
  }
  await post(
    url,
    { messages: userMessage("Hello") },
    { authorization: `Basic ${Buffer.from(`app:${APP_KEY}`).toString("base64")}` },
  );
  await post(url, { messages: userMessage("Hello") }, { authorization: APP_KEY });
  await post(url, { messages: userMessage("Hello") });
  await call(`${url}/v1/models`, { headers: bearer(`${HASHED_KEY}0`) });
  // Scrapes: refused, refused with an API key, allowed.
  await call(`${url}/metrics`);
  await call(`${url}/metrics`, { headers: bearer(APP_KEY) });
  expect(await call(`${url}/metrics`, { headers: bearer(METRICS_KEY) })).toBe(200);
  await call(`${url}/health`, { headers: bearer(APP_KEY) });

  child.kill("SIGTERM");
  await started.exited();
  output = started.output();
}, 60_000);

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) child.kill("SIGKILL");
  await mock?.close();
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

describe("no secret leaks", () => {
  it("the traffic happened as intended (so the search below means something)", () => {
    const statuses = answers.map((answer) => Number(answer.split("\n")[0]));
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(11);
    expect(statuses.filter((status) => status === 401).length).toBeGreaterThanOrEqual(10);
    expect(output).toContain('"message":"request"');
    expect(output).toContain('"key":"app"');
    expect(output).toContain('"key":"hashed"');
    // The upstream did quote its key to the gateway.
    expect(JSON.stringify(mock.seen)).toContain(UPSTREAM_KEY);
  });

  it.each(Object.entries(SECRETS))("%s is in nothing the gateway printed, from start to shutdown", (_name, secret) => {
    expect(output).not.toContain(secret);
  });

  it.each(Object.entries(SECRETS))("%s is in no answer: status, headers or body", (_name, secret) => {
    for (const answer of answers) expect(answer).not.toContain(secret);
  });

  it("no 4-character piece of the upstream key is printed or answered, wherever the upstream quoted it", () => {
    expect(
      answers.filter((answer) => answer.includes("Incorrect API key provided: [redacted]")).length,
    ).toBeGreaterThan(0);
    const pieces = piecesOf(UPSTREAM_KEY);
    expect(pieces.filter((piece) => output.includes(piece))).toEqual([]);
    for (const answer of answers) expect(pieces.filter((piece) => answer.includes(piece))).toEqual([]);
  });

  it("the key hash from the config file is printed nowhere either", () => {
    expect(output).not.toContain(HASHED_KEY_SHA256);
    for (const answer of answers) expect(answer).not.toContain(HASHED_KEY_SHA256);
  });

  it("the client's gateway keys never went upstream; the upstream key went only as the Authorization header", () => {
    for (const seen of mock.seen) {
      const text = JSON.stringify(seen);
      for (const key of [APP_KEY, HASHED_KEY, METRICS_KEY]) expect(text).not.toContain(key);
      expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
      const { authorization: _authorization, ...otherHeaders } = seen.headers;
      expect(JSON.stringify({ ...seen, headers: otherHeaders })).not.toContain(UPSTREAM_KEY);
    }
  });

  it("warned about the world-readable files that hold secrets, naming variables, not values", () => {
    expect(output).toContain("config.yaml holds API key hashes and is readable by every user");
    expect(output).toMatch(/\.env holds secrets \(APP_KEY, METRICS_KEY\)|\.env holds secrets \(METRICS_KEY, APP_KEY\)/);
  });
});
