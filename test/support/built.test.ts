import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { staleBuild } from "./built";

let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "built-"));
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

/** Writes `path` under the temporary root with the given modification time (seconds since the epoch). */
function file(path: string, mtime: number): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, "");
  utimesSync(full, mtime, mtime);
}

describe("staleBuild", () => {
  it("accepts a build at least as new as every source", () => {
    file("gateway/src/main.ts", 100);
    file("gateway/src/api/app.ts", 100);
    file("mock-remote/src/main.ts", 100);
    file("dist/gateway/src/main.js", 100);
    file("dist/gateway/src/api/app.js", 200);
    file("dist/mock-remote/src/main.js", 200);
    expect(staleBuild(root)).toBeUndefined();
  });

  it("names a source with no compiled file", () => {
    file("gateway/src/main.ts", 100);
    file("gateway/src/api/new.ts", 100);
    file("mock-remote/src/main.ts", 100);
    file("dist/gateway/src/main.js", 200);
    file("dist/mock-remote/src/main.js", 200);
    expect(staleBuild(root)).toBe("dist/ has no build of gateway/src/api/new.ts");
  });

  it("names a source edited after its build, wherever it is", () => {
    file("gateway/src/main.ts", 100);
    file("mock-remote/src/app.ts", 300);
    file("dist/gateway/src/main.js", 200);
    file("dist/mock-remote/src/app.js", 200);
    expect(staleBuild(root)).toBe("dist/ is older than mock-remote/src/app.ts");
  });
});
