import { createMockApp } from "./app";

function numberFrom(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value < 0) {
    process.stderr.write(`mock-remote: ${name} must be a non-negative number\n`);
    process.exit(1);
  }
  return value;
}

const port = numberFrom("PORT", 8081);
const host = process.env.HOST ?? "0.0.0.0";
const { app } = createMockApp({
  defaultDelayMs: numberFrom("MOCK_DELAY_MS", 0),
  defaultChunkDelayMs: numberFrom("MOCK_CHUNK_DELAY_MS", 0),
  modelId: process.env.MOCK_MODEL ?? "mock-model",
});
const server = app.listen(port, host, (error?: Error) => {
  if (error !== undefined) {
    process.stderr.write(`mock-remote: cannot listen on ${host}:${port}: ${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ level: "info", message: "mock-remote listening", host, port })}\n`);
});

function stop(): void {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
