import { UpstreamStreamError } from "../errors";
import type { Usage } from "../schemas/chat";
import type { ResponseEvent } from "../schemas/responses";
import { iterate, type PullStream } from "../utils/pull-stream";
import { estimateUsage, responseUsage, TokenCounter } from "../utils/tokens";
import { books, type RelayState } from "./relay-books";

/** The events that end a Response's stream: one of them must come, or the stream was cut. */
const FINAL_EVENTS = new Set(["response.completed", "response.failed", "response.incomplete"]);
/** The events that carry the Response itself, where the gateway sets `model` and adds `backend`. */
const LIFECYCLE_EVENTS = new Set(["response.created", "response.queued", "response.in_progress", ...FINAL_EVENTS]);

export type ResponseEventStream = PullStream<ResponseEvent> & AsyncIterable<ResponseEvent>;

/**
 * Relays a Responses API stream's typed events as they are taken, unchanged but for the Response each
 * lifecycle event carries (`model` as the client asked, `backend` added). The stream has no `[DONE]`: it
 * must end with `response.completed` (or `failed`, `incomplete`), else it was cut and the writer ends it with
 * an `error` event. Usage comes from the final Response, else is estimated from the text deltas.
 */
export class ResponseRelay implements ResponseEventStream {
  private first: ResponseEvent | undefined;
  private readonly tokens = new TokenCounter();
  private usage: Usage | undefined;
  private final = false;
  private started = false;
  private state: "relaying" | "ended" | "failed" | "closed" = "relaying";
  private failure: unknown;

  constructor(private readonly relay: RelayState<ResponseEvent>) {
    this.first = relay.first;
  }

  take(): ResponseEvent | undefined {
    if (this.state === "failed") throw this.failure;
    if (this.state !== "relaying") return undefined;
    let event = this.first;
    this.first = undefined;
    if (event === undefined) {
      try {
        event = this.relay.events.take();
      } catch (error) {
        this.broke(error);
        throw error;
      }
      if (event === undefined) {
        if (this.relay.events.ended) this.finish();
        return undefined;
      }
    }
    return this.accept(event);
  }

  get ended(): boolean {
    return this.state === "ended";
  }

  wait(): Promise<void> {
    if (this.first !== undefined || this.state !== "relaying") return Promise.resolve();
    return this.relay.events.wait();
  }

  listen(listener: (() => void) | undefined): void {
    this.relay.events.listen(listener);
  }

  close(): void {
    if (this.state !== "relaying") return;
    this.state = "closed";
    books.closed(this.relay, this.spent());
  }

  [Symbol.asyncIterator](): AsyncIterator<ResponseEvent> {
    return iterate(this);
  }

  private accept(event: ResponseEvent): ResponseEvent {
    const type = event.type;
    if (type === "response.output_text.delta" && typeof event.delta === "string") {
      this.tokens.add(event.delta);
      if (!this.started) {
        this.started = true;
        this.relay.series.firstToken((performance.now() - this.relay.options.startedAt) / 1000);
      }
    }
    if (!LIFECYCLE_EVENTS.has(type)) return event;
    const response = event.response;
    if (FINAL_EVENTS.has(type)) {
      this.final = true;
      if (typeof response === "object" && response !== null)
        this.usage = responseUsage((response as Record<string, unknown>).usage) ?? this.usage;
    }
    if (typeof response !== "object" || response === null || Array.isArray(response)) return event;
    return { ...event, response: { ...response, model: this.relay.model, backend: this.relay.backend.name } };
  }

  private finish(): void {
    if (!this.final) {
      const cut = new UpstreamStreamError(this.relay.backend.name, "the stream ended before response.completed");
      this.broke(cut);
      throw cut;
    }
    this.state = "ended";
    books.ended(this.relay, this.spent(), "responses");
  }

  private broke(error: unknown): void {
    this.state = "failed";
    this.failure = error;
    books.broke(this.relay, error, this.spent());
  }

  private spent(): Usage {
    return this.usage ?? estimateUsage(this.relay.prompt, this.tokens.count);
  }
}
