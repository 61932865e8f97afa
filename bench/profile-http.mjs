// Profiles the gateway on the http path at saturation: the bench upstream on CPU 1, the gateway with
// `--cpu-prof` on CPU 0, 32 keep-alive connections in a closed loop, then a clean stop so the profile is
// written. Read it with bench/profile-summary.mjs.
//
//   node bench/profile-http.mjs [seconds] [dir]   (after npm run build; default 10 s into /tmp/gateway-profile)
import { join } from "node:path";
import {
  BENCH_DIR,
  GATEWAY_MAIN,
  GATEWAY_NODE_FLAGS,
  cpuPlan,
  gatewayEnv,
  sleep,
  startServer,
  stopAll,
  tempDir,
  throughput,
  writeGatewayConfig,
} from "./lib.mjs";

const seconds = Number(process.argv[2] ?? 10);
const profileDir = process.argv[3] ?? "/tmp/gateway-profile";
const plan = cpuPlan();
const dir = tempDir();
try {
  const upstream = await startServer({ name: "upstream", cpus: plan.behind, args: [join(BENCH_DIR, "upstream.mjs")] });
  const config = writeGatewayConfig(dir, "http", ["type: http", `url: ${upstream.url}`]);
  const gateway = await startServer({
    name: "gateway",
    cpus: plan.server,
    args: [...GATEWAY_NODE_FLAGS, "--cpu-prof", `--cpu-prof-dir=${profileDir}`, GATEWAY_MAIN],
    env: gatewayEnv(config, { DRAIN_DELAY: "0" }),
    logFile: join(dir, "gateway.log"),
  });
  const result = await throughput(plan, gateway, { connections: 32, warmupSeconds: 1, seconds });
  process.stdout.write(`${Math.round(result.rps)} req/s, ${result.cpuPerRequestUs.toFixed(0)} µs CPU per request\n`);
  const exited = new Promise((resolve) => gateway.child.once("exit", resolve));
  gateway.child.kill("SIGTERM");
  await Promise.race([exited, sleep(15_000)]);
  process.stdout.write(`profile in ${profileDir}\n`);
} finally {
  stopAll();
}
