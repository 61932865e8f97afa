import {
  Admission,
  type AdmissionError,
  hasOwnLimits,
  limitRefusal,
  type RejectReason,
  type Ticket,
  whoIs,
} from "./admission";
import type { AccessConfig, ApiKeyConfig, ClientLimits } from "./config";

/** Who a request counts against: a key by name, or (auth off) a client address. */
export interface Client {
  readonly key?: string;
  readonly address: string;
  /** Tokens to reserve against the client's tokens per minute until the request ends (reservation.ts). */
  readonly reserve?: number;
}

/** What the gateway's routes need of admission: Admission in one process, SharedAdmission in a cluster worker. */
export interface AdmissionControl {
  /** Requests on the completions path in flight in this process. */
  readonly requestsInFlight: number;
  precheck(client: Client): void;
  admit(client: Client): Ticket | Promise<Ticket>;
  /** A reloaded config's limits from now on; unchanged keys keep their books (Admission.reconfigure). */
  reconfigure(access: AccessConfig): void;
}

/** The answer to a `take`: a lease on the client's shared books, or the limit that refused it. */
export type Verdict =
  { readonly lease: number } | { readonly refused: SharedReason; readonly retryAfterSeconds: number };

/** The limits counted in the shared books: a client's own, as configured. */
export type SharedReason = Extract<RejectReason, "requests_per_minute" | "tokens_per_minute" | "client_concurrency">;

const SHARED_REASONS: readonly string[] = ["requests_per_minute", "tokens_per_minute", "client_concurrency"];

/** Whether a refusal's reason is one the shared books give (a client's own limit, not the process's cap). */
export function isSharedReason(reason: unknown): reason is SharedReason {
  return typeof reason === "string" && SHARED_REASONS.includes(reason);
}

/**
 * Where a process's requests are counted together with every other process's: the cluster's primary (see
 * cluster-limits.ts) or a shared store (limits-store.ts). `take` counts one request of a client whose own
 * `limits` are set and takes one of its slots, or says which limit refused it; `end` gives the slot back and
 * charges the tokens the request used.
 */
export interface SharedBooks {
  take(client: Client, limits: ClientLimits): Promise<Verdict>;
  end(lease: number, tokens: number): void;
}

/** `access` with every client's limits (the defaults and each key's) replaced by `change(limits)`. */
export function mapClientLimits(access: AccessConfig, change: (limits: ClientLimits) => ClientLimits): AccessConfig {
  return {
    ...access,
    limits: change(access.limits),
    keys: access.keys.map((key): ApiKeyConfig => ({ ...key, limits: change(key.limits) })),
  };
}

/**
 * The same limits with the configured per-client ones taken out, for the worker's own Admission: it keeps
 * the process's own bounds (max_concurrent_requests, and a client's share of it) while the shared books
 * count the rest. A client with its own `concurrent_requests` gets no local share: its limit is counted
 * across the workers instead.
 */
export function processOnly(access: AccessConfig): AccessConfig {
  return mapClientLimits(access, (limits) =>
    limits.concurrentRequests === undefined ? {} : { concurrentRequests: Number.MAX_SAFE_INTEGER },
  );
}

/** A refusal from the shared books as the client sees it: the same words as a single process's. */
export function refusal(
  client: Client,
  limits: ClientLimits,
  verdict: Exclude<Verdict, { lease: number }>,
): AdmissionError {
  return limitRefusal(verdict.refused, whoIs(client), limits, verdict.retryAfterSeconds);
}

/** Refusals remembered per client for precheck, at most this many (the oldest is dropped). */
const MAX_REMEMBERED_REFUSALS = 10_000;

/**
 * Admission in a cluster worker (WORKERS > 1): the process's own bounds are checked here, as in one process;
 * each client's configured limits (requests and tokens per minute, its own `concurrent_requests`) are
 * counted once for all workers, in the shared books, so a limit of 60 a minute is 60 across the machine.
 *
 * `precheck` (before the body is read) costs no round trip: it refuses a client the books refused moments
 * ago, until the wait they gave has passed; `admit` asks the books.
 */
export class SharedAdmission implements AdmissionControl {
  private readonly local: Admission;
  private keyLimits: ReadonlyMap<string, ClientLimits>;
  private readonly refusedUntil = new Map<
    string,
    { readonly until: number; readonly refused: SharedReason; readonly limits: ClientLimits }
  >();

  constructor(
    private access: AccessConfig,
    private readonly books: SharedBooks,
    private readonly now: () => number = Date.now,
  ) {
    this.local = new Admission(processOnly(access), now);
    this.keyLimits = new Map(access.keys.map((key) => [key.name, key.limits]));
  }

  get requestsInFlight(): number {
    return this.local.requestsInFlight;
  }

  /** The shared books take each request's limits with it, so only this process's view changes. */
  reconfigure(access: AccessConfig): void {
    this.access = access;
    this.keyLimits = new Map(access.keys.map((key) => [key.name, key.limits]));
    this.local.reconfigure(processOnly(access));
    this.refusedUntil.clear();
  }

  precheck(client: Client): void {
    this.local.precheck(client);
    const id = clientId(client);
    const known = this.refusedUntil.get(id);
    if (known === undefined) return;
    // Only rates stay refused for a while; a slot may free up any moment.
    const left = known.until - this.now();
    if (left > 0)
      throw refusal(client, known.limits, { refused: known.refused, retryAfterSeconds: Math.ceil(left / 1000) });
    this.refusedUntil.delete(id);
  }

  admit(client: Client): Ticket | Promise<Ticket> {
    const own = this.local.admit(client);
    const limits = client.key === undefined ? this.access.limits : this.keyLimits.get(client.key);
    if (limits === undefined || !hasOwnLimits(limits)) return own;
    return this.books.take(client, limits).then(
      (verdict) => {
        if ("refused" in verdict) {
          own.release();
          const error = refusal(client, limits, verdict);
          if (verdict.refused !== "client_concurrency") this.remember(client, limits, verdict);
          throw error;
        }
        let tokens = 0;
        let released = false;
        return {
          // charge() comes first (access/middleware.ts), so the lease ends with the tokens in one message.
          charge: (used: number) => {
            if (used > 0) tokens += used;
          },
          release: () => {
            if (released) return;
            released = true;
            own.release();
            this.books.end(verdict.lease, tokens);
          },
        };
      },
      (error: unknown) => {
        own.release();
        throw error;
      },
    );
  }

  private remember(client: Client, limits: ClientLimits, verdict: Exclude<Verdict, { lease: number }>): void {
    if (this.refusedUntil.size >= MAX_REMEMBERED_REFUSALS) {
      const oldest = this.refusedUntil.keys().next();
      if (oldest.done !== true) this.refusedUntil.delete(oldest.value);
    }
    this.refusedUntil.set(clientId(client), {
      until: this.now() + verdict.retryAfterSeconds * 1000,
      refused: verdict.refused,
      limits,
    });
  }
}

/** One name per client, the same in every process: a key's name, or (auth off) its address. */
export function clientId(client: Client): string {
  return client.key === undefined ? `address:${client.address}` : `key:${client.key}`;
}
