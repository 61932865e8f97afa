import type { Backend, BackendCall, BackendFactory, BackendResult } from "./backend";

/** Answers `Echo: {prompt}` without leaving the process: for wiring checks, demos and benchmarks. */
class EchoBackend implements Backend {
  readonly type = "echo";
  readonly target = "in-process";

  constructor(readonly name: string) {}

  async complete(call: BackendCall): Promise<BackendResult> {
    return { message: { role: "assistant", content: `Echo: ${call.prompt}` }, finishReason: "stop" };
  }

  async close(): Promise<void> {}
}

export const echoBackendFactory: BackendFactory<Record<string, never>> = {
  type: "echo",
  parseOptions: () => ({}),
  create: (name) => new EchoBackend(name),
};
