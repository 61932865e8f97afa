import { shareOf } from "../../gateway/src/limits-store";

describe("shareOf: what one process enforces while the limits store is unreachable (on_store_failure: local)", () => {
  it("divides every configured limit by the processes sharing it, rounding down", () => {
    expect(shareOf({ requestsPerMinute: 300, tokensPerMinute: 100_000, concurrentRequests: 10 }, 6)).toEqual({
      requestsPerMinute: 50,
      tokensPerMinute: 16_666,
      concurrentRequests: 1,
    });
  });

  it("never goes below 1, and leaves unset limits unset", () => {
    expect(shareOf({ requestsPerMinute: 2 }, 3)).toEqual({ requestsPerMinute: 1 });
    expect(shareOf({}, 3)).toEqual({});
  });

  it("is the limit itself for one process", () => {
    expect(shareOf({ requestsPerMinute: 7, concurrentRequests: 3 }, 1)).toEqual({
      requestsPerMinute: 7,
      concurrentRequests: 3,
    });
  });
});
