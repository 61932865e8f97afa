import type { ConfigFields } from "../../config/fields";
import { DEFAULT_MAX_EVENT_BYTES } from "../../utils/sse";
import type { BackendContext, BackendFactory } from "../backend";
import { HttpBackend } from "./backend";

export interface HttpBackendOptions {
  /** Origin for the connection pool, e.g. `http://mock-remote:8081`. */
  readonly origin: string;
  /** Path of the completions endpoint on that origin. */
  readonly path: string;
  /** The whole exchange; for a stream, until its first event. Shared by the retries of one request. */
  readonly timeoutSeconds: number;
  readonly connectTimeoutSeconds: number;
  /** Streams: the longest silence allowed between two events once the stream has started. */
  readonly idleTimeoutSeconds: number;
  /** The upstream's own model id, sent instead of the client's. */
  readonly model?: string;
  /** Resolved from `api_key_env` at load; never logged, never put in an error. */
  readonly apiKey?: string;
  /** Streams: the largest one event may be (`max_event_bytes`); a larger one fails the stream. */
  readonly maxEventBytes: number;
  /** The largest answer buffered whole (`max_response_bytes`): a non-streamed one, or a non-SSE answer to a stream. */
  readonly maxResponseBytes: number;
}

/** Bounds for the byte-size settings: below 1 KiB no real answer fits, above 1 GiB no process has the memory. */
const BYTE_SETTING_RANGE = { min: 1024, max: 1024 * 1024 * 1024 };

/** The default `max_response_bytes`: answers larger than this are refused rather than buffered. */
const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/** `{url}/v1/chat/completions`; a base URL that already ends in `/v1` (as OpenAI's does) is not doubled. */
export function completionsPath(url: URL): string {
  const base = url.pathname.replace(/\/+$/, "");
  return base.endsWith("/v1") ? `${base}/chat/completions` : `${base}/v1/chat/completions`;
}

export const httpBackendFactory: BackendFactory<HttpBackendOptions> = {
  type: "http",

  parseOptions(fields: ConfigFields, env: BackendContext["env"]): HttpBackendOptions {
    const url = fields.httpUrl("url");
    const timeoutSeconds = fields.number("timeout", 60, { min: 0, max: 3600, exclusiveMin: true });
    const connectTimeoutSeconds = fields.number("connect_timeout", Math.min(10, timeoutSeconds), {
      min: 0,
      max: 3600,
      exclusiveMin: true,
    });
    const idleTimeoutSeconds = fields.number("idle_timeout", timeoutSeconds, { min: 0, max: 3600, exclusiveMin: true });
    const model = fields.optionalString("model");
    const maxEventBytes = fields.integer("max_event_bytes", DEFAULT_MAX_EVENT_BYTES, BYTE_SETTING_RANGE);
    const maxResponseBytes = fields.integer("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, BYTE_SETTING_RANGE);
    const apiKey = fields.secretFromEnv("api_key_env", env);
    return {
      origin: url.origin,
      path: completionsPath(url),
      timeoutSeconds,
      connectTimeoutSeconds,
      idleTimeoutSeconds,
      maxEventBytes,
      maxResponseBytes,
      ...(model === undefined ? {} : { model }),
      ...(apiKey === undefined ? {} : { apiKey }),
    };
  },

  create: (name, options, context) => new HttpBackend(name, options, context.responseBudget),
};
