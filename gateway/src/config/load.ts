import { existsSync, readFileSync } from "node:fs";
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
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message;
    throw new ConfigError(file, `cannot read the config file (${reason})`);
  }
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
