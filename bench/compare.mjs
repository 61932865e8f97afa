// A/B throughput of gateway builds, in one run with interleaved rounds: how the optimizations in
// bench/RESULTS.md were measured. Build each variant into its own directory first, for example
//   git stash; npx tsc -p tsconfig.build.json --outDir /tmp/before; git stash pop; npm run build
//   node bench/compare.mjs --path=http before=/tmp/before/gateway/src/main.js after=dist/gateway/src/main.js
// A variant may set its own environment: label=path/to/main.js,LOG_LEVEL=warn; a reference server can be a
// variant too: express=bench/express-undici.mjs,UPSTREAM={upstream}.
// Options: --path=http|echo (default http), --rounds=N (8), --seconds=S (2), --warmup=S (0.5), --connections=C (32),
// --env=K=V (for every variant), --header=name:value (sent with every request to every variant; repeatable; `{upstream}`
// in the value is the bench upstream's URL, e.g. for a gateway told its upstream per request). A variant's
// LIMITS=requests_per_minute:N;tokens_per_minute:M adds per-client limits to its config; TARGETS=N gives its
// http backend N targets, each the bench upstream (what balancing costs). Every variant runs
// with the gateway's shipped V8 flags (GATEWAY_NODE_FLAGS).
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  BODY,
  GATEWAY_NODE_FLAGS,
  ROOT,
  cpuPlan,
  describePlan,
  gatewayEnv,
  median,
  repin,
  sleep,
  startServer,
  stopAll,
  tempDir,
  throughput,
  writeGatewayConfig,
} from "./lib.mjs";

const options = { path: "http", rounds: 8, seconds: 2, warmup: 0.5, connections: 32, env: {}, headers: {} };
const variants = [];
for (const arg of process.argv.slice(2)) {
  const option = /^--(\w+)=(.*)$/.exec(arg);
  if (option === null) {
    // label=path/to/main.js[,KEY=VALUE...]: per-variant environment, e.g. LOG_LEVEL=warn to price the access log.
    const [spec, ...envPairs] = arg.split(",");
    const [label, main] = spec.split("=");
    variants.push({
      label,
      main: resolve(ROOT, main),
      env: Object.fromEntries(envPairs.map((pair) => [pair.split("=")[0], pair.split("=").slice(1).join("=")])),
    });
  } else if (option[1] === "env") {
    const [key, ...value] = option[2].split("=");
    options.env[key] = value.join("=");
  } else if (option[1] === "header") {
    const [name, ...value] = option[2].split(":");
    options.headers[name.trim().toLowerCase()] = value.join(":").trim();
  } else {
    options[option[1]] = option[1] === "path" ? option[2] : Number(option[2]);
  }
}
if (variants.length === 0) {
  process.stderr.write(
    "usage: node bench/compare.mjs [--path=http|echo] [--rounds=N] [--seconds=S] label=path/to/main.js ...\n",
  );
  process.exit(2);
}

const plan = cpuPlan();
process.stdout.write(`${describePlan(plan)}\n`);
const dir = tempDir();
try {
  const upstream = await startServer({ name: "upstream", cpus: plan.behind, args: ["bench/upstream.mjs"] });
  const config =
    options.path === "echo"
      ? writeGatewayConfig(dir, "echo", ["type: echo"])
      : writeGatewayConfig(dir, "http", ["type: http", `url: ${upstream.url}`]);
  for (const name of Object.keys(options.headers))
    options.headers[name] = options.headers[name].replace("{upstream}", upstream.url);
  for (const variant of variants) {
    // `{upstream}` in a variant's environment is the bench upstream's URL: UPSTREAM={upstream} for bench/proxy.mjs.
    for (const key of Object.keys(variant.env)) variant.env[key] = variant.env[key].replace("{upstream}", upstream.url);
    // LIMITS=requests_per_minute:N;concurrent_requests:M gives that variant per-client limits (to price them).
    if (variant.env.LIMITS !== undefined) {
      const lines = variant.env.LIMITS.split(";").map((pair) => `  ${pair.split(":")[0]}: ${pair.split(":")[1]}`);
      const limited = `${dir}/${variant.label}-limits.yaml`;
      writeFileSync(limited, `limits:\n${lines.join("\n")}\n${readFileSync(config, "utf8")}`);
      variant.env.CONFIG_FILE = limited;
      delete variant.env.LIMITS;
    }
    // TARGETS=N: that variant's http backend has N targets, all the bench upstream (what balancing costs).
    if (variant.env.TARGETS !== undefined) {
      const names = Array.from({ length: Number(variant.env.TARGETS) }, (_, index) => `t${index}`);
      variant.env.CONFIG_FILE = writeGatewayConfig(dir, `${variant.label}-targets`, [
        "type: http",
        "targets:",
        ...names.map((name) => `  - {url: "${upstream.url}", name: ${name}}`),
      ]);
      delete variant.env.TARGETS;
    }
    variant.server = await startServer({
      name: variant.label,
      // As in run.mjs: a cluster gets the pair of cores, a single process one.
      cpus: Number({ ...options.env, ...variant.env }.WORKERS ?? 1) > 1 ? plan.serverPair : plan.server,
      args: [...GATEWAY_NODE_FLAGS, variant.main],
      env: { ...gatewayEnv(config), ...options.env, ...variant.env },
      logFile: `${dir}/${variant.label}.log`,
    });
    variant.runs = [];
  }
  await sleep(300);
  for (let round = 0; round < options.rounds; round++) {
    // Rotating the order each round spreads any drift of a noisy machine over every variant.
    for (let i = 0; i < variants.length; i++) {
      const variant = variants[(i + round) % variants.length];
      repin([variant.server.pid], plan.server);
      variant.runs.push(
        await throughput(plan, variant.server, {
          body: BODY,
          headers: options.headers,
          connections: options.connections,
          warmupSeconds: options.warmup,
          seconds: options.seconds,
        }),
      );
    }
  }
  // Paired by round: each variant against the first one's run of the same round, minutes apart at most,
  // so that drift in a noisy machine's speed cancels out of the ratio.
  const ratio = (variant, key) => median(variant.runs.map((run, round) => run[key] / variants[0].runs[round][key]));
  process.stdout.write(
    `\n${options.path} path, ${options.rounds} rounds of ${options.seconds} s, ${options.connections} connections; ratios are medians of per-round ratios\n`,
  );
  process.stdout.write(
    `${"variant".padEnd(24)} ${"req/s (median)".padStart(15)} ${"vs first".padStart(9)} ${"CPU µs/req".padStart(11)} ${"vs first".padStart(9)}   req/s of each round\n`,
  );
  for (const variant of variants) {
    const rps = median(variant.runs.map((run) => run.rps));
    const cpu = median(variant.runs.map((run) => run.cpuPerRequestUs));
    const all = variant.runs.map((run) => Math.round(run.rps)).join(" ");
    process.stdout.write(
      `${variant.label.padEnd(24)} ${rps.toFixed(0).padStart(15)} ${`${ratio(variant, "rps").toFixed(2)}x`.padStart(9)} ${cpu.toFixed(0).padStart(11)} ${`${ratio(variant, "cpuPerRequestUs").toFixed(2)}x`.padStart(9)}   ${all}\n`,
    );
  }
} finally {
  stopAll();
}
