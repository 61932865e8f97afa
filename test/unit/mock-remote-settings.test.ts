import { hostname } from "node:os";
import { settingsFromEnv } from "../../mock-remote/src/settings";

describe("mock-remote's settings from the environment", () => {
  it("has defaults for everything", () => {
    expect(settingsFromEnv({})).toEqual({
      port: 8081,
      host: "0.0.0.0",
      options: {
        defaultDelayMs: 0,
        defaultChunkDelayMs: 0,
        modelId: "mock-model",
        instance: hostname(),
        latencyMs: 0,
        healthStatus: 200,
      },
    });
  });

  it("reads MOCK_INSTANCE, MOCK_LATENCY_MS and MOCK_HEALTH_STATUS", () => {
    const { options } = settingsFromEnv({
      MOCK_INSTANCE: "replica-2",
      MOCK_LATENCY_MS: "150",
      MOCK_HEALTH_STATUS: "503",
    });
    expect(options).toMatchObject({ instance: "replica-2", latencyMs: 150, healthStatus: 503 });
  });

  it("takes an empty MOCK_INSTANCE as unset", () => {
    expect(settingsFromEnv({ MOCK_INSTANCE: "" }).options.instance).toBe(hostname());
  });

  it.each([
    [{ MOCK_LATENCY_MS: "-1" }, "MOCK_LATENCY_MS must be a non-negative number"],
    [{ MOCK_LATENCY_MS: "soon" }, "MOCK_LATENCY_MS must be a non-negative number"],
    [{ MOCK_HEALTH_STATUS: "broken" }, "MOCK_HEALTH_STATUS must be a non-negative number"],
    [{ MOCK_HEALTH_STATUS: "100" }, "MOCK_HEALTH_STATUS must be a whole number from 200 to 599"],
    [{ MOCK_HEALTH_STATUS: "503.5" }, "MOCK_HEALTH_STATUS must be a whole number from 200 to 599"],
    [{ MOCK_HEALTH_STATUS: "600" }, "MOCK_HEALTH_STATUS must be a whole number from 200 to 599"],
    [{ MOCK_INSTANCE: "réplica" }, "MOCK_INSTANCE must be printable ASCII (it is sent as a header)"],
    [{ MOCK_INSTANCE: "a\nb" }, "MOCK_INSTANCE must be printable ASCII (it is sent as a header)"],
    [{ PORT: "eighty" }, "PORT must be a non-negative number"],
  ])("refuses %j: %s", (env, message) => {
    expect(() => settingsFromEnv(env)).toThrow(new Error(message));
  });
});
