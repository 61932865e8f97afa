import type { NextFunction, Request, Response } from "express";
import { contextOf } from "./request-context";

/** One JSON line per request once it is over, whether it finished or the client left (logged as 499). */
export function accessLog() {
  return (req: Request, res: Response, next: NextFunction): void => {
    res.on("close", () => {
      const context = contextOf(res);
      context.logger.info("request", {
        method: req.method,
        path: req.path,
        status: res.writableFinished ? res.statusCode : 499,
        backend: context.backend ?? null,
        durationMs: Math.round((performance.now() - context.startedAt) * 100) / 100,
      });
    });
    next();
  };
}
