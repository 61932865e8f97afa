import type { BackendConfig, BackendRegistry } from "../backends/registry";
import { ConfigError } from "./errors";
import { ConfigFields } from "./fields";

/** The parsed YAML config file: which backends exist and where unrouted requests go. */
export interface GatewayConfig {
  readonly defaultBackend: string;
  readonly backends: readonly BackendConfig[];
}

/** Backend names become `model` ids, metric labels and log fields: keep them plain. */
const BACKEND_NAME = /^[A-Za-z0-9][A-Za-z0-9._:\/-]{0,63}$/;

/** Checks a YAML document (already parsed to plain values) and returns the typed config. Pure. */
export function parseConfig(raw: unknown, registry: BackendRegistry, env: Readonly<Record<string, string | undefined>>): GatewayConfig {
  if (raw === null || raw === undefined) throw new ConfigError("", "the file is empty");
  const root = ConfigFields.from(raw, "");
  const defaultBackend = root.requiredString("default_backend");
  const list = root.take("backends");
  if (!Array.isArray(list) || list.length === 0) throw new ConfigError("backends", "must be a non-empty list");

  const names = new Set<string>();
  const backends = list.map((entry: unknown, index: number): BackendConfig => {
    const fields = ConfigFields.from(entry, `backends[${index}]`);
    const name = fields.requiredString("name");
    if (!BACKEND_NAME.test(name)) {
      throw new ConfigError(fields.keyPath("name"), "must be 1-64 characters of letters, digits and . _ : / - (starting with a letter or digit)");
    }
    if (names.has(name)) throw new ConfigError(fields.keyPath("name"), `'${name}' is already used by another backend`);
    names.add(name);
    const type = fields.requiredString("type");
    return registry.parse(name, type, fields, env);
  });

  if (!names.has(defaultBackend)) {
    throw new ConfigError("default_backend", `'${defaultBackend}' is not the name of a backend (have: ${[...names].join(", ")})`);
  }
  root.finish();
  return { defaultBackend, backends };
}
