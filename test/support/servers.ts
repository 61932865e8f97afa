import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { PassThrough } from "node:stream";
import type { Express } from "express";
import OpenAI from "openai";
import { parse as parseYaml } from "yaml";
import { answerClientErrors } from "../../gateway/src/api/client-error";
import { type AppDependencies, createApp } from "../../gateway/src/app";
import { defaultBackendRegistry } from "../../gateway/src/backends";
import { parseConfig } from "../../gateway/src/config/config";
import { DEFAULT_MAX_HOPS } from "../../gateway/src/config/settings";
import { buildDependencies } from "../../gateway/src/dependencies";
import { createLogger } from "../../gateway/src/observability/logger";
import { createMockApp, type MockOptions, type SeenRequest } from "../../mock-remote/src/app";

export interface Running {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

/** Listens on an ephemeral loopback port; `close` also drops keep-alive sockets so tests end promptly. */
export async function listen(app: Express, at: { host?: string; port?: number } = {}): Promise<Running> {
  const host = at.host ?? "127.0.0.1";
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(at.port ?? 0, host, (error?: Error) => (error === undefined ? resolve(s) : reject(error)));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface RunningMock extends Running {
  readonly seen: SeenRequest[];
}

/** A mock-remote on loopback; `host` and `port` pick the address (a replica restarted where it was, say). */
export async function startMock(
  options: Partial<MockOptions> & { host?: string; port?: number } = {},
): Promise<RunningMock> {
  const { host, port, ...mock } = options;
  const { app, seen } = createMockApp({ defaultDelayMs: 0, modelId: "mock-model", ...mock });
  return {
    ...(await listen(app, { ...(host === undefined ? {} : { host }), ...(port === undefined ? {} : { port }) })),
    seen,
  };
}

/**
 * Makes a mock-remote's GET /health answer `status` from now on (its POST /mock/health: 503 fails its health
 * checks, 200 heals them); resolves to the status of that call.
 */
export async function setMockHealth(mockUrl: string, status: number): Promise<number> {
  const response = await fetch(`${mockUrl}/mock/health`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ status }),
    signal: AbortSignal.timeout(10_000),
  });
  await response.arrayBuffer();
  return response.status;
}

export interface RunningGateway extends Running {
  readonly deps: AppDependencies;
  /** Every line the gateway logged, as parsed JSON objects. */
  logLines(): Record<string, unknown>[];
  /** Everything the gateway logged, as raw text (for leak checks). */
  logText(): string;
}

/** The real app, built from YAML text the way main.ts builds it from a file, on an ephemeral port. */
export async function startGateway(
  yaml: string,
  options: {
    env?: Record<string, string>;
    maxBodyBytes?: number;
    maxHops?: number;
    bodyTimeoutSeconds?: number;
    maxBufferedBytes?: number;
  } = {},
): Promise<RunningGateway> {
  const env = options.env ?? {};
  const registry = defaultBackendRegistry();
  const config = parseConfig(parseYaml(yaml), registry, env);
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk: Buffer) => {
    text += chunk.toString("utf8");
  });
  const logger = createLogger({ level: "debug", service: "gateway", stream });
  const deps = buildDependencies({
    config,
    registry,
    logger,
    env,
    maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
    maxHops: options.maxHops ?? DEFAULT_MAX_HOPS,
    ...(options.bodyTimeoutSeconds === undefined ? {} : { bodyTimeoutSeconds: options.bodyTimeoutSeconds }),
    ...(options.maxBufferedBytes === undefined ? {} : { maxBufferedBytes: options.maxBufferedBytes }),
  });
  const running = await listen(createApp(deps));
  // As main.ts does.
  answerClientErrors(running.server);
  return {
    ...running,
    deps,
    logText: () => text,
    logLines: () =>
      text
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    close: async () => {
      await running.close();
      await deps.inference.close();
      await deps.limitsStore?.close();
    },
  };
}

/** A config with the `local` echo backend (the default) and an http backend `remote` at `remoteUrl`. */
export function twoBackendConfig(remoteUrl: string, remoteExtra = ""): string {
  return `
default_backend: local
backends:
  - name: local
    type: echo
  - name: remote
    type: http
    url: ${remoteUrl}
${remoteExtra
  .split("\n")
  .filter((line) => line.trim() !== "")
  .map((line) => `    ${line.trim()}`)
  .join("\n")}
`;
}

/**
 * twoBackendConfig plus two gateway keys, read from APP_KEY and LOCAL_ONLY_KEY: `app` may use everything,
 * `local-only` only `local`, at `perMinute` requests a minute (refused requests count too).
 */
export function keyedTwoBackendConfig(remoteUrl: string, remoteExtra: string, perMinute: number): string {
  return `${twoBackendConfig(remoteUrl, remoteExtra)}
auth:
  keys:
    - name: app
      key_env: APP_KEY
    - name: local-only
      key_env: LOCAL_ONLY_KEY
      backends: [local]
      limits:
        requests_per_minute: ${perMinute}
`;
}

/** mock-remote and a gateway in front of it with keyedTwoBackendConfig, for one test file. */
export interface KeyedServers {
  readonly mock: RunningMock;
  readonly gateway: RunningGateway;
  /** The official client on the gateway with `key`, no retries. */
  sdk(key: string): OpenAI;
}

/**
 * Starts mock-remote and a gateway with keyedTwoBackendConfig (the keys given in APP_KEY and LOCAL_ONLY_KEY)
 * before the calling file's tests and closes them after; the fields are set once `beforeAll` has run.
 */
export function keyedServers(
  keys: { readonly app: string; readonly localOnly: string },
  remoteExtra: string,
  perMinute: number,
): KeyedServers {
  let mock: RunningMock | undefined;
  let gateway: RunningGateway | undefined;
  const started = <T>(server: T | undefined): T => {
    if (server === undefined) throw new Error("keyedServers: used before its beforeAll ran");
    return server;
  };
  beforeAll(async () => {
    mock = await startMock();
    gateway = await startGateway(keyedTwoBackendConfig(mock.url, remoteExtra, perMinute), {
      env: { APP_KEY: keys.app, LOCAL_ONLY_KEY: keys.localOnly },
    });
  });
  afterAll(async () => {
    await gateway?.close();
    await mock?.close();
  });
  return {
    get mock() {
      return started(mock);
    },
    get gateway() {
      return started(gateway);
    },
    sdk: (key) => new OpenAI({ baseURL: `${started(gateway).url}/v1`, apiKey: key, maxRetries: 0 }),
  };
}

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

/** POST a JSON body (or raw text) to the completions endpoint and read the JSON answer. */
export async function chat(baseUrl: string, payload: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof payload === "string" ? payload : JSON.stringify(payload),
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

/** The header of a request made with API key `key`. */
export function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

export function userMessage(content: string): { role: "user"; content: string }[] {
  return [{ role: "user", content }];
}
