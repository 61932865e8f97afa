import type { AccessConfig, ClientLimits } from "./config";
import { type LimitsUnavailableError, RateLimitError, TooManyConcurrentRequestsError } from "../errors";

const WINDOW_SECONDS = 60;
/**
 * Buckets kept: the current (partial) second and the 60 before it. A request counts for 60 to 61 seconds,
 * never less, so no span of 60 seconds ever holds more than the limit (with 60 buckets, a burst at the end
 * of one second and another at the start of the second 60 s later fell within 59 s of each other: up to
 * twice the limit in one minute).
 */
const BUCKETS = WINDOW_SECONDS + 1;

/**
 * A sum over the last minute, kept in 61 one-second buckets: exact up to the second, O(1) memory per
 * client, no timers. The bucket of second `s` leaves the window when second `s + 61` begins.
 */
export class SlidingWindow {
  private readonly buckets = new Float64Array(BUCKETS);
  /** The second (Unix time) of the newest bucket; older seconds are in the slots before it, modulo 61. */
  private newest = -Infinity;
  private sum = 0;

  total(nowMs: number): number {
    this.advance(nowMs);
    return this.sum;
  }

  add(nowMs: number, amount: number): void {
    this.advance(nowMs);
    this.buckets[this.newest % BUCKETS] = (this.buckets[this.newest % BUCKETS] ?? 0) + amount;
    this.sum += amount;
  }

  /** Whole seconds (at least 1) until the sum is at most `target`, as old buckets leave the window. */
  secondsUntilAtMost(nowMs: number, target: number): number {
    this.advance(nowMs);
    let remaining = this.sum;
    for (let age = BUCKETS - 1; age >= 0 && remaining > target; age--) {
      const second = this.newest - age;
      remaining -= this.buckets[second % BUCKETS] ?? 0;
      if (remaining <= target) return Math.max(1, Math.ceil(((second + BUCKETS) * 1000 - nowMs) / 1000));
    }
    return 1;
  }

  private advance(nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    if (second <= this.newest) return;
    if (second - this.newest >= BUCKETS) {
      this.buckets.fill(0);
      this.sum = 0;
    } else {
      for (let s = this.newest + 1; s <= second; s++) {
        this.sum -= this.buckets[s % BUCKETS] ?? 0;
        this.buckets[s % BUCKETS] = 0;
      }
    }
    this.newest = second;
  }
}

/** One client's books: requests and tokens in the last minute, and requests in flight now. */
class ClientState {
  readonly requests: SlidingWindow | undefined;
  readonly tokens: SlidingWindow | undefined;
  inFlight = 0;
  /** Tokens reserved by the requests in flight, not yet settled to what they used. */
  reservedTokens = 0;

  constructor(readonly limits: ClientLimits) {
    this.requests = limits.requestsPerMinute === undefined ? undefined : new SlidingWindow();
    this.tokens = limits.tokensPerMinute === undefined ? undefined : new SlidingWindow();
  }
}

/** Why a request was turned away, as the `reason` label of gateway_rejected_requests_total. */
export type RejectReason =
  | "requests_per_minute"
  | "tokens_per_minute"
  | "client_concurrency"
  | "gateway_concurrency"
  | "limits_store_unavailable";

export class AdmissionError extends Error {
  constructor(
    readonly reason: RejectReason,
    readonly error: RateLimitError | TooManyConcurrentRequestsError | LimitsUnavailableError,
  ) {
    super(error.message);
  }
}

/** An admitted request: release it when it is over, and charge the tokens it used once they are known. */
export interface Ticket {
  release(): void;
  charge(tokens: number): void;
}

/**
 * Client addresses tracked at once when auth is off; the least recently seen idle one makes room. Addresses
 * with requests in flight are never dropped, so the table can exceed this by at most max_concurrent_requests.
 */
export const MAX_TRACKED_ADDRESSES = 10_000;

/**
 * The share of `max_concurrent_requests` one client (a key, or an address with auth off) may hold when its
 * limits set no `concurrent_requests` of their own: one client alone cannot take every slot.
 */
export const DEFAULT_CLIENT_SHARE = 0.5;

/** The most requests one client may have in flight when its limits do not say: its share of the gateway's. */
export function clientShare(maxConcurrentRequests: number): number {
  return Math.max(1, Math.ceil(maxConcurrentRequests * DEFAULT_CLIENT_SHARE));
}

/**
 * Decides whether a request may start: the gateway-wide cap on requests in flight, then the client's own
 * limits (per API key, or per client address when auth is off). In-process, so exact on one instance;
 * with several instances (or WORKERS > 1) each one counts on its own.
 */
export class Admission {
  private inFlight = 0;
  private byKey: ReadonlyMap<string, ClientState>;
  private readonly byAddress = new Map<string, ClientState>();
  private share: number;

  constructor(
    private access: AccessConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.byKey = new Map(access.keys.map((key) => [key.name, new ClientState(key.limits)]));
    this.share = clientShare(access.maxConcurrentRequests);
  }

  /**
   * A reloaded config's limits, from now on. A key (or, auth off, the default limits) whose limits did not
   * change keeps its books: its last minute's requests and tokens, its requests in flight. A changed or new
   * one starts afresh; requests in flight keep releasing into the books they were counted in.
   */
  reconfigure(access: AccessConfig): void {
    const before = this.byKey;
    this.byKey = new Map(
      access.keys.map((key) => {
        const kept = before.get(key.name);
        return [
          key.name,
          kept !== undefined && sameLimits(kept.limits, key.limits) ? kept : new ClientState(key.limits),
        ];
      }),
    );
    if (!sameLimits(this.access.limits, access.limits)) this.byAddress.clear();
    this.access = access;
    this.share = clientShare(access.maxConcurrentRequests);
  }

  /** Requests in flight on the completions path now, over all clients. */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /**
   * The checks that need no slot, made before the body is read: a client over its requests or tokens per
   * minute is refused without the gateway reading (or waiting for) its body. Counts nothing.
   */
  precheck(client: { readonly key?: string; readonly address: string }): void {
    // Without rate limits there is nothing to check: admit() alone looks the address up (and ages it).
    if (client.key === undefined && !hasRates(this.access.limits)) return;
    const state = this.stateOf(client);
    if (state !== undefined) this.checkRates(state, whoIs(client), this.now());
  }

  /**
   * Admits one request of a key (by name) or, when auth is off, of a client address. Throws AdmissionError
   * when a limit says no; a refused request counts against nothing. Called once the body has arrived, so a
   * slow body never holds a slot.
   */
  admit(client: { readonly key?: string; readonly address: string; readonly reserve?: number }): Ticket {
    if (this.inFlight >= this.access.maxConcurrentRequests) {
      throw new AdmissionError(
        "gateway_concurrency",
        new TooManyConcurrentRequestsError(
          `The gateway has ${this.access.maxConcurrentRequests} requests in flight, its limit. Try again in a moment.`,
        ),
      );
    }
    const nowMs = this.now();
    const state = this.stateOf(client);
    // Only a client with a tokens limit reserves anything.
    const reserve = state?.tokens === undefined ? 0 : Math.max(0, client.reserve ?? 0);
    if (state !== undefined) {
      const who = whoIs(client);
      this.checkConcurrency(state, who);
      this.checkRates(state, who, nowMs, reserve);
    }
    this.inFlight++;
    if (state !== undefined) {
      state.inFlight++;
      state.requests?.add(nowMs, 1);
      state.reservedTokens += reserve;
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.inFlight--;
        if (state !== undefined) {
          state.inFlight--;
          state.reservedTokens -= reserve;
        }
      },
      charge: (tokens) => {
        if (tokens > 0) state?.tokens?.add(this.now(), tokens);
      },
    };
  }

  private stateOf(client: { readonly key?: string; readonly address: string }): ClientState | undefined {
    return client.key === undefined ? this.addressState(client.address) : this.byKey.get(client.key);
  }

  private checkConcurrency(state: ClientState, who: string): void {
    const own = state.limits.concurrentRequests;
    const limit = own ?? this.share;
    if (state.inFlight < limit) return;
    if (own !== undefined) throw limitRefusal("client_concurrency", who, state.limits, 1);
    throw new AdmissionError(
      "client_concurrency",
      new TooManyConcurrentRequestsError(
        `${capitalised(who)} has ${limit} requests in flight, its share of the gateway's ${this.access.maxConcurrentRequests}. Try again in a moment.`,
      ),
    );
  }

  /**
   * Requests per minute, then tokens: what the last minute used plus what the requests in flight reserved,
   * plus `reserve` (this request's own estimate), must fit the limit. A request alone always fits: with
   * nothing used and nothing in flight, even one whose estimate is past the limit is let through.
   */
  private checkRates(state: ClientState, who: string, nowMs: number, reserve = 0): void {
    const { requestsPerMinute, tokensPerMinute } = state.limits;
    if (
      requestsPerMinute !== undefined &&
      state.requests !== undefined &&
      state.requests.total(nowMs) + 1 > requestsPerMinute
    ) {
      throw limitRefusal(
        "requests_per_minute",
        who,
        state.limits,
        state.requests.secondsUntilAtMost(nowMs, requestsPerMinute - 1),
      );
    }
    if (tokensPerMinute !== undefined && state.tokens !== undefined) {
      const committed = state.tokens.total(nowMs) + state.reservedTokens;
      if (committed >= tokensPerMinute || (committed > 0 && committed + reserve > tokensPerMinute)) {
        const room = tokensPerMinute - state.reservedTokens - Math.max(1, reserve);
        throw limitRefusal(
          "tokens_per_minute",
          who,
          state.limits,
          room < 0 ? 1 : state.tokens.secondsUntilAtMost(nowMs, room),
        );
      }
    }
  }

  /** Every address is tracked: even with no limits set, its share of the slots is. */
  private addressState(address: string): ClientState {
    const limits = this.access.limits;
    const known = this.byAddress.get(address);
    if (known !== undefined) {
      // Re-inserted last, so the Map's order is least recently seen first.
      this.byAddress.delete(address);
      this.byAddress.set(address, known);
      return known;
    }
    if (this.byAddress.size >= MAX_TRACKED_ADDRESSES) this.evict();
    const state = new ClientState(limits);
    this.byAddress.set(address, state);
    return state;
  }

  /**
   * Drops the least recently seen client with nothing in flight. Its books are usually empty anyway (idle
   * for a whole window); if not, its counts are forgotten: the price of bounded memory under many addresses.
   */
  private evict(): void {
    for (const [address, state] of this.byAddress) {
      if (state.inFlight === 0) {
        this.byAddress.delete(address);
        return;
      }
    }
  }
}

function hasRates(limits: ClientLimits): boolean {
  return limits.requestsPerMinute !== undefined || limits.tokensPerMinute !== undefined;
}

/** Whether a client's own limits set anything to count (rates, or its own `concurrent_requests`). */
/** Whether two sets of limits say the same. */
export function sameLimits(a: ClientLimits, b: ClientLimits): boolean {
  return (
    a.requestsPerMinute === b.requestsPerMinute &&
    a.tokensPerMinute === b.tokensPerMinute &&
    a.concurrentRequests === b.concurrentRequests
  );
}

export function hasOwnLimits(limits: ClientLimits): boolean {
  return hasRates(limits) || limits.concurrentRequests !== undefined;
}

/**
 * The longest `retry-after` a refusal gives. The SDKs honour one of 0-60 s and fall back to their own short
 * backoff past it; a request counts for up to 61 s, so a wait of 61 is said as 60 (a client back a moment too
 * early is refused again with a short wait).
 */
const MAX_RETRY_AFTER_SECONDS = 60;

/** A refusal by one of a client's own limits, worded the same wherever the counting was done. */
export function limitRefusal(
  reason: "requests_per_minute" | "tokens_per_minute" | "client_concurrency",
  who: string,
  limits: ClientLimits,
  wait: number,
): AdmissionError {
  const retryAfterSeconds = Math.min(MAX_RETRY_AFTER_SECONDS, wait);
  switch (reason) {
    case "requests_per_minute":
      return new AdmissionError(
        reason,
        new RateLimitError("requests", limits.requestsPerMinute ?? 0, who, retryAfterSeconds),
      );
    case "tokens_per_minute":
      return new AdmissionError(
        reason,
        new RateLimitError("tokens", limits.tokensPerMinute ?? 0, who, retryAfterSeconds),
      );
    case "client_concurrency":
      return new AdmissionError(
        reason,
        new TooManyConcurrentRequestsError(
          `${capitalised(who)} has ${limits.concurrentRequests ?? 0} requests in flight, its limit. Try again in a moment.`,
        ),
      );
  }
}

/** Who a refusal names. */
export function whoIs(client: { readonly key?: string }): string {
  return client.key === undefined ? "this client address" : `API key '${client.key}'`;
}

function capitalised(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
