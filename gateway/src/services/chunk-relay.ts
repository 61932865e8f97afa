import { randomUUID } from "node:crypto";
import type { StreamEvent } from "../backends/backend";
import { UpstreamInvalidResponseError } from "../errors";
import type { Endpoint } from "../observability/metrics";
import type { ChatCompletionChunk } from "../schemas/chat";
import type { TextCompletionChunk } from "../schemas/completions";
import type { PullStream } from "../utils/pull-stream";
import { type RelayState, StreamRelay } from "./stream-relay";

/** A chunk of either streamed completion: chat's (deltas) or a legacy text completion's (text). */
export type StreamChunk = ChatCompletionChunk | TextCompletionChunk;

/** A streamed answer as the API sends it: taken chunk by chunk (PullStream), or iterated. */
export type ChunkStream<C extends StreamChunk = ChatCompletionChunk> = PullStream<C> & AsyncIterable<C>;

/** What makes one endpoint's chunks: chat's or the legacy text completion's. */
export interface ChunkShape {
  readonly object: StreamChunk["object"];
  readonly endpoint: Endpoint;
  /** The choice a delta makes; `opening`: the first of its index (chat adds the assistant role there). */
  choice(
    index: number,
    delta: Readonly<Record<string, unknown>>,
    finishReason: string | null,
    opening: boolean,
  ): object;
  /** The answer's text a delta carries, for the estimate when the backend reports no usage. */
  text(delta: Readonly<Record<string, unknown>>): unknown;
  /** What a choice the backend never started opens with; undefined: it needs no opening. */
  readonly opening: Readonly<Record<string, unknown>> | undefined;
}

export const CHAT_CHUNKS: ChunkShape = {
  object: "chat.completion.chunk",
  endpoint: "chat",
  choice: (index, delta, finishReason, opening) => ({
    index,
    delta: opening ? { role: "assistant", ...delta } : delta,
    finish_reason: finishReason,
    logprobs: null,
  }),
  text: (delta) => delta.content,
  opening: { content: "" },
};

export const TEXT_CHUNKS: ChunkShape = {
  object: "text_completion",
  endpoint: "completions",
  choice: (index, delta, finishReason) => ({
    text: typeof delta.text === "string" ? delta.text : "",
    index,
    logprobs: delta.logprobs ?? null,
    finish_reason: finishReason,
  }),
  text: (delta) => delta.text,
  opening: undefined,
};

export interface ChunkRelayState extends RelayState<StreamEvent> {
  readonly includeUsage: boolean;
  readonly shape: ChunkShape;
  /** The choices the client asked for (`n`): every one gets its opening and its finish. */
  readonly choices: number;
}

/**
 * Turns backend events into OpenAI chunks as they are taken: one id and `created` for the whole stream,
 * (for chat) `role` on each choice's first delta, a `finish_reason` on each choice's last, and with
 * `include_usage` exactly one usage chunk at the end. A backend failure here is after the first byte, so it
 * counts as `stream_interrupted` and is thrown on for the writer to report in-band. Synchronous per event
 * (see utils/pull-stream.ts).
 */
export class ChunkRelay<C extends StreamChunk = ChatCompletionChunk>
  extends StreamRelay<StreamEvent, C>
  implements ChunkStream<C>
{
  // What every chunk of the stream shares, and the settings each chunk reads, kept on the relay itself: a
  // chunk touches one object of the relay's, not the settings and a shared-fields object besides (at
  // thousands of open streams each is a cache miss per chunk).
  private readonly id = randomUUID();
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly model: string;
  private readonly backendName: string;
  private readonly shape: ChunkShape;
  private readonly includeUsage: boolean;
  private readonly choices: number;
  /** Chunks made and not yet taken (a second choice of one event, the closing ones): made when first needed. */
  private pending: C[] | undefined;
  /** Per choice: whether its first delta went out, whether its finish reason did. */
  private readonly opened: boolean[];
  private readonly finished: boolean[];
  /** Choices whose first delta has not gone out yet: none left, a chunk needs no look at `opened`. */
  private unopened: number;

  /** The same object as `relay`, with the chunk settings. */
  constructor(setup: ChunkRelayState) {
    super(setup);
    this.model = setup.model;
    this.backendName = setup.backend.name;
    this.shape = setup.shape;
    this.includeUsage = setup.includeUsage;
    this.choices = setup.choices;
    this.opened = new Array<boolean>(setup.choices).fill(false);
    this.finished = new Array<boolean>(setup.choices).fill(false);
    this.unopened = setup.choices;
  }

  take(): C | undefined {
    if (this.pending !== undefined && this.pending.length > 0) return this.pending.shift();
    if (this.state === "failed") throw this.failure;
    if (this.state !== "relaying") return undefined;
    // Each turn takes one backend event; one that makes no chunk (usage alone) is followed by the next.
    for (;;) {
      const event = this.next();
      if (event === undefined) {
        if (!this.events.ended) return undefined;
        this.finish();
        return this.pending?.shift();
      }
      let chunk: C | undefined;
      try {
        chunk = this.accept(event);
        if (event.also !== undefined)
          for (const other of event.also) {
            const more = this.accept(other);
            if (more === undefined) continue;
            if (chunk === undefined) chunk = more;
            else (this.pending ??= []).push(more);
          }
      } catch (error) {
        // The gateway's own verdict on an event: the upstream request is let go too.
        this.broke(error);
        this.events.close();
        throw error;
      }
      if (chunk !== undefined) return chunk;
    }
  }

  get ended(): boolean {
    return this.state === "ended" && (this.pending === undefined || this.pending.length === 0);
  }

  protected override waiting(): boolean {
    return this.pending !== undefined && this.pending.length > 0;
  }

  private accept(event: StreamEvent): C | undefined {
    if (event.usage !== undefined) this.usage = event.usage;
    if (event.delta === undefined && event.finishReason === undefined) return undefined;
    const index = event.index ?? 0;
    if (index >= this.choices)
      throw new UpstreamInvalidResponseError(
        this.backendName,
        `a stream event is for choice ${index}, of ${this.choices} asked for`,
      );
    const delta = event.delta ?? {};
    const text = this.shape.text(delta);
    if (typeof text === "string") this.tokens.add(text);
    const opening = this.unopened > 0 && !this.opened[index];
    if (opening) {
      this.opened[index] = true;
      this.unopened--;
      this.tokenSent();
    }
    if (event.finishReason !== undefined) this.finished[index] = true;
    return this.chunk(index, delta, event.finishReason ?? null, opening);
  }

  private finish(): void {
    const { choices, shape } = this;
    const pending = (this.pending ??= []);
    for (let index = 0; index < choices; index++) {
      if (!this.opened[index] && shape.opening !== undefined)
        pending.push(this.chunk(index, shape.opening, null, true));
      if (!this.finished[index]) pending.push(this.chunk(index, {}, "stop", false));
    }
    const counted = this.spent();
    this.endWell(counted, shape.endpoint);
    if (this.includeUsage) {
      const { id, created, model, backendName: backend } = this;
      const object = shape.object;
      pending.push({ id, object, created, model, backend, choices: [], usage: counted } as unknown as C);
    }
  }

  private chunk(
    index: number,
    delta: Readonly<Record<string, unknown>>,
    finishReason: string | null,
    opening: boolean,
  ): C {
    const choices = [this.shape.choice(index, delta, finishReason, opening)];
    // Built as the chunk type of the relay's shape (CHAT_CHUNKS makes chat chunks, TEXT_CHUNKS text ones), each
    // field named: a spread of the shared fields cloned them through a runtime call per chunk.
    const { id, created, model, backendName: backend } = this;
    const object = this.shape.object;
    const chunk = this.includeUsage
      ? { id, object, created, model, backend, choices, usage: null }
      : { id, object, created, model, backend, choices };
    return chunk as unknown as C;
  }
}
