import { readFileSync } from "node:fs";
import path from "node:path";
import { GenericContainer } from "testcontainers";
import { parse } from "yaml";
export { freePort } from "../support/ports";

/** The repository root: the build context of our Dockerfile and the directory of docker-compose.yml. */
export const REPO_ROOT = path.resolve(__dirname, "..", "..");

/**
 * The `image:` of a service in docker-compose.yml, so a test runs the very image (and tag) users get and the
 * tag is written once; .ci/run reads it from there too (`docker compose config --images`) to make its stand-in.
 */
export function composeImage(service: string): string {
  const compose: unknown = parse(readFileSync(path.join(REPO_ROOT, "docker-compose.yml"), "utf8"));
  const image = (compose as { services?: Record<string, { image?: unknown } | undefined> } | null)?.services?.[service]
    ?.image;
  if (typeof image !== "string") throw new Error(`docker-compose.yml has no image for service ${service}`);
  return image;
}

/**
 * The `image:` of a service in deploy/swarm/stack.yml (Valkey's tag is written there once); .ci/run makes its
 * stand-in from there (`docker compose -f deploy/swarm/stack.yml config --images`).
 */
export function stackImage(service: string): string {
  const stack: unknown = parse(readFileSync(path.join(REPO_ROOT, "deploy", "swarm", "stack.yml"), "utf8"));
  const image = (stack as { services?: Record<string, { image?: unknown } | undefined> } | null)?.services?.[service]
    ?.image;
  if (typeof image !== "string") throw new Error(`deploy/swarm/stack.yml has no image for service ${service}`);
  return image;
}

/** Builds, container starts and `docker stop` take far longer than jest's default 5 s. */
export const CONTAINER_TEST_TIMEOUT_MS = 5 * 60 * 1000;

/** Every HTTP call in these tests gives up after this, so a wedged container fails a test instead of hanging it. */
export const HTTP_TIMEOUT_MS = 30_000;

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

/** GET or POST JSON and read a JSON answer. */
export async function request(
  url: string,
  init: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const response = await fetch(url, {
    method: init.body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json", ...init.headers },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

export function chat(baseUrl: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return request(`${baseUrl}/v1/chat/completions`, { body, headers });
}

export function userMessage(content: string): { role: "user"; content: string }[] {
  return [{ role: "user", content }];
}

/**
 * The README's three curls and what each must answer, shared by the container and compose tests so both
 * hold the running stack to the same contract.
 */
export const THREE_CURLS: readonly (readonly [string, Record<string, unknown>, Record<string, unknown>])[] = [
  [
    "model 'local' -> the echo backend",
    { model: "local", messages: userMessage("Hello world") },
    {
      object: "chat.completion",
      backend: "local",
      choices: [{ index: 0, message: { role: "assistant", content: "Echo: Hello world" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 },
    },
  ],
  [
    "model 'remote' -> mock-remote",
    { model: "remote", messages: userMessage("Hello world") },
    {
      object: "chat.completion",
      backend: "remote",
      choices: [{ message: { role: "assistant", content: "Remote: Hello world" } }],
    },
  ],
  [
    "no model -> the default backend",
    { messages: userMessage("Hello world") },
    {
      object: "chat.completion",
      backend: "local",
      choices: [{ message: { role: "assistant", content: "Echo: Hello world" } }],
    },
  ],
];

/**
 * A container started with Docker's init (tini) as PID 1, as `init: true` starts it in docker-compose.yml:
 * so the signal handling these tests check is the one compose users get. testcontainers has no `withInit`.
 */
export class InitContainer extends GenericContainer {
  constructor(image: string) {
    super(image);
    this.hostConfig.Init = true;
  }
}
