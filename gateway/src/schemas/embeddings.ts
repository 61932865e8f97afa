/** The parts of an OpenAI embeddings request the gateway reads. Every other field passes through untouched. */
export interface EmbeddingsRequest {
  readonly model?: string;
  /** A string, an array of strings, an array of token ids, or an array of such arrays. */
  readonly input: string | readonly string[] | readonly number[] | readonly (readonly number[])[];
  readonly encoding_format?: "float" | "base64";
  readonly dimensions?: number;
  readonly [extra: string]: unknown;
}

export interface EmbeddingsUsage {
  readonly prompt_tokens: number;
  readonly total_tokens: number;
}

/** One vector: floats, or with `encoding_format: base64` their little-endian float32 bytes in base64. */
export interface Embedding {
  readonly object: "embedding";
  readonly index: number;
  readonly embedding: readonly number[] | string;
}

/** OpenAI's answer (`object: "list"`), plus the gateway's `backend`; an upstream's extra fields pass through. */
export interface EmbeddingsResponse {
  readonly object: "list";
  readonly data: readonly Embedding[];
  readonly model: string;
  /** Name of the configured backend that answered: the gateway's one addition to OpenAI's shape. */
  readonly backend: string;
  readonly usage: EmbeddingsUsage;
  readonly [extra: string]: unknown;
}
