import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { eventually } from "./eventually";

/** The built programs, run as users run them; the integration project's globalSetup checks dist/ is fresh. */
export const ROOT = resolve(__dirname, "../..");
export const GATEWAY_MAIN = join(ROOT, "dist/gateway/src/main.js");
export const MOCK_MAIN = join(ROOT, "dist/mock-remote/src/main.js");

/** The V8 flags the gateway ships with, defined once in package.json ("config".nodeFlags). */
export const GATEWAY_NODE_FLAGS: readonly string[] = (
  JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { config: { nodeFlags: string } }
).config.nodeFlags.split(" ");

export interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything it wrote so far, stdout and stderr together. */
  output(): string;
  exited(): Promise<number | null>;
}

const LISTENING = /"message":"gateway listening"[^\n]*"port":(\d+)|"port":(\d+)[^\n]*"message":"gateway listening"/;

/** Starts the built gateway in `cwd` on an ephemeral port and waits for its "listening" log line (bounded). */
export async function startGatewayProcess(cwd: string, env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, [GATEWAY_MAIN], {
    cwd,
    env: { PATH: process.env.PATH ?? "", PORT: "0", HOST: "127.0.0.1", ...env },
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<number | null>((resolveExit) => child.once("exit", (code) => resolveExit(code)));
  try {
    await eventually(
      "the gateway to listen",
      async () => output,
      (text) => LISTENING.test(text) || child.exitCode !== null,
      { intervalMs: 25 },
    );
  } catch {
    // Reported below with everything it printed.
  }
  const port = LISTENING.exec(output);
  if (port === null) {
    child.kill("SIGKILL");
    throw new Error(`gateway did not start:\n${output}`);
  }
  return { child, url: `http://127.0.0.1:${port[1] ?? port[2]}`, output: () => output, exited: () => exit };
}

/** A fresh temporary directory holding `config.yaml`, for a process to start in. */
export function workDir(configYaml: string, prefix = "gateway-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, "config.yaml"), configYaml);
  return dir;
}
