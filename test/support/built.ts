import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** Where tsconfig.build.json compiles from; integration tests spawn their dist/ output as real processes. */
const SOURCE_DIRS = ["gateway/src", "mock-remote/src"];

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".ts") && !name.endsWith(".d.ts"))
    .map((name) => join(dir, name));
}

function mtimeOf(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * Why dist/ under `root` cannot be trusted, or undefined when every source has a compiled file at least
 * as new as itself. Per file, so an edit anywhere (not just in main.ts) is noticed.
 */
export function staleBuild(root: string): string | undefined {
  for (const dir of SOURCE_DIRS) {
    for (const source of sourcesUnder(join(root, dir))) {
      const path = relative(root, source);
      const compiled = mtimeOf(join(root, "dist", path.replace(/\.ts$/, ".js")));
      if (compiled === undefined) return `dist/ has no build of ${path}`;
      if (compiled < (mtimeOf(source) ?? 0)) return `dist/ is older than ${path}`;
    }
  }
  return undefined;
}
