import type { Backend, BackendCall, BackendResult, StreamEvent } from "../../gateway/src/backends/backend";
import { singleTarget, type TargetPool } from "../../gateway/src/balancing/pool";

export interface FakeScript {
  /** What a call that succeeds answers (default: `from {name}`); stream() yields it as one event. */
  readonly result?: BackendResult;
  /** What stream() yields instead of the result. */
  readonly events?: readonly StreamEvent[];
  /** stream() throws `error` once `after` events are out (after all of them when `after` is that many). */
  readonly streamFailure?: { readonly after: number; readonly error: Error };
  /** Per call, in order, the last one repeating: "ok", or an error to throw. Default: always ok. */
  readonly outcomes?: readonly (Error | "ok")[];
  readonly timeoutSeconds?: number;
}

/**
 * An in-process backend the test scripts (see FakeScript) and may change mid-test: set `failure` to make
 * every later call throw it, `holdCalls` to make complete() wait until the test calls `release` (to read
 * metrics mid-call). Records each call with the time it came.
 */
export class FakeBackend implements Backend {
  readonly type = "fake";
  readonly target = "in-process";
  readonly timeoutSeconds: number | undefined;
  readonly calls: { readonly call: BackendCall; readonly at: number }[] = [];
  /** Calls to the target of that name throw this. */
  readonly targetFailures = new Map<string, Error>();
  /** One target without a breaker; a test replaces it to give the backend a breaker or several targets. */
  pool: TargetPool = singleTarget(undefined);
  result: BackendResult;
  failure: Error | undefined;
  holdCalls = false;
  /** Set while a held call waits. */
  release: (() => void) | undefined;
  /** Set once a stream's generator has finished, however it ended (the caller returned or it threw). */
  returned = false;

  constructor(
    readonly name: string,
    private readonly script: FakeScript = {},
  ) {
    this.result = script.result ?? { message: { role: "assistant", content: `from ${name}` }, finishReason: "stop" };
    this.timeoutSeconds = script.timeoutSeconds;
  }

  /** Records the call and throws what the script says this call fails with, if anything. */
  private begin(call: BackendCall): void {
    this.calls.push({ call, at: performance.now() });
    if (this.failure !== undefined) throw this.failure;
    const targetFailure = call.target === undefined ? undefined : this.targetFailures.get(call.target.name);
    if (targetFailure !== undefined) throw targetFailure;
    const outcomes = this.script.outcomes ?? [];
    const outcome = outcomes[Math.min(this.calls.length, outcomes.length) - 1] ?? "ok";
    if (outcome !== "ok") throw outcome;
  }

  async complete(call: BackendCall): Promise<BackendResult> {
    if (this.holdCalls) await new Promise<void>((resolve) => (this.release = resolve));
    this.begin(call);
    return this.result;
  }

  async *stream(call: BackendCall): AsyncGenerator<StreamEvent> {
    try {
      this.begin(call);
      const events = this.script.events ?? [{ delta: this.result.message, finishReason: this.result.finishReason }];
      const failure = this.script.streamFailure;
      for (let index = 0; index < events.length; index++) {
        if (failure !== undefined && index === failure.after) throw failure.error;
        yield events[index] as StreamEvent;
      }
      if (failure !== undefined && failure.after >= events.length) throw failure.error;
    } finally {
      this.returned = true;
    }
  }

  async close(): Promise<void> {}
}
