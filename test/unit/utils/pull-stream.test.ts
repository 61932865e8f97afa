import { PullQueue } from "../../../gateway/src/utils/pull-stream";

/** Everything `queue` has now, in the order `take()` hands it over. */
function drain<T>(queue: PullQueue<T>): T[] {
  const taken: T[] = [];
  for (let item = queue.take(); item !== undefined; item = queue.take()) taken.push(item);
  return taken;
}

describe("PullQueue", () => {
  it("hands items over in the order pushed, however pushes and takes interleave", () => {
    const queue = new PullQueue<number>();
    const taken: number[] = [];
    let next = 0;
    // A fixed pattern of pushes and takes: a lone item taken at once, then runs of several waiting.
    for (const step of "ptpptpppttpttptppptttt") {
      if (step === "p") queue.push(next++);
      else {
        const item = queue.take();
        if (item !== undefined) taken.push(item);
      }
    }
    taken.push(...drain(queue));
    expect(taken).toEqual(Array.from({ length: next }, (_, index) => index));
  });

  it("asks the producer to wait once highWater items wait, and says when they were all taken", async () => {
    const queue = new PullQueue<string>(undefined, 3);
    expect(queue.push("a")).toBe(true);
    expect(queue.push("b")).toBe(true);
    expect(queue.push("c")).toBe(false);
    let taken = false;
    const whenTaken = queue.whenTaken().then(() => {
      taken = true;
    });
    expect(queue.take()).toBe("a");
    await Promise.resolve();
    expect(taken).toBe(false);
    expect(drain(queue)).toEqual(["b", "c"]);
    await whenTaken;
    expect(taken).toBe(true);
  });

  it("wakes its listener at each arrival and ends once the last item is taken", () => {
    const queue = new PullQueue<string>();
    let arrivals = 0;
    queue.listen({ arrived: () => arrivals++ });
    queue.push("a");
    queue.push("b");
    queue.end();
    expect(arrivals).toBe(3);
    expect(queue.ended).toBe(false);
    expect(drain(queue)).toEqual(["a", "b"]);
    expect(queue.ended).toBe(true);
  });

  it("hands over the items pushed before a failure, then throws it", () => {
    const queue = new PullQueue<string>();
    queue.push("a");
    queue.push("b");
    queue.fail(new Error("upstream gone"));
    expect(queue.take()).toBe("a");
    expect(queue.take()).toBe("b");
    expect(() => queue.take()).toThrow("upstream gone");
  });
});
