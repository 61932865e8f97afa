import type { ChatMessage } from "../schemas/chat";

/**
 * The prompt is the text the user wrote: every user message's string content, or the text parts of its
 * array content, joined with newlines. System and assistant turns are context, not the prompt.
 */
export function extractPrompt(messages: readonly ChatMessage[]): string {
  const texts: string[] = [];
  for (const message of messages) {
    if (message.role !== "user") continue;
    const content = message.content;
    if (typeof content === "string") {
      texts.push(content);
    } else if (content !== undefined && content !== null) {
      for (const part of content) {
        if (part.type === "text" && typeof part.text === "string") texts.push(part.text);
      }
    }
  }
  return texts.join("\n");
}

/**
 * An embeddings request's inputs as texts: a string as itself, token ids joined by spaces. What echo embeds
 * and what the gateway counts when the upstream reports no usage.
 */
export function embeddingTexts(input: unknown): string[] {
  if (typeof input === "string") return [input];
  if (!Array.isArray(input)) return [];
  if (input.every((item) => typeof item === "number")) return [input.join(" ")];
  return input.map((item: unknown) => (typeof item === "string" ? item : Array.isArray(item) ? item.join(" ") : ""));
}

/** A legacy completion's `prompt` as text: its strings (or token ids, joined by spaces) joined with newlines. */
export function completionPrompt(prompt: unknown): string {
  return embeddingTexts(prompt).join("\n");
}

/**
 * A Responses API `input` as the user's text: a string as itself; of an item list, the user messages'
 * string content or `input_text` parts, joined with newlines (other items are context or tool traffic).
 */
export function responseInputText(input: unknown): string {
  if (typeof input === "string") return input;
  if (!Array.isArray(input)) return "";
  const texts: string[] = [];
  for (const item of input as unknown[]) {
    if (typeof item !== "object" || item === null) continue;
    const { role, content } = item as Record<string, unknown>;
    if (role !== "user") continue;
    if (typeof content === "string") texts.push(content);
    else if (Array.isArray(content))
      for (const part of content as unknown[]) {
        if (typeof part !== "object" || part === null) continue;
        const { type, text } = part as Record<string, unknown>;
        if ((type === "input_text" || type === "text") && typeof text === "string") texts.push(text);
      }
  }
  return texts.join("\n");
}
