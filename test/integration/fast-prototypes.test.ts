import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../support/process";

/** Built-ins whose prototypes the hot paths call methods of (strings, arrays, buffers, promises, maps…). */
const BUILT_INS = [
  "Object",
  "Function",
  "Array",
  "String",
  "Number",
  "Boolean",
  "Symbol",
  "Promise",
  "Map",
  "Set",
  "Error",
  "RegExp",
  "Date",
  "Uint8Array",
  "ArrayBuffer",
];

/** Whether each built-in's prototype is in V8's fast mode in a fresh process that has loaded `modules`. */
function fastPrototypes(modules: readonly string[]): Record<string, boolean> {
  const script =
    `for (const m of ${JSON.stringify(modules)}) require(m);` +
    `console.log(JSON.stringify(Object.fromEntries(${JSON.stringify(BUILT_INS)}` +
    `.map((name) => [name, %HasFastProperties(globalThis[name].prototype)]))));`;
  const run = spawnSync(process.execPath, ["--allow-natives-syntax", "-e", script], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 30_000,
  });
  expect(run.stderr).toBe("");
  return JSON.parse(run.stdout) as Record<string, boolean>;
}

describe("built-in prototypes", () => {
  it("stay in V8's fast mode once every module of the gateway is loaded (ioredis left String.prototype slow)", () => {
    const all = Object.fromEntries(BUILT_INS.map((name) => [name, true]));
    // A process that loaded nothing: the baseline the gateway must leave as it found it.
    expect(fastPrototypes([])).toEqual(all);
    const gateway = ["dependencies.js", "app.js", "cluster.js", "limits-store.js"].map((file) =>
      join(ROOT, "dist/gateway/src", file),
    );
    expect(fastPrototypes(gateway)).toEqual(all);
  });
});
