// Reads a `node --cpu-prof` profile and prints where the time went: self time by function, self time by
// file or package, and total (inclusive) time of the functions that matter most. It is how the hot spots
// in bench/RESULTS.md were found.
//
//   node bench/profile-summary.mjs file.cpuprofile [rows]
import { readFileSync } from "node:fs";

const [file, rowsText] = process.argv.slice(2);
if (file === undefined) {
  process.stderr.write("usage: node bench/profile-summary.mjs file.cpuprofile [rows]\n");
  process.exit(2);
}
const rows = Number(rowsText ?? 40);
const profile = JSON.parse(readFileSync(file, "utf8"));
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

// Sample i lasted timeDeltas[i + 1]; the last sample's length is unknown and dropped.
const self = new Map();
for (let i = 0; i < profile.samples.length - 1; i++) {
  const id = profile.samples[i];
  self.set(id, (self.get(id) ?? 0) + profile.timeDeltas[i + 1]);
}
const totalUs = [...self.values()].reduce((a, b) => a + b, 0);
const idleUs = [...self]
  .filter(([id]) => byId.get(id).callFrame.functionName === "(idle)")
  .reduce((a, [, us]) => a + us, 0);
const busyUs = totalUs - idleUs;

function where(frame) {
  const url = frame.url.replace(/^file:\/\//, "");
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg !== null) return pkg[1];
  if (url.startsWith("node:")) return url;
  if (url === "") return "(native/V8)";
  return url.replace(/^.*\/dist\//, "");
}
function name(frame) {
  return `${frame.functionName || "(anonymous)"} ${where(frame)}:${frame.lineNumber + 1}`;
}
const pct = (us) => `${((100 * us) / busyUs).toFixed(1).padStart(5)}%`;

const selfByFunction = new Map();
const selfByFile = new Map();
for (const [id, us] of self) {
  const frame = byId.get(id).callFrame;
  if (frame.functionName === "(idle)") continue;
  selfByFunction.set(name(frame), (selfByFunction.get(name(frame)) ?? 0) + us);
  selfByFile.set(where(frame), (selfByFile.get(where(frame)) ?? 0) + us);
}

// Inclusive time: each sample counts once for every distinct function on its stack.
const inclusive = new Map();
for (const [id, us] of self) {
  const seen = new Set();
  for (let at = id; at !== undefined; at = parent.get(at)) {
    const key = name(byId.get(at).callFrame);
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + us);
  }
}

const top = (map, n) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n);
process.stdout.write(
  `busy ${(busyUs / 1e6).toFixed(2)} s of ${(totalUs / 1e6).toFixed(2)} s sampled\n\nself time by package or file\n`,
);
for (const [key, us] of top(selfByFile, 25)) process.stdout.write(`${pct(us)}  ${key}\n`);
process.stdout.write(`\nself time by function\n`);
for (const [key, us] of top(selfByFunction, rows)) process.stdout.write(`${pct(us)}  ${key}\n`);
process.stdout.write(`\ninclusive time by function\n`);
for (const [key, us] of top(inclusive, rows)) process.stdout.write(`${pct(us)}  ${key}\n`);
