import { eventually, type PollOptions } from "./eventually";
import { parseExposition, type Sample } from "./exposition";

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
