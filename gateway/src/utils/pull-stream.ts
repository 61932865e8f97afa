/**
 * A stream of items read without a promise per item: `take()` hands over what has arrived, `wait()` resolves
 * when more may have. A relay of thousands of streams spends its time between items, and each `for await`
 * layer of async generators costs promises and microtasks per item that outlive young-generation GCs while
 * the stream waits for its next one (three layers cost 8-12 µs per item at 1000 open streams, a callback
 * 1.5 µs: bench/README.md). Reading a PullStream, a consumer takes every item there is in one synchronous
 * loop and awaits once per arrival.
 */
export interface PullStream<T> {
  /**
   * The next item, or undefined when there is none yet (then `wait()`) or the stream is over (then `ended`).
   * Throws what broke the stream, every time it is called after that.
   */
  take(): T | undefined;
  /** Every item was taken and the stream ended well. */
  readonly ended: boolean;
  /** Resolves when `take()` may have something new: an item, the end, or a failure. */
  wait(): Promise<void>;
  /**
   * Calls `listener` (synchronously, from the producer's own call) each time `take()` may have something
   * new, until replaced or cleared. One function for the whole stream: no promise per arrival, which is
   * what a writer relaying thousands of streams wants (api/v1/event-stream.ts).
   */
  listen(listener: PullListener | undefined): void;
  /** The consumer stops early: the producer releases what it holds (an upstream request). Harmless when over. */
  close(): void;
}

/**
 * Who hears that a PullStream may have something new: an object with a method, not a closure (a closure per
 * stream is two more objects, the function and its context, that every item would touch).
 */
export interface PullListener {
  arrived(): void;
}

/**
 * A PullStream fed by its producer: `push`, `end`, `fail`. `push` returns false once `highWater` items wait
 * untaken, and `whenTaken()` then resolves when the consumer has taken them all: the producer's backpressure.
 * Also an AsyncIterable, for consumers that prefer `for await` (tests, adapters).
 */
export class PullQueue<T> implements PullStream<T>, AsyncIterable<T> {
  /**
   * The oldest item waiting, kept in a field: a stream's items mostly come one at a time, each taken before
   * the next arrives, and then the array is never touched (at thousands of open streams, two cache misses
   * fewer per item). Any others wait in `items`, after it.
   */
  private first: T | undefined;
  /** Items `head` to `tail` wait; the slots are reused, never emptied by `length = 0` (that drops the storage). */
  private readonly items: (T | undefined)[] = [];
  private head = 0;
  private tail = 0;
  private over = false;
  private failed = false;
  private failure: unknown;
  private closed = false;
  private waiter: (() => void) | undefined;
  private listener: PullListener | undefined;
  private taken: (() => void) | undefined;

  constructor(
    private readonly onClose: () => void = () => undefined,
    private readonly highWater = 64,
  ) {}

  /** Adds an item; false once `highWater` items wait untaken (the producer should then wait for `whenTaken`). */
  push(item: T): boolean {
    if (this.over || this.failed || this.closed) return false;
    if (this.first === undefined && this.head === this.tail) this.first = item;
    else this.items[this.tail++] = item;
    this.wake();
    return this.waitingCount() < this.highWater;
  }

  end(): void {
    if (this.over || this.failed) return;
    this.over = true;
    this.wake();
  }

  fail(error: unknown): void {
    if (this.over || this.failed) return;
    this.failed = true;
    this.failure = error;
    this.wake();
  }

  /** Whether the producer is done (ended, failed, or the consumer closed): nothing more will be pushed. */
  get settled(): boolean {
    return this.over || this.failed || this.closed;
  }

  take(): T | undefined {
    let item = this.first;
    if (item !== undefined) this.first = undefined;
    else if (this.head < this.tail) {
      item = this.items[this.head];
      this.items[this.head] = undefined;
      this.head++;
    } else {
      if (this.failed) throw this.failure;
      return undefined;
    }
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
      const taken = this.taken;
      this.taken = undefined;
      taken?.();
    }
    return item;
  }

  get ended(): boolean {
    return this.over && this.waitingCount() === 0;
  }

  wait(): Promise<void> {
    if (this.waitingCount() > 0 || this.over || this.failed || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  listen(listener: PullListener | undefined): void {
    this.listener = listener;
  }

  /** Resolves when every item pushed so far has been taken (at once when none waits), or the consumer closed. */
  whenTaken(): Promise<void> {
    if (this.waitingCount() === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.taken = resolve;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.first = undefined;
    this.items.length = 0;
    this.head = 0;
    this.tail = 0;
    const taken = this.taken;
    this.taken = undefined;
    taken?.();
    // The consumer closed it: its listener has nothing to hear, a pending wait() is let go.
    this.listener = undefined;
    this.wake();
    this.onClose();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return iterate(this);
  }

  private waitingCount(): number {
    return (this.first === undefined ? 0 : 1) + this.tail - this.head;
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
    this.listener?.arrived();
  }
}

/** `stream` as an async iterator; leaving the iteration early closes it. */
export async function* iterate<T>(stream: PullStream<T>): AsyncGenerator<T> {
  let over = false;
  try {
    // Each turn takes an item or waits for the producer to report something new.
    for (;;) {
      const item = stream.take();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (stream.ended) {
        over = true;
        return;
      }
      await stream.wait();
    }
  } finally {
    if (!over) stream.close();
  }
}

/**
 * An async iterable as a PullStream, read one item ahead: for producers written as async generators
 * (the echo backend, test doubles). Closing it returns the iterator, which ends the generator.
 */
export function pullFrom<T>(iterable: AsyncIterable<T>): PullStream<T> {
  if (iterable instanceof PullQueue) return iterable as PullQueue<T>;
  const iterator = iterable[Symbol.asyncIterator]();
  const queue = new PullQueue<T>(() => void iterator.return?.().catch(() => undefined), 1);
  const pump = async (): Promise<void> => {
    try {
      // Each turn moves one item, then waits until it was taken: bounded by what the iterator yields.
      for (;;) {
        const next = await iterator.next();
        if (queue.settled) return;
        if (next.done === true) {
          queue.end();
          return;
        }
        queue.push(next.value);
        await queue.whenTaken();
        if (queue.settled) return;
      }
    } catch (error) {
      queue.fail(error);
    }
  };
  void pump();
  return queue;
}
