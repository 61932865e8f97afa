import type { Usage } from "../schemas/chat";

/** A stand-in for a tokenizer: whitespace-separated words. Real upstream usage always wins over it. */
export function countTokens(text: string): number {
  let count = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // Space, tab, newline, vertical tab, form feed, carriage return.
    const isSpace = code === 32 || (code >= 9 && code <= 13);
    if (!isSpace && !inWord) count++;
    inWord = !isSpace;
  }
  return count;
}

export function estimateUsage(prompt: string, completion: string): Usage {
  const promptTokens = countTokens(prompt);
  const completionTokens = countTokens(completion);
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
