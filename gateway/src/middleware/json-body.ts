import type { IncomingMessage } from "node:http";
import type { Readable, Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import type { NextFunction, Request, Response } from "express";
import {
  ClientClosedError,
  type GatewayError,
  InvalidRequestError,
  PayloadTooLargeError,
  RequestTimeoutError,
  UnsupportedEncodingError,
} from "../errors";
import { jsonTextExceedsDepth, MAX_JSON_DEPTH } from "../utils/json-depth";

export interface JsonBodyOptions {
  /** The largest body accepted, counted after decompression (MAX_BODY_BYTES). */
  readonly maxBytes: number;
  /** The whole body must have arrived this many seconds after its headers (BODY_TIMEOUT). */
  readonly timeoutSeconds: number;
}

const DECODERS: Readonly<Record<string, () => Transform>> = {
  gzip: createGunzip,
  "x-gzip": createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
};

const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i;

/**
 * Reads a JSON request body into `req.body`, and turns every way a body can be wrong into the client's
 * error, never a 500: too slow (408), too large (413), an encoding or charset we do not decode (415), bytes
 * that are not what `Content-Encoding` says, not JSON, or nested deeper than MAX_JSON_DEPTH (400). The depth
 * check comes before anything else touches the body: serialising a 5000-deep body for the upstream would
 * overflow the stack, and that must not look like a backend failure.
 */
export function jsonBody(options: JsonBodyOptions) {
  return (req: Request, res: Response, next: NextFunction): void => {
    readJsonBody(req, options).then(
      (body) => {
        req.body = body;
        next();
      },
      (error: unknown) => {
        // The rest of an unread body would otherwise be drained to reuse the connection: close it instead.
        if (!req.complete) res.setHeader("connection", "close");
        next(error);
      },
    );
  };
}

async function readJsonBody(req: IncomingMessage, options: JsonBodyOptions): Promise<unknown> {
  const charset = CHARSET.exec(req.headers["content-type"] ?? "")?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
    throw new UnsupportedEncodingError(`The request body must be UTF-8 JSON, not charset '${charset.slice(0, 40)}'.`);
  }
  const encoding = (req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
  let decoder: Transform | undefined;
  if (encoding !== "identity" && encoding !== "") {
    const make = DECODERS[encoding];
    if (make === undefined)
      throw new UnsupportedEncodingError(
        `Content-Encoding '${encoding.slice(0, 40)}' is not supported: send gzip, deflate, br or none.`,
      );
    decoder = make();
  }
  const declared = Number(req.headers["content-length"]);
  if (decoder === undefined && declared > options.maxBytes) throw new PayloadTooLargeError(options.maxBytes);
  const bytes = await collect(req, decoder, encoding, options);
  if (bytes.length === 0) return {};
  const text = bytes.toString("utf8");
  const json = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let body: unknown;
  try {
    body = JSON.parse(json);
  } catch (error) {
    throw new InvalidRequestError(
      `The request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
      null,
      "invalid_json",
    );
  }
  if (jsonTextExceedsDepth(json, MAX_JSON_DEPTH)) {
    throw new InvalidRequestError(
      `The request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels.`,
      null,
      "nesting_too_deep",
    );
  }
  return body;
}

/** The body's bytes, decoded; rejects as soon as it is too large, too slow, undecodable or abandoned. */
function collect(
  req: IncomingMessage,
  decoder: Transform | undefined,
  encoding: string,
  options: JsonBodyOptions,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const source: Readable = decoder === undefined ? req : req.pipe(decoder);
    const finish = (error?: GatewayError): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // Every listener goes: one left on `req` would keep this closure, and the body's chunks, alive for as
      // long as the request (a stream's, for minutes).
      source.off("data", onData);
      source.off("end", onEnd);
      req.off("close", onClose);
      req.off("error", onError);
      if (error === undefined) {
        resolve(Buffer.concat(chunks, size));
        return;
      }
      if (decoder !== undefined) {
        req.unpipe(decoder);
        decoder.destroy();
      }
      req.pause();
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > options.maxBytes) finish(new PayloadTooLargeError(options.maxBytes));
      else chunks.push(chunk);
    };
    const onClose = (): void => {
      if (!req.complete) finish(new ClientClosedError());
    };
    const timer = setTimeout(
      () => finish(new RequestTimeoutError(options.timeoutSeconds)),
      options.timeoutSeconds * 1000,
    );
    const onEnd = (): void => finish();
    const onError = (): void => finish(new ClientClosedError());
    source.on("data", onData);
    source.once("end", onEnd);
    req.on("close", onClose);
    req.on("error", onError);
    if (decoder !== undefined) {
      decoder.on("error", () =>
        finish(new InvalidRequestError(`The request body is not valid ${encoding} data.`, null, "invalid_body")),
      );
    }
  });
}
