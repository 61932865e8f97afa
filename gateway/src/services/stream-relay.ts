import type { Backend } from "../backends/backend";
import { type BackendHealth, ClientClosedError } from "../errors";
import type { BackendSeries, Endpoint } from "../observability/metrics";
import type { Usage } from "../schemas/chat";
import { iterate, type PullListener, type PullStream } from "../utils/pull-stream";
import { estimateUsage, TokenCounter } from "../utils/tokens";
import type { CallOptions } from "./inference";

/** A stream whose first event is in hand, and what its relay needs to close its books. */
export interface RelayState<E> {
  readonly backend: Backend;
  /** The `model` the answer reports: the one the client asked for. */
  readonly model: string;
  readonly prompt: string;
  readonly options: CallOptions;
  readonly series: BackendSeries;
  readonly started: number;
  readonly events: PullStream<E>;
  /** The first event, already taken to know the stream started (undefined: it ended with none). */
  readonly first: E | undefined;
  /** Tells the target how the stream ended (its breaker, its in-flight count); called once, however it ends. */
  readonly settle: (health: BackendHealth) => void;
}

/**
 * What every endpoint's relay shares: taking the backend's events (the first one already in hand), and the
 * end of the stream however it comes (the books below). Subclasses turn events into what the API sends.
 */
export abstract class StreamRelay<E, T> implements PullStream<T>, AsyncIterable<T> {
  protected first: E | undefined;
  /** The answer's tokens as estimated so far (the text itself is not kept: it would grow with the stream). */
  protected readonly tokens = new TokenCounter();
  /** The backend's own usage, once it sent it. */
  protected usage: Usage | undefined;
  protected state: "relaying" | "ended" | "failed" | "closed" = "relaying";
  protected failure: unknown;
  /** The first token went out (its time is observed once per stream). */
  private tokenSeen = false;

  /** The backend's events (`relay.events`, read per item without a look at `relay`). */
  protected readonly events: PullStream<E>;

  constructor(protected readonly relay: RelayState<E>) {
    this.first = relay.first;
    this.events = relay.events;
  }

  abstract take(): T | undefined;

  abstract get ended(): boolean;

  wait(): Promise<void> {
    if (this.waiting() || this.first !== undefined || this.state !== "relaying") return Promise.resolve();
    return this.events.wait();
  }

  listen(listener: PullListener | undefined): void {
    this.events.listen(listener);
  }

  /** The consumer stopped early (the client left): release the backend and close the books. */
  close(): void {
    if (this.state !== "relaying") return;
    this.state = "closed";
    books.closed(this.relay, this.spent());
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return iterate(this);
  }

  /** Some of the answer's text went out: the first time, time to first token is observed. */
  protected tokenSent(): void {
    if (this.tokenSeen) return;
    this.tokenSeen = true;
    this.relay.series.firstToken((performance.now() - this.relay.options.startedAt) / 1000);
  }

  /** Whether the relay holds items made and not yet taken. */
  protected waiting(): boolean {
    return false;
  }

  /** The next backend event, or undefined for none yet; a failure there closes the books and is thrown on. */
  protected next(): E | undefined {
    const first = this.first;
    if (first !== undefined) {
      this.first = undefined;
      return first;
    }
    try {
      return this.events.take();
    } catch (error) {
      this.broke(error);
      throw error;
    }
  }

  /** The stream ended well: the books are closed with `usage` under `endpoint`. */
  protected endWell(usage: Usage, endpoint: Endpoint): void {
    this.state = "ended";
    books.ended(this.relay, usage, endpoint);
  }

  /** The stream broke after its first byte (the backend, or the gateway's verdict on an event). */
  protected broke(error: unknown): void {
    this.state = "failed";
    this.failure = error;
    books.broke(this.relay, error, this.spent());
  }

  /** The backend's usage, else the estimate: a stream that broke or was left still spent what it produced. */
  protected spent(): Usage {
    return this.usage ?? estimateUsage(this.relay.prompt, this.tokens.count);
  }
}

/**
 * The end of a relayed stream, however it came, in one place for every endpoint's relay: the backend call's
 * duration, the target's health and in-flight count, the tokens counted (and charged to the key's limit).
 */
const books = {
  /** The stream ended well: `usage` is the backend's, or the gateway's estimate. */
  ended(relay: RelayState<unknown>, usage: Usage, endpoint: Endpoint): void {
    relay.series.callEnded(elapsed(relay));
    relay.settle("success");
    relay.series.countTokens(usage, endpoint);
    relay.options.onUsage?.(usage);
  },

  /** The consumer stopped early (the client left): the backend is released, what it produced is charged. */
  closed(relay: RelayState<unknown>, spent: Usage): void {
    relay.series.callEnded(elapsed(relay));
    relay.settle("neutral");
    relay.options.onUsage?.(spent);
    relay.events.close();
  },

  /** The stream broke after its first byte: counted as `stream_interrupted` unless the client left. */
  broke(relay: RelayState<unknown>, error: unknown, spent: Usage): void {
    relay.series.callEnded(elapsed(relay));
    if (error instanceof ClientClosedError) relay.settle("neutral");
    else {
      relay.series.streamInterrupted();
      relay.settle("failure");
    }
    relay.options.onUsage?.(spent);
  },
};

function elapsed(relay: RelayState<unknown>): number {
  return (performance.now() - relay.started) / 1000;
}
