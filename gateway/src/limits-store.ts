import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { Redis } from "ioredis";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "winston";
import { Admission, AdmissionError, type Ticket } from "./access/admission";
import type { AccessConfig, ClientLimits, LimitsStoreConfig } from "./access/config";
import {
  type Client,
  clientId,
  isSharedReason,
  mapClientLimits,
  type SharedBooks,
  type Verdict,
} from "./access/shared-admission";
import { LimitsUnavailableError } from "./errors";
import { CircuitBreaker } from "./balancing/circuit-breaker";
import { restoreFastStringPrototype } from "./utils/fast-prototypes";

// ioredis, loaded above, leaves String.prototype slow for every string method call in the process: see there.
restoreFastStringPrototype();

/**
 * The clients' limits counted in a Valkey or Redis server shared by every worker of every replica
 * (`limits_store`). One Lua script per decision makes each one atomic on the server, with the server's clock,
 * so replicas whose clocks disagree still count one window. A client's keys share one hash tag (`{...}`),
 * so they sit in one slot of a Redis Cluster, and each expires on its own once the client goes quiet:
 *
 * - `<prefix>{<client>}:r`: requests per second of the last minute (a hash, second -> count; as in
 *   admission.ts's SlidingWindow, a second's bucket leaves when second + 61 begins),
 * - `<prefix>{<client>}:t`: tokens charged per second of the last minute,
 * - `<prefix>{<client>}:l`: leases of the requests in flight (a sorted set, lease -> expiry in ms),
 * - `<prefix>{<client>}:v`: the tokens each lease reserved (a hash, lease -> tokens).
 *
 * The same rules as Admission (admission.ts), so one process and a fleet answer alike. A lease is renewed
 * while its request runs; a process that dies stops renewing, and its leases (slots and reservations)
 * lapse after `lease_seconds`.
 *
 * When the store fails (down, slow, unreachable), no request waits on it more than `timeout_ms`: a command
 * that takes longer fails, a breaker stops asking after a few failures and lets one request try again each
 * second, and the request is decided by `on_store_failure`.
 */

const WINDOW_MS = 60_000;

/** Shared by both scripts: the server's clock in milliseconds, and the current second. */
const CLOCK = `
local clock = redis.call('TIME')
local second = tonumber(clock[1])
local now = second * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

/**
 * KEYS: requests, tokens, leases, reservations. ARGV: requests per minute, tokens per minute, concurrent
 * requests (0: no such limit), tokens to reserve, lease id, lease ms (0: no lease). Returns {1} (admitted) or
 * {0, reason, retry-after seconds}.
 */
const TAKE = `${CLOCK}
local rpm, tpm, concurrent = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reserve, lease, leaseMs = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])

-- Leases past their expiry belong to requests of a process that stopped renewing them.
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
if #lapsed > 0 then
  redis.call('ZREM', KEYS[3], unpack(lapsed))
  redis.call('HDEL', KEYS[4], unpack(lapsed))
end

-- The sum of one window and its live buckets; buckets that left the window are deleted.
local function window(key)
  local fields = redis.call('HGETALL', key)
  local total, stale = 0, {}
  for i = 1, #fields, 2 do
    if tonumber(fields[i]) <= second - 61 then
      stale[#stale + 1] = fields[i]
    else
      total = total + tonumber(fields[i + 1])
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return total, fields
end

-- Whole seconds (at least 1) until the window's sum is at most target, as old buckets leave it. Only a
-- refusal needs it, so only a refusal sorts.
local function wait(total, fields, target)
  local buckets = {}
  for i = 1, #fields, 2 do
    local s = tonumber(fields[i])
    if s > second - 61 then buckets[#buckets + 1] = {s, tonumber(fields[i + 1])} end
  end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  local remaining = total
  for _, bucket in ipairs(buckets) do
    remaining = remaining - bucket[2]
    if remaining <= target then return math.max(1, math.ceil(((bucket[1] + 61) * 1000 - now) / 1000)) end
  end
  return 1
end

if concurrent > 0 and redis.call('ZCARD', KEYS[3]) >= concurrent then
  return {0, 'client_concurrency', 1}
end
if rpm > 0 then
  local total, buckets = window(KEYS[1])
  if total + 1 > rpm then return {0, 'requests_per_minute', wait(total, buckets, rpm - 1)} end
end
if tpm > 0 then
  local total, buckets = window(KEYS[2])
  local reserved = 0
  for _, tokens in ipairs(redis.call('HVALS', KEYS[4])) do reserved = reserved + tonumber(tokens) end
  local committed = total + reserved
  if committed >= tpm or (committed > 0 and committed + reserve > tpm) then
    local room = tpm - reserved - math.max(1, reserve)
    if room < 0 then return {0, 'tokens_per_minute', 1} end
    return {0, 'tokens_per_minute', wait(total, buckets, room)}
  end
end

if rpm > 0 then
  redis.call('HINCRBY', KEYS[1], second, 1)
  redis.call('PEXPIRE', KEYS[1], ${WINDOW_MS + 2000})
end
-- No lease when nothing is held while the request runs (a requests-per-minute limit alone): no end to send.
if leaseMs == 0 then return {1} end
redis.call('ZADD', KEYS[3], now + leaseMs, lease)
redis.call('PEXPIRE', KEYS[3], leaseMs)
if tpm > 0 and reserve > 0 then
  redis.call('HSET', KEYS[4], lease, reserve)
  redis.call('PEXPIRE', KEYS[4], leaseMs)
end
return {1}
`;

/** KEYS: tokens, leases, reservations. ARGV: lease id, tokens used. */
const END = `${CLOCK}
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local used = tonumber(ARGV[2])
if used > 0 then
  redis.call('HINCRBY', KEYS[1], second, used)
  redis.call('PEXPIRE', KEYS[1], ${WINDOW_MS + 2000})
end
return 1
`;

/** KEYS: leases, reservations. ARGV: lease ms, then the lease ids of one client still in flight. */
const RENEW = `${CLOCK}
local leaseMs = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + leaseMs, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], leaseMs)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], leaseMs) end
return 1
`;

interface StoreCommands {
  gatewayTake(...args: (string | number)[]): Promise<unknown>;
  gatewayEnd(...args: (string | number)[]): Promise<unknown>;
  gatewayRenew(...args: (string | number)[]): Promise<unknown>;
}

/** A request in flight: a lease in the store, or (decided without it) a ticket of the local books. */
type Lease = { readonly keys: ClientKeys; readonly id: string } | { readonly ticket: Ticket };

interface ClientKeys {
  readonly requests: string;
  readonly tokens: string;
  readonly leases: string;
  readonly reservations: string;
}

/** Consecutive failed commands that stop the gateway asking the store, and how long until it tries again. */
const BREAKER = { failures: 3, cooldownSeconds: 1 };

/** The limits each process enforces alone: its share of every configured one (at least 1). */
export function shareOf(limits: ClientLimits, processes: number): ClientLimits {
  const share = (limit: number | undefined): number | undefined =>
    limit === undefined ? undefined : Math.max(1, Math.floor(limit / processes));
  const requestsPerMinute = share(limits.requestsPerMinute);
  const tokensPerMinute = share(limits.tokensPerMinute);
  const concurrentRequests = share(limits.concurrentRequests);
  return {
    ...(requestsPerMinute === undefined ? {} : { requestsPerMinute }),
    ...(tokensPerMinute === undefined ? {} : { tokensPerMinute }),
    ...(concurrentRequests === undefined ? {} : { concurrentRequests }),
  };
}

/** The clients' limits of `access`, each cut to one process's share, for deciding without the store. */
function localShare(access: AccessConfig, processes: number): AccessConfig {
  return {
    ...mapClientLimits(access, (limits) => shareOf(limits, processes)),
    // The process's own cap is checked by SharedAdmission's own Admission already.
    maxConcurrentRequests: Number.MAX_SAFE_INTEGER,
  };
}

export class LimitsStore implements SharedBooks {
  private readonly redis: Redis;
  private readonly commands: StoreCommands;
  private readonly breaker: CircuitBreaker;
  private readonly local: Admission;
  /** Processes over all replicas: each decides alone with this share of the limits when the store is away. */
  private readonly sharedBy: number;
  private readonly leases = new Map<number, Lease>();
  /** Lease ids are unique across processes: this process's random prefix and a counter. */
  private readonly instance = randomBytes(6).toString("base64url");
  private nextLease = 0;
  private readonly renewal: NodeJS.Timeout;
  private readonly probe: NodeJS.Timeout;
  private readonly withoutStore: Counter<"outcome">;
  private warnedAt = -Infinity;
  private readonly logger: Logger;

  constructor(
    access: AccessConfig,
    private readonly store: LimitsStoreConfig,
    options: {
      readonly registry: Registry;
      readonly logger: Logger;
      /** Worker processes of this replica: with `expected_replicas`, how many share the limits. */
      readonly processes: number;
    },
  ) {
    const { logger } = options;
    this.logger = logger;
    this.sharedBy = store.expectedReplicas * options.processes;
    this.local = new Admission(localShare(access, this.sharedBy));
    // One line when the store goes away and one when it is back: not one per failed trial each second.
    let away = false;
    this.breaker = new CircuitBreaker(BREAKER, (state) => {
      if (state === "open" && !away) {
        away = true;
        logger.warn("limits store unreachable: deciding without it", this.logFields());
      } else if (state === "closed" && away) {
        away = false;
        logger.info("limits store answering again", { store: store.display });
      }
    });
    this.redis = new Redis({
      host: store.host,
      port: store.port,
      db: store.db,
      ...(store.username === undefined ? {} : { username: store.username }),
      ...(store.password === undefined ? {} : { password: store.password }),
      // SNI names a host; an IP address is verified against the certificate's IP entries without it.
      ...(store.tls ? { tls: isIP(store.host) === 0 ? { servername: store.host } : {} } : {}),
      connectionName: "inference-gateway",
      // The decision's own deadline is timeoutMs (see withinDeadline); this backstop only clears commands a
      // store that went silent will never answer, so they do not pile up.
      commandTimeout: Math.max(1000, store.timeoutMs * 10),
      connectTimeout: 2000,
      // A command never waits for a connection: without one it fails at once, and the request is decided
      // by on_store_failure. Reconnecting goes on in the background, every 0.1-1 s.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
      enableAutoPipelining: true,
    });
    this.redis.on("error", (error: Error) => this.warn("limits store error", error));
    this.redis.defineCommand("gatewayTake", { numberOfKeys: 4, lua: TAKE });
    this.redis.defineCommand("gatewayEnd", { numberOfKeys: 3, lua: END });
    this.redis.defineCommand("gatewayRenew", { numberOfKeys: 2, lua: RENEW });
    // defineCommand adds these methods at run time, where ioredis' types cannot see them.
    this.commands = this.redis as unknown as StoreCommands;
    const registers = [options.registry];
    const up = (): number => (this.redis.status === "ready" && this.breaker.state === "closed" ? 1 : 0);
    new Gauge({
      name: "gateway_limits_store_up",
      help: "1 when the shared limits store answers; 0 when limits are decided without it (on_store_failure).",
      registers,
      // Under WORKERS > 1: 0 when any worker is without the store.
      aggregator: "min",
      collect() {
        this.set(up());
      },
    });
    this.withoutStore = new Counter({
      name: "gateway_limits_decisions_without_store_total",
      help: "Limit decisions made without the shared store (it failed), by outcome (admitted or refused).",
      labelNames: ["outcome"] as const,
      registers,
    });
    this.withoutStore.labels("admitted").inc(0);
    this.withoutStore.labels("refused").inc(0);
    this.renewal = setInterval(() => this.renew(), (store.leaseSeconds * 1000) / 3);
    this.renewal.unref();
    // While the breaker is open, a PING each second finds the store again without waiting for a request, so
    // gateway_limits_store_up comes back on an idle gateway too.
    this.probe = setInterval(() => this.ping(), BREAKER.cooldownSeconds * 1000);
    this.probe.unref();
  }

  take(client: Client, limits: ClientLimits): Promise<Verdict> {
    const permit = this.breaker.acquire();
    if (permit === undefined) return this.decideWithoutStore(client);
    const keys = this.keysOf(client);
    // Numbered now: takes of one process run concurrently, and each needs a lease of its own.
    const lease = this.nextLease++;
    const id = `${this.instance}:${lease}`;
    const reserve = limits.tokensPerMinute === undefined ? 0 : Math.max(0, Math.floor(client.reserve ?? 0));
    // A lease holds a slot or a reservation, and its end charges tokens: a requests-per-minute limit alone needs
    // none, and costs one round trip per request instead of two.
    const leased = limits.concurrentRequests !== undefined || limits.tokensPerMinute !== undefined;
    return this.withinDeadline(
      this.commands.gatewayTake(
        keys.requests,
        keys.tokens,
        keys.leases,
        keys.reservations,
        limits.requestsPerMinute ?? 0,
        limits.tokensPerMinute ?? 0,
        limits.concurrentRequests ?? 0,
        reserve,
        id,
        leased ? this.store.leaseSeconds * 1000 : 0,
      ),
    ).then(
      (reply): Verdict => {
        this.breaker.record(permit, "success");
        const [admitted, reason, retryAfter] = Array.isArray(reply) ? (reply as unknown[]) : [];
        if (admitted === 1) {
          if (!leased) return { lease: -1 };
          this.leases.set(lease, { keys, id });
          return { lease };
        }
        return {
          refused: isSharedReason(reason) ? reason : "client_concurrency",
          retryAfterSeconds: typeof retryAfter === "number" ? retryAfter : 1,
        };
      },
      (error: unknown) => {
        this.breaker.record(permit, "failure");
        this.warn("limits store did not answer", error);
        return this.decideWithoutStore(client);
      },
    );
  }

  /**
   * The store's answer, or a rejection once `timeout_ms` has passed without one. Checked once more after the
   * event loop's next poll: when the process itself stalled (a long GC, a busy core), the answer may already
   * be in the socket when the timer fires, and that is not the store being late. Deciding without the store
   * then would admit beyond the limit for nothing (the store counted the request too).
   */
  private withinDeadline<T>(answer: Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(
        () =>
          setImmediate(() => {
            if (settled) return;
            settled = true;
            reject(new Error(`no answer within ${this.store.timeoutMs} ms`));
          }),
        this.store.timeoutMs,
      );
      answer.then(
        (value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  end(lease: number, tokens: number): void {
    const held = this.leases.get(lease);
    if (held === undefined) return;
    this.leases.delete(lease);
    if ("ticket" in held) {
      held.ticket.charge(tokens);
      held.ticket.release();
      return;
    }
    const { keys, id } = held;
    // A failed end leaves the lease to lapse (its slot and reservation come back after lease_seconds) and
    // the tokens uncharged: the price of never making a finished request wait on the store.
    this.commands
      .gatewayEnd(keys.tokens, keys.leases, keys.reservations, id, Math.max(0, Math.floor(tokens)))
      .catch((error: unknown) => this.warn("limits store did not record a request's end", error));
  }

  /**
   * Resolves true once connected to the store, or false after `ms`. Start-up waits on it before listening, so
   * the first requests are not decided without a store that was only still connecting.
   */
  /** A reloaded config's limits for deciding without the store (the store takes each request's limits with it). */
  reconfigure(access: AccessConfig): void {
    this.local.reconfigure(localShare(access, this.sharedBy));
  }

  connected(ms: number): Promise<boolean> {
    if (this.redis.status === "ready") return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.redis.off("ready", onReady);
        resolve(ok);
      };
      const onReady = (): void => done(true);
      const timer = setTimeout(() => done(false), ms);
      this.redis.once("ready", onReady);
    });
  }

  async close(): Promise<void> {
    clearInterval(this.renewal);
    clearInterval(this.probe);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /** `on_store_failure`: this process's share of the limits, no limits, or a 503. */
  private decideWithoutStore(client: Client): Promise<Verdict> {
    return new Promise((resolve) => {
      switch (this.store.onStoreFailure) {
        case "open":
          this.withoutStore.labels("admitted").inc();
          resolve({ lease: -1 });
          return;
        case "closed":
          this.withoutStore.labels("refused").inc();
          throw new AdmissionError("limits_store_unavailable", new LimitsUnavailableError());
        case "local": {
          let ticket: Ticket;
          try {
            ticket = this.local.admit(client);
          } catch (error) {
            this.withoutStore.labels("refused").inc();
            throw error;
          }
          this.withoutStore.labels("admitted").inc();
          const lease = this.nextLease++;
          this.leases.set(lease, { ticket });
          resolve({ lease });
        }
      }
    });
  }

  private ping(): void {
    if (this.breaker.state === "closed") return;
    const permit = this.breaker.acquire();
    if (permit === undefined) return;
    this.redis.ping().then(
      () => this.breaker.record(permit, "success"),
      () => this.breaker.record(permit, "failure"),
    );
  }

  /** Renews every lease this process holds in the store, one script per client. */
  private renew(): void {
    if (this.breaker.state !== "closed") return;
    const byClient = new Map<string, { keys: ClientKeys; ids: string[] }>();
    for (const held of this.leases.values()) {
      if ("ticket" in held) continue;
      const entry = byClient.get(held.keys.leases);
      if (entry === undefined) byClient.set(held.keys.leases, { keys: held.keys, ids: [held.id] });
      else entry.ids.push(held.id);
    }
    for (const { keys, ids } of byClient.values()) {
      this.commands
        .gatewayRenew(keys.leases, keys.reservations, this.store.leaseSeconds * 1000, ...ids)
        .catch((error: unknown) => this.warn("limits store did not renew leases", error));
    }
  }

  private keysOf(client: Client): ClientKeys {
    const base = `${this.store.keyPrefix}{${clientId(client)}}`;
    return { requests: `${base}:r`, tokens: `${base}:t`, leases: `${base}:l`, reservations: `${base}:v` };
  }

  private logFields(): Record<string, unknown> {
    return { store: this.store.display, onStoreFailure: this.store.onStoreFailure, timeoutMs: this.store.timeoutMs };
  }

  /** At most one line a minute: a store that is down must not flood the log. */
  private warn(message: string, error: unknown): void {
    if (performance.now() - this.warnedAt < 60_000) return;
    this.warnedAt = performance.now();
    this.logger.warn(message, {
      ...this.logFields(),
      error: error instanceof Error ? error.message : String(error),
    });
  }
}
