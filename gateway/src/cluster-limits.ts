import type { Worker } from "node:cluster";
import type { Logger } from "winston";
import { Admission, AdmissionError, type Ticket } from "./access/admission";
import type { AccessConfig } from "./access/config";
import {
  type Client,
  isSharedReason,
  type SharedBooks,
  type SharedReason,
  type Verdict,
} from "./access/shared-admission";

/**
 * WORKERS > 1 without a shared store: each client's configured limits are counted in the primary, once for
 * every worker (the primary holds an Admission of its own, with the same config). A worker asks it to `take`
 * a lease per request and tells it when the request is over (`end`, with the tokens it used). Messages are
 * batched per event-loop turn each way: under load one message carries the requests of a turn, since an IPC
 * message per request cost as much CPU as the request (0.67x the req/s at WORKERS=2 with limits, unbatched).
 * The process's own bounds (max_concurrent_requests, a client's share of it) stay in each worker.
 */

/** Worker to primary: the leases to take and to end, of one event-loop turn. */
const ASK = "gateway:limits";
const VERDICT = "gateway:limits-verdict";

/**
 * A worker waits this long for the primary's answer, then admits the request (and logs it, at most once a
 * minute). The primary answers from memory in microseconds; only a primary that is stuck takes this long,
 * and a stuck primary must not stop every worker from serving.
 */
const TAKE_TIMEOUT_MS = 1000;

interface TakeItem {
  readonly id: number;
  readonly key?: string;
  readonly address: string;
  readonly reserve?: number;
}

interface AskMessage {
  readonly type: typeof ASK;
  readonly takes: readonly TakeItem[];
  /** Pairs: lease, tokens, lease, tokens, ... */
  readonly ends: readonly number[];
}

interface VerdictItem {
  readonly id: number;
  readonly lease?: number;
  readonly refused?: SharedReason;
  readonly retryAfterSeconds?: number;
}

interface VerdictMessage {
  readonly type: typeof VERDICT;
  readonly items: readonly VerdictItem[];
}

/** Whether an IPC message is of `type` (the tag every gateway message between primary and workers carries). */
export function isMessage<T extends { type: string }>(message: unknown, type: T["type"]): message is T {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === type;
}

/** A message's items, or none when another version of the gateway sent something else. */
function itemsOf<T>(items: readonly T[]): readonly T[] {
  const checked: unknown = items;
  return Array.isArray(checked) ? items : [];
}

/** In a worker: the primary's books, over IPC. */
export function primaryBooks(logger: Logger): SharedBooks {
  const pending = new Map<number, (verdict: Verdict) => void>();
  let takes: TakeItem[] = [];
  let ends: number[] = [];
  let scheduled = false;
  let nextId = 0;
  let warnedAt = -Infinity;
  process.on("message", (message: unknown) => {
    if (!isMessage<VerdictMessage>(message, VERDICT)) return;
    for (const item of itemsOf(message.items)) {
      const settle = pending.get(item.id);
      pending.delete(item.id);
      if (settle === undefined) continue;
      if (item.refused !== undefined) settle({ refused: item.refused, retryAfterSeconds: item.retryAfterSeconds ?? 1 });
      else settle({ lease: item.lease ?? -1 });
    }
  });
  const expire = (ids: readonly number[]): void => {
    let late = false;
    for (const id of ids) {
      const settle = pending.get(id);
      if (settle === undefined) continue;
      pending.delete(id);
      late = true;
      // Lease -1: nothing to end in the primary's books.
      settle({ lease: -1 });
    }
    if (late && performance.now() - warnedAt > 60_000) {
      warnedAt = performance.now();
      logger.warn("the primary did not answer a limits check in time: request admitted", {
        timeoutMs: TAKE_TIMEOUT_MS,
      });
    }
  };
  const flush = (): void => {
    scheduled = false;
    const batch = takes;
    const ended = ends;
    takes = [];
    ends = [];
    const ids = batch.map((item) => item.id);
    // No primary to ask (it is gone, or this is not a worker): decided as a late answer would be.
    if (process.send === undefined || !process.connected) {
      expire(ids);
      return;
    }
    if (ids.length > 0) setTimeout(() => expire(ids), TAKE_TIMEOUT_MS).unref();
    process.send({ type: ASK, takes: batch, ends: ended } satisfies AskMessage);
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };
  return {
    take(client: Client): Promise<Verdict> {
      return new Promise((resolve) => {
        const id = nextId++;
        pending.set(id, resolve);
        takes.push({
          id,
          address: client.address,
          ...(client.key === undefined ? {} : { key: client.key }),
          ...(client.reserve === undefined ? {} : { reserve: client.reserve }),
        });
        schedule();
      });
    },
    end(lease: number, tokens: number): void {
      if (lease < 0) return;
      ends.push(lease, tokens);
      schedule();
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

  /** A reloaded config's limits; unchanged keys keep their books (Admission.reconfigure). */
  reconfigure(access: AccessConfig): void {
    this.admission.reconfigure({ ...access, maxConcurrentRequests: Number.MAX_SAFE_INTEGER });
  }

  /** Answers `worker`'s limits messages; true when `message` was one. */
  handle(worker: Worker, message: unknown): boolean {
    if (!isMessage<AskMessage>(message, ASK)) return false;
    // Ends first: a slot freed in this turn is free for the takes of the same turn.
    const ends = itemsOf(message.ends);
    for (let i = 0; i + 1 < ends.length; i += 2) this.end(worker.id, Number(ends[i]), Number(ends[i + 1]));
    const items = itemsOf(message.takes);
    if (items.length === 0) return true;
    const verdicts = items.map((item): VerdictItem => ({
      id: item.id,
      ...this.take(worker.id, {
        address: String(item.address),
        ...(typeof item.key === "string" ? { key: item.key } : {}),
        ...(typeof item.reserve === "number" ? { reserve: item.reserve } : {}),
      }),
    }));
    if (worker.isConnected()) worker.send({ type: VERDICT, items: verdicts } satisfies VerdictMessage);
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
      if (error instanceof AdmissionError && isSharedReason(error.reason))
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
