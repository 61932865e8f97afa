import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { expressServerClasses } from "../../gateway/src/app";

describe("expressServerClasses", () => {
  it("makes requests and responses born with the app's prototypes, and Express still serves them", async () => {
    const app = express();
    app.get("/hello", (req, res) => {
      res.status(201).json({ path: req.path, query: req.query.q });
    });
    const seen: { req: object | null; res: object | null }[] = [];
    const server = createServer(expressServerClasses(app), (req: IncomingMessage, res: ServerResponse) => {
      // Before Express touches them: what node:http made.
      seen.push({ req: Object.getPrototypeOf(req) as object | null, res: Object.getPrototypeOf(res) as object | null });
      app(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/hello?q=1`);
      expect(response.status).toBe(201);
      expect(await response.json()).toEqual({ path: "/hello", query: "1" });
      expect(seen).toHaveLength(1);
      expect(seen[0]?.req).toBe(app.request);
      expect(seen[0]?.res).toBe(app.response);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
