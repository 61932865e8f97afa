import type { ConfigFields } from "../config/fields";
import { ConfigError } from "../config/errors";
import type { Backend, BackendContext, BackendFactory } from "./backend";

/** A backend's config after its type checked it: what `BackendRegistry.create` needs to build it. */
export interface BackendConfig {
  readonly name: string;
  readonly type: string;
  readonly options: unknown;
}

/** Maps a config `type` to the factory that understands it. */
export class BackendRegistry {
  private readonly factories = new Map<string, BackendFactory<unknown>>();

  register<Options>(factory: BackendFactory<Options>): this {
    if (this.factories.has(factory.type)) throw new Error(`backend type '${factory.type}' is registered twice`);
    // Widening to unknown is safe: options only ever travel from this factory's parseOptions to its own create.
    this.factories.set(factory.type, factory);
    return this;
  }

  types(): string[] {
    return [...this.factories.keys()];
  }

  parse(name: string, type: string, fields: ConfigFields, env: BackendContext["env"]): BackendConfig {
    const factory = this.factories.get(type);
    if (factory === undefined) {
      throw new ConfigError(
        fields.keyPath("type"),
        `unknown backend type '${type}' (known: ${this.types().join(", ")})`,
      );
    }
    const options = factory.parseOptions(fields, env);
    fields.finish();
    return { name, type, options };
  }

  create(config: BackendConfig, context: BackendContext): Backend {
    const factory = this.factories.get(config.type);
    if (factory === undefined) throw new Error(`backend type '${config.type}' is not registered`);
    return factory.create(config.name, config.options, context);
  }
}
