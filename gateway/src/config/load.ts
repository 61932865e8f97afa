import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { parseEnv } from "node:util";
import { parse as parseYaml } from "yaml";
import type { BackendRegistry } from "../backends/registry";
import { type GatewayConfig, parseConfig } from "./config";
import { ConfigError } from "./errors";
import type { Env } from "./settings";

/** The process environment over a `.env` file's values: a variable set for real always wins. */
export function environmentWithDotEnv(processEnv: Env, dotEnvPath: string): Env {
  if (!existsSync(dotEnvPath)) return processEnv;
  const fromFile = parseEnv(readFileSync(dotEnvPath, "utf8"));
  return { ...fromFile, ...processEnv };
}

/** Reads and checks the YAML config; every problem is one ConfigError whose message starts with the file. */
export function loadConfigFile(file: string, registry: BackendRegistry, env: Env): GatewayConfig {
  return parseConfigText(file, readConfigText(file), registry, env);
}

/** The config file's text; a ConfigError naming the file when it cannot be read. */
export function readConfigText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message;
    throw new ConfigError(file, `cannot read the config file (${reason})`);
  }
}

/** What `gateway_config_info` shows: the first 12 hex digits of the file's SHA-256. */
export function configHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/** Checks the text of the config `file` (YAML); every problem is one ConfigError starting with the file. */
export function parseConfigText(file: string, text: string, registry: BackendRegistry, env: Env): GatewayConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    const firstLine = ((error as Error).message.split("\n")[0] ?? "").trim();
    throw new ConfigError(file, `not valid YAML: ${firstLine}`);
  }
  try {
    return parseConfig(raw, registry, env);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(file, error.message);
    throw error;
  }
}

/** Anyone on the machine may read it: "other" has the read bit. */
function worldReadable(file: string): boolean {
  try {
    return (statSync(file).mode & 0o004) !== 0;
  } catch {
    return false;
  }
}

/**
 * Warnings for files that hold secrets and that every user of the machine can read: the config file when
 * key hashes are written in it, and the `.env` file when it defines a variable the config reads a secret
 * from (and the real environment does not override it).
 */
export function secretFileWarnings(
  configFile: string,
  config: GatewayConfig,
  dotEnvPath: string,
  processEnv: Env,
): string[] {
  const warnings: string[] = [];
  if (config.access.hashesInFile && worldReadable(configFile)) {
    warnings.push(`${configFile} holds API key hashes and is readable by every user: chmod 600 it (or use key_env)`);
  }
  if (existsSync(dotEnvPath) && worldReadable(dotEnvPath)) {
    const fromFile = parseEnv(readFileSync(dotEnvPath, "utf8"));
    const exposed = config.secretEnv.filter((name) => fromFile[name] !== undefined && processEnv[name] === undefined);
    if (exposed.length > 0)
      warnings.push(`${dotEnvPath} holds secrets (${exposed.join(", ")}) and is readable by every user: chmod 600 it`);
  }
  return warnings;
}
