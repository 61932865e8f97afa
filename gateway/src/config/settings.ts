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
  /** A request's headers must arrive within this many seconds of the connection's first byte (or of it opening). */
  readonly headersTimeoutSeconds: number;
  /** A request body must arrive whole within this many seconds once its headers are in; 408 past it. */
  readonly bodyTimeoutSeconds: number;
  /** Open client connections per process; past it new ones are closed at once. */
  readonly maxConnections: number;
  /** After SIGTERM: seconds `/ready` answers 503 while the listener still serves, before it closes. */
  readonly drainDelaySeconds: number;
  /** CONFIG_WATCH: reload the config file when its content changes (as SIGHUP does). */
  readonly configWatch: boolean;
}

/** Each setting's variable: a reload re-reads `.env`, and says which of these changed (they apply at start). */
const VARIABLES: Readonly<Record<keyof Settings, string>> = {
  port: "PORT",
  host: "HOST",
  configFile: "CONFIG_FILE",
  logLevel: "LOG_LEVEL",
  maxBodyBytes: "MAX_BODY_BYTES",
  maxBufferedBytes: "MAX_BUFFERED_BYTES",
  shutdownTimeoutSeconds: "SHUTDOWN_TIMEOUT",
  maxHops: "MAX_HOPS",
  workers: "WORKERS",
  headersTimeoutSeconds: "HEADERS_TIMEOUT",
  bodyTimeoutSeconds: "BODY_TIMEOUT",
  maxConnections: "MAX_CONNECTIONS",
  drainDelaySeconds: "DRAIN_DELAY",
  configWatch: "CONFIG_WATCH",
};

/** The variables whose value differs between two readings of the settings (all of them apply only at start). */
export function changedSettings(before: Settings, after: Settings): string[] {
  return (Object.keys(VARIABLES) as (keyof Settings)[])
    .filter((key) => before[key] !== after[key])
    .map((key) => VARIABLES[key]);
}

/** Longer than any sane chain of gateways, short enough that a loop ends in milliseconds. */
export const DEFAULT_MAX_HOPS = 8;

/**
 * Enough for thousands of concurrent streams, few enough that an attacker holding connections open (each
 * bounded by HEADERS_TIMEOUT and BODY_TIMEOUT) cannot run the process out of file descriptors or memory.
 */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

/**
 * Orchestrators take an instance out of rotation asynchronously (Kubernetes endpoint updates, a load
 * balancer's readiness polls): a few seconds of serving after SIGTERM keeps their late connections from
 * being refused.
 */
export const DEFAULT_DRAIN_DELAY_SECONDS = 5;

/** Long enough for a 1 MiB body over a slow mobile link, short enough that a trickle cannot hold a socket long. */
export const DEFAULT_BODY_TIMEOUT_SECONDS = 10;

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
    headersTimeoutSeconds: integer(env, "HEADERS_TIMEOUT", 10, 1, 3600),
    bodyTimeoutSeconds: integer(env, "BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_SECONDS, 1, 3600),
    maxConnections: integer(env, "MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 1, 1_000_000),
    drainDelaySeconds: integer(env, "DRAIN_DELAY", DEFAULT_DRAIN_DELAY_SECONDS, 0, 3600),
    configWatch: flag(env, "CONFIG_WATCH"),
  };
}

function flag(env: Env, name: string): boolean {
  const text = (env[name] ?? "").trim().toLowerCase();
  if (text === "" || text === "false" || text === "0") return false;
  if (text === "true" || text === "1") return true;
  throw new ConfigError(name, "must be true or false");
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max)
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}`);
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
