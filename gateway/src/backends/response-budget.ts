/** The default `MAX_BUFFERED_BYTES`: room for eight answers at the largest default `max_response_bytes`. */
export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024;

/**
 * Bytes of upstream answers buffered whole, all backends of the process together. One per process, shared
 * by every backend: a per-answer limit alone lets a thousand concurrent answers each hold their maximum.
 * Callers reserve before they hold bytes and release exactly what they reserved when the call ends.
 */
export class ResponseBudget {
  private used = 0;

  constructor(readonly limitBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  /** Reserves `bytes` if they fit; false (nothing reserved) if they do not. */
  tryReserve(bytes: number): boolean {
    if (this.used + bytes > this.limitBytes) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}
