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

/**
 * The user turns' text (string content, or the text parts of array content), joined with newlines. Chat's
 * text parts are `{"type": "text"}`, the Responses API's `{"type": "input_text"}`.
 */
export function promptOf(messages: unknown, textPart = "text"): string {
  const texts: string[] = [];
  for (const message of Array.isArray(messages) ? messages : []) {
    const { role, content } = record(message);
    if (role !== "user") continue;
    if (typeof content === "string") texts.push(content);
    for (const part of Array.isArray(content) ? content : []) {
      const { type, text } = record(part);
      if (type === textPart && typeof text === "string") texts.push(text);
    }
  }
  return texts.join("\n");
}

/**
 * The Responses API's `input` as a prompt: a string, or the user messages among its items (an item without a
 * type is a message too; function call outputs, reasoning and the like are left out).
 */
export function inputPromptOf(input: unknown): string {
  if (typeof input === "string") return input;
  const messages = (Array.isArray(input) ? input : []).filter((item: unknown) => {
    const { type } = record(item);
    return type === undefined || type === "message";
  });
  return promptOf(messages, "input_text");
}

/** OpenAI's rule of thumb, one token per started four characters: "Hello world" is 3, not the gateway's 2. */
export function mockTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** Several completions (the `n` choices) are counted one by one, as a model bills each choice it generates. */
export function mockUsage(prompt: string, completion: string | readonly string[]): MockUsage {
  const promptTokens = mockTokens(prompt);
  const completions: readonly string[] = typeof completion === "string" ? [completion] : completion;
  const completionTokens = completions.reduce((sum, text) => sum + mockTokens(text), 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}
