import { type Balance, NONE, type PoolOptions, TargetPool } from "../../../gateway/src/balancing/pool";
import { Target } from "../../../gateway/src/balancing/target";

/** A seeded generator (mulberry32): the same draws on every run, so these figures cannot flake. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Clock {
  now: number;
}

function targets(spec: readonly { name: string; weight?: number }[], clock: Clock): Target[] {
  return spec.map(
    ({ name, weight }) =>
      new Target({
        name,
        weight: weight ?? 1,
        breaker: { failures: 2, cooldownSeconds: 10 },
        now: () => clock.now,
      }),
  );
}

function pool(members: Target[], options: Partial<PoolOptions> = {}): TargetPool {
  const subject = new TargetPool({ balance: "least_outstanding", random: seeded(7), ...options });
  subject.set(members);
  return subject;
}

function counts(picks: readonly (Target | undefined)[]): Record<string, number> {
  const result: Record<string, number> = {};
  for (const pick of picks) if (pick !== undefined) result[pick.name] = (result[pick.name] ?? 0) + 1;
  return result;
}

/**
 * A closed loop of `concurrency` clients, each sending its next request when the last one is answered, on a
 * simulated clock: a target answers after its latency (ms). Returns the requests each target got.
 */
function simulate(
  subject: TargetPool,
  latencyMs: Readonly<Record<string, number>>,
  requests: number,
  concurrency: number,
  clock: Clock,
): Record<string, number> {
  const served: Record<string, number> = {};
  // Pending answers, kept sorted by the time they are due.
  const pending: { due: number; target: Target }[] = [];
  const send = () => {
    const target = subject.pick(NONE);
    if (target === undefined) throw new Error("no target");
    target.inFlight++;
    served[target.name] = (served[target.name] ?? 0) + 1;
    const due = clock.now + (latencyMs[target.name] ?? 1);
    const at = pending.findIndex((entry) => entry.due > due);
    pending.splice(at === -1 ? pending.length : at, 0, { due, target });
  };
  let sent = 0;
  for (; sent < concurrency; sent++) send();
  while (pending.length > 0) {
    const next = pending.shift();
    if (next === undefined) break;
    clock.now = next.due;
    next.target.inFlight--;
    next.target.observe(latencyMs[next.target.name] ?? 1);
    if (sent < requests) {
      send();
      sent++;
    }
  }
  return served;
}

describe("TargetPool", () => {
  it("never picks a target the request already tried, nor one out of rotation", () => {
    const clock = { now: 0 };
    const [a, b, c] = targets([{ name: "a" }, { name: "b" }, { name: "c" }], clock);
    if (a === undefined || b === undefined || c === undefined) throw new Error("setup");
    for (const balance of ["least_outstanding", "round_robin", "weighted_random"] as Balance[]) {
      const subject = pool([a, b, c], { balance });
      const picks = Array.from({ length: 50 }, () => subject.pick(new Set([a])));
      expect(picks).not.toContain(a);
      b.checkedUp = false;
      expect(new Set(Array.from({ length: 20 }, () => subject.pick(new Set([a]))))).toEqual(new Set([c]));
      expect(subject.pick(new Set([a, c]))).toBeUndefined();
      expect(subject.hasOther(new Set([a, c]))).toBe(false);
      expect(subject.hasOther(new Set([a]))).toBe(true);
      b.checkedUp = true;
    }
  });

  it("skips a target whose breaker is open and one retired by discovery", () => {
    const clock = { now: 0 };
    const [a, b] = targets([{ name: "a" }, { name: "b" }], clock);
    if (a === undefined || b === undefined) throw new Error("setup");
    const subject = pool([a, b]);
    for (let i = 0; i < 2; i++) {
      const permit = a.breaker.acquire();
      if (permit === undefined) throw new Error("refused");
      a.breaker.record(permit, "failure");
    }
    expect(a.up).toBe(false);
    expect(counts(Array.from({ length: 30 }, () => subject.pick(NONE)))).toEqual({ b: 30 });
    b.retired = true;
    expect(subject.pick(NONE)).toBeUndefined();
    expect(subject.retryAfterSeconds()).toBe(10);
    // After the cooldown the open target offers exactly one trial call.
    clock.now += 10_000;
    expect(subject.pick(NONE)).toBe(a);
    expect(a.breaker.acquire()).toBeDefined();
    expect(subject.pick(NONE)).toBeUndefined();
  });

  it("least_outstanding: of two targets, always the one with fewer requests in flight per weight", () => {
    const clock = { now: 0 };
    const [a, b] = targets([{ name: "a" }, { name: "b", weight: 2 }], clock);
    if (a === undefined || b === undefined) throw new Error("setup");
    const subject = pool([a, b]);
    a.inFlight = 1;
    b.inFlight = 0;
    expect(counts(Array.from({ length: 20 }, () => subject.pick(NONE)))).toEqual({ b: 20 });
    // b has twice a's weight: 3 in flight on b weigh as 1 on a (a tie); 4 weigh more.
    b.inFlight = 4;
    expect(counts(Array.from({ length: 20 }, () => subject.pick(NONE)))).toEqual({ a: 20 });
  });

  it("least_outstanding: 3 identical targets, 10k requests: the busiest gets at most 1.2x the least busy", () => {
    for (const concurrency of [1, 4, 32]) {
      const clock = { now: 0 };
      const subject = pool(targets([{ name: "a" }, { name: "b" }, { name: "c" }], clock));
      const served = Object.values(simulate(subject, { a: 10, b: 10, c: 10 }, 10_000, concurrency, clock));
      expect(served).toHaveLength(3);
      expect(Math.max(...served) / Math.min(...served)).toBeLessThanOrEqual(1.2);
    }
  });

  it("least_outstanding: a target 10x slower than the others gets at most 15% of the requests", () => {
    for (const concurrency of [1, 4, 32]) {
      const clock = { now: 0 };
      const subject = pool(targets([{ name: "a" }, { name: "b" }, { name: "slow" }], clock));
      const served = simulate(subject, { a: 10, b: 10, slow: 100 }, 5_000, concurrency, clock);
      expect((served.slow ?? 0) / 5_000).toBeLessThanOrEqual(0.15);
    }
  });

  it("least_outstanding: one slow answer (a cold start) does not keep a target out of a quiet gateway's picks", () => {
    const clock = { now: 0 };
    const members = targets([{ name: "a" }, { name: "b" }, { name: "c" }], clock);
    const subject = pool(members);
    // Its first answer took 40x the others' (a new connection, a cold JIT).
    members[0]?.observe(20);
    members[1]?.observe(0.5);
    members[2]?.observe(0.5);
    const served = simulate(subject, { a: 0.5, b: 0.5, c: 0.5 }, 3_000, 1, clock);
    // 3000 requests take 1.5 s: far less than the latency memory, so only fresh answers can bring it back.
    expect(served.a ?? 0).toBeGreaterThan(800);
  });

  it("round_robin: in turn, by weight, spread out (5,1,1: a a b a c a a)", () => {
    const clock = { now: 0 };
    const subject = pool(targets([{ name: "a", weight: 5 }, { name: "b" }, { name: "c" }], clock), {
      balance: "round_robin",
    });
    const names = Array.from({ length: 14 }, () => subject.pick(NONE)?.name).join("");
    expect(names).toBe("aabacaaaabacaa");
  });

  it("weighted_random: shares follow the weights", () => {
    const clock = { now: 0 };
    const subject = pool(targets([{ name: "a", weight: 3 }, { name: "b" }], clock), { balance: "weighted_random" });
    const picked = counts(Array.from({ length: 8000 }, () => subject.pick(NONE)));
    expect((picked.a ?? 0) / 8000).toBeGreaterThan(0.72);
    expect((picked.a ?? 0) / 8000).toBeLessThan(0.78);
  });

  describe("affinity", () => {
    const sessions = Array.from({ length: 300 }, (_, index) => `session-${index}`);

    it("sends a session to the same target every time, and spreads sessions over the targets", () => {
      const clock = { now: 0 };
      const subject = pool(targets([{ name: "a" }, { name: "b" }, { name: "c" }], clock), {
        affinity: { header: "x-session-id" },
      });
      const home = sessions.map((session) => subject.pick(NONE, session));
      for (let round = 0; round < 5; round++)
        expect(sessions.map((session) => subject.pick(NONE, session))).toEqual(home);
      const spread = Object.values(counts(home));
      expect(spread).toHaveLength(3);
      expect(Math.min(...spread)).toBeGreaterThan(60);
    });

    it("moves only the sessions of a target that leaves, and they come back when it returns", () => {
      const clock = { now: 0 };
      const members = targets([{ name: "a" }, { name: "b" }, { name: "c" }], clock);
      const subject = pool(members);
      const before = sessions.map((session) => subject.pick(NONE, session)?.name);
      const [a] = members;
      if (a === undefined) throw new Error("setup");
      a.checkedUp = false;
      const during = sessions.map((session) => subject.pick(NONE, session)?.name);
      sessions.forEach((_, index) => {
        if (before[index] !== "a") expect(during[index]).toBe(before[index]);
        else expect(during[index]).not.toBe("a");
      });
      a.checkedUp = true;
      expect(sessions.map((session) => subject.pick(NONE, session)?.name)).toEqual(before);
    });

    it("sends a session elsewhere while its target carries more than twice its share of the load, plus 4", () => {
      const clock = { now: 0 };
      const members = targets([{ name: "a" }, { name: "b" }, { name: "c" }], clock);
      const subject = pool(members);
      const home = subject.pick(NONE, "heavy");
      if (home === undefined) throw new Error("setup");
      // 14 in flight, all on its home: the bound for the 15th is ceil(2 * 15 / 3) + 4 = 14.
      home.inFlight = 14;
      const moved = subject.pick(NONE, "heavy");
      expect(moved).toBeDefined();
      expect(moved).not.toBe(home);
      // 13: the bound is ceil(2 * 14 / 3) + 4 = 14, and the 14th fits.
      home.inFlight = 13;
      expect(subject.pick(NONE, "heavy")).toBe(home);
      // Spread load raises the bound: 20 of 40 in flight on it still take the session.
      home.inFlight = 20;
      for (const target of members) if (target !== home) target.inFlight = 10;
      expect(subject.pick(NONE, "heavy")).toBe(home);
    });

    it("reads the session from the header or the body's user, as configured", () => {
      const byHeader = new TargetPool({ balance: "least_outstanding", affinity: { header: "x-session-id" } });
      const headers: Record<string, string> = { "x-session-id": "s-1" };
      expect(byHeader.session("someone", { header: (name) => headers[name] })).toBe("s-1");
      expect(byHeader.session("someone", { header: () => undefined })).toBeUndefined();
      expect(byHeader.session("someone", {})).toBeUndefined();
      const byUser = new TargetPool({ balance: "least_outstanding", affinity: { user: true } });
      expect(byUser.session("someone", { header: () => "s-1" })).toBe("someone");
      expect(byUser.session(42, {})).toBeUndefined();
      expect(byUser.session("x".repeat(10_000), {})).toHaveLength(256);
      expect(new TargetPool({ balance: "round_robin" }).session("someone", { header: () => "s-1" })).toBeUndefined();
    });
  });
});

describe("Target", () => {
  it("remembers recent latency and forgets it while it gets no traffic", () => {
    const clock = { now: 0 };
    const [target] = targets([{ name: "a" }], clock);
    if (target === undefined) throw new Error("setup");
    expect(target.recentLatencyMs()).toBe(0);
    target.observe(100);
    expect(target.recentLatencyMs()).toBe(100);
    target.observe(200);
    expect(target.recentLatencyMs()).toBeCloseTo(130);
    clock.now += 30_000;
    expect(target.recentLatencyMs()).toBeLessThan(10);
  });

  it("is up only while it passes its checks with its breaker closed; in rotation also for a trial call", () => {
    const clock = { now: 0 };
    const [target] = targets([{ name: "a" }], clock);
    if (target === undefined) throw new Error("setup");
    expect([target.up, target.inRotation]).toEqual([true, true]);
    target.checkedUp = false;
    expect([target.up, target.inRotation]).toEqual([false, false]);
    target.checkedUp = true;
    for (let i = 0; i < 2; i++) {
      const permit = target.breaker.acquire();
      if (permit === undefined) throw new Error("refused");
      target.breaker.record(permit, "failure");
    }
    expect([target.up, target.inRotation]).toEqual([false, false]);
    clock.now += 10_000;
    expect([target.up, target.inRotation]).toEqual([false, true]);
  });
});
