import { CircuitBreaker, type CircuitState } from "../../../gateway/src/balancing/circuit-breaker";

/** A breaker on a clock the test moves by hand, recording every state it passes through. */
function breaker(failures = 3, cooldownSeconds = 10) {
  let now = 1000;
  const states: CircuitState[] = [];
  const subject = new CircuitBreaker(
    { failures, cooldownSeconds },
    (state) => states.push(state),
    () => now,
  );
  return { subject, states, advance: (ms: number) => (now += ms) };
}

function fail(subject: CircuitBreaker, times: number): void {
  for (let i = 0; i < times; i++) {
    const permit = subject.acquire();
    if (permit === undefined) throw new Error("refused");
    subject.record(permit, "failure");
  }
}

describe("CircuitBreaker", () => {
  it("lets calls through while closed", () => {
    const { subject } = breaker();
    expect(subject.acquire()).toEqual({ trial: false, period: 0 });
    expect(subject.state).toBe("closed");
  });

  it("opens after the configured number of consecutive failures", () => {
    const { subject, states } = breaker(3);
    fail(subject, 2);
    expect(subject.state).toBe("closed");
    fail(subject, 1);
    expect(subject.state).toBe("open");
    expect(states).toEqual(["open"]);
    expect(subject.acquire()).toBeUndefined();
  });

  it("counts only consecutive failures: a success starts the count again", () => {
    const { subject } = breaker(3);
    fail(subject, 2);
    const permit = subject.acquire();
    if (permit !== undefined) subject.record(permit, "success");
    fail(subject, 2);
    expect(subject.state).toBe("closed");
  });

  it("does not count neutral outcomes (a client that left, a rate limit) either way", () => {
    const { subject } = breaker(2);
    fail(subject, 1);
    const permit = subject.acquire();
    if (permit !== undefined) subject.record(permit, "neutral");
    expect(subject.state).toBe("closed");
    fail(subject, 1);
    expect(subject.state).toBe("open");
  });

  it("says how long until it lets a call through, in whole seconds rounded up", () => {
    const { subject, advance } = breaker(1, 10);
    fail(subject, 1);
    expect(subject.retryAfterSeconds()).toBe(10);
    advance(8_500);
    expect(subject.retryAfterSeconds()).toBe(2);
  });

  it("after the cooldown lets exactly one trial through, refusing the rest until it ends", () => {
    const { subject, states, advance } = breaker(1, 10);
    fail(subject, 1);
    advance(9_999);
    expect(subject.acquire()).toBeUndefined();
    advance(1);
    const trial = subject.acquire();
    expect(trial?.trial).toBe(true);
    expect(subject.state).toBe("half_open");
    expect(subject.acquire()).toBeUndefined();
    expect(subject.retryAfterSeconds()).toBe(1);
    expect(states).toEqual(["open", "half_open"]);
  });

  it("closes when the trial succeeds", () => {
    const { subject, states, advance } = breaker(1, 10);
    fail(subject, 1);
    advance(10_000);
    const trial = subject.acquire();
    if (trial !== undefined) subject.record(trial, "success");
    expect(subject.state).toBe("closed");
    expect(states).toEqual(["open", "half_open", "closed"]);
    expect(subject.acquire()?.trial).toBe(false);
  });

  it("opens again, for a whole new cooldown, when the trial fails", () => {
    const { subject, advance } = breaker(1, 10);
    fail(subject, 1);
    advance(10_000);
    const trial = subject.acquire();
    if (trial !== undefined) subject.record(trial, "failure");
    expect(subject.state).toBe("open");
    expect(subject.retryAfterSeconds()).toBe(10);
  });

  it("hands the trial to the next request when the trial ends without a verdict", () => {
    const { subject, advance } = breaker(1, 10);
    fail(subject, 1);
    advance(10_000);
    const trial = subject.acquire();
    if (trial !== undefined) subject.record(trial, "neutral");
    expect(subject.state).toBe("half_open");
    expect(subject.acquire()?.trial).toBe(true);
  });

  it("ignores outcomes of calls admitted before it opened", () => {
    const { subject, advance } = breaker(1, 10);
    const early = subject.acquire();
    fail(subject, 1);
    advance(10_000);
    subject.acquire(); // the trial, under way
    if (early !== undefined) subject.record(early, "success");
    expect(subject.state).toBe("half_open");
  });

  it("lets a stream's first event end a half-open trial well", () => {
    const { subject, advance } = breaker(1, 10);
    fail(subject, 1);
    advance(10_000);
    const trial = subject.acquire();
    if (trial !== undefined) subject.record(trial, "started");
    expect(subject.state).toBe("closed");
  });

  it("settles a started stream when it ends: a break counts as a failure, a clean end forgives", () => {
    const { subject } = breaker(2);
    fail(subject, 1);
    const stream = subject.acquire();
    if (stream !== undefined) subject.record(stream, "started");
    expect(subject.state).toBe("closed");
    subject.recordLate("failure");
    expect(subject.state).toBe("open");

    const other = breaker(2).subject;
    fail(other, 1);
    other.recordLate("success");
    fail(other, 1);
    expect(other.state).toBe("closed");
  });

  it("never opens when turned off", () => {
    const changes: CircuitState[] = [];
    const off = new CircuitBreaker(undefined, (state) => changes.push(state));
    for (let i = 0; i < 100; i++) {
      const permit = off.acquire();
      expect(permit).toBeDefined();
      if (permit !== undefined) off.record(permit, "failure");
    }
    off.recordLate("failure");
    expect(off.state).toBe("closed");
    expect(changes).toEqual([]);
  });
});
