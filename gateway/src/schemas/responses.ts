/** The parts of a Responses API request the gateway reads. Every other field passes through untouched. */
export interface ResponsesRequest {
  readonly model?: string;
  /** A string, or an array of input items (messages with string or part content, tool outputs, ...). */
  readonly input?: unknown;
  readonly stream?: boolean;
  /** The upstream's own conversation state: forwarded unchanged, to the backend the model routes to. */
  readonly previous_response_id?: string | null;
  readonly [extra: string]: unknown;
}

/**
 * A Response object as the upstream made it (its id is the upstream's: `previous_response_id` refers to it),
 * with `model` the one the client asked for and the gateway's `backend` added.
 */
export interface ResponseObject {
  readonly model: string;
  readonly backend: string;
  readonly [field: string]: unknown;
}

/** The Responses API's token counts. */
export interface ResponseUsage {
  readonly input_tokens: number;
  readonly output_tokens: number;
  readonly total_tokens: number;
}

/** One streamed event (`response.created`, `response.output_text.delta`, ..., `error`): a JSON object with a `type`. */
export interface ResponseEvent {
  readonly type: string;
  readonly sequence_number?: number;
  readonly [field: string]: unknown;
}
