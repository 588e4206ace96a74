// Example receiver for the CloudEvents the bridge publishes, delivered by an Event Grid event
// subscription (CloudEvents 1.0 schema, webhook endpoint) or by the local emulator (--subscribe).
// A starting point for your own handlers: copy this file, keep the protocol parts, write handlers.
//
// Protocol, as Event Grid speaks it:
// - OPTIONS with WebHook-Request-Origin: the CloudEvents webhook abuse-protection handshake
//   (CloudEvents HTTP Webhook spec, section 4). Event Grid delivers nothing until it is answered.
// - POST in structured (application/cloudevents+json, what Event Grid sends), batched
//   (application/cloudevents-batch+json) or binary (ce-* headers) mode.
// - 2xx tells Event Grid the event is done; any other answer makes it retry (400 and 413 are
//   dead-lettered at once). Delivery is at least once, so handlers must tolerate duplicates.
//
// `createConsumer` returns a node:http request listener; its `handle` method is the same logic
// without node:http, for hosts that hand you the request another way (Azure Functions, see README).
import type { IncomingMessage, ServerResponse } from "node:http";
import { CloudEvent, HTTP } from "cloudevents";

export type EventHandler = (event: CloudEvent<unknown>) => void | Promise<void>;

export interface ConsumerOptions {
  /** Handlers by Auth0 log type code (the `auth0code` attribute: "s", "f", "fp", ...). */
  handlers: Record<string, EventHandler>;
  /** Called for events no handler takes. Without it such events are acknowledged and dropped. */
  fallback?: EventHandler;
  /** Origins the handshake accepts (compared case-insensitively); "*" accepts any.
   * Default ["eventgrid.azure.net"], the origin Event Grid sends. */
  allowedOrigins?: string[];
  /** Requests per minute granted in the handshake (WebHook-Allowed-Rate); default "*" (no limit). */
  allowedRate?: number | "*";
  /** Larger bodies get 413 (default 1 MiB, Event Grid's largest event). */
  maxBodyBytes?: number;
  /** Told about a handler that threw before the request is answered 500 (default: console.error). */
  onHandlerError?: (error: unknown, event: CloudEvent<unknown>) => void;
}

/** A request already read, whatever the host. Header names may be in any case. */
export interface ConsumerRequest {
  method: string;
  headers: Record<string, string | string[] | undefined>;
  body: string | Buffer;
}

export interface ConsumerResponse {
  status: number;
  headers: Record<string, string>;
  /** JSON text, or undefined for an empty body. */
  body?: string;
}

export type Consumer = ((req: IncomingMessage, res: ServerResponse) => void) & {
  handle(request: ConsumerRequest): Promise<ConsumerResponse>;
};

const DEFAULT_ORIGINS = ["eventgrid.azure.net"];
const DEFAULT_MAX_BODY = 1_048_576;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

class InvalidEvent extends Error {}

function json(status: number, value: unknown, headers: Record<string, string> = {}): ConsumerResponse {
  return { status, headers: { "content-type": "application/json; charset=utf-8", ...headers }, body: JSON.stringify(value) };
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * The required attributes, checked on what was sent: cloudevents 10 fills in a missing `id`,
 * `time` and `specversion` itself, and only validates structured and binary events when asked.
 */
function checkRequired(attrs: Record<string, unknown>, where: string): void {
  for (const name of ["id", "source", "type", "specversion"]) {
    const v = attrs[name];
    if (typeof v !== "string" || v === "") throw new InvalidEvent(`${where}: required attribute '${name}' is missing or empty`);
  }
  if (attrs.specversion !== "1.0") throw new InvalidEvent(`${where}: specversion must be "1.0"`);
  const time = attrs.time;
  if (time != null && (typeof time !== "string" || !RFC3339.test(time) || Number.isNaN(Date.parse(time)))) {
    throw new InvalidEvent(`${where}: 'time' must be an RFC 3339 timestamp`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Turns a POST into CloudEvents; throws InvalidEvent (or the SDK's errors) for anything else. */
function toEvents(headers: Record<string, string | string[] | undefined>, raw: Buffer): CloudEvent<unknown>[] {
  const mediaType = (single(headers["content-type"]) ?? "").split(";", 1)[0]!.trim().toLowerCase();
  const clean: Record<string, string | string[] | undefined> = { ...headers };
  let body: string | Buffer;
  if (mediaType === "application/cloudevents-batch+json") {
    body = raw.toString("utf8");
    const parsed: unknown = JSON.parse(body);
    if (!Array.isArray(parsed)) throw new InvalidEvent("a batch must be a JSON array of events");
    parsed.forEach((ev, i) => {
      if (!isObject(ev)) throw new InvalidEvent(`event ${i}: not a JSON object`);
      checkRequired(ev, `event ${i}`);
    });
  } else if (mediaType === "application/cloudevents+json") {
    body = raw.toString("utf8");
    const parsed: unknown = JSON.parse(body);
    if (!isObject(parsed)) throw new InvalidEvent("a structured event must be a JSON object");
    checkRequired(parsed, "event");
    // The SDK looks its parser up by the exact header value: "...;charset=UTF-8" would fail.
    clean["content-type"] = "application/cloudevents+json";
  } else if (headers["ce-id"] !== undefined) {
    checkRequired(
      { id: single(headers["ce-id"]), source: single(headers["ce-source"]), type: single(headers["ce-type"]), specversion: single(headers["ce-specversion"]), time: single(headers["ce-time"]) },
      "event",
    );
    if (mediaType === "application/json" || mediaType.endsWith("+json") || mediaType.startsWith("text/")) {
      body = raw.toString("utf8");
      // Same exact-match lookup: normalise so JSON data is parsed whatever the charset spelling.
      if (mediaType === "application/json") clean["content-type"] = "application/json";
    } else {
      body = raw; // opaque data stays bytes (the SDK exposes it as data_base64 too)
    }
  } else {
    throw new InvalidEvent("not a CloudEvent: expected application/cloudevents+json, application/cloudevents-batch+json or ce-* headers");
  }
  const result = HTTP.toEvent<unknown>({ headers: clean, body });
  const list = Array.isArray(result) ? result : [result];
  return list.map((ev) => {
    if (!(ev instanceof CloudEvent)) throw new InvalidEvent("the SDK did not return a CloudEvent");
    ev.validate(); // throws ValidationError with the schema problems
    return ev as CloudEvent<unknown>;
  });
}

export function createConsumer(options: ConsumerOptions): Consumer {
  const { handlers, fallback } = options;
  const origins = (options.allowedOrigins ?? DEFAULT_ORIGINS).map((o) => o.trim().toLowerCase());
  const anyOrigin = origins.includes("*");
  const allowedRate = String(options.allowedRate ?? "*");
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const onHandlerError = options.onHandlerError ?? ((err: unknown, ev: CloudEvent<unknown>) => console.error(`handler for event ${ev.id} (${String(ev.auth0code)}) failed:`, err));

  // hasOwn: an auth0code such as "constructor" must not reach Object.prototype.
  function handlerFor(event: CloudEvent<unknown>): EventHandler | undefined {
    const code = event.auth0code;
    if (typeof code === "string" && Object.hasOwn(handlers, code)) return handlers[code];
    return fallback;
  }

  function handshake(headers: Record<string, string | string[] | undefined>): ConsumerResponse {
    const origin = single(headers["webhook-request-origin"])?.trim();
    if (!origin) return json(403, { error: "handshake_refused", message: "WebHook-Request-Origin header is missing" });
    if (!anyOrigin && !origins.includes(origin.toLowerCase())) {
      return json(403, { error: "handshake_refused", message: "this origin may not deliver here" });
    }
    // Echoing the origin is a valid answer in every case ("*" would be too, when configured).
    return { status: 200, headers: { "webhook-allowed-origin": origin, "webhook-allowed-rate": allowedRate, allow: "POST" } };
  }

  async function handle(request: ConsumerRequest): Promise<ConsumerResponse> {
    const headers: Record<string, string | string[] | undefined> = {};
    for (const [k, v] of Object.entries(request.headers)) headers[k.toLowerCase()] = v;
    const method = request.method.toUpperCase();
    if (method === "OPTIONS") return handshake(headers);
    if (method !== "POST") return json(405, { error: "method_not_allowed", message: `${method} is not supported` }, { allow: "POST, OPTIONS" });
    const raw = typeof request.body === "string" ? Buffer.from(request.body, "utf8") : request.body;
    if (raw.length > maxBodyBytes) return json(413, { error: "too_large", message: `the body is larger than ${maxBodyBytes} bytes` });

    let events: CloudEvent<unknown>[];
    try {
      events = toEvents(headers, raw);
    } catch (err) {
      // Malformed input will not get better on retry; 400 makes Event Grid dead-letter it.
      return json(400, { error: "invalid_cloudevent", message: (err as Error).message });
    }
    // In order; the first failure answers 500 so Event Grid redelivers (a batch is redelivered whole).
    for (const event of events) {
      const handler = handlerFor(event);
      if (!handler) continue;
      try {
        await handler(event);
      } catch (err) {
        onHandlerError(err, event);
        // The error itself is not echoed: it may hold event data.
        return json(500, { error: "handler_failed", eventId: event.id });
      }
    }
    return json(200, { received: events.length });
  }

  function write(res: ServerResponse, answer: ConsumerResponse): void {
    const body = answer.body ?? "";
    res.writeHead(answer.status, { ...answer.headers, "content-length": String(Buffer.byteLength(body)) });
    res.end(body);
  }

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = Number(req.headers["content-length"] ?? 0) > maxBodyBytes;
    // Past the limit the rest of the body is read and discarded, and 413 goes out at its end: a
    // client still writing when the answer lands would see a reset instead of the status.
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBodyBytes) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.on("error", () => undefined); // the client went away; nothing to answer
    req.on("end", () => {
      if (tooLarge && req.method === "POST") {
        return write(res, json(413, { error: "too_large", message: `the body is larger than ${maxBodyBytes} bytes` }));
      }
      handle({ method: req.method ?? "", headers: req.headers, body: Buffer.concat(chunks, tooLarge ? 0 : size) }).then(
        (answer) => write(res, answer),
        (err: unknown) => {
          console.error("consumer failed:", err);
          write(res, json(500, { error: "internal_error" }));
        },
      );
    });
  };
  return Object.assign(listener, { handle });
}
