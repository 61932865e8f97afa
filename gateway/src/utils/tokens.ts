import type { Usage } from "../schemas/chat";

/** A stand-in for a tokenizer: whitespace-separated words. Real upstream usage always wins over it. */
export function countTokens(text: string): number {
  return new TokenCounter().add(text).count;
}

/**
 * countTokens over text that arrives in pieces (a stream's deltas), without keeping the text: a word split
 * across two pieces counts once.
 */
export class TokenCounter {
  count = 0;
  private inWord = false;

  add(text: string): this {
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      // Space, tab, newline, vertical tab, form feed, carriage return.
      const isSpace = code === 32 || (code >= 9 && code <= 13);
      if (!isSpace && !this.inWord) this.count++;
      this.inWord = !isSpace;
    }
    return this;
  }
}

/** Usage estimated from the prompt and the completion (its text, or its token count when already counted). */
export function estimateUsage(prompt: string, completion: string | number): Usage {
  const promptTokens = countTokens(prompt);
  const completionTokens = typeof completion === "number" ? completion : countTokens(completion);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/** Upstream usage if it is well formed (non-negative integers), otherwise undefined. */
export function parseUsage(value: unknown): Usage | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: total,
  } = value as Record<string, unknown>;
  if (!isCount(prompt) || !isCount(completion)) return undefined;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: isCount(total) ? total : prompt + completion,
  };
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

/** A Responses API `usage` (`input_tokens`, `output_tokens`) as the gateway counts it; undefined if malformed. */
export function responseUsage(value: unknown): Usage | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { input_tokens: input, output_tokens: output, total_tokens: total } = value as Record<string, unknown>;
  if (!isCount(input) || !isCount(output)) return undefined;
  return { prompt_tokens: input, completion_tokens: output, total_tokens: isCount(total) ? total : input + output };
}
