import { UpstreamStreamError } from "../errors";
import type { ResponseEvent } from "../schemas/responses";
import type { PullStream } from "../utils/pull-stream";
import { responseUsage } from "../utils/tokens";
import { StreamRelay } from "./stream-relay";

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
export class ResponseRelay extends StreamRelay<ResponseEvent, ResponseEvent> implements ResponseEventStream {
  /** A final event came: the stream may end. */
  private final = false;

  take(): ResponseEvent | undefined {
    if (this.state === "failed") throw this.failure;
    if (this.state !== "relaying") return undefined;
    const event = this.next();
    if (event !== undefined) return this.accept(event);
    if (this.events.ended) this.finish();
    return undefined;
  }

  get ended(): boolean {
    return this.state === "ended";
  }

  private accept(event: ResponseEvent): ResponseEvent {
    const type = event.type;
    if (type === "response.output_text.delta" && typeof event.delta === "string") {
      this.tokens.add(event.delta);
      this.tokenSent();
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
    if (this.final) {
      this.endWell(this.spent(), "responses");
      return;
    }
    const cut = new UpstreamStreamError(this.relay.backend.name, "the stream ended before response.completed");
    this.broke(cut);
    throw cut;
  }
}
