import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What a test opened (upstreams, pools, backends), closed by `closeOpened` after it, newest first. */
const opened: { close(): Promise<unknown> }[] = [];

export function closeAfterTest<T extends { close(): Promise<unknown> }>(thing: T): T {
  opened.push(thing);
  return thing;
}

/** For `afterEach`: closes everything the test opened, whatever its outcome. */
export async function closeOpened(): Promise<void> {
  for (const thing of opened.splice(0).reverse()) await thing.close();
}

/** What `promise` rejected with (undefined when it resolved). */
export function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** A real upstream on loopback whose every answer `handle` writes; closed after the test. */
export async function upstream(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.once("end", () => handle(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return closeAfterTest({
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}
