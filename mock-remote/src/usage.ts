/**
 * mock-remote's own prompt and token counting. It deliberately differs from the gateway's estimate (one
 * token per word): a test that sees these numbers knows the gateway passed the upstream's usage through
 * rather than counting again. mock-remote imports none of the gateway's code: it stays an outsider.
 */

export interface MockUsage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** The user turns' text (string content, or the text parts of array content), joined with newlines. */
export function promptOf(messages: unknown): string {
  const texts: string[] = [];
  for (const message of Array.isArray(messages) ? messages : []) {
    const { role, content } = record(message);
    if (role !== "user") continue;
    if (typeof content === "string") texts.push(content);
    for (const part of Array.isArray(content) ? content : []) {
      const { type, text } = record(part);
      if (type === "text" && typeof text === "string") texts.push(text);
    }
  }
  return texts.join("\n");
}

/** OpenAI's rule of thumb, one token per started four characters: "Hello world" is 3, not the gateway's 2. */
export function mockTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export function mockUsage(prompt: string, completion: string): MockUsage {
  const promptTokens = mockTokens(prompt);
  const completionTokens = mockTokens(completion);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}
