import { eventually, type PollOptions } from "./eventually";
import { parseExposition, type Sample, total } from "./exposition";

/** The samples of `GET {baseUrl}/metrics`; any status but 200 fails with the body. */
export async function scrape(baseUrl: string, headers: Record<string, string> = {}): Promise<Sample[]> {
  const response = await fetch(`${baseUrl}/metrics`, { headers });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}: ${text.slice(0, 500)}`);
  return parseExposition(text);
}

/**
 * Counters move when a response closes on the server, a moment after the client has read it: scrapes
 * until `done` holds (bounded), and returns those samples.
 */
export function scrapeUntil(
  baseUrl: string,
  done: (samples: Sample[]) => boolean,
  options: PollOptions & { readonly headers?: Record<string, string> } = {},
): Promise<Sample[]> {
  return eventually(`/metrics of ${baseUrl} to show it`, () => scrape(baseUrl, options.headers), done, options);
}

/**
 * One more request counted in gateway_requests_total under `labels` (its backend, code, stream...) than in
 * `before`, and one more stream_interrupted error for that backend: a stream that broke after its first byte.
 */
export async function expectOneInterruptedStream(
  baseUrl: string,
  before: readonly Sample[],
  labels: Readonly<Record<string, string>> & { readonly backend: string },
  headers: Record<string, string> = {},
): Promise<void> {
  const after = await scrapeUntil(
    baseUrl,
    (s) => total(s, "gateway_requests_total", labels) > total(before, "gateway_requests_total", labels),
    { headers },
  );
  expect(total(after, "gateway_requests_total", labels) - total(before, "gateway_requests_total", labels)).toBe(1);
  const interrupted = { backend: labels.backend, reason: "stream_interrupted" };
  expect(
    total(after, "gateway_backend_errors_total", interrupted) -
      total(before, "gateway_backend_errors_total", interrupted),
  ).toBe(1);
}
