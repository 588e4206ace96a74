// The HTTP source: the express app Auth0 posts log batches to. It authenticates, reads the
// (possibly gzip-encoded) body within the size limit, decodes it and hands the records to the
// pipeline, whose outcome becomes the answer. It serves ingestion only; health is elsewhere.
import express, { type NextFunction, type Request, type Response } from "express";
import { decodeBody } from "../auth0/decode.js";
import { BodyParseError } from "../auth0/record.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { Admission, Pipeline, PipelineOutcome } from "../pipeline/pipeline.js";
import type { TokenVerifier } from "./auth.js";

/** One Auth0 log stream (tenant): its own path and token(s). */
export interface IngestStream {
  name: string;
  path: string;
  verifyToken: TokenVerifier;
}

export interface IngestAppOptions {
  streams: readonly IngestStream[];
  maxBodyBytes: number;
  pipeline: Pick<Pipeline, "process" | "rejectBody" | "admit" | "throttled" | "refusingFast" | "unavailable">;
  logger: Logger;
  metrics: Metrics;
}

const ESTIMATED_EVENT_BYTES = 1024;

function sendError(res: Response, status: number, error: string, message: string, extra: Record<string, unknown> = {}): void {
  res.status(status).json({ error, message, ...extra });
}

export function createIngestApp(options: IngestAppOptions): express.Express {
  const { logger, metrics } = options;
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);

  app.use((_req, res, next) => {
    res.on("finish", () => metrics.ingestRequests.inc({ status: String(res.statusCode) }));
    next();
  });

  // Each stream checks its own tokens only: one tenant's token does not open another's path.
  const authenticate = (stream: IngestStream) => (req: Request, res: Response, next: NextFunction) => {
    if (stream.verifyToken(req.get("authorization"))) return next();
    // Nothing of the request is read or kept; the connection is closed so an unread body cannot linger.
    res.set("connection", "close");
    logger.warn("ingest request refused: missing or wrong authorization token", { remote: req.ip });
    sendError(res, 401, "unauthorized", "missing or invalid Authorization header");
  };

  // Any content type: Auth0 lets users pick one, and the format is detected from the body.
  // body-parser applies the limit to the inflated bytes, which also stops gzip bombs.
  const readBody = express.raw({ type: () => true, limit: options.maxBodyBytes, inflate: true });

  const answer = (res: Response, outcome: PipelineOutcome) => {
    if ("retryAfterSeconds" in outcome) res.set("retry-after", String(outcome.retryAfterSeconds));
    res.status(outcome.status).json(outcome.body);
  };

  // Back-pressure: reserve room for the request's events before reading its body (estimated from
  // Content-Length: Auth0 events are 1-2 KB, so 1 KB per event errs on the safe side).
  const admit = (req: Request, res: Response, next: NextFunction) => {
    if (options.pipeline.refusingFast) {
      res.set("connection", "close");
      return answer(res, options.pipeline.unavailable());
    }
    const length = Number(req.get("content-length"));
    const estimate = Number.isFinite(length) && length > 0 ? Math.ceil(length / ESTIMATED_EVENT_BYTES) : 1;
    const admission = options.pipeline.admit(estimate);
    if (!admission) {
      res.set("connection", "close");
      return answer(res, options.pipeline.throttled());
    }
    res.on("close", () => admission.release());
    res.locals.admission = admission;
    next();
  };

  // Decoding and mapping run before the first await, in a plain function: neither the body's text
  // nor its parsed records stay reachable from this request while its events are delivered.
  const ingest = (req: Request, res: Response, stream: IngestStream): Promise<PipelineOutcome> => {
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    // Invalid UTF-8 becomes U+FFFD instead of blocking the stream: Auth0 would redeliver forever.
    const text = raw.toString("utf8");
    try {
      return options.pipeline.process(decodeBody(text), res.locals.admission as Admission, stream.name);
    } catch (error) {
      if (!(error instanceof BodyParseError)) throw error;
      logger.warn("ingest body is not JSON", { error: error.message, bytes: raw.length });
      return options.pipeline.rejectBody(text, error.message, error.location as Record<string, unknown>);
    }
  };

  const handle = (stream: IngestStream) => async (req: Request, res: Response) => {
    answer(res, await ingest(req, res, stream));
  };

  for (const stream of options.streams) {
    app.post(stream.path, authenticate(stream), admit, readBody, handle(stream));
    app.all(stream.path, (_req, res) => {
      res.set("allow", "POST");
      sendError(res, 405, "method_not_allowed", `use POST on ${stream.path}`);
    });
  }
  const paths = options.streams.map((s) => s.path).join(", ");

  app.use((req, res) => sendError(res, 404, "not_found", `nothing is served at ${req.path}; Auth0 posts to ${paths}`));

  // body-parser and handler errors: size limit, bad gzip, aborted uploads, bugs.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const err = error as { status?: number; type?: string; message?: string };
    if (err.type === "entity.too.large") {
      return sendError(res, 413, "body_too_large", `request body exceeds MAX_BODY_BYTES (${options.maxBodyBytes} bytes)`);
    }
    if (err.type === "encoding.unsupported") {
      return sendError(res, 415, "unsupported_encoding", "Content-Encoding must be gzip, deflate, br or identity");
    }
    if (typeof err.status === "number" && err.status >= 400 && err.status < 500) {
      return sendError(res, err.status, "bad_request", err.type === "request.aborted" ? "request aborted" : "request body could not be read (bad gzip data?)");
    }
    logger.error("ingest request failed unexpectedly", { error: err.message ?? String(error) });
    if (!res.headersSent) sendError(res, 500, "internal_error", "the bridge failed to handle this request; it will be retried by Auth0");
  });

  return app;
}
