import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { defaultBackendRegistry } from "../../../gateway/src/backends";
import { parseConfig } from "../../../gateway/src/config/config";
import { parseSettings } from "../../../gateway/src/config/settings";

/**
 * deploy/swarm read as files: what `docker stack deploy` would be given agrees with the gateway's real settings,
 * with the other deploy files, and with the rolling-update promise. test/containers/swarm.test.ts deploys it.
 */
const ROOT = join(__dirname, "..", "..", "..");
const read = (...parts: string[]): string => readFileSync(join(ROOT, ...parts), "utf8");

interface Service {
  image: string;
  environment?: Record<string, string>;
  stop_grace_period?: string;
  configs?: { source: string; target: string }[];
  deploy?: { replicas?: number; update_config?: { order?: string; failure_action?: string } };
}

const stack = parse(read("deploy", "swarm", "stack.yml")) as {
  services: Record<string, Service>;
  configs: Record<string, { file: string }>;
};
const gateway = stack.services.gateway as Service;
const environment = gateway.environment ?? {};

function seconds(duration: string | undefined): number {
  const match = /^(\d+)s$/.exec(duration ?? "");
  if (match === null) throw new Error(`not a duration in seconds: ${duration}`);
  return Number(match[1]);
}

describe("deploy/swarm", () => {
  it("sets only settings the gateway reads, and mounts the config where CONFIG_FILE looks", () => {
    const known = new Set<string>();
    parseSettings(new Proxy({}, { get: (_target, name) => (typeof name === "string" && known.add(name), undefined) }));
    expect(Object.keys(environment).filter((name) => !known.has(name))).toEqual([]);
    const settings = parseSettings(environment);
    const mounted = gateway.configs?.find((config) => config.target === settings.configFile);
    expect(mounted).toBeDefined();
    const file = stack.configs[mounted?.source ?? ""]?.file ?? "";
    const config = parseConfig(parse(read("deploy", "swarm", file)), defaultBackendRegistry(), {});
    // The replicas share one store, which is the stack's Valkey; each one's share is limit / deploy.replicas.
    expect(config.access.store).toMatchObject({ host: "valkey", expectedReplicas: gateway.deploy?.replicas });
    expect(stack.services.valkey).toBeDefined();
  });

  it("rolls replicas start-first, and gives the drain its time before Docker's SIGKILL", () => {
    expect(gateway.deploy?.update_config).toMatchObject({ order: "start-first", failure_action: "rollback" });
    const settings = parseSettings(environment);
    expect(seconds(gateway.stop_grace_period)).toBeGreaterThan(
      settings.drainDelaySeconds + settings.shutdownTimeoutSeconds,
    );
  });

  it("scrapes every gateway task on the gateway's port, found through Swarm's DNS", () => {
    const prometheus = parse(read("deploy", "swarm", "prometheus.yml")) as {
      scrape_configs: { job_name: string; dns_sd_configs: { names: string[]; type: string; port: number }[] }[];
    };
    const job = prometheus.scrape_configs.find((candidate) => candidate.job_name === "gateway");
    expect(job?.dns_sd_configs).toEqual([
      expect.objectContaining({ names: ["tasks.gateway"], type: "A", port: parseSettings(environment).port }),
    ]);
  });

  it("runs the very images the other files name: Prometheus as in docker-compose.yml, Valkey as on Kubernetes", () => {
    const compose = parse(read("docker-compose.yml")) as { services: Record<string, { image?: string }> };
    expect(stack.services.prometheus?.image).toBe(compose.services.prometheus?.image);
    const valkey = read("deploy", "kubernetes", "valkey.yaml");
    expect(valkey).toContain(`image: ${stack.services.valkey?.image}\n`);
  });
});
