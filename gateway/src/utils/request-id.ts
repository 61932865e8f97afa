import { randomUUID } from "node:crypto";

/** Bounded and plain, so a client-chosen id is safe to log, forward and echo in a header. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:\-]{1,128}$/;

export function requestIdFrom(incoming: string | undefined): string {
  return incoming !== undefined && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}
