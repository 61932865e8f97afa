import { ConfigError } from "./errors";

/** What an environment variable's name may be (`*_env` settings). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Typed reads from one YAML mapping. Each read names the key path in its error, and `finish()` rejects
 * keys nobody read, so a typo such as `timout: 5` fails start-up instead of being silently ignored.
 */
export class ConfigFields {
  private readonly seen = new Set<string>();

  constructor(
    private readonly raw: Readonly<Record<string, unknown>>,
    readonly path: string,
  ) {}

  static from(value: unknown, path: string): ConfigFields {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ConfigError(path, "must be a mapping");
    }
    return new ConfigFields(value as Record<string, unknown>, path);
  }

  keyPath(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`;
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  /** The raw value, marked as read; for callers that check a nested structure themselves. */
  take(key: string): unknown {
    this.seen.add(key);
    return this.raw[key];
  }

  requiredString(key: string): string {
    const value = this.take(key);
    if (value === undefined || value === null) throw new ConfigError(this.keyPath(key), "is required");
    if (typeof value !== "string" || value.trim() === "")
      throw new ConfigError(this.keyPath(key), "must be a non-empty string");
    return value;
  }

  optionalString(key: string): string | undefined {
    return this.has(key) ? this.requiredString(key) : (this.take(key), undefined);
  }

  number(key: string, fallback: number, range: { min: number; max: number; exclusiveMin?: boolean }): number {
    const value = this.take(key);
    if (value === undefined || value === null) return fallback;
    const aboveMin = range.exclusiveMin === true ? (v: number) => v > range.min : (v: number) => v >= range.min;
    if (typeof value !== "number" || !Number.isFinite(value) || !aboveMin(value) || value > range.max) {
      const lower = range.exclusiveMin === true ? `greater than ${range.min}` : `at least ${range.min}`;
      throw new ConfigError(this.keyPath(key), `must be a number ${lower} and at most ${range.max}`);
    }
    return value;
  }

  integer(key: string, fallback: number, range: { min: number; max: number }): number {
    const value = this.take(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < range.min || value > range.max) {
      throw new ConfigError(this.keyPath(key), `must be a whole number from ${range.min} to ${range.max}`);
    }
    return value;
  }

  /** One of `choices` (`fallback` when absent); anything else is an error listing them. */
  choice<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const value = this.take(key);
    if (value === undefined || value === null) return fallback;
    const found = choices.find((choice) => choice === value);
    if (found === undefined) throw new ConfigError(this.keyPath(key), `must be one of ${choices.join(", ")}`);
    return found;
  }

  /** The nested mapping under `key`, or undefined when absent; the caller must `finish()` it. */
  optionalMapping(key: string): ConfigFields | undefined {
    const value = this.take(key);
    return value === undefined || value === null ? undefined : ConfigFields.from(value, this.keyPath(key));
  }

  /** A list of non-empty strings (empty when absent); a bad item is named by its index. */
  stringList(key: string): string[] {
    const value = this.take(key);
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) throw new ConfigError(this.keyPath(key), "must be a list");
    return value.map((item: unknown, index) => {
      if (typeof item !== "string" || item.trim() === "")
        throw new ConfigError(`${this.keyPath(key)}[${index}]`, "must be a non-empty string");
      return item;
    });
  }

  httpUrl(key: string): URL {
    const text = this.requiredString(key);
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new ConfigError(this.keyPath(key), "must be an http(s) URL");
    }
    if (url.protocol !== "http:" && url.protocol !== "https:")
      throw new ConfigError(this.keyPath(key), "must be an http(s) URL");
    if (url.username !== "" || url.password !== "") {
      throw new ConfigError(this.keyPath(key), "must not carry credentials; use api_key_env");
    }
    if (url.search !== "" || url.hash !== "")
      throw new ConfigError(this.keyPath(key), "must not have a query or fragment");
    return url;
  }

  /**
   * A secret named by the environment variable in `key` (`api_key_env`, `password_env`): undefined when the
   * key is absent; a bad name or an unset variable is an error naming the key. The value is never in a message.
   */
  secretFromEnv(key: string, env: Readonly<Record<string, string | undefined>>): string | undefined {
    const name = this.optionalString(key);
    if (name === undefined) return undefined;
    if (!ENV_NAME.test(name)) throw new ConfigError(this.keyPath(key), "must be an environment variable name");
    const value = env[name];
    if (value === undefined || value === "")
      throw new ConfigError(this.keyPath(key), `environment variable ${name} is not set`);
    return value;
  }

  finish(): void {
    for (const key of Object.keys(this.raw)) {
      if (!this.seen.has(key)) throw new ConfigError(this.keyPath(key), "is not a known setting");
    }
  }
}
