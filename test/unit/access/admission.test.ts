import type { AccessConfig, ApiKeyConfig, ClientLimits } from "../../../gateway/src/access/config";
import { sha256 } from "../../../gateway/src/access/config";
import { RateLimitError, TooManyConcurrentRequestsError } from "../../../gateway/src/errors";
import {
  Admission,
  AdmissionError,
  MAX_TRACKED_ADDRESSES,
  type RejectReason,
  limitRefusal,
  SlidingWindow,
  type Ticket,
} from "../../../gateway/src/access/admission";

const SECOND = 1000;

/** The window's clock starts at an arbitrary whole second, as Date.now would. */
const T0 = 1_700_000_000 * SECOND;

describe("SlidingWindow", () => {
  it("is empty before anything is added", () => {
    expect(new SlidingWindow().total(T0)).toBe(0);
  });

  it("sums what was added within the last 60 seconds", () => {
    const window = new SlidingWindow();
    window.add(T0, 2);
    window.add(T0 + 10 * SECOND, 3);
    window.add(T0 + 59 * SECOND + 999, 5);
    expect(window.total(T0 + 59 * SECOND + 999)).toBe(10);
  });

  it("adds amounts in the same second into one bucket", () => {
    const window = new SlidingWindow();
    window.add(T0 + 100, 1);
    window.add(T0 + 900, 4);
    expect(window.total(T0 + 60 * SECOND)).toBe(5);
    expect(window.total(T0 + 61 * SECOND)).toBe(0);
  });

  it("drops the bucket of second s exactly when second s + 61 begins: every amount counts for 60 s at least", () => {
    const window = new SlidingWindow();
    window.add(T0 + 500, 3);
    window.add(T0 + 1 * SECOND, 1);
    expect(window.total(T0 + 61 * SECOND - 1)).toBe(4);
    expect(window.total(T0 + 61 * SECOND)).toBe(1);
    expect(window.total(T0 + 62 * SECOND - 1)).toBe(1);
    expect(window.total(T0 + 62 * SECOND)).toBe(0);
  });

  it("never lets one 60 s span hold more than a limit, however the bursts fall within their seconds", () => {
    // A limit of 10 a minute, filled at the very end of one second: 60 s later it must still be full.
    const window = new SlidingWindow();
    const limit = 10;
    const admitted: number[] = [];
    for (let at = T0 + 999; at < T0 + 180 * SECOND; at += 100) {
      if (window.total(at) + 1 <= limit) {
        window.add(at, 1);
        admitted.push(at);
      }
    }
    for (let i = 0; i < admitted.length; i++) {
      const from = admitted[i] ?? 0;
      expect(admitted.filter((at) => at >= from && at < from + 60 * SECOND).length).toBeLessThanOrEqual(limit);
    }
    expect(admitted.length).toBe(30);
  });

  it("clears everything after a gap of more than 60 seconds", () => {
    const window = new SlidingWindow();
    for (let s = 0; s < 60; s++) window.add(T0 + s * SECOND, 1);
    expect(window.total(T0 + 59 * SECOND)).toBe(60);
    expect(window.total(T0 + 59 * SECOND + 61 * SECOND)).toBe(0);
    window.add(T0 + 200 * SECOND, 2);
    expect(window.total(T0 + 200 * SECOND)).toBe(2);
  });

  it("does not let an old bucket's slot leak into a new second after a long gap", () => {
    const window = new SlidingWindow();
    window.add(T0, 7);
    // 120 s later the same slot (modulo 60) is reused: only the new amount may count.
    window.add(T0 + 120 * SECOND, 1);
    expect(window.total(T0 + 120 * SECOND)).toBe(1);
    expect(window.total(T0 + 181 * SECOND)).toBe(0);
  });

  it("ignores a clock that steps back (the newest second stays the newest)", () => {
    const window = new SlidingWindow();
    window.add(T0 + 10 * SECOND, 1);
    window.add(T0 + 5 * SECOND, 1);
    expect(window.total(T0 + 10 * SECOND)).toBe(2);
    expect(window.total(T0 + 71 * SECOND)).toBe(0);
  });

  describe("secondsUntilAtMost", () => {
    it("waits until enough old buckets have left: 3 at 0 s and 1 at 30 s, at 40 s total <= 1 is 21 s away", () => {
      const window = new SlidingWindow();
      window.add(T0, 3);
      window.add(T0 + 30 * SECOND, 1);
      expect(window.secondsUntilAtMost(T0 + 40 * SECOND, 1)).toBe(21);
      // Total <= 0 needs the 30 s bucket gone as well: at 91 s.
      expect(window.secondsUntilAtMost(T0 + 40 * SECOND, 0)).toBe(51);
      // Total <= 3 needs only the 0 s bucket gone too: the 30 s one alone is 1.
      expect(window.secondsUntilAtMost(T0 + 40 * SECOND, 3)).toBe(21);
    });

    it("rounds a part second up, counting from the moment asked", () => {
      const window = new SlidingWindow();
      window.add(T0, 2);
      // The bucket leaves at T0 + 61 s; from T0 + 40.5 s that is 20.5 s, so 21 whole seconds.
      expect(window.secondsUntilAtMost(T0 + 40 * SECOND + 500, 0)).toBe(21);
    });

    it("is the answer the window then proves true", () => {
      const window = new SlidingWindow();
      window.add(T0 + 3 * SECOND, 2);
      window.add(T0 + 17 * SECOND, 2);
      window.add(T0 + 44 * SECOND, 2);
      const now = T0 + 50 * SECOND + 250;
      const wait = window.secondsUntilAtMost(now, 3);
      expect(window.total(now + (wait - 1) * SECOND)).toBeGreaterThan(3);
      expect(window.total(now + wait * SECOND)).toBeLessThanOrEqual(3);
    });

    it("is at least 1 second, even when the total is already low enough", () => {
      const window = new SlidingWindow();
      window.add(T0, 1);
      expect(window.secondsUntilAtMost(T0, 5)).toBe(1);
      expect(new SlidingWindow().secondsUntilAtMost(T0, 0)).toBe(1);
    });

    it("is 1 when the bucket leaves within the next second", () => {
      const window = new SlidingWindow();
      window.add(T0, 1);
      expect(window.secondsUntilAtMost(T0 + 60 * SECOND + 999, 0)).toBe(1);
    });
  });
});

/** A clock the test moves by hand. */
function clock(start = T0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms), set: (ms: number) => (now = ms) };
}

function key(name: string, limits: ClientLimits = {}): ApiKeyConfig {
  return { name, sha256: sha256(`${name}-secret-key-0123456789`), limits };
}

function access(overrides: Partial<AccessConfig> = {}): AccessConfig {
  return { keys: [], limits: {}, maxConcurrentRequests: 1024, hashesInFile: false, ...overrides };
}

/** The AdmissionError admitting this client throws; fails the test when it is admitted. */
function refusal(admission: Admission, client: { key?: string; address: string; reserve?: number }): AdmissionError {
  try {
    admission.admit(client);
  } catch (error) {
    if (error instanceof AdmissionError) return error;
    throw error;
  }
  throw new Error("expected the request to be refused");
}

function reason(admission: Admission, client: { key?: string; address: string; reserve?: number }): RejectReason {
  return refusal(admission, client).reason;
}

function admitTimes(admission: Admission, client: { key?: string; address: string }, times: number): Ticket[] {
  return Array.from({ length: times }, () => admission.admit(client));
}

describe("Admission", () => {
  describe("requests_per_minute", () => {
    const alice = { key: "alice", address: "10.0.0.1" };

    function subject(perMinute: number) {
      const time = clock();
      const admission = new Admission(access({ keys: [key("alice", { requestsPerMinute: perMinute })] }), time.now);
      return { time, admission };
    }

    it("admits N requests in a minute and refuses the next one with a 429", () => {
      const { admission } = subject(3);
      admitTimes(admission, alice, 3).forEach((ticket) => ticket.release());
      const error = refusal(admission, alice);
      expect(error.reason).toBe("requests_per_minute");
      expect(error.error).toBeInstanceOf(RateLimitError);
      expect(error.error.status).toBe(429);
      expect(error.error.type).toBe("rate_limit_error");
      expect(error.error.code).toBe("rate_limit_exceeded");
      expect(error.error.headers["x-ratelimit-limit-requests"]).toBe("3");
      expect(error.error.headers["x-ratelimit-remaining-requests"]).toBe("0");
      expect(error.message).toBe(error.error.message);
      expect(error.message).toMatch(/API key 'alice'/);
    });

    it("says in retry-after when the window frees a slot, and admits again then (not a second earlier)", () => {
      const { time, admission } = subject(2);
      admission.admit(alice).release();
      time.advance(20 * SECOND);
      admission.admit(alice).release();
      time.advance(15 * SECOND + 400);
      // The first request (second 0) leaves the window at 61 s; it is now 35.4 s.
      const retryAfter = Number(refusal(admission, alice).error.headers["retry-after"]);
      expect(retryAfter).toBe(26);
      time.advance((retryAfter - 1) * SECOND);
      expect(reason(admission, alice)).toBe("requests_per_minute");
      time.set(T0 + 35 * SECOND + 400 + retryAfter * SECOND);
      expect(() => admission.admit(alice).release()).not.toThrow();
      // And now the window is full again until the second request (at 20 s) leaves at 81 s.
      expect(Number(refusal(admission, alice).error.headers["retry-after"])).toBe(20);
    });

    it("does not count a refused request: after the window passes, N more are admitted", () => {
      const { time, admission } = subject(3);
      admitTimes(admission, alice, 3).forEach((ticket) => ticket.release());
      for (let i = 0; i < 10; i++) {
        time.advance(5 * SECOND);
        expect(reason(admission, alice)).toBe("requests_per_minute");
      }
      time.set(T0 + 61 * SECOND);
      admitTimes(admission, alice, 3).forEach((ticket) => ticket.release());
      expect(reason(admission, alice)).toBe("requests_per_minute");
    });

    it("does not hold a refused request in flight", () => {
      const { admission } = subject(1);
      admission.admit(alice).release();
      refusal(admission, alice);
      expect(admission.requestsInFlight).toBe(0);
    });
  });

  describe("tokens_per_minute", () => {
    const alice = { key: "alice", address: "10.0.0.1" };

    function subject(perMinute: number) {
      const time = clock();
      const admission = new Admission(access({ keys: [key("alice", { tokensPerMinute: perMinute })] }), time.now);
      return { time, admission };
    }

    it("admits while the tokens charged stay below the limit", () => {
      const { admission } = subject(100);
      const ticket = admission.admit(alice);
      ticket.charge(99);
      ticket.release();
      expect(() => admission.admit(alice).release()).not.toThrow();
    });

    it("refuses once the tokens charged in the window reach the limit, with a 429", () => {
      const { admission } = subject(100);
      const first = admission.admit(alice);
      first.charge(60);
      first.release();
      const second = admission.admit(alice);
      second.charge(40);
      second.release();
      const error = refusal(admission, alice);
      expect(error.reason).toBe("tokens_per_minute");
      expect(error.error).toBeInstanceOf(RateLimitError);
      expect(error.error.status).toBe(429);
      expect(error.error.type).toBe("rate_limit_error");
      expect(error.error.headers["x-ratelimit-limit-tokens"]).toBe("100");
    });

    it("charges at the time of the charge, and admits again once those tokens leave the window", () => {
      const { time, admission } = subject(100);
      const ticket = admission.admit(alice);
      time.advance(10 * SECOND);
      ticket.charge(150);
      ticket.release();
      time.advance(30 * SECOND);
      const error = refusal(admission, alice);
      // Charged at 10 s, so they leave at 71 s; it is 40 s.
      expect(error.error.headers["retry-after"]).toBe("31");
      time.set(T0 + 71 * SECOND - 1);
      expect(reason(admission, alice)).toBe("tokens_per_minute");
      time.set(T0 + 71 * SECOND);
      expect(() => admission.admit(alice).release()).not.toThrow();
    });

    it("ignores a charge of zero or fewer tokens", () => {
      const { admission } = subject(1);
      const ticket = admission.admit(alice);
      ticket.charge(0);
      ticket.charge(-5);
      ticket.release();
      expect(() => admission.admit(alice).release()).not.toThrow();
    });

    it("counts tokens charged after release", () => {
      const { admission } = subject(10);
      const ticket = admission.admit(alice);
      ticket.release();
      ticket.charge(10);
      expect(reason(admission, alice)).toBe("tokens_per_minute");
    });

    it("refuses a request whose reservation does not fit beside those in flight, before any is charged", () => {
      const { admission } = subject(100);
      const first = admission.admit({ ...alice, reserve: 60 });
      const error = refusal(admission, { ...alice, reserve: 60 });
      expect(error.reason).toBe("tokens_per_minute");
      // The one in flight settles soon: retry in a second.
      expect(error.error.headers["retry-after"]).toBe("1");
      expect(() => admission.admit({ ...alice, reserve: 40 }).release()).not.toThrow();
      // Settled to what it used: 10 of its 60.
      first.charge(10);
      first.release();
      expect(() => admission.admit({ ...alice, reserve: 90 }).release()).not.toThrow();
      expect(reason(admission, { ...alice, reserve: 91 })).toBe("tokens_per_minute");
    });

    it("lets a request through alone even when its reservation is past the limit", () => {
      const { admission } = subject(100);
      const big = admission.admit({ ...alice, reserve: 5000 });
      expect(reason(admission, { ...alice, reserve: 1 })).toBe("tokens_per_minute");
      big.release();
      expect(() => admission.admit({ ...alice, reserve: 5000 }).release()).not.toThrow();
    });

    it("reserves nothing for a client without a tokens limit", () => {
      const time = clock();
      const admission = new Admission(access({ keys: [key("alice", { requestsPerMinute: 10 })] }), time.now);
      admission.admit({ ...alice, reserve: 1_000_000 });
      expect(() => admission.admit({ ...alice, reserve: 1_000_000 })).not.toThrow();
    });
  });

  describe("concurrent_requests of one client", () => {
    const alice = { key: "alice", address: "10.0.0.1" };

    function subject(concurrent: number) {
      return new Admission(access({ keys: [key("alice", { concurrentRequests: concurrent })] }), clock().now);
    }

    it("refuses a request over the client's limit with a 503", () => {
      const admission = subject(2);
      admitTimes(admission, alice, 2);
      const error = refusal(admission, alice);
      expect(error.reason).toBe("client_concurrency");
      expect(error.error).toBeInstanceOf(TooManyConcurrentRequestsError);
      expect(error.error.status).toBe(503);
      expect(error.error.headers["retry-after"]).toBe("1");
      expect(error.message).toMatch(/^API key 'alice' has 2 requests in flight/);
    });

    it("admits again once a request is released", () => {
      const admission = subject(2);
      const [first] = admitTimes(admission, alice, 2);
      first?.release();
      expect(() => admission.admit(alice)).not.toThrow();
      expect(reason(admission, alice)).toBe("client_concurrency");
    });

    it("does not free two slots when one ticket is released twice", () => {
      const admission = subject(2);
      const [first] = admitTimes(admission, alice, 2);
      first?.release();
      first?.release();
      admission.admit(alice);
      expect(reason(admission, alice)).toBe("client_concurrency");
      expect(admission.requestsInFlight).toBe(2);
    });
  });

  describe("each client's share of max_concurrent_requests", () => {
    it("lets one client address hold at most half the slots when no concurrent_requests is set", () => {
      const admission = new Admission(access({ maxConcurrentRequests: 4 }), clock().now);
      admission.admit({ address: "10.0.0.1" });
      admission.admit({ address: "10.0.0.1" });
      const error = refusal(admission, { address: "10.0.0.1" });
      expect(error.reason).toBe("client_concurrency");
      expect(error.error.message).toContain("its share of the gateway's 4");
      admission.admit({ address: "10.0.0.2" });
      admission.admit({ address: "10.0.0.2" });
      expect(admission.requestsInFlight).toBe(4);
    });

    it("lets a key's own concurrent_requests replace the share", () => {
      const admission = new Admission(
        access({ keys: [key("batch", { concurrentRequests: 4 })], maxConcurrentRequests: 4 }),
        clock().now,
      );
      for (let i = 0; i < 4; i++) admission.admit({ key: "batch", address: "10.0.0.1" });
      expect(reason(admission, { key: "batch", address: "10.0.0.1" })).toBe("gateway_concurrency");
    });

    it("gives a gateway of one slot a share of one", () => {
      const admission = new Admission(access({ maxConcurrentRequests: 1 }), clock().now);
      expect(() => admission.admit({ address: "10.0.0.1" })).not.toThrow();
    });
  });

  describe("precheck, before the body is read", () => {
    it("refuses a client over its requests per minute and counts nothing", () => {
      const admission = new Admission(access({ limits: { requestsPerMinute: 1 } }), clock().now);
      admission.precheck({ address: "10.0.0.1" });
      admission.precheck({ address: "10.0.0.1" });
      admission.admit({ address: "10.0.0.1" }).release();
      expect(() => admission.precheck({ address: "10.0.0.1" })).toThrow(AdmissionError);
      expect(admission.requestsInFlight).toBe(0);
    });

    it("takes no slot: a client whose body is still arriving holds nothing", () => {
      const admission = new Admission(access({ maxConcurrentRequests: 1 }), clock().now);
      for (let i = 0; i < 10; i++) admission.precheck({ address: `10.0.0.${i}` });
      expect(admission.requestsInFlight).toBe(0);
      expect(() => admission.admit({ address: "10.0.0.1" })).not.toThrow();
    });
  });

  describe("max_concurrent_requests of the gateway", () => {
    it("refuses the request over the cap whoever sends it, with a 503", () => {
      const admission = new Admission(
        access({ keys: [key("alice"), key("bob")], maxConcurrentRequests: 2 }),
        clock().now,
      );
      admission.admit({ key: "alice", address: "10.0.0.1" });
      admission.admit({ key: "bob", address: "10.0.0.2" });
      expect(admission.requestsInFlight).toBe(2);
      const error = refusal(admission, { key: "alice", address: "10.0.0.1" });
      expect(error.reason).toBe("gateway_concurrency");
      expect(error.error).toBeInstanceOf(TooManyConcurrentRequestsError);
      expect(error.error.status).toBe(503);
      expect(reason(admission, { key: "bob", address: "10.0.0.2" })).toBe("gateway_concurrency");
    });

    it("admits again when any request is released, and a double release frees one slot", () => {
      const own = { concurrentRequests: 2 };
      const admission = new Admission(
        access({ keys: [key("alice", own), key("bob", own)], maxConcurrentRequests: 2 }),
        clock().now,
      );
      const first = admission.admit({ key: "alice", address: "10.0.0.1" });
      admission.admit({ key: "bob", address: "10.0.0.2" });
      first.release();
      first.release();
      expect(admission.requestsInFlight).toBe(1);
      admission.admit({ key: "bob", address: "10.0.0.2" });
      expect(reason(admission, { key: "alice", address: "10.0.0.1" })).toBe("gateway_concurrency");
    });

    it("applies across client addresses when auth is off", () => {
      const admission = new Admission(access({ maxConcurrentRequests: 1 }), clock().now);
      admission.admit({ address: "10.0.0.1" });
      expect(reason(admission, { address: "10.0.0.2" })).toBe("gateway_concurrency");
    });

    it("does not charge a request refused by the cap to its client's rate", () => {
      const time = clock();
      const admission = new Admission(
        access({ keys: [key("alice", { requestsPerMinute: 1 })], maxConcurrentRequests: 1 }),
        time.now,
      );
      const other = admission.admit({ address: "10.0.0.9" });
      expect(reason(admission, { key: "alice", address: "10.0.0.1" })).toBe("gateway_concurrency");
      other.release();
      expect(() => admission.admit({ key: "alice", address: "10.0.0.1" })).not.toThrow();
    });
  });

  describe("keys", () => {
    it("counts each key on its own", () => {
      const admission = new Admission(
        access({
          keys: [
            key("alice", { requestsPerMinute: 1, concurrentRequests: 1 }),
            key("bob", { requestsPerMinute: 1, concurrentRequests: 1 }),
          ],
        }),
        clock().now,
      );
      admission.admit({ key: "alice", address: "10.0.0.1" });
      expect(reason(admission, { key: "alice", address: "10.0.0.1" })).toBe("client_concurrency");
      expect(() => admission.admit({ key: "bob", address: "10.0.0.1" })).not.toThrow();
      expect(reason(admission, { key: "bob", address: "10.0.0.1" })).toBe("client_concurrency");
    });

    it("applies each key's own limits", () => {
      const admission = new Admission(
        access({ keys: [key("alice", { requestsPerMinute: 1 }), key("bob", { requestsPerMinute: 3 })] }),
        clock().now,
      );
      admitTimes(admission, { key: "alice", address: "a" }, 1).forEach((ticket) => ticket.release());
      admitTimes(admission, { key: "bob", address: "a" }, 3).forEach((ticket) => ticket.release());
      expect(reason(admission, { key: "alice", address: "a" })).toBe("requests_per_minute");
      expect(reason(admission, { key: "bob", address: "a" })).toBe("requests_per_minute");
    });

    it("counts a key the same from any address", () => {
      const admission = new Admission(access({ keys: [key("alice", { requestsPerMinute: 2 })] }), clock().now);
      admission.admit({ key: "alice", address: "10.0.0.1" }).release();
      admission.admit({ key: "alice", address: "10.0.0.2" }).release();
      expect(reason(admission, { key: "alice", address: "10.0.0.3" })).toBe("requests_per_minute");
    });
  });

  describe("with auth off", () => {
    it("applies the limits per client address, each address on its own", () => {
      const admission = new Admission(access({ limits: { requestsPerMinute: 2 } }), clock().now);
      admitTimes(admission, { address: "10.0.0.1" }, 2).forEach((ticket) => ticket.release());
      const error = refusal(admission, { address: "10.0.0.1" });
      expect(error.reason).toBe("requests_per_minute");
      expect(error.message).toMatch(/this client address/);
      admitTimes(admission, { address: "10.0.0.2" }, 2).forEach((ticket) => ticket.release());
      expect(reason(admission, { address: "10.0.0.2" })).toBe("requests_per_minute");
    });

    it("applies concurrent_requests per address", () => {
      const admission = new Admission(access({ limits: { concurrentRequests: 1 } }), clock().now);
      admission.admit({ address: "10.0.0.1" });
      const error = refusal(admission, { address: "10.0.0.1" });
      expect(error.reason).toBe("client_concurrency");
      expect(error.message).toMatch(/^This client address has 1 requests in flight/);
      expect(() => admission.admit({ address: "10.0.0.2" })).not.toThrow();
    });

    it("holds an address to its share when no limits are set, and keeps the table bounded", () => {
      const admission = new Admission(access({ maxConcurrentRequests: 5 }), clock().now);
      const tickets = admitTimes(admission, { address: "10.0.0.1" }, 3);
      expect(reason(admission, { address: "10.0.0.1" })).toBe("client_concurrency");
      tickets.forEach((ticket) => ticket.release());
      // Many requests from many addresses: none is ever refused, and the per-address books stay bounded.
      for (let i = 0; i < 2 * MAX_TRACKED_ADDRESSES; i++) admission.admit({ address: `addr-${i}` }).release();
      expect(admission.requestsInFlight).toBe(0);
      expect(addressCount(admission)).toBe(MAX_TRACKED_ADDRESSES);
    });

    it("keeps the address table bounded: past MAX_TRACKED_ADDRESSES a long-idle address loses its counts", () => {
      const time = clock();
      const admission = new Admission(access({ limits: { requestsPerMinute: 1 } }), time.now);
      admission.admit({ address: "idle" }).release();
      expect(reason(admission, { address: "idle" })).toBe("requests_per_minute");
      for (let i = 0; i < MAX_TRACKED_ADDRESSES; i++) {
        time.advance(1);
        admission.admit({ address: `busy-${i}` }).release();
      }
      expect(addressCount(admission)).toBe(MAX_TRACKED_ADDRESSES);
      // Still within the same minute: only eviction can explain why 'idle' is admitted again.
      expect(time.now() - T0).toBeLessThan(60 * SECOND);
      expect(() => admission.admit({ address: "idle" }).release()).not.toThrow();
      expect(addressCount(admission)).toBe(MAX_TRACKED_ADDRESSES);
      // A recently seen address kept its counts.
      expect(reason(admission, { address: `busy-${MAX_TRACKED_ADDRESSES - 1}` })).toBe("requests_per_minute");
    });

    it("never evicts an address with a request in flight", () => {
      const time = clock();
      const admission = new Admission(access({ limits: { concurrentRequests: 1 } }), time.now);
      admission.admit({ address: "holding" });
      for (let i = 0; i < MAX_TRACKED_ADDRESSES + 10; i++) admission.admit({ address: `other-${i}` }).release();
      expect(reason(admission, { address: "holding" })).toBe("client_concurrency");
    });
  });
});

/** How many client addresses the admission keeps books for (read from the private table, for the bound). */
function addressCount(admission: Admission): number {
  const table: unknown = Reflect.get(admission, "byAddress");
  if (!(table instanceof Map)) throw new Error("Admission no longer keeps a byAddress map");
  return table.size;
}

describe("limitRefusal", () => {
  it("never says more than 60 s in retry-after: the SDKs ignore a longer one and retry at once", () => {
    const refusal = limitRefusal("requests_per_minute", "API key 'a'", { requestsPerMinute: 5 }, 61);
    expect(refusal.error.headers["retry-after"]).toBe("60");
    expect(
      limitRefusal("tokens_per_minute", "API key 'a'", { tokensPerMinute: 5 }, 7).error.headers["retry-after"],
    ).toBe("7");
  });

  it("a window filled at the very start of a second says 60, not the 61 s it has left", () => {
    const admission = new Admission(
      { keys: [], limits: { requestsPerMinute: 2 }, maxConcurrentRequests: 10, hashesInFile: false },
      () => T0,
    );
    const client = { address: "10.0.0.1" };
    admission.admit(client).release();
    admission.admit(client).release();
    // Both leave the window when second 61 begins: 61 s from now.
    let refused: unknown;
    try {
      admission.admit(client);
    } catch (error) {
      refused = error;
    }
    expect((refused as AdmissionError).error.headers["retry-after"]).toBe("60");
  });
});

describe("Admission.reconfigure (a config reload)", () => {
  it("keeps the books of a key whose limits did not change, and starts a changed or new key afresh", () => {
    const time = clock();
    const admission = new Admission(
      access({ keys: [key("steady", { requestsPerMinute: 2 }), key("edited", { requestsPerMinute: 2 })] }),
      time.now,
    );
    const steady = { key: "steady", address: "10.0.0.1" };
    const edited = { key: "edited", address: "10.0.0.2" };
    const held = admitTimes(admission, steady, 2);
    admitTimes(admission, edited, 2);
    admission.reconfigure(
      access({
        keys: [key("steady", { requestsPerMinute: 2 }), key("edited", { requestsPerMinute: 3 }), key("new")],
      }),
    );
    expect(reason(admission, steady)).toBe("requests_per_minute");
    admitTimes(admission, edited, 3);
    expect(reason(admission, edited)).toBe("requests_per_minute");
    expect(() => admission.admit({ key: "new", address: "10.0.0.3" })).not.toThrow();
    // Requests admitted before the reload still give their slots back.
    for (const ticket of held) ticket.release();
    expect(admission.requestsInFlight).toBe(6);
  });

  it("applies a new gateway-wide cap at once, counting the requests already in flight", () => {
    const admission = new Admission(access({ maxConcurrentRequests: 4 }));
    for (const address of ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) admission.admit({ address });
    admission.reconfigure(access({ maxConcurrentRequests: 3 }));
    expect(reason(admission, { address: "10.0.0.4" })).toBe("gateway_concurrency");
  });
});
