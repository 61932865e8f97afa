import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findPackageVersion, gatewayVersion } from "../../../gateway/src/utils/version";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "gateway-version-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("gatewayVersion", () => {
  it("is the repository's package.json version", () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, "../../../package.json"), "utf8")) as { version: string };
    expect(gatewayVersion()).toBe(pkg.version);
  });
});

describe("findPackageVersion", () => {
  it("walks up to the nearest package.json with a version", () => {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ version: "1.2.3" }));
    const deep = join(dir, "dist", "gateway", "src", "utils");
    mkdirSync(deep, { recursive: true });
    expect(findPackageVersion(deep)).toBe("1.2.3");
  });

  it("skips a package.json that is not JSON or has no version", () => {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ version: "2.0.0" }));
    mkdirSync(join(dir, "a", "b"), { recursive: true });
    writeFileSync(join(dir, "a", "package.json"), "{ not json");
    writeFileSync(join(dir, "a", "b", "package.json"), JSON.stringify({ name: "x", version: "" }));
    expect(findPackageVersion(join(dir, "a", "b"))).toBe("2.0.0");
  });

  it("gives up as 'unknown' past eight directories", () => {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ version: "3.0.0" }));
    const deep = join(dir, "1", "2", "3", "4", "5", "6", "7", "8");
    mkdirSync(deep, { recursive: true });
    expect(findPackageVersion(deep)).toBe("unknown");
  });
});
