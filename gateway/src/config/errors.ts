/** A config problem, located by its key path (`backends[1].url`) so the fix is obvious from one line. */
export class ConfigError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(path === "" ? problem : `${path}: ${problem}`);
    this.name = "ConfigError";
  }
}
