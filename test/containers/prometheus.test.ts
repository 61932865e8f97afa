/**
 * A real Prometheus scrapes a running gateway every second; the per-backend series are read back through its
 * HTTP API, as an operator's dashboard would. Prometheus runs in a container, from the image (and tag) the
 * compose `monitoring` profile uses, read from docker-compose.yml so the tag lives in that one place.
 * The gateways run on the host (in this process's children, on 127.0.0.1), so the container shares the host's
 * network and scrapes 127.0.0.1; it listens on 127.0.0.1 at a free port. Needs Docker; run with
 * TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 (see `make test-containers`).
 *
 * Versions: a user's machine pulls the official prom/prometheus:v3.5.0; on the CI machines (no registry)
 * .ci/run builds a stand-in under that tag from Debian's package, which is Prometheus 2.53.3. Every query and
 * config key here means the same in 2.53 and 3.x (instant queries, rate, histogram_quantile, credentials_file,
 * metric_relabel_configs), so the assertions hold on both.
 */
import { GenericContainer, type StartedTestContainer, Wait } from "testcontainers";
import { eventually } from "../support/eventually";
import {
  chat,
  type RunningGateway,
  type RunningMock,
  startGateway,
  startMock,
  twoBackendConfig,
  userMessage,
} from "../support/servers";
import { composeImage, CONTAINER_TEST_TIMEOUT_MS, freePort } from "./support";

const SCRAPE_INTERVAL = "1s";
const WAIT_MS = 30_000;
const POLL_MS = 250;

/** Paths inside the container: /etc/prometheus exists in the official image and in the stand-in. */
const CONFIG_FILE = "/etc/prometheus/gateway-test.yml";
const CREDENTIALS_FILE = "/etc/prometheus/gateway-test-metrics-key";
/** A tmpfs: the images' own data directories differ (and are owned by different users); this one is 1777. */
const DATA_DIR = "/gateway-test-data";

let mock: RunningMock;
let gateway: RunningGateway;
let keyed: RunningGateway;
let prometheus: StartedTestContainer | undefined;
let prometheusUrl: string;
let prometheusLog = "";

const METRICS_KEY = "gw-prometheus-metrics-7d1e5a9c3b";
const API_KEY = "gw-prometheus-app-2f6b8d4a0c";

/**
 * The same shape as config/prometheus.yml (the compose `monitoring` profile), pointed at the test's gateway;
 * plus a gateway with auth on whose /metrics needs its own key, scraped with and without it.
 */
function scrapeConfig(target: string, keyedTarget: string, credentialsFile: string): string {
  return `global:
  scrape_interval: ${SCRAPE_INTERVAL}
  evaluation_interval: ${SCRAPE_INTERVAL}

scrape_configs:
  - job_name: gateway
    metrics_path: /metrics
    scrape_interval: ${SCRAPE_INTERVAL}
    static_configs:
      - targets: ["${target}"]
  - job_name: gateway-keyed
    scrape_interval: ${SCRAPE_INTERVAL}
    authorization:
      credentials_file: ${credentialsFile}
    static_configs:
      - targets: ["${keyedTarget}"]
    # Only its per-key series: the README's per-backend queries below sum over every job.
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: gateway_key_.*
        action: keep
  - job_name: gateway-keyed-without-credentials
    scrape_interval: ${SCRAPE_INTERVAL}
    static_configs:
      - targets: ["${keyedTarget}"]
`;
}

interface VectorResult {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: readonly [number, string];
}

/** One instant query; the result vector, or an error that quotes what Prometheus said. */
async function query(promql: string): Promise<VectorResult[]> {
  const response = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await response.json()) as {
    status: string;
    error?: string;
    data?: { resultType: string; result: VectorResult[] };
  };
  if (body.status !== "success" || body.data?.resultType !== "vector")
    throw new Error(`query ${promql} failed: ${body.error ?? JSON.stringify(body)}`);
  return body.data.result;
}

/** `{backend: value}` from a query that sums by backend. */
async function byBackend(promql: string): Promise<Record<string, number>> {
  return Object.fromEntries(
    (await query(promql)).map((sample) => [sample.metric.backend ?? "", Number(sample.value[1])]),
  );
}

/** Prometheus' own answers, waited for; a read that fails (Prometheus still starting) is tried again. */
function untilPrometheus<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  return eventually(what, read, done, {
    timeoutMs: WAIT_MS,
    intervalMs: POLL_MS,
    context: () => `prometheus log tail:\n${prometheusLog.slice(-3000)}`,
  });
}

beforeAll(async () => {
  mock = await startMock();
  gateway = await startGateway(twoBackendConfig(mock.url, "timeout: 5"));
  keyed = await startGateway(
    [
      "default_backend: local",
      "backends:",
      "  - name: local",
      "    type: echo",
      "auth:",
      "  keys:",
      "    - name: app",
      "      key_env: API_KEY",
      "  metrics_key:",
      "    key_env: METRICS_KEY",
      "",
    ].join("\n"),
    { env: { API_KEY, METRICS_KEY } },
  );

  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  prometheus = await new GenericContainer(composeImage("prometheus"))
    .withNetworkMode("host")
    // The official image's entrypoint is /bin/prometheus, the stand-in's command starts with `prometheus`:
    // naming it here runs the same flags on both.
    .withEntrypoint(["prometheus"])
    .withCommand([
      `--config.file=${CONFIG_FILE}`,
      `--storage.tsdb.path=${DATA_DIR}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ])
    .withTmpFs({ [DATA_DIR]: "rw,mode=1777" })
    // Copied in as root: world-readable, since the images run Prometheus as different users (nobody, prometheus).
    // The key is a test value, in a container only this test can reach.
    .withCopyContentToContainer([
      {
        content: scrapeConfig(`127.0.0.1:${gateway.port}`, `127.0.0.1:${keyed.port}`, CREDENTIALS_FILE),
        target: CONFIG_FILE,
        mode: 0o444,
      },
      { content: METRICS_KEY, target: CREDENTIALS_FILE, mode: 0o444 },
    ])
    .withLogConsumer((stream) => {
      stream.on("data", (chunk: Buffer | string) => {
        prometheusLog = (prometheusLog + chunk.toString()).slice(-20_000);
      });
    })
    .withWaitStrategy(Wait.forLogMessage("Server is ready to receive web requests"))
    .withStartupTimeout(120_000)
    .start();

  await untilPrometheus(
    "Prometheus to be ready",
    async () => (await fetch(`${prometheusUrl}/-/ready`)).status,
    (status) => status === 200,
  );
  // Traffic goes out only after a first scrape has seen every series at 0, so rate() counts all of it.
  await untilPrometheus(
    "the first scrape of the gateway",
    () => query('up{job="gateway"}'),
    (result) => result.length === 1 && result[0]?.value[1] === "1",
  );

  for (let i = 0; i < 3; i++)
    expect((await chat(gateway.url, { model: "local", messages: userMessage("Hello world") })).status).toBe(200);
  for (let i = 0; i < 2; i++)
    expect((await chat(gateway.url, { model: "remote", messages: userMessage("Hello world") })).status).toBe(200);
  expect((await chat(gateway.url, { model: "remote", messages: userMessage("x"), mock: { status: 500 } })).status).toBe(
    502,
  );
  expect((await chat(gateway.url, "{not json")).status).toBe(400);
  for (let i = 0; i < 2; i++)
    expect(
      (await chat(keyed.url, { messages: userMessage("Hello") }, { authorization: `Bearer ${API_KEY}` })).status,
    ).toBe(200);
}, CONTAINER_TEST_TIMEOUT_MS);

afterAll(async () => {
  await prometheus?.stop({ timeout: 5000 });
  await gateway?.close();
  await keyed?.close();
  await mock?.close();
}, 15_000);

describe("a real Prometheus scraping a gateway whose /metrics needs a key", () => {
  it(
    "scrapes it with the key from a credentials file, and is refused without",
    async () => {
      const up = await untilPrometheus(
        "both keyed jobs scraped",
        async () =>
          Object.fromEntries(
            (await query('up{job=~"gateway-keyed.*"}')).map((sample) => [sample.metric.job ?? "", sample.value[1]]),
          ),
        (seen) => Object.keys(seen).length === 2,
      );
      expect(up).toEqual({ "gateway-keyed": "1", "gateway-keyed-without-credentials": "0" });
    },
    WAIT_MS + 5000,
  );

  it(
    "sees requests per API key name",
    async () => {
      const perKey = await untilPrometheus(
        "the key's request count",
        async () =>
          Object.fromEntries(
            (await query('sum by (key) (gateway_key_requests_total{job="gateway-keyed",code="200"})')).map((sample) => [
              sample.metric.key ?? "",
              Number(sample.value[1]),
            ]),
          ),
        (seen) => seen.app === 2,
      );
      expect(perKey).toEqual({ app: 2 });
    },
    WAIT_MS + 5000,
  );
});

describe("a real Prometheus scraping the gateway", () => {
  it(
    "sees the requests per backend, 'none' for the refused one",
    async () => {
      const expected = { local: 3, remote: 3, none: 1 };
      const counts = await untilPrometheus(
        "per-backend request counts",
        () => byBackend("sum by (backend) (gateway_requests_total)"),
        (seen) =>
          JSON.stringify(seen, Object.keys(expected).sort()) === JSON.stringify(expected, Object.keys(expected).sort()),
      );
      expect(counts).toEqual(expected);
    },
    WAIT_MS + 5000,
  );

  it("sees the remote backend's failure by reason", async () => {
    const errors = await byBackend('sum by (backend) (gateway_backend_errors_total{reason="http_status"})');
    expect(errors).toEqual({ local: 0, remote: 1 });
  });

  it("sees tokens per backend", async () => {
    // remote: mock-remote's own count, 5 for each "Remote: Hello world" (the gateway's estimate would say 3).
    expect(await byBackend('sum by (backend) (gateway_tokens_total{type="completion"})')).toEqual({
      local: 9,
      remote: 10,
    });
  });

  it(
    "answers the README's request rate query per backend",
    async () => {
      const rates = await untilPrometheus(
        "a request rate for each backend",
        () => byBackend("sum by (backend) (rate(gateway_requests_total[5m]))"),
        (seen) => (seen.local ?? 0) > 0 && (seen.remote ?? 0) > 0,
      );
      expect(Object.keys(rates).sort()).toEqual(["local", "none", "remote"]);
    },
    WAIT_MS + 5000,
  );

  it(
    "answers the README's p99 latency query per backend",
    async () => {
      const p99 = await untilPrometheus(
        "a p99 latency for each backend",
        () =>
          byBackend(
            "histogram_quantile(0.99, sum by (backend, le) (rate(gateway_request_duration_seconds_bucket[5m])))",
          ),
        (seen) => Number.isFinite(seen.local) && Number.isFinite(seen.remote),
      );
      expect(p99.local).toBeGreaterThan(0);
      expect(p99.remote).toBeGreaterThan(0);
    },
    WAIT_MS + 5000,
  );

  it(
    "answers the README's error ratio query per backend",
    async () => {
      const ratio = await untilPrometheus(
        "an error ratio for each backend",
        () =>
          byBackend(
            'sum by (backend) (rate(gateway_requests_total{code=~"5.."}[5m])) / sum by (backend) (rate(gateway_requests_total[5m]))',
          ),
        (seen) => seen.local !== undefined && (seen.remote ?? 0) > 0,
      );
      expect(ratio.local).toBe(0);
      // One 502 in three remote requests; each backend's 502 count existed at 0 before, so rate() saw it.
      expect(ratio.remote).toBeCloseTo(1 / 3, 5);
    },
    WAIT_MS + 5000,
  );

  it(
    "answers the README's gateway overhead query per backend",
    async () => {
      const overhead = await untilPrometheus(
        "the mean gateway overhead for each backend",
        () =>
          byBackend(
            "(sum by (backend) (rate(gateway_request_duration_seconds_sum[5m])) - sum by (backend) (rate(gateway_backend_request_duration_seconds_sum[5m]))) / sum by (backend) (rate(gateway_request_duration_seconds_count[5m]))",
          ),
        (seen) => Number.isFinite(seen.local) && Number.isFinite(seen.remote),
      );
      // Requests refused before routing never wait on a backend, so 'none' has no overhead figure.
      expect(Object.keys(overhead).sort()).toEqual(["local", "remote"]);
      expect(overhead.local).toBeGreaterThan(0);
      expect(overhead.remote).toBeGreaterThan(0);
    },
    WAIT_MS + 5000,
  );
});
