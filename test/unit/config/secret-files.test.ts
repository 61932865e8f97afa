import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultBackendRegistry } from "../../../gateway/src/backends";
import { environmentWithDotEnv, loadConfigFile, secretFileWarnings } from "../../../gateway/src/config/load";

const registry = defaultBackendRegistry();
const GATEWAY_KEY = "gw-key-from-dotenv-0123456789";
const UPSTREAM_KEY = "sk-upstream-from-dotenv-0123";

const BACKENDS = `
default_backend: local
backends:
  - name: local
    type: echo
`;

/** Keys from the environment only: nothing secret is written in the file. */
const ENV_ONLY = `${BACKENDS}
auth:
  keys:
    - name: alpha
      key_env: GATEWAY_KEY
`;

/** A key's hash written in the file. */
const WITH_HASH = `${BACKENDS}
auth:
  keys:
    - name: alpha
      sha256: ${createHash("sha256").update("a-key-written-as-hash-0123").digest("hex")}
`;

/** No auth at all: no secret anywhere. */
const NO_AUTH = BACKENDS;

/** An http backend's upstream key, also from the environment. */
const UPSTREAM = `
default_backend: remote
backends:
  - name: remote
    type: http
    url: http://127.0.0.1:8081
    api_key_env: UPSTREAM_KEY
`;

let dir: string;
let counter = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "gateway-secret-files-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A new file in the temp directory with this text and mode (chmod after writing, so the umask does not matter). */
function file(name: string, text: string, mode: number): string {
  counter += 1;
  const path = join(dir, `${counter}-${name}`);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

/**
 * Loads the config as the gateway does (process environment over the .env file) and returns the warnings
 * for its files.
 */
function warningsFor(options: {
  yaml: string;
  configMode?: number;
  dotEnv?: string;
  dotEnvMode?: number;
  processEnv?: Record<string, string>;
}): string[] {
  const configFile = file("gateway.yaml", options.yaml, options.configMode ?? 0o600);
  const dotEnvPath =
    options.dotEnv === undefined
      ? join(dir, `${++counter}-absent.env`)
      : file(".env", options.dotEnv, options.dotEnvMode ?? 0o644);
  const processEnv = options.processEnv ?? {};
  const env = environmentWithDotEnv(processEnv, dotEnvPath);
  const config = loadConfigFile(configFile, registry, env);
  return secretFileWarnings(configFile, config, dotEnvPath, processEnv);
}

describe("secretFileWarnings", () => {
  describe("the config file", () => {
    it("warns when it holds key hashes and every user can read it", () => {
      const configFile = file("gateway.yaml", WITH_HASH, 0o644);
      const config = loadConfigFile(configFile, registry, {});
      const warnings = secretFileWarnings(configFile, config, join(dir, "no.env"), {});
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(configFile);
      expect(warnings[0]).toMatch(/API key hashes/);
      expect(warnings[0]).toMatch(/chmod 600/);
    });

    it("does not warn when it holds key hashes but is 0600", () => {
      expect(warningsFor({ yaml: WITH_HASH, configMode: 0o600 })).toEqual([]);
    });

    it("does not warn when it is world-readable but holds no hashes", () => {
      expect(warningsFor({ yaml: NO_AUTH, configMode: 0o644 })).toEqual([]);
      expect(warningsFor({ yaml: ENV_ONLY, configMode: 0o644, processEnv: { GATEWAY_KEY } })).toEqual([]);
    });

    it("looks only at the 'other' read bit: group-readable (0640) is fine", () => {
      expect(warningsFor({ yaml: WITH_HASH, configMode: 0o640 })).toEqual([]);
    });
  });

  describe("the .env file", () => {
    it("warns when it is world-readable and defines the variable a gateway key is read from, naming the variable but not its value", () => {
      const warnings = warningsFor({
        yaml: ENV_ONLY,
        dotEnv: `GATEWAY_KEY=${GATEWAY_KEY}\nLOG_LEVEL=info\n`,
        dotEnvMode: 0o644,
      });
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/\.env holds secrets \(GATEWAY_KEY\)/);
      expect(warnings[0]).toMatch(/chmod 600/);
      expect(warnings[0]).not.toContain(GATEWAY_KEY);
      expect(warnings[0]).not.toContain("LOG_LEVEL");
    });

    it("warns for an http backend's upstream key read from it", () => {
      const warnings = warningsFor({ yaml: UPSTREAM, dotEnv: `UPSTREAM_KEY=${UPSTREAM_KEY}\n`, dotEnvMode: 0o644 });
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/UPSTREAM_KEY/);
      expect(warnings[0]).not.toContain(UPSTREAM_KEY);
    });

    it("does not warn when the file is 0600", () => {
      expect(warningsFor({ yaml: ENV_ONLY, dotEnv: `GATEWAY_KEY=${GATEWAY_KEY}\n`, dotEnvMode: 0o600 })).toEqual([]);
    });

    it("does not warn when the real environment overrides the variable", () => {
      const processEnv = { GATEWAY_KEY: "gw-key-from-the-real-env-0123" };
      expect(
        warningsFor({ yaml: ENV_ONLY, dotEnv: `GATEWAY_KEY=${GATEWAY_KEY}\n`, dotEnvMode: 0o644, processEnv }),
      ).toEqual([]);
    });

    it("does not warn when it defines only variables the config does not read secrets from", () => {
      const warnings = warningsFor({
        yaml: ENV_ONLY,
        dotEnv: "LOG_LEVEL=debug\nPORT=8080\n",
        dotEnvMode: 0o644,
        processEnv: { GATEWAY_KEY },
      });
      expect(warnings).toEqual([]);
    });

    it("does not warn when there is no .env file", () => {
      expect(warningsFor({ yaml: ENV_ONLY, processEnv: { GATEWAY_KEY } })).toEqual([]);
    });

    it("warns for both files at once when both deserve it", () => {
      const yaml = `${WITH_HASH}
  metrics_key:
    key_env: METRICS_KEY
`;
      const warnings = warningsFor({
        yaml,
        configMode: 0o644,
        dotEnv: "METRICS_KEY=metrics-key-from-dotenv-01\n",
        dotEnvMode: 0o604,
      });
      expect(warnings).toHaveLength(2);
      expect(warnings[0]).toMatch(/API key hashes/);
      expect(warnings[1]).toMatch(/holds secrets \(METRICS_KEY\)/);
      expect(warnings.join("\n")).not.toContain("metrics-key-from-dotenv-01");
    });
  });
});
