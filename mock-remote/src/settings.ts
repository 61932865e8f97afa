import { hostname } from "node:os";
import { isHealthStatus, isInstanceName, type MockOptions } from "./app";

/** Where mock-remote listens and how it answers, from its environment. */
export interface MockSettings {
  readonly port: number;
  readonly host: string;
  readonly options: MockOptions;
}

/** Reads the environment, or throws with the one line main.ts prints before it exits 1. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): MockSettings {
  const numberFrom = (name: string, fallback: number): number => {
    const value = Number(env[name] ?? fallback);
    if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number`);
    return value;
  };
  const port = numberFrom("PORT", 8081);
  // Empty counts as unset, so compose can pass `MOCK_INSTANCE: ${NAME:-}` through.
  const instance = env.MOCK_INSTANCE === undefined || env.MOCK_INSTANCE === "" ? hostname() : env.MOCK_INSTANCE;
  if (!isInstanceName(instance)) throw new Error("MOCK_INSTANCE must be printable ASCII (it is sent as a header)");
  const healthStatus = numberFrom("MOCK_HEALTH_STATUS", 200);
  if (!isHealthStatus(healthStatus)) throw new Error("MOCK_HEALTH_STATUS must be a whole number from 200 to 599");
  return {
    port,
    host: env.HOST ?? "0.0.0.0",
    options: {
      defaultDelayMs: numberFrom("MOCK_DELAY_MS", 0),
      defaultChunkDelayMs: numberFrom("MOCK_CHUNK_DELAY_MS", 0),
      modelId: env.MOCK_MODEL ?? "mock-model",
      instance,
      latencyMs: numberFrom("MOCK_LATENCY_MS", 0),
      healthStatus,
    },
  };
}
