import type { Backend, BackendCall } from "../../../gateway/src/backends/backend";
import { httpBackendFactory } from "../../../gateway/src/backends/http";
import { ConfigFields } from "../../../gateway/src/config/fields";
import { GatewayError } from "../../../gateway/src/errors";
import { createLogger } from "../../../gateway/src/observability/logger";
import { judge } from "../../../gateway/src/services/resilience";
import { type RunningMock, startMock, userMessage } from "../../support/servers";

const context = { env: {}, logger: createLogger({ level: "error", service: "test" }) };

let mock: RunningMock;
let backend: Backend;

beforeAll(async () => {
  mock = await startMock();
  const options = httpBackendFactory.parseOptions(ConfigFields.from({ url: mock.url, timeout: 5 }, "backends[0]"), {});
  backend = httpBackendFactory.create("remote", options, context);
});

afterAll(async () => {
  await backend.close();
  await mock.close();
});

function call(extra: Record<string, unknown>): BackendCall {
  return { request: { messages: userMessage("Hello"), ...extra }, prompt: "Hello", requestId: "r-1", signal: new AbortController().signal };
}

describe("http backend: a payload that cannot be serialised", () => {
  // A BigInt stands for anything JSON.stringify throws on (a value nested too deep throws RangeError).
  const unserialisable = { seed: 1n };

  it("is the gateway's own error, not the backend's failure, and nothing is sent (complete)", async () => {
    const before = mock.seen.length;
    const error: unknown = await backend.complete(call(unserialisable)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TypeError);
    expect(error).not.toBeInstanceOf(GatewayError);
    expect(judge(error)).toEqual({ retry: false, fallBack: false, health: "neutral" });
    expect(mock.seen.length).toBe(before);
  });

  it("is the gateway's own error, not the backend's failure, and nothing is sent (stream)", async () => {
    const before = mock.seen.length;
    const iterator = backend.stream(call(unserialisable))[Symbol.asyncIterator]();
    const error: unknown = await iterator.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TypeError);
    expect(judge(error).health).toBe("neutral");
    expect(mock.seen.length).toBe(before);
  });

  it("a serialisable payload still goes out (the control)", async () => {
    const result = await backend.complete(call({ seed: 1 }));
    expect(result.message.content).toBe("Remote: Hello");
  });
});
