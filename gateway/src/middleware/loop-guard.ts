import type { NextFunction, Request, Response } from "express";
import { InvalidRequestError, LoopDetectedError } from "../errors";
import { contextOf } from "./request-context";

/** The header chained gateways count hops in: the http backend sends the count it received plus one. */
export const HOPS_HEADER = "x-gateway-hops";

/**
 * Refuses (508) a request that has already passed through `maxHops` gateways, so two gateways that name
 * each other as backends stop after a few hops instead of looping until sockets run out. A client sends no
 * header (0 hops); anything but a whole number is refused, since only gateways set it.
 */
export function loopGuard(maxHops: number) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const text = req.get(HOPS_HEADER);
    if (text === undefined) return next();
    if (!/^\d{1,6}$/.test(text.trim()))
      return next(new InvalidRequestError(`${HOPS_HEADER} must be a whole number`, null, "invalid_header"));
    const hops = Number(text.trim());
    if (hops >= maxHops) {
      return next(
        new LoopDetectedError(
          `The request has already passed through ${hops} gateways (${HOPS_HEADER}), the most allowed is ${maxHops} (MAX_HOPS): gateways probably name each other as backends.`,
        ),
      );
    }
    contextOf(res).hops = hops;
    next();
  };
}
