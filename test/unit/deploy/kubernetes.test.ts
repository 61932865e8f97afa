import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { defaultBackendRegistry } from "../../../gateway/src/backends";
import { parseConfig } from "../../../gateway/src/config/config";
import { parseSettings } from "../../../gateway/src/config/settings";
import { freePort } from "../../support/ports";
import { startGateway } from "../../support/servers";

const ROOT = join(__dirname, "..", "..", "..");
const DIR = join(ROOT, "deploy", "kubernetes");

type Manifest = Record<string, unknown> & { readonly kind: string; readonly metadata: { readonly name: string } };

/**
 * The objects `kubectl apply -k deploy/kubernetes` would apply: rendered by `kubectl kustomize` (kubectl is on
 * the CI machines). Without kubectl, the resource files and the generated ConfigMap as written: the same
 * objects before kustomize's names and labels, so every check below still runs.
 */
function rendered(): Manifest[] {
  const kubectl = spawnSync("kubectl", ["kustomize", DIR], { encoding: "utf8", timeout: 30_000 });
  if (kubectl.error === undefined) {
    if (kubectl.status !== 0) throw new Error(`kubectl kustomize failed: ${kubectl.stderr}`);
    return parseAllDocuments(kubectl.stdout).map((document) => document.toJS() as Manifest);
  }
  const kustomization = parseYaml(readFileSync(join(DIR, "kustomization.yaml"), "utf8")) as {
    resources: string[];
    configMapGenerator: { name: string; files: string[] }[];
  };
  const resources = kustomization.resources.flatMap((file) =>
    parseAllDocuments(readFileSync(join(DIR, file), "utf8")).map((document) => document.toJS() as Manifest),
  );
  const maps = kustomization.configMapGenerator.map((generator): Manifest => ({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: generator.name },
    data: Object.fromEntries(generator.files.map((file) => [file, readFileSync(join(DIR, file), "utf8")])),
  }));
  return [...maps, ...resources];
}

function only(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = objects.filter(
    (object) => object.kind === kind && (name === undefined || object.metadata.name === name),
  );
  expect(found).toHaveLength(1);
  return found[0] as Manifest;
}

interface Container {
  name: string;
  ports: { name: string; containerPort: number }[];
  env: { name: string; value?: string }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  startupProbe: { httpGet: { path: string; port: string } };
  volumeMounts: { name: string; mountPath: string }[];
}

interface PodSpec {
  terminationGracePeriodSeconds: number;
  containers: Container[];
  volumes: { name: string; configMap?: { name: string } }[];
}

describe("deploy/kubernetes", () => {
  const objects = rendered();
  const deployment = only(objects, "Deployment") as Manifest & {
    spec: {
      selector: { matchLabels: Record<string, string> };
      template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    };
  };
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0] as Container;
  const env = Object.fromEntries(container.env.map((entry) => [entry.name, entry.value]));

  it("renders objects that are valid against the Kubernetes API schemas", () => {
    const validation = spawnSync(process.execPath, [join(ROOT, "test", "support", "validate-kubernetes.mjs")], {
      input: JSON.stringify(objects),
      encoding: "utf8",
      cwd: ROOT,
      timeout: 60_000,
    });
    expect(validation.stderr).toBe("");
    const results = JSON.parse(validation.stdout) as { kind: string; error?: string }[];
    expect(results.filter((result) => result.error !== undefined)).toEqual([]);
    expect(results.map((result) => result.kind).sort()).toEqual([
      "ConfigMap",
      "Deployment",
      "HorizontalPodAutoscaler",
      "PodDisruptionBudget",
      "Service",
      "Service",
      "StatefulSet",
    ]);
  });

  it("sets only settings the gateway reads, with values it accepts, and listens where the probes and Service look", () => {
    const read = new Set<string>();
    parseSettings(new Proxy({}, { get: (_target, name) => (typeof name === "string" && read.add(name), undefined) }));
    expect(Object.keys(env).filter((name) => !read.has(name))).toEqual([]);
    const settings = parseSettings(env);
    const http = container.ports.find((port) => port.name === "http");
    expect(http?.containerPort).toBe(settings.port);
    for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe])
      expect(probe.httpGet.port).toBe("http");
    const service = only(objects, "Service", "gateway") as Manifest & {
      spec: { ports: { targetPort: string }[]; selector: Record<string, string> };
    };
    expect(service.spec.ports.map((port) => port.targetPort)).toEqual(["http"]);
    expect(deployment.spec.template.metadata.labels).toMatchObject(service.spec.selector);
  });

  it("gives the drain its time: the grace period outlasts DRAIN_DELAY and SHUTDOWN_TIMEOUT", () => {
    const settings = parseSettings(env);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(
      settings.drainDelaySeconds + settings.shutdownTimeoutSeconds,
    );
  });

  it("mounts a config the gateway loads, and its probes answer on the real app: /health and /ready", async () => {
    const settings = parseSettings(env);
    const mount = container.volumeMounts.find((volume) => settings.configFile.startsWith(`${volume.mountPath}/`));
    expect(mount).toBeDefined();
    const volume = pod.volumes.find((candidate) => candidate.name === mount?.name);
    const configMap = objects.find(
      (object) => object.kind === "ConfigMap" && object.metadata.name === volume?.configMap?.name,
    ) as (Manifest & { data: Record<string, string> }) | undefined;
    const text = configMap?.data[settings.configFile.slice((mount?.mountPath.length ?? 0) + 1)];
    expect(typeof text).toBe("string");
    expect(() => parseConfig(parseYaml(text ?? ""), defaultBackendRegistry(), {})).not.toThrow();
    // The store is valkey.yaml's Service, unreachable here (and never looked up: loopback only): the probes
    // answer without it.
    const gateway = await startGateway(
      (text ?? "").replace(/redis:\/\/valkey:6379/, `redis://127.0.0.1:${await freePort()}`),
    );
    try {
      expect((await fetch(`${gateway.url}${container.livenessProbe.httpGet.path}`)).status).toBe(200);
      expect((await fetch(`${gateway.url}${container.readinessProbe.httpGet.path}`)).status).toBe(200);
      expect(container.startupProbe.httpGet.path).toBe(container.livenessProbe.httpGet.path);
    } finally {
      await gateway.close();
    }
  });

  it("keeps a pod through voluntary disruptions and scales the same Deployment", () => {
    const pdb = only(objects, "PodDisruptionBudget") as Manifest & {
      spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
    };
    expect(pdb.spec.minAvailable).toBeGreaterThanOrEqual(1);
    expect(deployment.spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
    const hpa = only(objects, "HorizontalPodAutoscaler") as Manifest & {
      spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number };
    };
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: deployment.metadata.name });
    // With one replica the PodDisruptionBudget would block every node drain.
    expect(hpa.spec.minReplicas).toBeGreaterThan(pdb.spec.minAvailable);
  });

  it("points limits_store at the Valkey it deploys, and Valkey keeps nothing on disk", () => {
    const settings = parseSettings(env);
    const configMap = objects.find((object) => object.kind === "ConfigMap") as Manifest & {
      data: Record<string, string>;
    };
    const text = configMap.data[settings.configFile.split("/").pop() ?? ""] ?? "";
    const store = parseConfig(parseYaml(text), defaultBackendRegistry(), {}).access.store;
    const valkey = only(objects, "Service", "valkey") as Manifest & {
      spec: { ports: { port: number }[]; selector: Record<string, string> };
    };
    expect(store).toMatchObject({ host: valkey.metadata.name, port: valkey.spec.ports[0]?.port });
    // Each pod's share while the store is away: about the Deployment's replicas.
    expect(store?.expectedReplicas).toBe((deployment.spec as { replicas?: number }).replicas);
    const statefulSet = only(objects, "StatefulSet", "valkey") as Manifest & {
      spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: { args: string[] }[] } } };
    };
    expect(statefulSet.spec.template.metadata.labels).toMatchObject(valkey.spec.selector);
    // The gateway's Service must not reach Valkey's pod, nor Valkey's the gateway's.
    expect(deployment.spec.template.metadata.labels).not.toMatchObject(valkey.spec.selector);
    expect(statefulSet.spec.template.spec.containers[0]?.args.join(" ")).toContain("--save  --appendonly no");
  });
});
