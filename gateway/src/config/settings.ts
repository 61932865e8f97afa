import { DEFAULT_MAX_BUFFERED_BYTES } from "../backends/response-budget";
import { ConfigError } from "./errors";

const LOG_LEVELS = ["error", "warn", "info", "http", "verbose", "debug", "silly"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Process settings, from environment variables (and `.env`). Everything about backends is in the YAML. */
export interface Settings {
  readonly port: number;
  readonly host: string;
  readonly configFile: string;
  readonly logLevel: LogLevel;
  readonly maxBodyBytes: number;
  /** All upstream answers buffered whole at once, in bytes; past it a call gets 503 response_budget_exhausted. */
  readonly maxBufferedBytes: number;
  readonly shutdownTimeoutSeconds: number;
  /** Gateways a request may already have passed through (its `x-gateway-hops`) before this one refuses it. */
  readonly maxHops: number;
  /** Worker processes (node:cluster) serving the port; 1 serves from this process, "auto" one per core. */
  readonly workers: number | "auto";
}

/** Longer than any sane chain of gateways, short enough that a loop ends in milliseconds. */
export const DEFAULT_MAX_HOPS = 8;

export type Env = Readonly<Record<string, string | undefined>>;

export function parseSettings(env: Env): Settings {
  return {
    port: integer(env, "PORT", 8080, 0, 65535),
    host: nonEmpty(env, "HOST", "0.0.0.0"),
    configFile: nonEmpty(env, "CONFIG_FILE", "config/config.yaml"),
    logLevel: logLevel(env),
    maxBodyBytes: integer(env, "MAX_BODY_BYTES", 1024 * 1024, 1, 1024 * 1024 * 1024),
    maxBufferedBytes: integer(env, "MAX_BUFFERED_BYTES", DEFAULT_MAX_BUFFERED_BYTES, 1024, 64 * 1024 * 1024 * 1024),
    shutdownTimeoutSeconds: integer(env, "SHUTDOWN_TIMEOUT", 10, 0, 3600),
    maxHops: integer(env, "MAX_HOPS", DEFAULT_MAX_HOPS, 1, 100),
    workers: workers(env),
  };
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new ConfigError(name, `must be a whole number from ${min} to ${max}`);
  return value;
}

function nonEmpty(env: Env, name: string, fallback: string): string {
  const text = env[name];
  return text === undefined || text.trim() === "" ? fallback : text;
}

function logLevel(env: Env): LogLevel {
  const text = (env.LOG_LEVEL ?? "").toLowerCase();
  if (text === "") return "info";
  const level = LOG_LEVELS.find((known) => known === text);
  if (level === undefined) throw new ConfigError("LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}`);
  return level;
}

const MAX_WORKERS = 256;

function workers(env: Env): number | "auto" {
  if ((env.WORKERS ?? "").trim().toLowerCase() === "auto") return "auto";
  try {
    return integer(env, "WORKERS", 1, 1, MAX_WORKERS);
  } catch {
    throw new ConfigError("WORKERS", `must be auto or a whole number from 1 to ${MAX_WORKERS}`);
  }
}
