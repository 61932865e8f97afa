import { randomUUID } from "node:crypto";
import express, { type Express, type Request, type Response } from "express";
import type { ChatMessage } from "../../gateway/src/schemas/chat";
import { extractPrompt } from "../../gateway/src/utils/prompt";
import { countTokens } from "../../gateway/src/utils/tokens";

/**
 * Fault knobs, per request. Each can come from a header (for direct calls) or from a `mock` object in the
 * JSON body: the gateway forwards unknown body fields, so tests can steer mock-remote through it.
 */
export interface Knobs {
  /** Wait this long before answering. */
  readonly delayMs: number;
  /** Answer with this HTTP status and an OpenAI error body instead of a completion. */
  readonly status: number | undefined;
  /** malformed: 200 with a non-JSON body; empty: 200 JSON without choices; reset: drop the socket; hang: never answer. */
  readonly fault: Fault | undefined;
  /** Sent as `retry-after` with an error status. */
  readonly retryAfter: string | undefined;
}

const FAULTS = ["malformed", "empty", "reset", "hang"] as const;
type Fault = (typeof FAULTS)[number];

export interface MockOptions {
  /** Applied to every request that does not set its own delay. */
  readonly defaultDelayMs: number;
  readonly modelId: string;
}

/** What mock-remote saw, newest last, so tests can check what the gateway forwarded. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: unknown;
}

const MAX_SEEN = 200;
const MAX_DELAY_MS = 10 * 60 * 1000;

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function readKnobs(req: Request, defaultDelayMs: number): Knobs {
  const fromBody = record(record(req.body).mock);
  const pick = (bodyKey: string, header: string): string | undefined => {
    const value = fromBody[bodyKey] ?? req.get(header);
    return value === undefined || value === null ? undefined : String(value);
  };
  const delay = Number(pick("delay_ms", "x-mock-delay-ms") ?? defaultDelayMs);
  const status = Number(pick("status", "x-mock-status"));
  const fault = pick("fault", "x-mock-fault");
  return {
    delayMs: Number.isFinite(delay) ? Math.min(Math.max(delay, 0), MAX_DELAY_MS) : defaultDelayMs,
    status: Number.isInteger(status) && status >= 100 && status <= 599 ? status : undefined,
    fault: FAULTS.find((known) => known === fault),
    retryAfter: pick("retry_after", "x-mock-retry-after"),
  };
}

/** Resolves after `ms`, or at once when the client has gone, so a slow answer never outlives its caller. */
function wait(ms: number, res: Response): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    res.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function createMockApp(options: MockOptions): { app: Express; seen: SeenRequest[] } {
  const seen: SeenRequest[] = [];
  const app = express();
  app.disable("x-powered-by");
  app.disable("etag");
  app.use(express.json({ limit: "10mb" }));
  app.use((req, _res, next) => {
    if (req.path.startsWith("/v1/")) {
      seen.push({ method: req.method, path: req.path, headers: { ...req.headers }, body: req.body });
      if (seen.length > MAX_SEEN) seen.shift();
    }
    next();
  });

  app.get("/health", (_req, res) => {
    res.json({ status: "ok" });
  });

  app.get("/v1/models", (_req, res) => {
    res.json({ object: "list", data: [{ id: options.modelId, object: "model", created: 0, owned_by: "mock-remote" }] });
  });

  app.post("/v1/chat/completions", async (req, res) => {
    const knobs = readKnobs(req, options.defaultDelayMs);
    if (knobs.fault === "hang") return; // answer nothing; the socket stays open until the caller gives up
    await wait(knobs.delayMs, res);
    if (res.destroyed) return;
    if (knobs.fault === "reset") {
      res.socket?.destroy();
      return;
    }
    if (knobs.fault === "malformed") {
      res.status(200).type("application/json").send('{"id": "chatcmpl-broken", "choices": [');
      return;
    }
    if (knobs.fault === "empty") {
      res.json({ id: `chatcmpl-${randomUUID()}`, object: "chat.completion" });
      return;
    }
    if (knobs.status !== undefined && knobs.status !== 200) {
      if (knobs.retryAfter !== undefined) res.setHeader("retry-after", knobs.retryAfter);
      res.status(knobs.status).json({ error: { message: `mock-remote was told to answer ${knobs.status}`, type: "mock_error", param: null, code: "mock_status" } });
      return;
    }
    const body = record(req.body);
    const messages = Array.isArray(body.messages) ? (body.messages as ChatMessage[]) : [];
    const prompt = extractPrompt(messages);
    const content = `Remote: ${prompt}`;
    const promptTokens = countTokens(prompt);
    const completionTokens = countTokens(content);
    res.json({
      id: `chatcmpl-${randomUUID()}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: typeof body.model === "string" ? body.model : options.modelId,
      choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop", logprobs: null }],
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    });
  });

  /** For tests: what the gateway actually sent. */
  app.get("/mock/requests", (_req, res) => {
    res.json(seen);
  });

  app.use((_req, res) => {
    res.status(404).json({ error: { message: "not found", type: "invalid_request_error", param: null, code: "unknown_url" } });
  });
  return { app, seen };
}
