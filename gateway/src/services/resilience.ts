import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "winston";
import type { Backend, BackendCall } from "../backends/backend";
import type { ChatCompletionRequest } from "../schemas/chat";
import type { CircuitBreakerOptions } from "../balancing/circuit-breaker";
import { NONE } from "../balancing/pool";
import type { Target } from "../balancing/target";
import { CircuitOpenError, ClientClosedError, GatewayError, UpstreamClientError, UpstreamHttpError } from "../errors";
import type { BackendHealth } from "../errors";
import type { BackendSeries, GatewayMetrics, TargetSeries } from "../observability/metrics";

/** A backend's type-independent failure handling, from its YAML entry. */
export interface ResilienceOptions {
  /** Extra calls to the same backend after a retryable failure, all before the first byte reaches the client. */
  readonly retries: number;
  /** Backend names tried in order when this one fails before the first byte (after its retries). */
  readonly fallbacks: readonly string[];
  /** Undefined: no circuit breaker (`circuit_breaker: false`). */
  readonly circuitBreaker: CircuitBreakerOptions | undefined;
}

/**
 * No retries by default: the `openai` SDK already retries twice, and a gateway that retried too would turn
 * one failing request into six calls on an upstream that is already struggling.
 */
export const DEFAULT_RETRIES = 0;
export const MAX_RETRIES = 5;
/** Five failures in a row is past a blip; ten seconds is short enough that a recovered backend is soon used again. */
export const DEFAULT_CIRCUIT_BREAKER: CircuitBreakerOptions = { failures: 5, cooldownSeconds: 10 };

/** For a backend given no options (a service built by hand, as in unit tests): one call, nothing more. */
export const NO_RESILIENCE: ResilienceOptions = { retries: 0, fallbacks: [], circuitBreaker: undefined };

export interface BackoffOptions {
  /** The first retry waits about this long; each later one twice as long as the one before. */
  readonly baseMs: number;
  readonly maxMs: number;
  /**
   * An upstream's `retry-after` up to this long is waited for; a longer one is not retried at all (trying
   * sooner than asked would be hammering it): the failure goes to the fallback, or to the client.
   */
  readonly retryAfterCapMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 200, maxMs: 2000, retryAfterCapMs: 10_000 };

/** What one failed call means for the request, and for the backend's circuit. */
export interface Verdict {
  /** The same backend may be called again (if retries and time are left). */
  readonly retry: boolean;
  /** The next fallback may be tried. */
  readonly fallBack: boolean;
  readonly health: BackendHealth;
}

/** Anything that is not a GatewayError is a bug in the gateway: nothing another call could fix. */
const NOTHING_TO_TRY: Verdict = { retry: false, fallBack: false, health: "neutral" };

/**
 * What a failure leads to, as the error itself says (see GatewayError). Only failures before the first byte
 * come here, so a retry or fallback never repeats anything the client has seen.
 */
export function judge(error: unknown): Verdict {
  if (!(error instanceof GatewayError)) return NOTHING_TO_TRY;
  return { retry: error.retryable, fallBack: error.fallbackMayHelp, health: error.backendHealth };
}

/**
 * How long to wait before retry number `retry + 1`: the upstream's `retry-after` when it sent one (undefined
 * when that is longer than the cap: do not retry), else exponential backoff with "equal jitter" (half the
 * step fixed, half random), so retries from many requests that failed together do not arrive together.
 */
export function retryDelayMs(
  error: unknown,
  retry: number,
  backoff: BackoffOptions,
  random: () => number,
): number | undefined {
  const asked = error instanceof GatewayError ? error.retryAfterMs : undefined;
  if (asked !== undefined) return asked <= backoff.retryAfterCapMs ? asked : undefined;
  const step = Math.min(backoff.maxMs, backoff.baseMs * 2 ** retry);
  return step / 2 + (random() * step) / 2;
}

/** What the caller knows about the request; the resilience layer adds each backend's deadline. */
export type BaseCall<Body = ChatCompletionRequest> = Omit<BackendCall<Body>, "deadline">;

/** What a request body must be for the resilience layer: an object whose `user` affinity may read. */
type AnyBody = { readonly [field: string]: unknown };

export interface RequestHooks {
  /** The request's own logger, for its retries and fallbacks. */
  readonly logger?: Logger;
  /** Told each backend the request turns to, the routed one first; the last one named is the one that answered. */
  readonly onBackend?: (name: string) => void;
  /** Told each target a call goes to; the last one named is the one that answered. */
  readonly onTarget?: (name: string) => void;
  /** The request's headers, for a backend's `affinity: {header}`. */
  readonly header?: (name: string) => string | undefined;
}

/** The successful call's result and the backend that produced it. */
export interface Answered<T> {
  readonly backend: Backend;
  readonly value: T;
  /**
   * For an attempt that was only a start (a stream's first event): called once when it is over, with how it
   * ended for the target's breaker ("neutral": the client left), so the target's in-flight count drops.
   */
  readonly settle: (health: BackendHealth) => void;
}

/**
 * `complete`: the attempt's success is the whole answer. `start`: it is only the first event of a stream,
 * whose end is reported later through `Answered.settle`.
 */
export type AttemptKind = "complete" | "start";

export interface ResilienceSettings {
  /** By backend name; a backend missing here gets NO_RESILIENCE. */
  readonly policies?: ReadonlyMap<string, ResilienceOptions>;
  readonly backoff?: BackoffOptions;
  /** Jitter source; tests pass a fixed one. */
  readonly random?: () => number;
}

interface Guarded {
  readonly options: ResilienceOptions;
  readonly fallbacks: readonly Backend[];
  readonly series: BackendSeries;
}

/** A settle for attempts that need none (a whole answer is over when it resolves). */
const SETTLED = (): void => {};

/**
 * Retries, fallbacks and circuit breaking around one "attempt": whatever the caller counts as a backend
 * having answered (`complete()` resolving, or a stream's first event). It never looks at a backend's type.
 */
export class Resilience {
  private readonly guarded: ReadonlyMap<Backend, Guarded>;
  private readonly backoff: BackoffOptions;
  private readonly random: () => number;
  /** Each target's series, by object: a call never builds label strings. */
  private readonly targets = new WeakMap<Target, TargetSeries>();

  constructor(
    backends: readonly Backend[],
    private readonly metrics: GatewayMetrics,
    settings: ResilienceSettings = {},
  ) {
    this.backoff = settings.backoff ?? DEFAULT_BACKOFF;
    this.random = settings.random ?? Math.random;
    const byName = new Map(backends.map((backend) => [backend.name, backend]));
    this.guarded = new Map(
      backends.map((backend) => {
        const options = settings.policies?.get(backend.name) ?? NO_RESILIENCE;
        const series = metrics.backend(backend.name);
        const fallbacks = [...new Set(options.fallbacks)].map((name) => {
          const fallback = byName.get(name);
          // parseConfig rejects such names; this guards a service built by hand.
          if (fallback === undefined || fallback === backend)
            throw new Error(`backend '${backend.name}' names an invalid fallback '${name}'`);
          return fallback;
        });
        metrics.watchTargets(backend.name, () => backend.pool.targets);
        // A target discovery dropped takes its request counts with it once drained: series stay bounded by
        // the targets there are, not by every address a name ever had.
        backend.pool.onDrained = (target) => {
          (this.targets.get(target) ?? metrics.target(backend.name, target.name)).remove();
          this.targets.delete(target);
        };
        return [backend, { options, fallbacks, series }];
      }),
    );
  }

  /**
   * Runs `attempt` on `routed`, retrying it while that may help, then on each of its fallbacks in turn.
   * Resolves with the first success; rejects with the failure that ended the chain (the last backend's).
   */
  async call<T, Body extends AnyBody>(
    routed: Backend,
    base: BaseCall<Body>,
    hooks: RequestHooks,
    kind: AttemptKind,
    attempt: (backend: Backend, call: BackendCall<Body>) => Promise<T>,
  ): Promise<Answered<T>> {
    const chain = [routed, ...this.guard(routed).fallbacks];
    let failure: unknown;
    for (const [index, backend] of chain.entries()) {
      if (index > 0) {
        this.metrics.fallback(routed.name, backend.name);
        hooks.logger?.warn("falling back to another backend", {
          from: chain[index - 1]?.name,
          to: backend.name,
          code: failure instanceof GatewayError ? failure.code : null,
        });
      }
      hooks.onBackend?.(backend.name);
      try {
        return await this.callWithRetries(backend, base, hooks, kind, attempt);
      } catch (error) {
        failure = error;
        if (!judge(error).fallBack) throw error;
      }
    }
    throw failure;
  }

  /**
   * One backend's turn: a target picked by its pool, and on a failure another target of the same backend
   * at once (each at most once, while time is left), then its retries (after a backoff, to a target not
   * tried yet if there is one). Rejects with CircuitOpenError when no target is in rotation.
   */
  private async callWithRetries<T, Body extends AnyBody>(
    backend: Backend,
    base: BaseCall<Body>,
    hooks: RequestHooks,
    kind: AttemptKind,
    attempt: (backend: Backend, call: BackendCall<Body>) => Promise<T>,
  ): Promise<Answered<T>> {
    const { options, series } = this.guard(backend);
    const pool = backend.pool;
    // One deadline for the backend's first call and its retries: `timeout` bounds the time spent on it.
    const deadline =
      backend.timeoutSeconds === undefined ? undefined : performance.now() + backend.timeoutSeconds * 1000;
    const session = pool.session(base.request.user, hooks);
    let tried: Set<Target> | undefined;
    let retrying = false;
    for (let retry = 0; ;) {
      // A retry goes back to a tried target only when every other one is out.
      const target = pool.pick(tried ?? NONE, session) ?? (retrying ? pool.pick(NONE, session) : undefined);
      if (target === undefined) throw unavailable(backend);
      const permit = target.breaker.acquire();
      // pick() only offers targets that may take a call, and nothing ran in between.
      if (permit === undefined) throw unavailable(backend);
      hooks.onTarget?.(target.name);
      const targetSeries = this.targetSeries(backend, target);
      const started = performance.now();
      target.inFlight++;
      try {
        const value = await attempt(backend, { ...base, ...(deadline === undefined ? {} : { deadline }), target });
        target.observe(performance.now() - started);
        targetSeries.answered(200);
        if (kind === "complete") {
          target.inFlight--;
          target.breaker.record(permit, "success");
          return { backend, value, settle: SETTLED };
        }
        target.breaker.record(permit, "started");
        return { backend, value, settle: settleOnce(target) };
      } catch (error) {
        target.inFlight--;
        targetSeries.answered(statusOf(error));
        const verdict = judge(error);
        target.breaker.record(permit, verdict.health);
        (tried ??= new Set()).add(target);
        const timeLeft = deadline === undefined || performance.now() < deadline;
        if (verdict.fallBack && timeLeft && pool.hasOther(tried)) {
          hooks.logger?.warn("trying another target of the backend", {
            backend: backend.name,
            target: target.name,
            code: error instanceof GatewayError ? error.code : null,
          });
          retrying = false;
          continue;
        }
        if (!verdict.retry || retry >= options.retries) throw error;
        const delay = retryDelayMs(error, retry, this.backoff, this.random);
        if (delay === undefined || (deadline !== undefined && performance.now() + delay >= deadline)) throw error;
        hooks.logger?.warn("retrying backend call", {
          backend: backend.name,
          retry: retry + 1,
          delayMs: Math.round(delay),
          code: error instanceof GatewayError ? error.code : null,
        });
        await pause(delay, base.signal);
        series.retried();
        retry++;
        retrying = true;
      }
    }
  }

  private targetSeries(backend: Backend, target: Target): TargetSeries {
    let series = this.targets.get(target);
    if (series === undefined) {
      series = this.metrics.target(backend.name, target.name);
      this.targets.set(target, series);
    }
    return series;
  }

  private guard(backend: Backend): Guarded {
    const guarded = this.guarded.get(backend);
    if (guarded === undefined) throw new Error(`backend '${backend.name}' is not one of the service's backends`);
    return guarded;
  }
}

/** Waits `ms`, or throws ClientClosedError as soon as the client leaves; the timer never outlives the wait. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    throw new ClientClosedError();
  }
}

/** A stream's end, reported once however many ways it is told: the target's in-flight count drops exactly once. */
function settleOnce(target: Target): (health: BackendHealth) => void {
  let settled = false;
  return (health) => {
    if (settled) return;
    settled = true;
    target.inFlight--;
    if (health !== "neutral") target.breaker.recordLate(health);
  };
}

/** The `code` of a target's failed call: the upstream's own status when it answered, else the gateway's. */
function statusOf(error: unknown): number {
  if (error instanceof UpstreamHttpError || error instanceof UpstreamClientError) return error.upstreamStatus;
  return error instanceof GatewayError ? error.status : 500;
}

/** The 503 for a backend none of whose targets may take a request now: when to come back, and why. */
function unavailable(backend: Backend): CircuitOpenError {
  return new CircuitOpenError(backend.name, backend.pool.retryAfterSeconds(), backend.pool.resting());
}
