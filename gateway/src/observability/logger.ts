import type { Writable } from "node:stream";
import winston from "winston";
import type { LogLevel } from "../config/settings";

/**
 * JSON lines on stdout, one object per event, so any log shipper can index them. Tests pass their own
 * stream to read what was logged.
 */
export function createLogger(options: { level: LogLevel; service: string; stream?: Writable }): winston.Logger {
  const transport = options.stream === undefined ? new winston.transports.Console() : new winston.transports.Stream({ stream: options.stream });
  return winston.createLogger({
    level: options.level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    defaultMeta: { service: options.service },
    transports: [transport],
  });
}
