import { ConfigError } from "../../../gateway/src/config/errors";
import { changedSettings, parseSettings } from "../../../gateway/src/config/settings";

describe("parseSettings", () => {
  it("has production defaults", () => {
    expect(parseSettings({})).toEqual({
      port: 8080,
      host: "0.0.0.0",
      configFile: "config/config.yaml",
      logLevel: "info",
      maxBodyBytes: 1024 * 1024,
      maxBufferedBytes: 256 * 1024 * 1024,
      shutdownTimeoutSeconds: 10,
      maxHops: 8,
      workers: 1,
      headersTimeoutSeconds: 10,
      bodyTimeoutSeconds: 10,
      maxConnections: 10_000,
      drainDelaySeconds: 5,
      configWatch: false,
    });
  });

  it("reads every variable", () => {
    expect(
      parseSettings({
        PORT: "9000",
        HOST: "127.0.0.1",
        CONFIG_FILE: "/etc/gw.yaml",
        LOG_LEVEL: "DEBUG",
        MAX_BODY_BYTES: "2048",
        MAX_BUFFERED_BYTES: "65536",
        SHUTDOWN_TIMEOUT: "3",
        MAX_HOPS: "3",
        WORKERS: "4",
        HEADERS_TIMEOUT: "5",
        BODY_TIMEOUT: "6",
        MAX_CONNECTIONS: "7",
        DRAIN_DELAY: "0",
        CONFIG_WATCH: "true",
      }),
    ).toEqual({
      port: 9000,
      host: "127.0.0.1",
      configFile: "/etc/gw.yaml",
      logLevel: "debug",
      maxBodyBytes: 2048,
      maxBufferedBytes: 65536,
      shutdownTimeoutSeconds: 3,
      maxHops: 3,
      workers: 4,
      headersTimeoutSeconds: 5,
      bodyTimeoutSeconds: 6,
      maxConnections: 7,
      drainDelaySeconds: 0,
      configWatch: true,
    });
  });

  it("reads WORKERS=auto (one worker per core, counted at start-up)", () => {
    expect(parseSettings({ WORKERS: "Auto" }).workers).toBe("auto");
  });

  it.each([
    [{ PORT: "80a" }, "PORT: must be a whole number from 0 to 65535"],
    [{ PORT: "70000" }, "PORT: must be a whole number from 0 to 65535"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL: must be one of error, warn, info, http, verbose, debug, silly"],
    [{ MAX_BODY_BYTES: "0" }, "MAX_BODY_BYTES: must be a whole number from 1 to 1073741824"],
    [{ MAX_BUFFERED_BYTES: "1023" }, "MAX_BUFFERED_BYTES: must be a whole number from 1024 to 68719476736"],
    [{ MAX_HOPS: "0" }, "MAX_HOPS: must be a whole number from 1 to 100"],
    [{ BODY_TIMEOUT: "0" }, "BODY_TIMEOUT: must be a whole number from 1 to 3600"],
    [{ HEADERS_TIMEOUT: "-1" }, "HEADERS_TIMEOUT: must be a whole number from 1 to 3600"],
    [{ MAX_CONNECTIONS: "0" }, "MAX_CONNECTIONS: must be a whole number from 1 to 1000000"],
    [{ DRAIN_DELAY: "1.5" }, "DRAIN_DELAY: must be a whole number from 0 to 3600"],
    [{ WORKERS: "0" }, "WORKERS: must be auto or a whole number from 1 to 256"],
    [{ WORKERS: "two" }, "WORKERS: must be auto or a whole number from 1 to 256"],
    [{ CONFIG_WATCH: "yes" }, "CONFIG_WATCH: must be true or false"],
  ])("rejects %p", (env, message) => {
    expect(() => parseSettings(env)).toThrow(new ConfigError("", message).message);
  });
});

describe("changedSettings", () => {
  it("names the variables whose value differs (each applies only at start)", () => {
    const before = parseSettings({});
    expect(changedSettings(before, parseSettings({}))).toEqual([]);
    expect(changedSettings(before, parseSettings({ PORT: "9000", WORKERS: "2", CONFIG_WATCH: "1" }))).toEqual([
      "PORT",
      "WORKERS",
      "CONFIG_WATCH",
    ]);
  });
});
