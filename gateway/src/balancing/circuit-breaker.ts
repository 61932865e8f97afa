import type { BackendHealth } from "../errors";

export interface CircuitBreakerOptions {
  /** Consecutive failed calls that open the circuit. */
  readonly failures: number;
  /** How long it stays open before one trial call may go through. */
  readonly cooldownSeconds: number;
}

/**
 * closed: calls go through; open: none do, until the cooldown is over; half_open: the cooldown is over and
 * exactly one trial call is (or may be) under way; its outcome closes or reopens the circuit.
 */
export type CircuitState = "closed" | "open" | "half_open";

/**
 * How a call bears on the backend's health. `started`: a stream sent its first event; enough to end a
 * half-open trial well, not enough to forgive earlier failures (the stream may still break; its end is
 * reported through `recordLate`).
 */
export type CallHealth = BackendHealth | "started";

/**
 * Permission for one call, handed back with its outcome. The breaker only lets outcomes count that belong
 * to its current period: a call admitted before the circuit opened, finishing after, cannot close it.
 */
export interface Permit {
  readonly trial: boolean;
  readonly period: number;
}

/**
 * One backend's circuit breaker. It keeps no timers: the move from open to half-open happens when a call
 * asks for a permit after the cooldown, so an idle gateway does no work and nothing can leak.
 */
export class CircuitBreaker {
  private current: CircuitState = "closed";
  private consecutiveFailures = 0;
  private openUntil = 0;
  private trialUnderWay = false;
  /** Bumped on every state change, so late outcomes from an earlier period are ignored. */
  private period = 0;

  constructor(
    /** Undefined: the breaker never opens (`circuit_breaker: false`). */
    private readonly options: CircuitBreakerOptions | undefined,
    private readonly onChange: (state: CircuitState) => void = () => {},
    private readonly now: () => number = () => performance.now(),
  ) {}

  get state(): CircuitState {
    return this.current;
  }

  /** Whether acquire() would give a permit now, without taking it: a pool asks this of each target it could pick. */
  mayAcquire(): boolean {
    if (this.options === undefined || this.current === "closed") return true;
    if (this.current === "open" && this.now() < this.openUntil) return false;
    return !this.trialUnderWay;
  }

  /** A permit for one call, or undefined when the backend must not be called now (open, or a trial is out). */
  acquire(): Permit | undefined {
    if (this.options === undefined || this.current === "closed") return { trial: false, period: this.period };
    if (this.current === "open") {
      if (this.now() < this.openUntil) return undefined;
      this.moveTo("half_open");
    }
    if (this.trialUnderWay) return undefined;
    this.trialUnderWay = true;
    return { trial: true, period: this.period };
  }

  /** Reports how the call made under `permit` went. */
  record(permit: Permit, health: CallHealth): void {
    if (this.options === undefined || permit.period !== this.period) return;
    if (this.current === "half_open") {
      if (!permit.trial) return;
      this.trialUnderWay = false;
      // A trial that ended without a verdict (the client left) hands its turn to the next request.
      if (health === "success" || health === "started") this.moveTo("closed");
      else if (health === "failure") this.open();
      return;
    }
    if (health === "success") this.consecutiveFailures = 0;
    else if (health === "failure" && ++this.consecutiveFailures >= this.options.failures) this.open();
  }

  /**
   * How a call that was recorded as `started` ended (a stream: completed, or broken after its first event).
   * It moves the count of consecutive failures, but cannot overturn a state change already made.
   */
  recordLate(health: "success" | "failure"): void {
    if (this.options === undefined || this.current !== "closed") return;
    if (health === "success") this.consecutiveFailures = 0;
    else if (++this.consecutiveFailures >= this.options.failures) this.open();
  }

  /**
   * An active health check passed: an open circuit need not wait out its cooldown. The next call is its
   * trial, whose outcome closes or reopens it as usual.
   */
  endCooldown(): void {
    if (this.current === "open") this.openUntil = Math.min(this.openUntil, this.now());
  }

  /** Whole seconds until a call may get through again (at least 1): the `retry-after` of a refusal. */
  retryAfterSeconds(): number {
    const remainingMs = this.current === "open" ? this.openUntil - this.now() : 0;
    return Math.max(1, Math.ceil(remainingMs / 1000));
  }

  private open(): void {
    this.openUntil = this.now() + (this.options?.cooldownSeconds ?? 0) * 1000;
    this.moveTo("open");
  }

  private moveTo(state: CircuitState): void {
    this.current = state;
    this.period++;
    this.consecutiveFailures = 0;
    this.trialUnderWay = false;
    this.onChange(state);
  }
}
