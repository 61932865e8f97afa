import { echoBackendFactory } from "./echo";
import { httpBackendFactory } from "./http/factory";
import { BackendRegistry } from "./registry";

/** Every backend type the gateway ships. A new type is one file in this folder plus one line here. */
export function defaultBackendRegistry(): BackendRegistry {
  return new BackendRegistry().register(echoBackendFactory).register(httpBackendFactory);
}
