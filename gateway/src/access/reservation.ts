/**
 * The tokens a chat request may use, reserved against its key's tokens per minute when it is admitted and
 * settled to what it used when it ends: so concurrent requests cannot all pass a limit that only their
 * finished answers would have reached. Read from the body before it is validated (admission comes first),
 * so anything malformed counts as nothing: the request is refused by validation a moment later anyway.
 *
 * The estimate: the completion's bound (`max_completion_tokens`, else `max_tokens`, else the Responses API's
 * `max_output_tokens`; times `n`; without one the completion is not reserved, only charged at the end) plus
 * the input's text at ~4 characters per token: chat's messages, embeddings' `input`, completions' `prompt`,
 * or a Responses `input` (a string, or items with content).
 */
export function tokensToReserve(body: unknown): number {
  if (typeof body !== "object" || body === null) return 0;
  const fields = body as Record<string, unknown>;
  const completion =
    (bound(fields.max_completion_tokens) ?? bound(fields.max_tokens) ?? bound(fields.max_output_tokens) ?? 0) *
    (bound(fields.n) ?? 1);
  let characters = 0;
  const messages = fields.messages ?? fields.input;
  if (Array.isArray(messages)) {
    for (const message of messages as unknown[]) {
      if (typeof message !== "object" || message === null) continue;
      const content = (message as Record<string, unknown>).content;
      if (typeof content === "string") characters += content.length;
      else if (Array.isArray(content))
        for (const part of content as unknown[]) {
          const text = typeof part === "object" && part !== null ? (part as Record<string, unknown>).text : undefined;
          if (typeof text === "string") characters += text.length;
        }
    }
  }
  // An embeddings request's input or a completion's prompt: texts, or token ids (one token each).
  let tokenIds = 0;
  const input = fields.input ?? fields.prompt;
  if (typeof input === "string") characters += input.length;
  else if (Array.isArray(input))
    for (const item of input as unknown[]) {
      if (typeof item === "string") characters += item.length;
      else if (typeof item === "number") tokenIds++;
      else if (Array.isArray(item)) tokenIds += item.length;
    }
  return completion + tokenIds + Math.ceil(characters / CHARACTERS_PER_TOKEN);
}

/** The usual rule of thumb for English text in OpenAI's tokenizers. */
const CHARACTERS_PER_TOKEN = 4;

function bound(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : undefined;
}
