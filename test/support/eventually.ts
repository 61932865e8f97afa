export interface PollOptions {
  /** Give up after this long (default 5 s). */
  readonly timeoutMs?: number;
  /** Pause between reads (default 20 ms). */
  readonly intervalMs?: number;
  /** Extra text for the failure message, read only on failure (a container's log tail, say). */
  readonly context?: () => string;
}

/**
 * Reads until `done` holds and returns that value; what other code does in the background (a counter moved
 * when a response closes, a server still starting) is waited for, bounded in tries and in time. A read
 * that throws counts as not yet. On timeout it fails naming `what` and the last value or error it saw.
 */
export async function eventually<T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  options: PollOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  let seen = "nothing";
  for (let attempt = 0; attempt <= timeoutMs / intervalMs; attempt++) {
    try {
      const value = await read();
      if (done(value)) return value;
      seen = JSON.stringify(value)?.slice(0, 2000) ?? String(value);
    } catch (error) {
      seen = `an error: ${String(error)}`;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const context = options.context === undefined ? "" : `\n${options.context()}`;
  throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}; last saw ${seen}${context}`);
}
