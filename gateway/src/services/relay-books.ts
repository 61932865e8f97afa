import type { Backend } from "../backends/backend";
import { type BackendHealth, ClientClosedError } from "../errors";
import type { BackendSeries, Endpoint } from "../observability/metrics";
import type { Usage } from "../schemas/chat";
import type { PullStream } from "../utils/pull-stream";
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
 * The end of a relayed stream, however it came, in one place for every endpoint's relay: the backend call's
 * duration, the target's health and in-flight count, the tokens counted (and charged to the key's limit).
 */
export const books = {
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
