import type { Backend, BackendFactory } from "../../../gateway/src/backends/backend";
import { BackendRegistry } from "../../../gateway/src/backends/registry";
import { ResponseBudget } from "../../../gateway/src/backends/response-budget";
import { ConfigFields } from "../../../gateway/src/config/fields";
import { singleTarget } from "../../../gateway/src/balancing/pool";
import { createLogger } from "../../../gateway/src/observability/logger";

/** A backend type written the way a contributor would add one: a factory that checks its own fields. */
const shoutFactory: BackendFactory<{ readonly suffix: string }> = {
  type: "shout",
  parseOptions: (fields) => ({ suffix: fields.optionalString("suffix") ?? "!" }),
  create: (name, options): Backend => ({
    name,
    type: "shout",
    target: "in-process",
    pool: singleTarget(undefined),
    complete: async (call) => ({
      message: { role: "assistant", content: call.prompt.toUpperCase() + options.suffix },
      finishReason: "stop",
    }),
    stream: async function* (call) {
      yield { delta: { role: "assistant", content: call.prompt.toUpperCase() + options.suffix }, finishReason: "stop" };
    },
    close: async () => {},
  }),
};

const context = {
  env: {},
  logger: createLogger({ level: "error", service: "test" }),
  responseBudget: new ResponseBudget(1024 * 1024),
};

describe("BackendRegistry", () => {
  it("builds a registered type from its own parsed options", async () => {
    const registry = new BackendRegistry().register(shoutFactory);
    const fields = ConfigFields.from({ name: "loud", type: "shout", suffix: "?!" }, "backends[0]");
    const config = registry.parse(fields.requiredString("name"), fields.requiredString("type"), fields, {});
    const backend = registry.create(config, context);
    const result = await backend.complete({
      request: { messages: [] },
      prompt: "hi",
      requestId: "r",
      signal: new AbortController().signal,
    });
    expect(backend.name).toBe("loud");
    expect(result.message.content).toBe("HI?!");
  });

  it("refuses to register a type twice", () => {
    expect(() => new BackendRegistry().register(shoutFactory).register(shoutFactory)).toThrow(
      "backend type 'shout' is registered twice",
    );
  });

  it("rejects fields the type did not read", () => {
    const registry = new BackendRegistry().register(shoutFactory);
    const fields = ConfigFields.from({ name: "loud", type: "shout", volume: 11 }, "backends[2]");
    fields.requiredString("name");
    fields.requiredString("type");
    expect(() => registry.parse("loud", "shout", fields, {})).toThrow("backends[2].volume: is not a known setting");
  });

  it("lists its types", () => {
    expect(new BackendRegistry().register(shoutFactory).types()).toEqual(["shout"]);
  });
});
