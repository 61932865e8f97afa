import type { Worker } from "node:cluster";
import type { Logger } from "winston";
import { Admission, AdmissionError, type Ticket } from "./access/admission";
import type { AccessConfig } from "./access/config";
import type { Client, SharedBooks, SharedReason, Verdict } from "./access/shared-admission";

/**
 * WORKERS > 1 without a shared store: each client's configured limits are counted in the primary, once for
 * every worker (the primary holds an Admission of its own, with the same config). A worker asks it with one
 * message per request (`take`), and tells it when the request is over (`end`, with the tokens it used). The
 * process's own bounds (max_concurrent_requests, a client's share of it) stay in each worker.
 */

const TAKE = "gateway:limits-take";
const VERDICT = "gateway:limits-verdict";
const END = "gateway:limits-end";

/**
 * A worker waits this long for the primary's answer, then admits the request (and logs it, at most once a
 * minute). The primary answers from memory in microseconds; only a primary that is stuck takes this long,
 * and a stuck primary must not stop every worker from serving.
 */
const TAKE_TIMEOUT_MS = 1000;

interface TakeMessage {
  readonly type: typeof TAKE;
  readonly id: number;
  readonly key?: string;
  readonly address: string;
  readonly reserve?: number;
}

interface VerdictMessage {
  readonly type: typeof VERDICT;
  readonly id: number;
  readonly lease?: number;
  readonly refused?: SharedReason;
  readonly retryAfterSeconds?: number;
}

interface EndMessage {
  readonly type: typeof END;
  readonly lease: number;
  readonly tokens: number;
}

function isMessage<T extends { type: string }>(message: unknown, type: T["type"]): message is T {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === type;
}

/** In a worker: the primary's books, over IPC. */
export function primaryBooks(logger: Logger): SharedBooks {
  const pending = new Map<number, (verdict: Verdict) => void>();
  let nextId = 0;
  let warnedAt = -Infinity;
  process.on("message", (message: unknown) => {
    if (!isMessage<VerdictMessage>(message, VERDICT)) return;
    const settle = pending.get(message.id);
    pending.delete(message.id);
    if (settle === undefined) return;
    if (message.refused !== undefined)
      settle({ refused: message.refused, retryAfterSeconds: message.retryAfterSeconds ?? 1 });
    else settle({ lease: message.lease ?? -1 });
  });
  return {
    take(client: Client): Promise<Verdict> {
      return new Promise((resolve) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          if (performance.now() - warnedAt > 60_000) {
            warnedAt = performance.now();
            logger.warn("the primary did not answer a limits check in time: request admitted", {
              timeoutMs: TAKE_TIMEOUT_MS,
            });
          }
          // Lease -1: nothing to end in the primary's books.
          resolve({ lease: -1 });
        }, TAKE_TIMEOUT_MS);
        pending.set(id, (verdict) => {
          clearTimeout(timer);
          resolve(verdict);
        });
        const message: TakeMessage = {
          type: TAKE,
          id,
          address: client.address,
          ...(client.key === undefined ? {} : { key: client.key }),
          ...(client.reserve === undefined ? {} : { reserve: client.reserve }),
        };
        process.send?.(message);
      });
    },
    end(lease: number, tokens: number): void {
      if (lease < 0 || !process.connected) return;
      const message: EndMessage = { type: END, lease, tokens };
      process.send?.(message);
    },
  };
}

/**
 * In the primary: the books every worker's requests are counted in. A worker that dies gives its slots back
 * (its requests died with it); what they had used is not known, so nothing more is charged for them.
 */
export class PrimaryLimits {
  private readonly admission: Admission;
  private readonly leases = new Map<number, { readonly worker: number; readonly ticket: Ticket }>();
  private nextLease = 0;

  constructor(access: AccessConfig, now: () => number = Date.now) {
    // The gateway-wide cap and the clients' shares are each worker's own business, not counted here.
    this.admission = new Admission({ ...access, maxConcurrentRequests: Number.MAX_SAFE_INTEGER }, now);
  }

  /** Answers `worker`'s limits messages; true when `message` was one. */
  handle(worker: Worker, message: unknown): boolean {
    if (isMessage<EndMessage>(message, END)) {
      this.end(worker.id, Number(message.lease), Number(message.tokens));
      return true;
    }
    if (!isMessage<TakeMessage>(message, TAKE)) return false;
    const verdict = this.take(worker.id, {
      address: String(message.address),
      ...(typeof message.key === "string" ? { key: message.key } : {}),
      ...(typeof message.reserve === "number" ? { reserve: message.reserve } : {}),
    });
    if (worker.isConnected()) worker.send({ type: VERDICT, id: message.id, ...verdict } satisfies VerdictMessage);
    return true;
  }

  /** One request of `client`, made in worker `worker`: counted and given a lease, or refused. */
  take(worker: number, client: Client): Verdict {
    try {
      const ticket = this.admission.admit(client);
      const lease = this.nextLease++;
      this.leases.set(lease, { worker, ticket });
      return { lease };
    } catch (error) {
      // Only a client's own limits can refuse here (the gateway-wide cap is each worker's).
      if (error instanceof AdmissionError && error.reason !== "gateway_concurrency")
        return { refused: error.reason, retryAfterSeconds: Number(error.error.headers["retry-after"] ?? 1) };
      return { lease: -1 };
    }
  }

  /** The request of `lease` is over: its slot comes back and `tokens` are charged to its client. */
  end(worker: number, lease: number, tokens: number): void {
    const held = this.leases.get(lease);
    if (held === undefined || held.worker !== worker) return;
    this.leases.delete(lease);
    held.ticket.charge(tokens);
    held.ticket.release();
  }

  /** A worker exited: the slots its requests held come back. */
  exited(worker: number): void {
    for (const [lease, held] of this.leases) {
      if (held.worker !== worker) continue;
      this.leases.delete(lease);
      held.ticket.release();
    }
  }
}
