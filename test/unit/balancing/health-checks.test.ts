import { HealthChecks } from "../../../gateway/src/balancing/health-checks";
import { Target } from "../../../gateway/src/balancing/target";

function target(name: string): Target {
  return new Target({ name, weight: 1, breaker: undefined });
}

describe("HealthChecks", () => {
  it("takes a target out when a check fails and back when one passes, telling each change once", async () => {
    const a = target("a");
    const b = target("b");
    const verdicts = new Map([
      [a, true],
      [b, false],
    ]);
    const changes: string[] = [];
    const checks = new HealthChecks(
      () => [a, b],
      async (probed) => verdicts.get(probed) ?? false,
      { path: "/health", intervalSeconds: 5, timeoutSeconds: 1 },
      (changed, up) => changes.push(`${changed.name}:${up ? "up" : "down"}`),
    );
    await checks.round();
    expect([a.checkedUp, b.checkedUp]).toEqual([true, false]);
    expect(b.inRotation).toBe(false);
    await checks.round();
    expect(changes).toEqual(["b:down"]);
    verdicts.set(b, true);
    await checks.round();
    expect(b.checkedUp).toBe(true);
    expect(changes).toEqual(["b:down", "b:up"]);
  });

  it("ends an open breaker's cooldown when a check passes: the next call is its trial", async () => {
    let now = 0;
    const a = new Target({ name: "a", weight: 1, breaker: { failures: 1, cooldownSeconds: 60 }, now: () => now });
    const permit = a.breaker.acquire();
    if (permit === undefined) throw new Error("setup");
    a.breaker.record(permit, "failure");
    now += 1000;
    expect(a.inRotation).toBe(false);
    let healthy = false;
    const checks = new HealthChecks(
      () => [a],
      async () => healthy,
      { path: "/health", intervalSeconds: 5, timeoutSeconds: 1 },
    );
    await checks.round();
    expect(a.inRotation).toBe(false);
    healthy = true;
    await checks.round();
    expect(a.inRotation).toBe(true);
    expect(a.breaker.acquire()).toMatchObject({ trial: true });
  });

  it("counts a probe that throws, or does not answer within the timeout, as failed", async () => {
    const thrower = target("thrower");
    const silent = target("silent");
    const checks = new HealthChecks(
      () => [thrower, silent],
      (probed, signal) =>
        probed === thrower
          ? Promise.reject(new Error("ECONNREFUSED"))
          : // Answers "healthy" only after the abort: too late to count.
            new Promise((resolve) => signal.addEventListener("abort", () => resolve(true))),
      { path: "/health", intervalSeconds: 1, timeoutSeconds: 0.02 },
    );
    await checks.round();
    expect([thrower.checkedUp, silent.checkedUp]).toEqual([false, false]);
  });

  it("checks at once on start, then every interval, and stop() ends it with the probes under way", async () => {
    jest.useFakeTimers();
    try {
      const a = target("a");
      const signals: AbortSignal[] = [];
      let hang = false;
      const checks = new HealthChecks(
        () => [a],
        (_probed, signal) => {
          signals.push(signal);
          return hang ? new Promise<boolean>(() => {}) : Promise.resolve(true);
        },
        { path: "/health", intervalSeconds: 5, timeoutSeconds: 2 },
      );
      checks.start();
      await jest.advanceTimersByTimeAsync(0);
      expect(signals).toHaveLength(1);
      await jest.advanceTimersByTimeAsync(4_999);
      expect(signals).toHaveLength(1);
      await jest.advanceTimersByTimeAsync(1);
      expect(signals).toHaveLength(2);
      hang = true;
      await jest.advanceTimersByTimeAsync(5_000);
      expect(signals).toHaveLength(3);
      // The hung probe times out (at 2 s) and the rounds go on.
      await jest.advanceTimersByTimeAsync(7_000);
      expect(signals).toHaveLength(4);
      expect(a.checkedUp).toBe(false);
      hang = false;
      checks.stop();
      expect(signals[3]?.aborted).toBe(true);
      // Stopping is not a verdict on the target.
      await jest.advanceTimersByTimeAsync(60_000);
      expect(signals).toHaveLength(4);
      expect(a.checkedUp).toBe(false);
    } finally {
      jest.useRealTimers();
    }
  });
});
