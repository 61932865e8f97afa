import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { Pool } from "undici";
import { HealthChecks } from "../../balancing/health-checks";
import { TargetPool } from "../../balancing/pool";
import { Target } from "../../balancing/target";
import type { BackendContext } from "../backend";
import type { HttpBackendOptions, HttpTargetOptions } from "./factory";

/**
 * Configured targets and discovered addresses together: each is a label value and a connection pool, so a
 * DNS answer with hundreds of records must not become hundreds of series.
 */
export const MAX_TARGETS = 64;

/** Where one target's requests go, and how. */
export interface Upstream {
  readonly target: Target;
  /** The configured target it came from. */
  readonly spec: HttpTargetOptions;
  /** What the connection pool connects to: the configured origin, or a discovered address in its place. */
  readonly origin: string;
  /** The address discovery found, when the pool connects to it rather than to the configured host. */
  readonly address?: string;
  /** Sent as `host` when the pool connects to an address the configured host resolved to. */
  readonly host?: string;
  readonly dispatcher: Pool;
}

/** After a failed lookup the next comes this soon, then twice as late each time, up to `dns_refresh`. */
const FAILED_LOOKUP_RETRY_SECONDS = 1;

/** Resolves a host name to every address it has (dns.lookup: /etc/hosts, Docker's and Kubernetes' DNS). */
export type Lookup = (host: string) => Promise<readonly string[]>;

const systemLookup: Lookup = async (host) => (await dnsLookup(host, { all: true })).map((entry) => entry.address);

/**
 * An http backend's targets and their connection pools: the configured ones, or with `discovery: dns` one per
 * address their hosts resolve to, re-resolved every `dns_refresh`. A target that vanishes leaves the
 * rotation at once and its pool closes once its requests in flight are over; new ones join. Runs the active
 * health checks when `health_check` is set.
 */
export class Upstreams {
  readonly pool: TargetPool;
  private readonly byTarget = new Map<Target, Upstream>();
  private readonly checks: HealthChecks | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Hosts whose last lookup failed: warned about once, until one succeeds. */
  private readonly failing = new Set<string>();

  constructor(
    private readonly backend: string,
    private readonly options: HttpBackendOptions,
    private readonly context: Pick<BackendContext, "logger" | "circuitBreaker">,
    private readonly lookup: Lookup = systemLookup,
  ) {
    this.pool = new TargetPool({
      balance: options.balance,
      ...(options.affinity === undefined ? {} : { affinity: options.affinity }),
    });
    // Until the first lookup answers (and for good without discovery), each configured URL is one target.
    this.pool.set(options.targets.map((spec) => this.open(spec, spec.name, undefined)));
    const healthCheck = options.healthCheck;
    if (healthCheck !== undefined) {
      this.checks = new HealthChecks(
        () => this.pool.targets,
        (target, signal) => this.probe(target, signal, healthCheck.path),
        healthCheck,
        (target, up) =>
          up
            ? context.logger.info("health check passed: target back in rotation", { backend, target: target.name })
            : context.logger.warn("health check failed: target out of rotation", { backend, target: target.name }),
      );
      this.checks.start();
    }
    if (options.dnsRefreshSeconds !== undefined) void this.refreshLoop(options.dnsRefreshSeconds);
  }

  /** The upstream of `target` (the first one when the caller named none). */
  of(target: Target | undefined): Upstream {
    const upstream = target === undefined ? undefined : this.byTarget.get(target);
    if (upstream !== undefined) return upstream;
    const first = this.pool.targets[0];
    const fallback = first === undefined ? undefined : this.byTarget.get(first);
    if (fallback === undefined) throw new Error(`backend '${this.backend}' has no target to call`);
    return fallback;
  }

  /** For the start-up log: the configured URLs (never a secret). */
  describe(): string {
    return this.options.targets.map((spec) => `${spec.origin}${spec.path}`).join(", ");
  }

  /** Resolves every configured host once and updates the targets: what the refresh timer runs. */
  async refresh(): Promise<void> {
    const wanted: { spec: HttpTargetOptions; name: string; address: string | undefined }[] = [];
    for (const spec of this.options.targets) {
      const host = hostOf(spec.url);
      if (isIP(host) !== 0) {
        wanted.push({ spec, name: spec.name, address: undefined });
        continue;
      }
      let addresses: readonly string[];
      try {
        addresses = await this.lookup(host);
        if (this.failing.delete(host))
          this.context.logger.info("target host resolves again", { backend: this.backend, host });
      } catch (error) {
        // A failed lookup keeps what was found before: a DNS hiccup must not empty a working backend.
        if (!this.failing.has(host)) {
          this.failing.add(host);
          this.context.logger.warn("target host did not resolve: keeping its current targets", {
            backend: this.backend,
            host,
            error: error instanceof Error ? error.message : String(error),
          });
        }
        for (const upstream of this.byTarget.values())
          if (upstream.spec === spec && !upstream.target.retired)
            wanted.push({ spec, name: upstream.target.name, address: upstream.address });
        continue;
      }
      for (const address of addresses) wanted.push({ spec, name: addressName(address, spec.url), address });
    }
    this.apply(wanted);
  }

  /** Stops checks and discovery, and closes every pool once its requests are over. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.refreshTimer);
    this.checks?.stop();
    await Promise.allSettled([...this.byTarget.values()].map((upstream) => upstream.dispatcher.close()));
  }

  private apply(wanted: readonly { spec: HttpTargetOptions; name: string; address: string | undefined }[]): void {
    if (this.closed) return;
    const current = new Map(this.pool.targets.map((target) => [target.name, target]));
    const next: Target[] = [];
    const joining: Target[] = [];
    const names = new Set<string>();
    for (const { spec, name, address } of wanted) {
      if (names.has(name)) continue;
      if (next.length >= MAX_TARGETS) {
        this.context.logger.warn("more addresses than targets allowed: the rest are left out", {
          backend: this.backend,
          max: MAX_TARGETS,
        });
        break;
      }
      names.add(name);
      const known = current.get(name);
      if (known !== undefined) next.push(known);
      else {
        const opened = this.open(spec, name, address);
        joining.push(opened);
        next.push(opened);
      }
    }
    const gone = this.pool.targets.filter((target) => !names.has(target.name));
    if (gone.length === 0 && next.length === this.pool.targets.length) return;
    // A replica that joins a pool already serving (a restarted container, a new task) is in DNS before it
    // listens: with health checks on, it takes requests once its first check (made now) passes. A pool's
    // first targets go straight in, so a backend never waits on its checks to start serving.
    const checks = this.checks;
    const serving = next.some((target) => !joining.includes(target) && target.checkedUp);
    if (checks !== undefined && serving)
      for (const target of joining) {
        target.checkedUp = false;
        checks.checkNow(target);
      }
    this.pool.set(next);
    for (const target of gone) this.retire(target);
    this.context.logger.info("targets changed", {
      backend: this.backend,
      targets: next.map((target) => target.name),
      left: gone.map((target) => target.name),
    });
  }

  /**
   * Refreshes every `seconds`; after a failed lookup sooner, 1 s then doubling up to `seconds`: a name that
   * does not resolve yet (a stack starting, the upstream's first task not yet in DNS) is found within a second
   * or two of resolving, not up to `dns_refresh` later, while its requests are answered 503.
   */
  private async refreshLoop(seconds: number, failedInARow = 0): Promise<void> {
    if (this.closed) return;
    await this.refresh();
    if (this.closed) return;
    const failed = this.failing.size > 0 ? failedInARow + 1 : 0;
    const delay = failed === 0 ? seconds : Math.min(seconds, FAILED_LOOKUP_RETRY_SECONDS * 2 ** (failed - 1));
    this.refreshTimer = setTimeout(() => void this.refreshLoop(seconds, failed), delay * 1000);
    this.refreshTimer.unref();
  }

  private open(spec: HttpTargetOptions, name: string, address: string | undefined): Target {
    const logger = this.context.logger;
    const backend = this.backend;
    const target = new Target({
      name,
      weight: spec.weight,
      breaker: this.context.circuitBreaker,
      onBreaker: (changed, state) => {
        if (state === "open")
          logger.warn("circuit opened: target out of rotation", {
            backend,
            target: changed.name,
            cooldownSeconds: this.context.circuitBreaker?.cooldownSeconds,
          });
        else
          logger.info(
            state === "closed"
              ? "circuit closed: target answering again"
              : "circuit half-open: letting one trial call through",
            { backend, target: changed.name },
          );
      },
    });
    const origin =
      address === undefined ? spec.origin : `${spec.url.protocol}//${hostForUrl(address)}:${portOf(spec.url)}`;
    const host = hostOf(spec.url);
    const dispatcher = new Pool(origin, {
      connectTimeout: this.options.connectTimeoutSeconds * 1000,
      // One deadline (the backend's AbortSignal) governs the whole exchange; undici's own timers would only
      // race it with less precise errors.
      headersTimeout: 0,
      bodyTimeout: 0,
      // No maxResponseSize: it would cut streams too, whose total is unbounded by design. Answers read whole
      // are bounded by AnswerAllowance (max_response_bytes and the shared budget), stream events by max_event_bytes.
      // A discovered address still presents the configured name to TLS (SNI, certificate check).
      ...(address !== undefined && spec.url.protocol === "https:" && isIP(host) === 0
        ? { connect: { servername: host } }
        : {}),
    });
    this.byTarget.set(target, {
      target,
      spec,
      origin,
      ...(address === undefined ? {} : { address, host: spec.url.host }),
      dispatcher,
    });
    return target;
  }

  private retire(target: Target): void {
    target.retired = true;
    const upstream = this.byTarget.get(target);
    if (upstream === undefined) return;
    // close() lets the requests already on the pool finish (streams included): they drain, new ones go elsewhere.
    void upstream.dispatcher.close().finally(() => {
      this.byTarget.delete(target);
      this.pool.drained(target);
    });
  }

  private async probe(target: Target, signal: AbortSignal, path: string): Promise<boolean> {
    const upstream = this.byTarget.get(target);
    if (upstream === undefined) return false;
    const { statusCode, body } = await upstream.dispatcher.request({
      method: "GET",
      path,
      headers: upstream.host === undefined ? {} : { host: upstream.host },
      signal,
    });
    await body.dump();
    return statusCode >= 200 && statusCode <= 299;
  }
}

/** The URL's host name, without IPv6 brackets. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, "$1");
}

function portOf(url: URL): string {
  return url.port !== "" ? url.port : url.protocol === "https:" ? "443" : "80";
}

function hostForUrl(address: string): string {
  return isIP(address) === 6 ? `[${address}]` : address;
}

/** A discovered target's label: `10.0.1.5:8000`. */
function addressName(address: string, url: URL): string {
  return `${hostForUrl(address)}:${portOf(url)}`;
}
