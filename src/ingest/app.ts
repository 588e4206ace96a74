// The HTTP source: the request handler Auth0 posts log batches to. It authenticates, reads the
// (possibly gzip-encoded) body within the size limit, decodes it and hands the records to the
// pipeline, whose outcome becomes the answer. It serves ingestion only; health is elsewhere.
//
// Routing is express' Router and the body is read by express' body parser, but requests do not go
// through an express application: app.handle re-prototypes every request and response (to add
// req.get, res.json, ...), which makes node's own HTTP code slow for them. For a single-event
// request that cost about as much CPU as everything else the bridge does (BENCHMARKS.md). Answers
// are written with node's own response methods.
import type { IncomingMessage, ServerResponse } from "node:http";
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

export type IngestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The request as the handlers see it: body-parser leaves the bytes it read in `body`. */
type IngestRequest = IncomingMessage & { body?: unknown };

const ESTIMATED_EVENT_BYTES = 1024;

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, error: string, message: string, headers?: Record<string, string>): void {
  sendJson(res, status, { error, message }, headers);
}

function answer(res: ServerResponse, outcome: PipelineOutcome): void {
  sendJson(res, outcome.status, outcome.body, "retryAfterSeconds" in outcome ? { "retry-after": String(outcome.retryAfterSeconds) } : {});
}

/** Answers before the body is read; the connection is closed so an unread body cannot linger. */
function refuse(res: ServerResponse, outcome: PipelineOutcome): void {
  res.setHeader("connection", "close");
  answer(res, outcome);
}

export function createIngestApp(options: IngestAppOptions): IngestHandler {
  const { logger, metrics } = options;
  const router = express.Router();

  // Any content type: Auth0 lets users pick one, and the format is detected from the body.
  // body-parser applies the limit to the inflated bytes, which also stops gzip bombs.
  const readBody = express.raw({ type: () => true, limit: options.maxBodyBytes, inflate: true });

  // Decoding and mapping run before the first await, in a plain function: neither the body's text
  // nor its parsed records stay reachable from this request while its events are delivered.
  const ingest = (req: IngestRequest, stream: IngestStream, admission: Admission): Promise<PipelineOutcome> => {
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    // Invalid UTF-8 becomes U+FFFD instead of blocking the stream: Auth0 would redeliver forever.
    const text = raw.toString("utf8");
    try {
      return options.pipeline.process(decodeBody(text), admission, stream.name);
    } catch (error) {
      if (!(error instanceof BodyParseError)) throw error;
      logger.warn("ingest body is not JSON", { error: error.message, bytes: raw.length });
      return options.pipeline.rejectBody(text, error.message, error.location as Record<string, unknown>);
    }
  };

  // One handler per stream: authentication, admission, body, pipeline, answer.
  const receive = (stream: IngestStream) => (req: IngestRequest, res: ServerResponse, next: NextFunction) => {
    // Each stream checks its own tokens only: one tenant's token does not open another's path.
    if (!stream.verifyToken(req.headers.authorization)) {
      logger.warn("ingest request refused: missing or wrong authorization token", { remote: req.socket.remoteAddress });
      // Nothing of the request is read or kept.
      return sendError(res, 401, "unauthorized", "missing or invalid Authorization header", { connection: "close" });
    }
    if (options.pipeline.refusingFast) return refuse(res, options.pipeline.unavailable());
    // Back-pressure: reserve room for the request's events before reading its body (estimated from
    // Content-Length: Auth0 events are 1-2 KB, so 1 KB per event errs on the safe side).
    const length = Number(req.headers["content-length"]);
    const admission = options.pipeline.admit(Number.isFinite(length) && length > 0 ? Math.ceil(length / ESTIMATED_EVENT_BYTES) : 1);
    if (!admission) return refuse(res, options.pipeline.throttled());
    res.on("close", () => admission.release());
    readBody(req as Request, res as Response, (error?: unknown) => {
      if (error) return next(error);
      // Called back from the body stream, outside the Router's own try/catch: errors go to next().
      let outcome: Promise<PipelineOutcome>;
      try {
        outcome = ingest(req, stream, admission);
      } catch (failure) {
        return next(failure);
      }
      outcome.then((o) => answer(res, o)).catch(next);
    });
  };

  for (const stream of options.streams) {
    router.post(stream.path, receive(stream));
    router.all(stream.path, (_req: IncomingMessage, res: ServerResponse) => {
      sendError(res, 405, "method_not_allowed", `use POST on ${stream.path}`, { allow: "POST" });
    });
  }
  const paths = options.streams.map((s) => s.path).join(", ");

  // What no route answered: an unknown path, or an error from body-parser or a handler (size
  // limit, bad gzip, aborted upload, bug).
  const finish = (req: IncomingMessage, res: ServerResponse, error?: unknown) => {
    if (error === undefined || error === null) {
      const path = (req.url ?? "/").split("?")[0];
      return sendError(res, 404, "not_found", `nothing is served at ${path}; Auth0 posts to ${paths}`);
    }
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
  };

  return (req, res) => {
    res.on("finish", () => metrics.ingestRequests.inc({ status: String(res.statusCode) }));
    // The Router's types speak of express' Request and Response; it only needs node's.
    router(req as Request, res as Response, (error?: unknown) => finish(req, res, error));
  };
}
