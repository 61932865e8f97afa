import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Read once per process: the version is the same for every app, and the file never changes under us. */
let cachedVersion: string | undefined;

/** `version` from the nearest package.json above this file; the same walk works from src/ (tests) and dist/. */
export function gatewayVersion(): string {
  cachedVersion ??= findPackageVersion(__dirname);
  return cachedVersion;
}

const MAX_PARENT_DIRECTORIES = 8;

/** The `version` of the nearest package.json at or above `start`, or "unknown" when none has one. */
export function findPackageVersion(start: string): string {
  let directory = start;
  for (let depth = 0; depth < MAX_PARENT_DIRECTORIES; depth++) {
    const version = versionIn(join(directory, "package.json"));
    if (version !== undefined) return version;
    const parent = dirname(directory);
    if (parent === directory) break;
    directory = parent;
  }
  return "unknown";
}

function versionIn(file: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined; // no package.json here (or not JSON): keep walking up
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const version = (parsed as Record<string, unknown>).version;
  return typeof version === "string" && version !== "" ? version : undefined;
}
