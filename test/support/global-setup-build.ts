import { resolve } from "node:path";
import { staleBuild } from "./built";

/**
 * Jest globalSetup of the integration and load projects: they spawn dist/ builds, and a stale one would
 * test yesterday's code. Checked, not rebuilt here: `make test*` builds first, and a test run that rewrote
 * dist/ could swap files under another run reading them.
 */
export default function checkBuild(): void {
  const reason = staleBuild(resolve(__dirname, "../.."));
  if (reason !== undefined) throw new Error(`${reason}: run \`make build\` (or \`npm run build\`) first.`);
}
