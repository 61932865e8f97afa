/** One sample line of Prometheus' text exposition format: `name{label="value",...} 12.5`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE_LINE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_PAIR = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Every sample in a `/metrics` body; comment lines (`# HELP`, `# TYPE`) are skipped. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE_LINE.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(LABEL_PAIR))
      labels[pair[1] ?? ""] = (pair[2] ?? "").replace(/\\(.)/g, "$1");
    samples.push({ name: match[1] ?? "", labels, value: Number(match[3]) });
  }
  return samples;
}

/** `# TYPE name kind` lines, as name -> kind. */
export function metricTypes(text: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(match[1] ?? "", match[2] ?? "");
  return types;
}

function hasLabels(sample: Sample, labels: Readonly<Record<string, string>>): boolean {
  return Object.entries(labels).every(([key, value]) => sample.labels[key] === value);
}

/** The samples of `name` whose labels include all of `labels`. */
export function select(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Sample[] {
  return samples.filter((sample) => sample.name === name && hasLabels(sample, labels));
}

/** The sum over the samples of `name` whose labels include all of `labels` (0 when there are none). */
export function total(samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  return select(samples, name, labels).reduce((sum, sample) => sum + sample.value, 0);
}

/** The identity of every series whose name starts with `prefix`, without values: for cardinality checks. */
export function seriesKeys(samples: readonly Sample[], prefix: string): string[] {
  return samples
    .filter((sample) => sample.name.startsWith(prefix))
    .map(
      (sample) =>
        `${sample.name}{${Object.entries(sample.labels)
          .map(([key, value]) => `${key}="${value}"`)
          .join(",")}}`,
    )
    .sort();
}
