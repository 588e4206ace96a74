// Structured logs (winston): JSON lines on stdout by default. Every line passes through a
// redaction step that replaces the configured secret values wherever they appear, so a token
// leaking into an error message or a header dump never reaches the log.
import winston from "winston";
import type { Writable } from "node:stream";

export type Logger = winston.Logger;

export interface LoggerOptions {
  level: string;
  format: "json" | "pretty";
  /** Secret values (tokens, keys) to mask in every line. */
  secrets: readonly string[];
  /** Where lines go; stdout unless a test passes its own stream. */
  stream?: Writable;
  /** Static fields on every line (service name, version). */
  defaultMeta?: Record<string, unknown>;
}

const MESSAGE = Symbol.for("message");
export const REDACTED = "[REDACTED]";

export function redactor(secrets: readonly string[]): (text: string) => string {
  // Longest first, so a secret that contains another is masked whole.
  const values = [...new Set(secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  if (values.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const value of values) if (out.includes(value)) out = out.split(value).join(REDACTED);
    return out;
  };
}

export function createLogger(options: LoggerOptions): Logger {
  const redact = redactor(options.secrets);
  const redactLine = winston.format((info) => {
    const line = (info as Record<symbol, unknown>)[MESSAGE];
    if (typeof line === "string") (info as Record<symbol, unknown>)[MESSAGE] = redact(line);
    return info;
  });
  // JSON lines carry the text as `msg` (the field log pipelines and our docs key on).
  const msgField = winston.format((info) => {
    const record = info as Record<string, unknown>;
    record.msg = record.message;
    delete record.message;
    return info;
  });
  const render =
    options.format === "pretty"
      ? winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.colorize(), winston.format.simple())
      : winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), msgField(), winston.format.json());
  return winston.createLogger({
    level: options.level,
    defaultMeta: options.defaultMeta,
    format: winston.format.combine(render, redactLine()),
    transports: [new winston.transports.Stream({ stream: options.stream ?? process.stdout })],
  });
}

/** Resolves once every buffered line has been handed to the stream (used on shutdown). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve();
      }
    };
    logger.on("finish", finish);
    logger.end();
    // A stream that never emits finish (stdout in some environments) must not block exit.
    setTimeout(finish, 1000).unref();
  });
}
