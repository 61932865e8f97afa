import type { Backend, BackendCall, BackendResult, StreamEvent } from "../../gateway/src/backends/backend";

/**
 * An in-process backend the test controls: answers `result` (streamed as one event), or throws `failure`
 * when set; with `holdCalls`, complete() waits until the test calls `release`, so metrics can be read
 * mid-call. Records every call.
 */
export class FakeBackend implements Backend {
  readonly type = "fake";
  readonly target = "in-process";
  readonly calls: BackendCall[] = [];
  failure: unknown;
  /** Set while a held call waits. */
  release: (() => void) | undefined;
  holdCalls = false;

  constructor(
    readonly name: string,
    public result: BackendResult = { message: { role: "assistant", content: `from ${name}` }, finishReason: "stop" },
  ) {}

  async complete(call: BackendCall): Promise<BackendResult> {
    this.calls.push(call);
    if (this.holdCalls) await new Promise<void>((resolve) => (this.release = resolve));
    if (this.failure !== undefined) throw this.failure;
    return this.result;
  }

  async *stream(call: BackendCall): AsyncGenerator<StreamEvent> {
    this.calls.push(call);
    if (this.failure !== undefined) throw this.failure;
    yield { delta: this.result.message, finishReason: this.result.finishReason };
  }

  async close(): Promise<void> {}
}
