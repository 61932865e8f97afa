import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GATEWAY_NODE_FLAGS, ROOT } from "../support/process";

/**
 * The gateway's V8 flags are defined once, in package.json; `npm start`, `make run`, the bench and the load
 * test read them from there. The Dockerfile cannot, so it is held to the same flags here.
 */
describe("the gateway's V8 flags", () => {
  it("are set in package.json", () => {
    expect(GATEWAY_NODE_FLAGS.length).toBeGreaterThan(0);
    expect(GATEWAY_NODE_FLAGS.every((flag) => flag.startsWith("--"))).toBe(true);
  });

  it("are the ones the Dockerfile's CMD runs the gateway with", () => {
    const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    const cmd = /^CMD (\[.*"dist\/gateway\/src\/main\.js"\])$/m.exec(dockerfile)?.[1];
    expect(cmd).toBeDefined();
    expect(JSON.parse(cmd ?? "[]")).toEqual(["node", ...GATEWAY_NODE_FLAGS, "dist/gateway/src/main.js"]);
  });
});
