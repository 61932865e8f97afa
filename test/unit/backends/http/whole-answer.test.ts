import { Pool, errors as undiciErrors } from "undici";
import type { Dispatcher } from "undici";
import { AnswerAllowance, readWhole, utf8Text } from "../../../../gateway/src/backends/http/whole-answer";
import { ResponseBudget } from "../../../../gateway/src/backends/response-budget";
import { ResponseBudgetExhaustedError, UpstreamInvalidResponseError } from "../../../../gateway/src/errors";
import { closeAfterTest, closeOpened, failure, upstream } from "./upstream";

afterEach(closeOpened);

const POST: Dispatcher.DispatchOptions = {
  method: "POST",
  path: "/v1/chat/completions",
  headers: { "content-type": "application/json" },
  body: "{}",
};

describe("AnswerAllowance", () => {
  it("reserves only the growth of an answer in the budget, and releases all of it once", () => {
    const budget = new ResponseBudget(10_000);
    const allowance = new AnswerAllowance(budget, 4096, "remote");
    allowance.need(1000);
    allowance.need(3000);
    expect(budget.usedBytes).toBe(3000);
    // A smaller total than already reserved takes nothing more.
    allowance.need(2000);
    expect(budget.usedBytes).toBe(3000);
    allowance.release();
    allowance.release();
    expect(budget.usedBytes).toBe(0);
  });

  it("refuses an answer past max_response_bytes as the backend's invalid response, reserving nothing for it", () => {
    const budget = new ResponseBudget(1_000_000);
    const allowance = new AnswerAllowance(budget, 4096, "remote");
    expect(() => allowance.need(4097)).toThrow(
      new UpstreamInvalidResponseError("remote", "the answer is larger than 4096 bytes"),
    );
    expect(budget.usedBytes).toBe(0);
  });

  it("refuses an answer the shared budget cannot hold, keeping what it had", () => {
    const budget = new ResponseBudget(5000);
    const other = new AnswerAllowance(budget, 4096, "remote");
    other.need(3000);
    const allowance = new AnswerAllowance(budget, 4096, "remote");
    allowance.need(1000);
    expect(() => allowance.need(2500)).toThrow(ResponseBudgetExhaustedError);
    expect(budget.usedBytes).toBe(4000);
    allowance.release();
    other.release();
    expect(budget.usedBytes).toBe(0);
  });
});

describe("utf8Text", () => {
  it("joins chunks before decoding, so a character split between two survives, and drops a byte-order mark", () => {
    const euro = Buffer.from("€");
    expect(utf8Text([Buffer.from([0xef, 0xbb, 0xbf]), euro.subarray(0, 1), euro.subarray(1), Buffer.from("5")])).toBe(
      "€5",
    );
    expect(utf8Text([])).toBe("");
  });
});

describe("readWhole", () => {
  it("resolves with the status, headers and text, and gives the bytes back", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(418, { "content-type": "text/plain", "x-extra": "1" });
      res.end("\ufeffshort and stout");
    });
    const pool = closeAfterTest(new Pool(server.url));
    const budget = new ResponseBudget(1000);
    const answer = await readWhole(
      pool,
      POST,
      new AbortController().signal,
      new AnswerAllowance(budget, 1024, "remote"),
    );
    expect(answer).toMatchObject({ status: 418, text: "short and stout", headers: { "x-extra": "1" } });
    expect(budget.usedBytes).toBe(0);
  });

  it("does not send a request whose signal aborted before it left the pool", async () => {
    let seen = 0;
    const server = await upstream((_req, res) => {
      seen++;
      res.end("{}");
    });
    const pool = closeAfterTest(new Pool(server.url));
    const budget = new ResponseBudget(1000);
    const stop = new AbortController();
    stop.abort();
    expect(
      await failure(readWhole(pool, POST, stop.signal, new AnswerAllowance(budget, 1024, "remote"))),
    ).toBeInstanceOf(undiciErrors.RequestAbortedError);
    // A later request on the same pool is the first the server sees.
    await readWhole(pool, POST, new AbortController().signal, new AnswerAllowance(budget, 1024, "remote"));
    expect(seen).toBe(1);
    expect(budget.usedBytes).toBe(0);
  });

  it("rejects with the allowance's error on a declared length past it, before any of the body arrives", async () => {
    const server = await upstream((_req, res) => {
      res.writeHead(200, { "content-length": "5000" });
      res.flushHeaders();
    });
    const pool = closeAfterTest(new Pool(server.url));
    const budget = new ResponseBudget(100_000);
    expect(
      await failure(readWhole(pool, POST, new AbortController().signal, new AnswerAllowance(budget, 4096, "remote"))),
    ).toBeInstanceOf(UpstreamInvalidResponseError);
    expect(budget.usedBytes).toBe(0);
  });

  it("rejects with undici's own error when nothing listens", async () => {
    const server = await upstream((_req, res) => res.end());
    const url = server.url;
    await server.close();
    const pool = closeAfterTest(new Pool(url));
    const budget = new ResponseBudget(1000);
    const error = await failure(
      readWhole(pool, POST, new AbortController().signal, new AnswerAllowance(budget, 1024, "remote")),
    );
    expect(error).toMatchObject({ code: "ECONNREFUSED" });
    expect(budget.usedBytes).toBe(0);
  });
});
