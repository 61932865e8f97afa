import { Admission, AdmissionError, type Ticket } from "../../../gateway/src/access/admission";
import { type AccessConfig, type ApiKeyConfig, type ClientLimits, sha256 } from "../../../gateway/src/access/config";
import { type Client, SharedAdmission, type SharedBooks } from "../../../gateway/src/access/shared-admission";
import { PrimaryLimits } from "../../../gateway/src/cluster-limits";

const T0 = 1_700_000_000_000;

function clock() {
  let now = T0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function key(name: string, limits: ClientLimits = {}): ApiKeyConfig {
  return { name, sha256: sha256(`${name}-secret-key-0123456789`), limits };
}

function access(overrides: Partial<AccessConfig> = {}): AccessConfig {
  return { keys: [], limits: {}, maxConcurrentRequests: 1024, hashesInFile: false, ...overrides };
}

/**
 * Two workers' SharedAdmissions over one PrimaryLimits, as in a cluster, minus the IPC (cluster.test.ts runs
 * that): the books are the primary's real ones, called directly. `takes` counts what the workers asked.
 */
function cluster(config: AccessConfig, time = clock()) {
  const primary = new PrimaryLimits(config, time.now);
  let takes = 0;
  const booksOf = (worker: number): SharedBooks => ({
    take: (client: Client) => {
      takes++;
      return Promise.resolve(primary.take(worker, client));
    },
    end: (lease, tokens) => primary.end(worker, lease, tokens),
  });
  return {
    primary,
    time,
    workers: [new SharedAdmission(config, booksOf(1), time.now), new SharedAdmission(config, booksOf(2), time.now)],
    takes: () => takes,
  };
}

async function refusal(admission: SharedAdmission, client: Client): Promise<AdmissionError> {
  try {
    await admission.admit(client);
  } catch (error) {
    if (error instanceof AdmissionError) return error;
    throw error;
  }
  throw new Error("expected the request to be refused");
}

const alice = { key: "alice", address: "10.0.0.1" };

describe("SharedAdmission over the primary's books", () => {
  it("counts a key's requests per minute once for both workers, refusing as one process would", async () => {
    const { workers } = cluster(access({ keys: [key("alice", { requestsPerMinute: 3 })] }));
    const [one, two] = workers as [SharedAdmission, SharedAdmission];
    for (const worker of [one, two, one]) (await worker.admit(alice)).release();
    const refused = await refusal(two, alice);
    const single = new Admission(access({ keys: [key("alice", { requestsPerMinute: 3 })] }), () => T0);
    for (let i = 0; i < 3; i++) single.admit(alice).release();
    let expected: unknown;
    try {
      single.admit(alice);
    } catch (error) {
      expected = error;
    }
    expect(refused.reason).toBe("requests_per_minute");
    expect(expected).toBeInstanceOf(AdmissionError);
    expect(refused.error.message).toBe((expected as AdmissionError).error.message);
    expect(refused.error.headers).toEqual((expected as AdmissionError).error.headers);
  });

  it("refuses in precheck, without asking the primary, a client refused for its rate until the wait is over", async () => {
    const { workers, takes, time } = cluster(access({ keys: [key("alice", { requestsPerMinute: 1 })] }));
    const [one] = workers as [SharedAdmission];
    (await one.admit(alice)).release();
    await refusal(one, alice);
    const asked = takes();
    time.advance(20_000);
    let prechecked: unknown;
    try {
      one.precheck(alice);
    } catch (error) {
      prechecked = error;
    }
    expect(prechecked).toBeInstanceOf(AdmissionError);
    // The wait it gives is what is left of the one the books gave (60 s, the most a retry-after says), not a copy.
    expect((prechecked as AdmissionError).error.headers["retry-after"]).toBe("40");
    expect(takes()).toBe(asked);
    time.advance(61_000);
    expect(() => one.precheck(alice)).not.toThrow();
    (await one.admit(alice)).release();
  });

  it("holds a client's own concurrent requests across workers, and the slot comes back when one ends", async () => {
    const { workers } = cluster(access({ limits: { concurrentRequests: 2 } }));
    const [one, two] = workers as [SharedAdmission, SharedAdmission];
    const client = { address: "10.0.0.9" };
    const held: Ticket[] = [await one.admit(client), await two.admit(client)];
    expect((await refusal(one, client)).reason).toBe("client_concurrency");
    // A concurrency refusal is not remembered: a slot may free up any moment.
    expect(() => two.precheck(client)).not.toThrow();
    held[0]?.release();
    expect(one.requestsInFlight + two.requestsInFlight).toBe(1);
    (await two.admit(client)).release();
  });

  it("charges tokens where all workers see them: one worker's spending refuses the other", async () => {
    const { workers } = cluster(access({ keys: [key("alice", { tokensPerMinute: 100 })] }));
    const [one, two] = workers as [SharedAdmission, SharedAdmission];
    const ticket = await one.admit(alice);
    ticket.charge(150);
    ticket.release();
    expect((await refusal(two, alice)).reason).toBe("tokens_per_minute");
  });

  it("gives a dead worker's slots back", async () => {
    const { primary, workers } = cluster(access({ keys: [key("alice", { concurrentRequests: 1 })] }));
    const [one, two] = workers as [SharedAdmission, SharedAdmission];
    await one.admit(alice);
    expect((await refusal(two, alice)).reason).toBe("client_concurrency");
    primary.exited(1);
    (await two.admit(alice)).release();
  });

  it("asks nothing for a client without limits of its own, and keeps the process's bounds", async () => {
    const { workers, takes } = cluster(access({ maxConcurrentRequests: 1 }));
    const [one] = workers as [SharedAdmission];
    const ticket = one.admit({ address: "10.0.0.1" });
    expect(ticket).not.toBeInstanceOf(Promise);
    expect(takes()).toBe(0);
    // max_concurrent_requests is the process's own: refused here, synchronously.
    expect(() => one.admit({ address: "10.0.0.2" })).toThrow(AdmissionError);
  });
});
