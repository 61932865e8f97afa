/** Whether the process should still be sent traffic: `/ready` answers 503 once shutdown has begun. */
export class Lifecycle {
  private draining = false;

  get isReady(): boolean {
    return !this.draining;
  }

  beginShutdown(): void {
    this.draining = true;
  }
}
