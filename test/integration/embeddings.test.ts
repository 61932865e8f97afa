import OpenAI from "openai";
import { total } from "../support/exposition";
import { scrape } from "../support/metrics";
import { keyedServers } from "../support/servers";

/**
 * `POST /v1/embeddings` through the official openai SDK: against the echo backend and against mock-remote
 * through the http backend, with the gateway's keys, limits and metrics.
 */

const APP_KEY = "gw-app-key-embeddings-0123456789";
const LOCAL_ONLY_KEY = "gw-local-only-key-embeddings-0123";

const servers = keyedServers({ app: APP_KEY, localOnly: LOCAL_ONLY_KEY }, "circuit_breaker: false", 3);

function sdk(key = APP_KEY): OpenAI {
  return servers.sdk(key);
}

const norm = (vector: readonly number[]) => Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));

function floats(base64: string): number[] {
  const bytes = Buffer.from(base64, "base64");
  return Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
}

describe("POST /v1/embeddings", () => {
  it("echo: one deterministic unit vector per input, 64 long by default, `dimensions` honoured", async () => {
    const first = await sdk().embeddings.create({ model: "local", input: ["hello world", "goodbye", "hello world"] });
    expect(first.object).toBe("list");
    expect(first.data.map((item) => item.index)).toEqual([0, 1, 2]);
    const [hello, goodbye, again] = first.data.map((item) => item.embedding);
    expect(hello).toHaveLength(64);
    expect(norm(hello ?? [])).toBeCloseTo(1, 5);
    expect(again).toEqual(hello);
    expect(goodbye).not.toEqual(hello);
    expect(first.usage).toEqual({ prompt_tokens: 5, total_tokens: 5 });
    expect((first as unknown as { backend: string }).backend).toBe("local");
    expect(first.model).toBe("local");

    const short = await sdk().embeddings.create({ model: "local", input: "hello world", dimensions: 16 });
    expect(short.data[0]?.embedding).toHaveLength(16);
    // The same text in another request: the same vector.
    const single = await sdk().embeddings.create({ model: "local", input: "hello world", encoding_format: "float" });
    expect(single.data[0]?.embedding).toEqual(hello);
  });

  it("echo: base64 carries exactly the floats' float32 bytes", async () => {
    const float = await sdk().embeddings.create({ model: "local", input: "vectors", encoding_format: "float" });
    const base64 = await sdk().embeddings.create({ model: "local", input: "vectors", encoding_format: "base64" });
    const encoded = base64.data[0]?.embedding as unknown;
    expect(typeof encoded).toBe("string");
    expect(floats(encoded as string)).toEqual(float.data[0]?.embedding);
  });

  it("http: passes the body to the upstream's /v1/embeddings and its answer back, with its usage", async () => {
    const answer = await sdk().embeddings.create({ model: "remote", input: ["one two three", "four"], dimensions: 4 });
    expect(answer.data).toHaveLength(2);
    expect(answer.data[0]?.embedding).toHaveLength(4);
    expect(answer.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 });
    expect((answer as unknown as { backend: string }).backend).toBe("remote");
    const seen = servers.mock.seen.filter((request) => request.path === "/v1/embeddings").at(-1);
    expect(seen?.body).toMatchObject({ model: "remote", input: ["one two three", "four"], dimensions: 4 });
    const raw = await fetch(`${servers.gateway.url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${APP_KEY}` },
      body: JSON.stringify({ model: "remote", input: [[1, 2, 3]], encoding_format: "base64" }),
    });
    expect(raw.status).toBe(200);
    expect(raw.headers.get("x-gateway-backend")).toBe("remote");
    const body = (await raw.json()) as { data: { embedding: unknown }[] };
    expect(floats(body.data[0]?.embedding as string)).toHaveLength(8);
  });

  it.each([
    ["a reset connection", { fault: "reset" }, 502, "upstream_unreachable"],
    ["a body that is not JSON", { fault: "malformed" }, 502, "upstream_invalid_response"],
    ["an answer without data", { fault: "empty" }, 502, "upstream_invalid_response"],
    ["an upstream 503", { status: 503 }, 502, "upstream_http_error"],
    ["an upstream 400", { status: 400 }, 400, "upstream_client_error"],
  ])("http: %s (%j) becomes an OpenAI error: %i %s", async (_what, knobs, status, code) => {
    const response = await fetch(`${servers.gateway.url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${APP_KEY}` },
      body: JSON.stringify({ model: "remote", input: "x", mock: knobs }),
    });
    expect(response.status).toBe(status);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it.each([
    [{ model: "local" }, "input is required", "input"],
    [{ input: [] }, "input must be a string", "input"],
    [{ input: [1, "two"] }, "input must be a string", "input"],
    [{ input: "x", encoding_format: "int8" }, "encoding_format must be float or base64", "encoding_format"],
    [{ input: "x", dimensions: 0 }, "dimensions must be an integer", "dimensions"],
    [{ input: "x", model: 5 }, "model must be a string", "model"],
  ])("refuses %j with a 400 naming the field", async (body, message, param) => {
    const error = await sdk()
      .embeddings.create(body as unknown as OpenAI.EmbeddingCreateParams)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
    expect((error as Error).message).toContain(message);
  });

  it("applies the key's allowlist and limits, and counts requests and tokens by endpoint", async () => {
    const before = await scrape(servers.gateway.url, { authorization: `Bearer ${APP_KEY}` });
    const refused = await sdk(LOCAL_ONLY_KEY)
      .embeddings.create({ model: "remote", input: "x" })
      .catch((caught: unknown) => caught);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    await sdk(LOCAL_ONLY_KEY).embeddings.create({ model: "local", input: "one two" });
    await sdk(LOCAL_ONLY_KEY).embeddings.create({ model: "local", input: "three" });
    const limited = await sdk(LOCAL_ONLY_KEY)
      .embeddings.create({ model: "local", input: "four" })
      .catch((caught: unknown) => caught);
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);

    const after = await scrape(servers.gateway.url, { authorization: `Bearer ${APP_KEY}` });
    const delta = (name: string, labels: Record<string, string>) =>
      total(after, name, labels) - total(before, name, labels);
    expect(delta("gateway_requests_total", { endpoint: "embeddings", backend: "local", code: "200" })).toBe(2);
    expect(delta("gateway_requests_total", { endpoint: "embeddings", code: "429" })).toBe(1);
    expect(delta("gateway_tokens_total", { endpoint: "embeddings", backend: "local", type: "prompt" })).toBe(3);
    expect(delta("gateway_requests_total", { endpoint: "chat" })).toBe(0);
  });
});
