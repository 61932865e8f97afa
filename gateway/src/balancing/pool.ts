import type { CircuitBreakerOptions } from "./circuit-breaker";
import { hash32, mix32 } from "../utils/hash";
import { Target } from "./target";

export const BALANCES = ["least_outstanding", "round_robin", "weighted_random"] as const;
export type Balance = (typeof BALANCES)[number];

/**
 * Affinity's load bound: a target takes a session's request only while its requests in flight stay within
 * twice its weighted share of all in flight, plus a few: past it the request goes to the session's next
 * target. The factor keeps a session flooding one target from piling onto it; the few keep a quiet
 * gateway's chance peaks (4 on one target, none elsewhere) from moving sessions and their warm caches.
 */
export const AFFINITY_LOAD_FACTOR = 2;
export const AFFINITY_SLACK = 4;

/** Where a request's session comes from for `affinity`: a request header, or the body's `user`. */
export type Affinity = { readonly header: string } | { readonly user: true };

export interface PoolOptions {
  readonly balance: Balance;
  readonly affinity?: Affinity;
  /** Tests pass a seeded one. */
  readonly random?: () => number;
}

/** Where a request's headers are read from, for `affinity: {header}`. */
export interface SessionSource {
  header?(name: string): string | undefined;
}

/** No targets to avoid. */
export const NONE: ReadonlySet<Target> = new Set();

/**
 * The targets of one backend and the choice among them. It only chooses: the caller counts requests in
 * flight and feeds the breakers; health checks and discovery (the backend's) change what is in rotation.
 */
export class TargetPool {
  private list: readonly Target[] = [];
  private readonly random: () => number;

  constructor(private readonly options: PoolOptions) {
    this.random = options.random ?? Math.random;
  }

  get balance(): Balance {
    return this.options.balance;
  }

  /**
   * The request's session key under `affinity`, or undefined (no affinity, or the request names no session).
   * Bounded so a client cannot make the gateway hash megabytes.
   */
  session(user: unknown, request: SessionSource): string | undefined {
    const affinity = this.options.affinity;
    if (affinity === undefined) return undefined;
    // Called on the object: the request context's header() reads its own request.
    const value = "header" in affinity ? request.header?.(affinity.header) : user;
    return typeof value === "string" && value.length > 0 ? value.slice(0, 256) : undefined;
  }

  /** Every target, the retired ones still draining excluded. */
  get targets(): readonly Target[] {
    return this.list;
  }

  /** Replaces the members (discovery found a new set); the caller retires and drains the ones dropped. */
  set(targets: readonly Target[]): void {
    this.list = targets;
  }

  /** Told when a dropped target's last request is over (its metrics can go); set by the resilience layer. */
  onDrained: ((target: Target) => void) | undefined = undefined;

  /** A target dropped by set() has drained: nothing will be counted for it again. */
  drained(target: Target): void {
    this.onDrained?.(target);
  }

  /**
   * The target for the next request: one in rotation and not in `avoid` (those this request already tried),
   * or undefined when there is none. With `key` (a session), the same target as the key's earlier requests
   * while it is in rotation and not overloaded.
   */
  pick(avoid: ReadonlySet<Target>, key?: string): Target | undefined {
    const list = this.list;
    // The common case, one target, without building a candidate list.
    if (list.length === 1) {
      const only = list[0];
      return only !== undefined && only.inRotation && !avoid.has(only) ? only : undefined;
    }
    const candidates = list.filter((target) => target.inRotation && !avoid.has(target));
    if (candidates.length <= 1) return candidates[0];
    if (key !== undefined) return this.byKey(candidates, key);
    switch (this.options.balance) {
      case "round_robin":
        return roundRobin(candidates);
      case "weighted_random":
        return this.weightedRandom(candidates, undefined);
      case "least_outstanding":
        return this.leastOutstanding(candidates);
    }
  }

  /** Whether some target outside `avoid` may take a request now (pick() without choosing). */
  hasOther(avoid: ReadonlySet<Target>): boolean {
    return this.list.some((target) => target.inRotation && !avoid.has(target));
  }

  /** Whether some target is out because its breaker is open (not only by health checks or discovery). */
  resting(): boolean {
    return this.list.some((target) => !target.retired && target.breaker.state !== "closed");
  }

  /** Whole seconds until some target may take a request again (at least 1): the `retry-after` of a 503. */
  retryAfterSeconds(): number {
    let soonest = Infinity;
    for (const target of this.list)
      if (!target.retired) soonest = Math.min(soonest, target.breaker.retryAfterSeconds());
    return soonest === Infinity ? 1 : soonest;
  }

  /**
   * Power of two random choices: two targets drawn by weight, the one with fewer requests in flight per unit
   * of weight wins; on a tie, a draw weighted towards the faster one lately. Almost as good as asking
   * every target, without the herd a strict "least" sends to one target from many processes at once.
   */
  private leastOutstanding(candidates: readonly Target[]): Target | undefined {
    const first = this.weightedRandom(candidates, undefined);
    const second = this.weightedRandom(candidates, first);
    if (first === undefined || second === undefined) return first;
    const a = (first.inFlight + 1) / first.weight;
    const b = (second.inFlight + 1) / second.weight;
    if (a !== b) return a < b ? first : second;
    // A tie: each wins in proportion to the other's recent latency, so a target 10x slower wins 1 tie in 11,
    // and one that had a single slow answer still gets the calls that show it is fast again. A target with
    // no recent latency (new, or idle for a while) wins: it is how it gets measured.
    const latencyA = first.recentLatencyMs();
    const latencyB = second.recentLatencyMs();
    if (latencyA === latencyB) return first;
    return this.random() * (latencyA + latencyB) < latencyB ? first : second;
  }

  /** A target drawn with probability proportional to its weight, `except` left out. */
  private weightedRandom(candidates: readonly Target[], except: Target | undefined): Target | undefined {
    let total = 0;
    for (const target of candidates) if (target !== except) total += target.weight;
    let point = this.random() * total;
    let last: Target | undefined;
    for (const target of candidates) {
      if (target === except) continue;
      last = target;
      point -= target.weight;
      if (point < 0) return target;
    }
    return last;
  }

  /**
   * Rendezvous (highest random weight) hashing with bounded load: each target scores the key, the best
   * scoring one that is below its load bound wins. A target leaving moves only its own sessions; one joining
   * takes about its share of them. The bound keeps one heavy session from piling onto one target.
   */
  private byKey(candidates: readonly Target[], key: string): Target | undefined {
    const keyHash = hash32(key);
    let inFlight = 0;
    let weights = 0;
    for (const target of candidates) {
      inFlight += target.inFlight;
      weights += target.weight;
    }
    let best: Target | undefined;
    let bestScore = -Infinity;
    let fallback: Target | undefined;
    let fallbackScore = -Infinity;
    for (const target of candidates) {
      // A uniform (0, 1) draw fixed by the key and the target; -w / ln(u) is the weighted rendezvous score.
      const draw = (mix32(keyHash ^ target.hash) + 0.5) / 4294967296;
      const score = -target.weight / Math.log(draw);
      if (score > fallbackScore) {
        fallback = target;
        fallbackScore = score;
      }
      const bound = Math.ceil((AFFINITY_LOAD_FACTOR * (inFlight + 1) * target.weight) / weights) + AFFINITY_SLACK;
      if (target.inFlight + 1 <= bound && score > bestScore) {
        best = target;
        bestScore = score;
      }
    }
    return best ?? fallback;
  }
}

/** Smooth weighted round robin (nginx's): weights 5,1,1 give a a b a c a a, not a a a a a b c. */
function roundRobin(candidates: readonly Target[]): Target | undefined {
  let total = 0;
  let chosen: Target | undefined;
  for (const target of candidates) {
    target.roundRobinScore += target.weight;
    total += target.weight;
    if (chosen === undefined || target.roundRobinScore > chosen.roundRobinScore) chosen = target;
  }
  if (chosen !== undefined) chosen.roundRobinScore -= total;
  return chosen;
}

/** A pool of one target named "0": what a backend with a single upstream (or none, as echo) has. */
export function singleTarget(breaker: CircuitBreakerOptions | undefined, now?: () => number): TargetPool {
  const pool = new TargetPool({ balance: "least_outstanding" });
  pool.set([new Target({ name: "0", weight: 1, breaker, ...(now === undefined ? {} : { now }) })]);
  return pool;
}
