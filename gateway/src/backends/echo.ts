import { singleTarget, type TargetPool } from "../balancing/pool";
import type { Backend, BackendCall, BackendContext, BackendFactory, BackendResult, StreamEvent } from "./backend";

/** Answers `Echo: {prompt}` without leaving the process: for wiring checks, demos and benchmarks. */
class EchoBackend implements Backend {
  readonly type = "echo";
  readonly target = "in-process";

  readonly pool: TargetPool;

  constructor(
    readonly name: string,
    context: Pick<BackendContext, "circuitBreaker">,
  ) {
    this.pool = singleTarget(context.circuitBreaker);
  }

  async complete(call: BackendCall): Promise<BackendResult> {
    return { message: { role: "assistant", content: answer(call) }, finishReason: "stop" };
  }

  /** Word by word, as a model would stream it: "Echo:", " Hello", " world". */
  async *stream(call: BackendCall): AsyncGenerator<StreamEvent> {
    const words = answer(call).split(" ");
    yield { delta: { role: "assistant", content: words[0] ?? "" } };
    for (let index = 1; index < words.length; index++) yield { delta: { content: ` ${words[index] ?? ""}` } };
    yield { finishReason: "stop" };
  }

  async close(): Promise<void> {}
}

function answer(call: BackendCall): string {
  return `Echo: ${call.prompt}`;
}

export const echoBackendFactory: BackendFactory<Record<string, never>> = {
  type: "echo",
  parseOptions: () => ({}),
  create: (name, _options, context) => new EchoBackend(name, context),
};
