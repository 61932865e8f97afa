import type { Usage } from "./chat";

/** The parts of a legacy `/v1/completions` request the gateway reads. Every other field passes through untouched. */
export interface CompletionsRequest {
  readonly model?: string;
  /** A string, an array of strings, an array of token ids, or an array of such arrays. */
  readonly prompt: string | readonly string[] | readonly number[] | readonly (readonly number[])[];
  readonly stream?: boolean;
  readonly n?: number;
  readonly [extra: string]: unknown;
}

export interface TextChoice {
  readonly text: string;
  readonly index: number;
  readonly logprobs: unknown;
  readonly finish_reason: string;
}

/** OpenAI's `text_completion`, with the gateway's `backend` added. */
export interface TextCompletion {
  readonly id: string;
  readonly object: "text_completion";
  readonly created: number;
  readonly model: string;
  /** Name of the configured backend that answered: the gateway's one addition to OpenAI's shape. */
  readonly backend: string;
  readonly choices: readonly TextChoice[];
  readonly usage: Usage;
}

/** One streamed `text_completion` chunk; every chunk of a stream has the same id and created. */
export interface TextCompletionChunk {
  readonly id: string;
  readonly object: "text_completion";
  readonly created: number;
  readonly model: string;
  readonly backend: string;
  readonly choices: readonly {
    readonly text: string;
    readonly index: number;
    readonly logprobs: unknown;
    readonly finish_reason: string | null;
  }[];
  readonly usage?: Usage | null;
}
