import { hash32 } from "../utils/hash";
import { CircuitBreaker, type CircuitBreakerOptions, type CircuitState } from "./circuit-breaker";

/**
 * How long a target's latency lingers in its average once it gets no traffic: an upstream that was slow a
 * minute ago is given a chance again, so a passing stall does not keep it shunned on a quiet gateway.
 */
const LATENCY_MEMORY_MS = 10_000;
/** The weight of the newest sample in the latency average. */
const LATENCY_ALPHA = 0.3;

export interface TargetOptions {
  /** The `target` label: its configured name, its index, or a discovered address. */
  readonly name: string;
  /** Its share of the traffic relative to the other targets (1 when not configured). */
  readonly weight: number;
  /** Undefined: this target is never ejected for failing (`circuit_breaker: false`). */
  readonly breaker: CircuitBreakerOptions | undefined;
  /** Told when the target's breaker changes state (for the log). */
  readonly onBreaker?: (target: Target, state: CircuitState) => void;
  /** The breaker's and the latency average's clock (`performance.now()` by default). */
  readonly now?: () => number;
}

/**
 * One upstream of a backend: what the balancer needs to know about it (requests in flight, recent latency,
 * whether it is in the rotation) and its own circuit breaker, so ejecting one replica never closes the model.
 */
export class Target {
  readonly name: string;
  readonly weight: number;
  readonly breaker: CircuitBreaker;
  /** Requests sent to it and not yet over (for a stream: until its last event). */
  inFlight = 0;
  /** The active health check's verdict: false from a failed check until one passes. */
  checkedUp = true;
  /** Discovery no longer finds it: it takes no new request and its pool closes once the last one ends. */
  retired = false;
  /** Smooth weighted round robin's running score. */
  roundRobinScore = 0;
  /** For affinity: a fixed 32-bit hash of the name, so a session maps to the same target in every process. */
  readonly hash: number;
  private latencyMs = 0;
  private latencyAt = 0;
  private readonly now: () => number;

  constructor(options: TargetOptions) {
    this.name = options.name;
    this.weight = options.weight;
    this.hash = hash32(options.name);
    this.now = options.now ?? (() => performance.now());
    const onBreaker = options.onBreaker;
    this.breaker = new CircuitBreaker(
      options.breaker,
      onBreaker === undefined ? undefined : (state) => onBreaker(this, state),
      this.now,
    );
  }

  /** Whether a new request may go to it now. */
  get inRotation(): boolean {
    return !this.retired && this.checkedUp && this.breaker.mayAcquire();
  }

  /** For `gateway_target_up`: it passes its checks and its breaker is closed. */
  get up(): boolean {
    return !this.retired && this.checkedUp && this.breaker.state === "closed";
  }

  /** Records how long a call took to answer (or a stream to start). */
  observe(ms: number): void {
    const previous = this.recentLatencyMs();
    this.latencyMs = previous === 0 ? ms : previous + LATENCY_ALPHA * (ms - previous);
    this.latencyAt = this.now();
  }

  /** The latency average, fading towards 0 (unknown) while the target gets no traffic. */
  recentLatencyMs(): number {
    if (this.latencyMs === 0) return 0;
    return this.latencyMs * Math.exp(-(this.now() - this.latencyAt) / LATENCY_MEMORY_MS);
  }
}
