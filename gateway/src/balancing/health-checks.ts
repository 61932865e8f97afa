import type { Target } from "./target";

export interface HealthCheckOptions {
  /** Path of the GET on each target's origin (`/health`): it must never spend tokens. */
  readonly path: string;
  readonly intervalSeconds: number;
  readonly timeoutSeconds: number;
}

/** Asks one target whether it is healthy; resolves false (never rejects) when it is not or does not answer in time. */
export type Probe = (target: Target, signal: AbortSignal) => Promise<boolean>;

/**
 * Active health checks: every interval, one probe per target, all at once. A target that fails one leaves
 * the rotation until one passes; the breaker (passive health) works beside it, and a passed check ends an
 * open breaker's cooldown (the next call is its trial). One round at a time: a
 * round that outlasts the interval delays the next one instead of piling probes onto a sick target.
 */
export class HealthChecks {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly aborts = new Set<AbortController>();

  constructor(
    private readonly targets: () => readonly Target[],
    private readonly probe: Probe,
    private readonly options: HealthCheckOptions,
    /** Told when a target's verdict changes (for the log). */
    private readonly onChange: (target: Target, up: boolean) => void = () => {},
  ) {}

  /** The first round now, then one every interval until stop(). */
  start(): void {
    void this.loop();
  }

  /** One probe of every current target; resolves when all have answered or timed out. */
  async round(): Promise<void> {
    await Promise.all(this.targets().map((target) => this.check(target)));
  }

  /** One probe of `target` now, outside the rounds (a target that just joined); its verdict counts as any. */
  checkNow(target: Target): void {
    if (!this.stopped) void this.check(target);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const abort of this.aborts) abort.abort();
  }

  private async loop(): Promise<void> {
    if (this.stopped) return;
    await this.round();
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.loop(), this.options.intervalSeconds * 1000);
    // Checks alone never keep the process alive.
    this.timer.unref();
  }

  private async check(target: Target): Promise<void> {
    const abort = new AbortController();
    this.aborts.add(abort);
    const timer = setTimeout(() => abort.abort(), this.options.timeoutSeconds * 1000);
    // A probe that ignores its signal still cannot hold the round past the timeout.
    const timedOut = new Promise<boolean>((resolve) =>
      abort.signal.addEventListener("abort", () => resolve(false), { once: true }),
    );
    let up: boolean;
    try {
      up = await Promise.race([this.probe(target, abort.signal), timedOut]);
    } catch {
      up = false;
    } finally {
      clearTimeout(timer);
      this.aborts.delete(abort);
    }
    // Stopping is no verdict on the target; an answer after the timeout is too late to count.
    if (this.stopped) return;
    if (abort.signal.aborted) up = false;
    // Back from an outage: a breaker opened by it lets a trial call through now, not after its cooldown.
    if (up) target.breaker.endCooldown();
    if (up === target.checkedUp) return;
    target.checkedUp = up;
    this.onChange(target, up);
  }
}
