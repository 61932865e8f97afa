import { createMockApp } from "./app";
import { type MockSettings, settingsFromEnv } from "./settings";

let settings: MockSettings;
try {
  settings = settingsFromEnv(process.env);
} catch (error) {
  process.stderr.write(`mock-remote: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
const { port, host, options } = settings;
const { app } = createMockApp(options);
const server = app.listen(port, host, (error?: Error) => {
  if (error !== undefined) {
    process.stderr.write(`mock-remote: cannot listen on ${host}:${port}: ${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(
    `${JSON.stringify({ level: "info", message: "mock-remote listening", host, port, instance: options.instance })}\n`,
  );
});

function stop(): void {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
