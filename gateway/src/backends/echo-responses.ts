import { randomUUID } from "node:crypto";
import type { ResponseEvent } from "../schemas/responses";
import { countTokens } from "../utils/tokens";
import type { ResponseResult } from "./backend";

/**
 * The smallest valid Responses API answer, for the echo backend: one assistant message with one
 * `output_text`. Streamed, it is the event sequence OpenAI sends (and the official SDK's `responses.stream()`
 * checks): created, in_progress, the item and its part opened, a delta per word, then all of it closed
 * and `response.completed` with the whole Response.
 */
export class EchoResponse {
  private readonly id = `resp_${randomUUID().replaceAll("-", "")}`;
  private readonly itemId = `msg_${randomUUID().replaceAll("-", "")}`;
  private readonly createdAt = Math.floor(Date.now() / 1000);

  constructor(
    private readonly model: string,
    private readonly input: string,
    private readonly text: string,
    private readonly previousResponseId: string | null,
  ) {}

  /** The whole Response, completed (or, `inProgress`, as it stands before any output). */
  response(inProgress = false): ResponseResult {
    const input = countTokens(this.input);
    const output = countTokens(this.text);
    return {
      id: this.id,
      object: "response",
      created_at: this.createdAt,
      status: inProgress ? "in_progress" : "completed",
      error: null,
      incomplete_details: null,
      model: this.model,
      output: inProgress ? [] : [this.item(true)],
      previous_response_id: this.previousResponseId,
      usage: inProgress
        ? null
        : {
            input_tokens: input,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens: output,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: input + output,
          },
    };
  }

  /** The stream of the same Response, `sequence_number` from 0. */
  events(): ResponseEvent[] {
    const at = { item_id: this.itemId, output_index: 0, content_index: 0 };
    const part = { type: "output_text", text: this.text, annotations: [] };
    const words = this.text.split(" ").map((word, index) => (index === 0 ? word : ` ${word}`));
    const events: ResponseEvent[] = [
      { type: "response.created", response: this.response(true) },
      { type: "response.in_progress", response: this.response(true) },
      { type: "response.output_item.added", output_index: 0, item: this.item(false) },
      { type: "response.content_part.added", ...at, part: { ...part, text: "" } },
      ...words.map((delta) => ({ type: "response.output_text.delta", ...at, delta, logprobs: [] })),
      { type: "response.output_text.done", ...at, text: this.text, logprobs: [] },
      { type: "response.content_part.done", ...at, part },
      { type: "response.output_item.done", output_index: 0, item: this.item(true) },
      { type: "response.completed", response: this.response() },
    ];
    return events.map((event, index) => ({ ...event, sequence_number: index }));
  }

  private item(done: boolean): Record<string, unknown> {
    return {
      id: this.itemId,
      type: "message",
      status: done ? "completed" : "in_progress",
      role: "assistant",
      content: done ? [{ type: "output_text", text: this.text, annotations: [] }] : [],
    };
  }
}
