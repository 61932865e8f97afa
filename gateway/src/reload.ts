import { type Stats, unwatchFile, watchFile } from "node:fs";
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import type { Express } from "express";
import type { Logger } from "winston";
import { createApp } from "./app";
import type { GatewayConfig } from "./config/config";
import { ConfigError } from "./config/errors";
import { configHash, readConfigText } from "./config/load";
import { changedSettings, type Env, parseSettings, type Settings } from "./config/settings";
import type { Dependencies } from "./dependencies";

/** How often a replaced config looks whether its last request is over (to close the backends it alone had). */
const DRAIN_POLL_MS = 200;

/** One config in force: the app built from it, and how many of the requests it took are not over yet. */
class Generation {
  active = 0;
  readonly app: Express;

  constructor(
    readonly deps: Dependencies,
    extend: (deps: Dependencies) => Dependencies,
  ) {
    this.app = createApp(
      extend({
        ...deps,
        onRequestEnd: () => {
          this.active--;
        },
      }),
    );
  }
}

/**
 * The config generations of one process. Each request goes wholly to the generation in force when it
 * arrived, so it sees one config from start to end; a reload builds the next generation beside it and
 * swaps it in at once. A replaced generation keeps serving what it took; once the last of that is over,
 * the backends only it had are closed (each closes its pools once their requests end) and drop out of
 * /metrics' target gauges.
 */
export class ConfigGenerations {
  private current: Generation;
  /** Every generation's app shares the first one's request and response prototypes (see `swap`). */
  private readonly first: Express;

  constructor(
    deps: Dependencies,
    private readonly logger: Logger,
    private readonly extend: (deps: Dependencies) => Dependencies = (same) => same,
  ) {
    this.current = new Generation(deps, extend);
    this.first = this.current.app;
  }

  /** The dependencies in force now. */
  get deps(): Dependencies {
    return this.current.deps;
  }

  /** The first generation's app: the one node:http's request and response classes are made for. */
  get firstApp(): Express {
    return this.first;
  }

  /** node:http's request listener. */
  readonly handle: RequestListener = (req: IncomingMessage, res: ServerResponse) => {
    const generation = this.current;
    generation.active++;
    void generation.app(req, res);
  };

  /** Puts `deps` in force for every request from now on; the replaced generation drains on its own. */
  swap(deps: Dependencies): void {
    const replaced = this.current;
    const next = new Generation(deps, this.extend);
    // The same settings in every generation's app (createApp sets them), so Express's per-request
    // setPrototypeOf finds the prototypes node:http made the objects with, and changes nothing.
    next.app.request = this.first.request;
    next.app.response = this.first.response;
    this.current = next;
    const dropped = replaced.deps.backends.filter((backend) => !deps.backends.includes(backend));
    if (dropped.length > 0) this.whenDrained(replaced, () => this.close(replaced.deps, dropped));
  }

  private whenDrained(generation: Generation, then: () => void): void {
    if (generation.active <= 0) {
      then();
      return;
    }
    setTimeout(() => this.whenDrained(generation, then), DRAIN_POLL_MS).unref();
  }

  private close(deps: Dependencies, dropped: readonly Dependencies["backends"][number][]): void {
    for (const backend of dropped) {
      // A backend whose settings changed has a successor of the same name, whose targets are shown now.
      if (!this.current.deps.backends.some((kept) => kept.name === backend.name))
        deps.metrics.unwatchTargets(backend.name);
      void backend.close().catch((error: unknown) =>
        this.logger.warn("closing a backend the config dropped failed", {
          backend: backend.name,
          error: error instanceof Error ? error.message : String(error),
        }),
      );
    }
    this.logger.info("backends the config dropped are closed", {
      backends: dropped.map((backend) => backend.name),
    });
  }
}

/** What a reload needs besides the generations: how to read and check the file, and how to build from it. */
export interface ReloadOptions {
  readonly file: string;
  readonly logger: Logger;
  /** The settings read at start: a reload that finds different ones in `.env` says they wait for a restart. */
  readonly settings: Settings;
  /** The environment as a reload sees it (the process's, over a re-read `.env`). */
  readonly env: () => Env;
  readonly parse: (text: string, env: Env) => GatewayConfig;
  /** The next dependencies, from a checked config, on top of the ones in force. */
  readonly build: (config: GatewayConfig, env: Env, previous: Dependencies) => Dependencies;
}

/**
 * Reloads the config file into a process: validated exactly as at start, then swapped in whole, or (an
 * invalid file) nothing changes, the failure is counted and logged with the file and key path.
 */
export class ConfigReloader {
  private hash: string;

  constructor(
    private readonly generations: ConfigGenerations,
    private readonly options: ReloadOptions,
    startText: string,
  ) {
    this.hash = configHash(startText);
    generations.deps.metrics.configLoaded(this.hash, false);
  }

  /** The short hash of the config in force (`gateway_config_info`). */
  get configHash(): string {
    return this.hash;
  }

  /**
   * One reload, told by `trigger` (SIGHUP, the watcher). `ifChanged`: nothing happens when the file's
   * content is the one in force (a watcher sees touches and metadata changes too). True when it took effect.
   */
  reload(trigger: string, ifChanged = false): boolean {
    const { file, logger } = this.options;
    const metrics = this.generations.deps.metrics;
    let hash: string;
    let next: Dependencies;
    let env: Env;
    try {
      const text = readConfigText(file);
      hash = configHash(text);
      if (ifChanged && hash === this.hash) return false;
      env = this.options.env();
      next = this.options.build(this.options.parse(text, env), env, this.generations.deps);
    } catch (error) {
      metrics.configReloadFailed();
      const message =
        error instanceof ConfigError ? error.message : error instanceof Error ? error.message : String(error);
      logger.error("config reload failed: the config in force stays", { file, trigger, error: message });
      return false;
    }
    const before = this.generations.deps.backends;
    this.generations.swap(next);
    this.hash = hash;
    metrics.configLoaded(hash, true);
    logger.info("config reloaded", {
      file,
      trigger,
      hash: this.hash,
      backends: next.backends.map((backend) => backend.name),
      kept: next.backends.filter((backend) => before.includes(backend)).map((backend) => backend.name),
      defaultBackend: next.config.defaultBackend,
    });
    let settings: Settings | undefined;
    try {
      settings = parseSettings(env);
    } catch {
      settings = undefined;
    }
    const changed = settings === undefined ? [] : changedSettings(this.options.settings, settings);
    if (changed.length > 0)
      logger.warn("settings changed in the environment take effect at the next start, not at a reload", {
        settings: changed,
      });
    return true;
  }
}

/**
 * Calls `changed` when the file at `path` may have changed: polled by stat (every `intervalMs`), which
 * sees a Kubernetes ConfigMap update (a symlink swapped to a new directory) and bind mounts alike, where
 * inotify events do not always arrive. Returns what stops the watching.
 */
export function watchConfigFile(path: string, changed: () => void, intervalMs = 1000): () => void {
  const listener = (now: Stats, before: Stats): void => {
    if (now.mtimeMs !== before.mtimeMs || now.ino !== before.ino || now.size !== before.size) changed();
  };
  watchFile(path, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(path, listener);
}
