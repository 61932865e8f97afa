import type { NextFunction, Request, Response } from "express";
import { MethodNotAllowedError } from "../errors";

/** Mounted with `.all()` after a route's real methods: a known path with the wrong verb is 405, not 404. */
export function methodNotAllowed(...allowed: string[]) {
  return (req: Request, _res: Response, next: NextFunction): void =>
    next(new MethodNotAllowedError(req.method, req.path, allowed));
}
