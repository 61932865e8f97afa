/** The parts of an OpenAI chat request the gateway reads. Every other field passes through untouched. */
export interface ChatMessage {
  readonly role: string;
  readonly content?: MessageContent | null;
  readonly [extra: string]: unknown;
}

export type MessageContent = string | readonly ContentPart[];

export interface ContentPart {
  readonly type: string;
  readonly text?: string;
  readonly [extra: string]: unknown;
}

/** The most choices (`n`) one request may ask for: OpenAI's own bound. */
export const MAX_CHOICES = 128;

export interface ChatCompletionRequest {
  readonly model?: string;
  readonly messages: readonly ChatMessage[];
  readonly stream?: boolean;
  /** How many choices to generate (1 to MAX_CHOICES), default 1. */
  readonly n?: number;
  readonly [extra: string]: unknown;
}

export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
}

/** The assistant message as a backend produced it; extra fields (tool_calls, refusal) pass through. */
export interface AssistantMessage {
  readonly role: "assistant";
  readonly content: string | null;
  readonly [extra: string]: unknown;
}

export interface ChatCompletion {
  readonly id: string;
  readonly object: "chat.completion";
  readonly created: number;
  readonly model: string;
  /** Name of the configured backend that answered: the gateway's one addition to OpenAI's shape. */
  readonly backend: string;
  /** One per `n` (default 1), index 0 first. */
  readonly choices: readonly {
    readonly index: number;
    readonly message: AssistantMessage;
    readonly finish_reason: string;
    readonly logprobs: null;
  }[];
  readonly usage: Usage;
}

/** One `chat.completion.chunk` of a streamed answer; every chunk of a stream has the same id and created. */
export interface ChatCompletionChunk {
  readonly id: string;
  readonly object: "chat.completion.chunk";
  readonly created: number;
  readonly model: string;
  readonly backend: string;
  readonly choices: readonly {
    readonly index: number;
    readonly delta: Readonly<Record<string, unknown>>;
    readonly finish_reason: string | null;
    readonly logprobs: null;
  }[];
  /** Present only when the client asked for `stream_options.include_usage`: null until the last chunk. */
  readonly usage?: Usage | null;
}
