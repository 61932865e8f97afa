import { randomUUID } from "node:crypto";
import type { Backend, StreamEvent } from "../backends/backend";
import { type BackendHealth, ClientClosedError } from "../errors";
import type { BackendSeries } from "../observability/metrics";
import type { ChatCompletionChunk, Usage } from "../schemas/chat";
import { estimateUsage, TokenCounter } from "../utils/tokens";
import { iterate, type PullStream } from "../utils/pull-stream";
import type { CallOptions } from "./inference";

/** A streamed answer as the API sends it: taken chunk by chunk (PullStream), or iterated. */
export type ChunkStream = PullStream<ChatCompletionChunk> & AsyncIterable<ChatCompletionChunk>;

export interface RelayState {
  readonly backend: Backend;
  /** The `model` every chunk reports: the one the client asked for. */
  readonly model: string;
  readonly prompt: string;
  readonly options: CallOptions;
  readonly series: BackendSeries;
  readonly started: number;
  readonly events: PullStream<StreamEvent>;
  /** The first event, already taken to know the stream started (undefined: it ended with none). */
  readonly first: StreamEvent | undefined;
  readonly includeUsage: boolean;
  /** Tells the target how the stream ended (its breaker, its in-flight count); called once, however it ends. */
  readonly settle: (health: BackendHealth) => void;
}

/**
 * Turns backend events into OpenAI chunks as they are taken: one id and `created` for the whole stream,
 * `role` on the first delta, a `finish_reason` on the last, and with `include_usage` exactly one usage
 * chunk at the end. A backend failure here is after the first byte, so it counts as `stream_interrupted`
 * and is thrown on for the writer to report in-band. Synchronous per event (see utils/pull-stream.ts).
 */
export class ChunkRelay implements ChunkStream {
  private readonly base: Omit<ChatCompletionChunk, "choices" | "usage">;
  /** Chunks made and not yet taken: the closing ones, made together at the end. */
  private readonly closing: ChatCompletionChunk[] = [];
  private first: StreamEvent | undefined;
  /** The completion's tokens as estimated so far (the text itself is not kept: it would grow with the stream). */
  private readonly tokens = new TokenCounter();
  private usage: Usage | undefined;
  private finishReason: string | undefined;
  private sentRole = false;
  private state: "relaying" | "ended" | "failed" | "closed" = "relaying";
  private failure: unknown;

  constructor(private readonly relay: RelayState) {
    this.first = relay.first;
    this.base = {
      id: randomUUID(),
      object: "chat.completion.chunk",
      created: Math.floor(Date.now() / 1000),
      model: relay.model,
      backend: relay.backend.name,
    };
  }

  take(): ChatCompletionChunk | undefined {
    const closing = this.closing.shift();
    if (closing !== undefined) return closing;
    if (this.state === "failed") throw this.failure;
    if (this.state !== "relaying") return undefined;
    // Each turn takes one backend event; one that makes no chunk (usage alone) is followed by the next.
    for (;;) {
      let event = this.first;
      this.first = undefined;
      if (event === undefined) {
        try {
          event = this.relay.events.take();
        } catch (error) {
          this.broke(error);
          throw error;
        }
      }
      if (event === undefined) {
        if (!this.relay.events.ended) return undefined;
        this.finish();
        return this.closing.shift();
      }
      const chunk = this.accept(event);
      if (chunk !== undefined) return chunk;
    }
  }

  get ended(): boolean {
    return this.state === "ended" && this.closing.length === 0;
  }

  wait(): Promise<void> {
    if (this.closing.length > 0 || this.first !== undefined || this.state !== "relaying") return Promise.resolve();
    return this.relay.events.wait();
  }

  listen(listener: (() => void) | undefined): void {
    this.relay.events.listen(listener);
  }

  /** The consumer stopped early (the client left): release the backend and close the books. */
  close(): void {
    if (this.state !== "relaying") return;
    this.state = "closed";
    this.relay.series.callEnded(this.elapsed());
    this.relay.settle("neutral");
    this.chargeEstimate();
    this.relay.events.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk> {
    return iterate(this);
  }

  private accept(event: StreamEvent): ChatCompletionChunk | undefined {
    if (event.usage !== undefined) this.usage = event.usage;
    if (event.delta === undefined && event.finishReason === undefined) return undefined;
    let delta = event.delta ?? {};
    if (typeof delta.content === "string") this.tokens.add(delta.content);
    if (!this.sentRole) {
      delta = { role: "assistant", ...delta };
      this.sentRole = true;
      this.relay.series.firstToken((performance.now() - this.relay.options.startedAt) / 1000);
    }
    if (event.finishReason !== undefined) this.finishReason = event.finishReason;
    return this.chunk(delta, event.finishReason ?? null);
  }

  private finish(): void {
    this.state = "ended";
    const { series, options } = this.relay;
    series.callEnded(this.elapsed());
    this.relay.settle("success");
    if (!this.sentRole) this.closing.push(this.chunk({ role: "assistant", content: "" }, null));
    if (this.finishReason === undefined) this.closing.push(this.chunk({}, "stop"));
    const counted = this.usage ?? estimateUsage(this.relay.prompt, this.tokens.count);
    series.countTokens(counted);
    options.onUsage?.(counted);
    if (this.relay.includeUsage) this.closing.push({ ...this.base, choices: [], usage: counted });
  }

  private broke(error: unknown): void {
    this.state = "failed";
    this.failure = error;
    this.relay.series.callEnded(this.elapsed());
    if (error instanceof ClientClosedError) this.relay.settle("neutral");
    else {
      this.relay.series.streamInterrupted();
      this.relay.settle("failure");
    }
    this.chargeEstimate();
  }

  /** A stream that broke or was left still spent what it produced: the key's token limit is charged an estimate. */
  private chargeEstimate(): void {
    this.relay.options.onUsage?.(this.usage ?? estimateUsage(this.relay.prompt, this.tokens.count));
  }

  private chunk(delta: Readonly<Record<string, unknown>>, finishReason: string | null): ChatCompletionChunk {
    const choices = [{ index: 0 as const, delta, finish_reason: finishReason, logprobs: null }];
    return this.relay.includeUsage ? { ...this.base, choices, usage: null } : { ...this.base, choices };
  }

  private elapsed(): number {
    return (performance.now() - this.relay.started) / 1000;
  }
}
