// Local Event Grid emulator: a lean node:http double of a CloudEvents-schema custom topic (or a
// partner namespace when `channel` is set). It checks what Event Grid checks on publish (auth,
// api-version, content type, channel header, sizes, CloudEvents 1.0 shape), answers with Event
// Grid style errors, and lets tests script failures. Used by developers, integration tests and
// benchmarks, so the hot path avoids per-event allocations beyond JSON.parse/stringify.
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID, timingSafeEqual } from "node:crypto";
import { appendFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";

export type InputSchema = "CloudEventV10" | "EventGridEvent" | "CustomInputEvent";

export interface EmulatorOptions {
  host?: string;
  port?: number;
  /** Accepted `aeg-sas-key` value. */
  key?: string;
  /** Accepted `aeg-sas-token` (or `Authorization: SharedAccessSignature <token>`) value, exact match. */
  sasToken?: string;
  /** When set, plays a partner namespace: POST requires `aeg-channel-name` === channel. */
  channel?: string;
  /** What OPTIONS reports in `aeg-input-event-schema`. */
  inputSchema?: InputSchema;
  maxEventBytes?: number;
  maxRequestBytes?: number;
  maxEventsPerRequest?: number;
  /** Append every accepted event as one JSON line. */
  outFile?: string;
  path?: string;
  /** Keep accepted events in `events` and request records (with headers) in `requests` (default
   * true). When false both stay empty, so a long benchmark does not grow the emulator's memory:
   * only `acceptedCount` and `statusCounts` move (and `outFile`, when set, is still appended to). */
  retainEvents?: boolean;
}

export interface ScriptedResponse {
  status: number;
  retryAfter?: string | number;
  /** Wait before answering; the request is recorded as soon as its body is read. */
  delayMs?: number;
  /** Destroy the socket without answering. */
  drop?: boolean;
  message?: string;
}

export interface ReceivedEvent {
  [attr: string]: unknown;
  id: string;
  source: string;
  type: string;
  specversion: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string | string[] | undefined>;
  status: number | "dropped";
  eventCount: number;
  bytes: number;
  at: number;
}

export type FaultFn = (ctx: { events: ReceivedEvent[]; requestNumber: number }) => ScriptedResponse | undefined;

export interface Emulator {
  readonly url: string;
  readonly port: number;
  readonly events: ReceivedEvent[];
  readonly requests: RequestRecord[];
  /** Events accepted since start/reset; maintained whether or not events are retained. */
  readonly acceptedCount: number;
  /** Recorded requests (every method) by status ("200", "503", "dropped", ...) since start/reset;
   * maintained in both modes, and the only per-request trace when `retainEvents` is false. */
  readonly statusCounts: Record<string, number>;
  /** Queue answers: each following POST that passes auth, header and size checks consumes one, FIFO.
   * A non-2xx or `drop` script answers without looking at the body; a 2xx script still validates
   * (an invalid body gets its 400, after `delayMs`) and stores the events when it answers. */
  script(...responses: ScriptedResponse[]): void;
  /** Called for each valid, unscripted POST. `requestNumber` is the 1-based count of POSTs since start/reset. */
  setFault(fn: FaultFn | undefined): void;
  waitForEvents(count: number, timeoutMs?: number): Promise<void>;
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  reset(): void;
  close(): Promise<void>;
}

const API_VERSION = "2018-01-01";
const BATCH_TYPE = "application/cloudevents-batch+json";
const SINGLE_TYPE = "application/cloudevents+json";
const CONTENT_TYPE_MESSAGE =
  "The Content-Type header is either missing or it doesn't have a valid value. The content type header must either be " +
  "application/cloudevents+json; charset=utf-8 or application/cloudevents-batch+json; charset=UTF-8.";
// How much of a rejected body we read and discard before answering; beyond it we answer with
// `Connection: close` and let the socket go (see answerAfterBody).
const DRAIN_LIMIT = 16 * 1024 * 1024;

const DEFAULT_CODES: Record<number, string> = {
  400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 408: "RequestTimeout",
  413: "RequestEntityTooLarge", 429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
  503: "ServiceUnavailable", 504: "GatewayTimeout",
};
const DEFAULT_MESSAGES: Record<number, string> = {
  429: "The publish rate limit of the topic has been exceeded. Retry later.",
  500: "The server encountered an internal error. Retry later.",
  503: "The service is temporarily unavailable. Retry later.",
};

interface Answer {
  status: number;
  code?: string;
  detailCode?: string;
  message?: string;
  headers?: Record<string, string>;
}

interface Waiter { ready(): boolean; resolve(): void; reject(err: Error): void; timer: NodeJS.Timeout }

function errorBody(code: string, message: string, detailCode = code): string {
  return JSON.stringify({ error: { code, message, details: [{ code: detailCode, message }] } });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(", ") : v;
}

// Constant-time compare so the emulator does not model a timing oracle; length leaks are fine here.
function secretEquals(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? "").split(";", 1)[0]!.trim().toLowerCase();
}

// Hand-written CloudEvents 1.0 check (what Event Grid enforces), cheaper than building SDK
// objects per event. Returns the first problem, or undefined when the event is valid.
const ATTRIBUTE_NAME = /^[a-z0-9]+$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;

function isRfc3339(value: string): boolean {
  const m = RFC3339.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const offsetOk = m[7] === undefined || (Number(m[7]) <= 23 && Number(m[8]) <= 59);
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 60 && offsetOk;
}

function validateCloudEvent(ev: unknown): string | undefined {
  if (ev === null || typeof ev !== "object" || Array.isArray(ev)) return "an event must be a JSON object";
  const e = ev as Record<string, unknown>;
  for (const name of ["id", "source", "type"] as const) {
    if (typeof e[name] !== "string" || e[name] === "") return `required attribute '${name}' must be a non-empty string`;
  }
  if (e.specversion !== "1.0") return `'specversion' must be "1.0" (got ${(JSON.stringify(e.specversion) ?? "nothing").slice(0, 40)})`;
  // JSON null means "absent" for optional attributes in the CloudEvents JSON format.
  if (e.time != null && (typeof e.time !== "string" || !isRfc3339(e.time))) return "'time' must be an RFC 3339 timestamp";
  if (e.data !== undefined && e.data_base64 !== undefined) return "'data' and 'data_base64' are mutually exclusive";
  if (e.data_base64 != null && typeof e.data_base64 !== "string") return "'data_base64' must be a string";
  for (const name in e) {
    if (name === "data" || name === "data_base64") continue;
    if (!ATTRIBUTE_NAME.test(name)) return `attribute name '${name}' must consist of lower-case letters and digits only`;
  }
  return undefined;
}

// JSON.stringify of a parsed value is at most this many times longer than the JSON text it came
// from: whitespace and escapes only shrink, an invalid UTF-8 byte becomes 3 bytes (U+FFFD), and
// the worst number case is "1e20" (4 bytes) -> "100000000000000000000" (21 bytes).
const MAX_EXPANSION = 6;

/** Byte length of the text of each top-level element of a (valid) JSON array: an upper bound on
 * the raw size of each event, including surrounding whitespace. Strings are skipped with the
 * native indexOf, which keeps this several times cheaper than re-serializing. */
function rawSizeBounds(body: Buffer): number[] {
  const bounds: number[] = [];
  let depth = 0;
  let last = -1;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === 0x22) {
      // The closing quote is the next one not preceded by an odd run of backslashes.
      let end = i;
      for (;;) {
        end = body.indexOf(0x22, end + 1);
        if (end < 0) return bounds;
        let k = end - 1;
        while (body[k] === 0x5c) k--;
        if ((end - 1 - k) % 2 === 0) break;
      }
      i = end;
    } else if (c === 0x5b || c === 0x7b) {
      if (depth++ === 0) last = i;
    } else if (c === 0x5d || c === 0x7d) {
      if (--depth === 0) bounds.push(i - last - 1);
    } else if (c === 0x2c && depth === 1) {
      bounds.push(i - last - 1);
      last = i;
    }
  }
  return bounds;
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? "127.0.0.1";
  const basePath = options.path ?? "/api/events";
  const inputSchema = options.inputSchema ?? "CloudEventV10";
  const maxEventBytes = options.maxEventBytes ?? 1_048_576;
  const maxRequestBytes = options.maxRequestBytes ?? 1_048_576;
  const maxEventsPerRequest = options.maxEventsPerRequest ?? 5000;
  const { key, sasToken, channel, outFile } = options;
  const authRequired = key !== undefined || sasToken !== undefined;
  const retain = options.retainEvents ?? true;

  const events: ReceivedEvent[] = [];
  const requests: RequestRecord[] = [];
  const statusCounts: Record<string, number> = {};
  // Records already counted in statusCounts, so a later status change moves the count.
  const counted = new WeakSet<RequestRecord>();
  let acceptedCount = 0;
  let requestCount = 0;
  const scripts: ScriptedResponse[] = [];
  let fault: FaultFn | undefined;
  let postCount = 0;
  let closing: Promise<void> | undefined;
  const waiters = new Set<Waiter>();
  // Cancels for answers that are waiting on a scripted delay; close() runs them so it never hangs.
  const delayed = new Set<() => void>();
  let writeChain: Promise<void> = Promise.resolve();

  function notify(): void {
    for (const w of waiters) {
      if (w.ready()) {
        clearTimeout(w.timer);
        waiters.delete(w);
        w.resolve();
      }
    }
  }

  function countStatus(status: RequestRecord["status"], by: number): void {
    const k = String(status);
    const n = (statusCounts[k] ?? 0) + by;
    if (n === 0) delete statusCounts[k];
    else statusCounts[k] = n;
  }

  function record(rec: RequestRecord): void {
    requestCount++;
    countStatus(rec.status, 1);
    counted.add(rec);
    if (retain) requests.push(rec);
    notify();
  }

  /** Changes the status of a request that may already be recorded, keeping statusCounts right. */
  function restatus(rec: RequestRecord, status: RequestRecord["status"]): void {
    if (counted.has(rec)) {
      countStatus(rec.status, -1);
      countStatus(status, 1);
    }
    rec.status = status;
  }

  function keep(accepted: ReceivedEvent[]): void {
    acceptedCount += accepted.length;
    if (retain) for (const ev of accepted) events.push(ev);
    notify();
  }

  function authProblem(req: IncomingMessage): string | undefined {
    if (!authRequired) return undefined;
    const givenKey = header(req, "aeg-sas-key");
    const authz = header(req, "authorization");
    const givenToken = header(req, "aeg-sas-token") ??
      (authz && /^sharedaccesssignature /i.test(authz) ? authz.slice("SharedAccessSignature ".length).trim() : undefined);
    if (givenKey === undefined && givenToken === undefined) {
      return "The request did not include an aeg-sas-key, aeg-sas-token or Authorization (SharedAccessSignature) header.";
    }
    if (key !== undefined && secretEquals(givenKey, key)) return undefined;
    if (sasToken !== undefined && secretEquals(givenToken, sasToken)) return undefined;
    // Never echo what the client sent: it may be a real key pointed at the wrong place.
    return "The request authorization key or token is not authorized for this topic.";
  }

  function writeAnswer(res: ServerResponse, a: Answer): void {
    const headers: Record<string, string> = { "x-ms-request-id": randomUUID(), ...a.headers };
    if (a.status >= 200 && a.status < 300) {
      res.writeHead(a.status, { ...headers, "content-length": "0" });
      res.end();
      return;
    }
    const code = a.code ?? DEFAULT_CODES[a.status] ?? `Http${a.status}`;
    const message = a.message ?? DEFAULT_MESSAGES[a.status] ?? `The request failed with status ${a.status}.`;
    const body = errorBody(code, message, a.detailCode ?? code);
    res.writeHead(a.status, {
      ...headers,
      "content-type": "application/json; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
    });
    res.end(body);
  }

  // An answer decided before the body was read (auth, headers, size) goes out only after the rest
  // of the body was read and discarded: a client still writing when the answer (or close()) lands
  // gets EPIPE/ECONNRESET instead of the status. Past DRAIN_LIMIT we answer and hang up.
  function answerAfterBody(req: IncomingMessage, res: ServerResponse, rec: RequestRecord, a: Answer, alreadyRead = 0): void {
    rec.status = a.status;
    record(rec);
    if (req.complete) return writeAnswer(res, a);
    const hangUp = (): void => writeAnswer(res, { ...a, headers: { ...a.headers, connection: "close" } });
    if (Number(header(req, "content-length") ?? NaN) > DRAIN_LIMIT) return hangUp();
    let drained = alreadyRead;
    let done = false;
    const finish = (cut: boolean): void => {
      if (done) return;
      done = true;
      req.off("data", onData);
      req.off("end", onEnd);
      if (cut) hangUp();
      else writeAnswer(res, a);
    };
    const onData = (chunk: Buffer): void => {
      drained += chunk.length;
      if (drained > DRAIN_LIMIT) finish(true);
    };
    const onEnd = (): void => finish(false);
    req.on("data", onData);
    req.on("end", onEnd);
    req.resume();
  }

  function scriptedAnswer(s: ScriptedResponse): Answer {
    const headers: Record<string, string> = {};
    if (s.retryAfter !== undefined) headers["retry-after"] = String(s.retryAfter);
    return { status: s.status, headers, ...(s.message !== undefined ? { message: s.message } : {}) };
  }

  function store(accepted: ReceivedEvent[]): Promise<void> {
    if (outFile === undefined) {
      keep(accepted);
      return Promise.resolve();
    }
    // Chained so the file and `events` keep arrival order even when appends overlap.
    const lines = accepted.map((ev) => JSON.stringify(ev) + "\n").join("");
    const done = writeChain.then(async () => {
      if (lines) await appendFile(outFile, lines, "utf8");
      keep(accepted);
    });
    writeChain = done.catch(() => undefined);
    return done;
  }

  // Final step of a POST whose body was read: the record goes in now, the answer may wait.
  function conclude(res: ServerResponse, rec: RequestRecord, a: Answer, opts: { drop?: boolean; delayMs?: number; accepted?: ReceivedEvent[] }): void {
    rec.status = opts.drop ? "dropped" : a.status;
    record(rec);
    const act = (): void => {
      if (opts.drop) {
        res.socket?.destroy();
        return;
      }
      if (!opts.accepted) return writeAnswer(res, a);
      store(opts.accepted).then(
        () => writeAnswer(res, a),
        (err: unknown) => {
          restatus(rec, 500);
          writeAnswer(res, { status: 500, message: `The emulator could not write the out file: ${(err as Error).message}` });
        },
      );
    };
    const delayMs = opts.delayMs ?? 0;
    if (delayMs <= 0) return act();
    const cancel = (): void => {
      clearTimeout(timer);
      delayed.delete(cancel);
      if (!res.headersSent) restatus(rec, "dropped");
      res.socket?.destroy();
    };
    const timer = setTimeout(() => {
      delayed.delete(cancel);
      act();
    }, delayMs);
    delayed.add(cancel);
  }

  function handlePostBody(res: ServerResponse, rec: RequestRecord, body: Buffer, contentType: string, requestNumber: number): void {
    const scripted = scripts.shift();
    const plan = scripted ? { drop: scripted.drop, delayMs: scripted.delayMs } : {};
    // A scripted failure models the service being down: it answers without looking at the body.
    if (scripted && (scripted.drop || scripted.status < 200 || scripted.status >= 300)) {
      return conclude(res, rec, scriptedAnswer(scripted), plan);
    }
    const reject = (status: number, detailCode: string, message: string): void =>
      conclude(res, rec, { status, detailCode, message }, plan);

    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch (err) {
      return reject(400, "InputJsonInvalid", `The request body is not valid JSON: ${(err as Error).message}`);
    }
    let list: unknown[];
    if (contentType === BATCH_TYPE) {
      if (!Array.isArray(parsed)) return reject(400, "InputJsonInvalid", `Content-Type ${BATCH_TYPE} requires a JSON array of CloudEvents.`);
      list = parsed;
    } else {
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        return reject(400, "InputJsonInvalid", `Content-Type ${SINGLE_TYPE} requires a single CloudEvent JSON object.`);
      }
      list = [parsed];
    }
    rec.eventCount = list.length;
    if (list.length > maxEventsPerRequest) {
      return reject(413, "TooManyEvents", `The request contains ${list.length} events; the maximum is ${maxEventsPerRequest}.`);
    }
    // Re-serializing every event costs as much as parsing it, so only events whose raw text could
    // serialize past the limit are measured exactly (see rawSizeBounds).
    const skipAll = body.length * MAX_EXPANSION <= maxEventBytes;
    const bounds = skipAll ? [] : contentType === BATCH_TYPE ? rawSizeBounds(body) : [body.length];
    const trusted = bounds.length === list.length; // otherwise measure everything
    for (let i = 0; i < list.length; i++) {
      if (!skipAll && (!trusted || bounds[i]! * MAX_EXPANSION > maxEventBytes)) {
        const size = Buffer.byteLength(JSON.stringify(list[i]) ?? "");
        if (size > maxEventBytes) {
          return reject(413, "EventTooLarge", `Event at index ${i} is ${size} bytes; the maximum event size is ${maxEventBytes} bytes.`);
        }
      }
      const problem = validateCloudEvent(list[i]);
      if (problem) return reject(400, "InputJsonInvalid", `Event at index ${i} is not a valid CloudEvent 1.0: ${problem}.`);
    }
    const accepted = list as ReceivedEvent[];

    let chosen = scripted;
    if (!chosen && fault) {
      try {
        chosen = fault({ events: accepted, requestNumber });
      } catch (err) {
        return conclude(res, rec, { status: 500, message: `The emulator fault hook threw: ${(err as Error).message}` }, {});
      }
      if (chosen && (chosen.drop || chosen.status < 200 || chosen.status >= 300)) {
        return conclude(res, rec, scriptedAnswer(chosen), { drop: chosen.drop, delayMs: chosen.delayMs });
      }
    }
    const answer = chosen ? scriptedAnswer(chosen) : { status: 200 };
    conclude(res, rec, answer, { delayMs: chosen?.delayMs, accepted });
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const rec: RequestRecord = {
      method: req.method ?? "",
      path: q < 0 ? rawUrl : rawUrl.slice(0, q),
      query: q < 0 ? "" : rawUrl.slice(q + 1),
      headers: retain ? { ...req.headers } : {},
      status: 0,
      eventCount: 0,
      bytes: 0,
      at: Date.now(),
    };
    req.on("error", () => undefined); // a client abort is handled via 'close' below
    const early = (a: Answer): void => answerAfterBody(req, res, rec, a);

    if (rec.path !== basePath) {
      return early({ status: 404, code: "NotFound", message: `The requested resource '${rec.path}' does not exist. Publish to '${basePath}'.` });
    }
    if (rec.method !== "POST" && rec.method !== "OPTIONS") {
      return early({ status: 405, code: "MethodNotAllowed", message: `The method '${rec.method}' is not allowed.`, headers: { allow: "POST, OPTIONS" } });
    }
    const requestNumber = rec.method === "POST" ? ++postCount : 0;
    const authFailure = authProblem(req);
    if (authFailure) return early({ status: 401, code: "Unauthorized", message: authFailure });
    if (rec.method === "OPTIONS") {
      return early({
        status: 200,
        headers: { "aeg-input-event-schema": inputSchema, allow: "POST,OPTIONS", "api-supported-versions": API_VERSION },
      });
    }

    const apiVersion = new URLSearchParams(rec.query).get("api-version");
    if (apiVersion !== API_VERSION) {
      return early({
        status: 400,
        code: "BadRequest",
        detailCode: apiVersion === null ? "MissingApiVersionParameter" : "InvalidApiVersionParameter",
        message: apiVersion === null
          ? `The api-version query parameter is required. The supported version is '${API_VERSION}'.`
          : `The api-version '${apiVersion}' is invalid. The supported version is '${API_VERSION}'.`,
      });
    }
    const contentType = mediaType(header(req, "content-type"));
    if (contentType !== BATCH_TYPE && contentType !== SINGLE_TYPE) {
      return early({ status: 400, code: "BadRequest", detailCode: "InvalidContentType", message: CONTENT_TYPE_MESSAGE });
    }
    if (channel !== undefined) {
      const given = header(req, "aeg-channel-name");
      if (!given) {
        return early({ status: 400, code: "BadRequest", detailCode: "MissingChannelName", message: "The aeg-channel-name header is required when publishing to this partner namespace." });
      }
      if (given !== channel) {
        return early({ status: 404, code: "NotFound", detailCode: "ChannelNotFound", message: `The channel '${given}' was not found in this partner namespace.` });
      }
    }
    const tooLarge = (size: number): Answer => ({
      status: 413,
      code: "RequestEntityTooLarge",
      message: `The maximum size (${maxRequestBytes}) has been exceeded (request body is at least ${size} bytes).`,
    });
    const declared = Number(header(req, "content-length") ?? NaN);
    if (declared > maxRequestBytes) return early(tooLarge(declared));

    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= maxRequestBytes) return void chunks.push(chunk);
      // Stop buffering at once; the rest is discarded before the 413 goes out.
      settled = true;
      chunks.length = 0;
      rec.bytes = size;
      req.off("data", onData);
      answerAfterBody(req, res, rec, tooLarge(size), size);
    };
    req.on("data", onData);
    req.on("end", () => {
      if (settled) return;
      settled = true;
      rec.bytes = size;
      handlePostBody(res, rec, Buffer.concat(chunks, size), contentType, requestNumber);
    });
    req.on("close", () => {
      // The client went away mid-body: nothing to answer, but the attempt still counts.
      if (settled) return;
      settled = true;
      rec.bytes = size;
      rec.status = "dropped";
      record(rec);
    });
  }

  const server = createServer(handle);
  // Longer than typical client agent idle timeouts, so the client, not the server, retires idle
  // sockets (avoids ECONNRESET races on reuse). close() destroys them anyway.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;

  function waitFor(what: "events" | "requests", count: number, timeoutMs: number): Promise<void> {
    const list = what === "events" ? events : requests;
    // Without retention the lists stay empty: wait on the counters instead.
    const have = (): number => (retain ? list.length : what === "events" ? acceptedCount : requestCount);
    if (have() >= count) return Promise.resolve();
    if (closing) return Promise.reject(new Error(`wait for ${count} ${what}: the emulator is closed (have ${have()})`));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        ready: () => have() >= count,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${count} ${what}; the emulator has ${have()}`));
        }, timeoutMs),
      };
      waiters.add(w);
    });
  }

  return {
    url: `http://${urlHost}:${port}${basePath}`,
    port,
    events,
    requests,
    get acceptedCount() {
      return acceptedCount;
    },
    statusCounts,
    script(...responses) {
      scripts.push(...responses);
    },
    setFault(fn) {
      fault = fn;
    },
    waitForEvents: (count, timeoutMs = 5000) => waitFor("events", count, timeoutMs),
    waitForRequests: (count, timeoutMs = 5000) => waitFor("requests", count, timeoutMs),
    reset() {
      // Truncate in place: callers may hold references to these arrays.
      events.length = 0;
      requests.length = 0;
      for (const k of Object.keys(statusCounts)) delete statusCounts[k];
      acceptedCount = 0;
      requestCount = 0;
      scripts.length = 0;
      fault = undefined;
      postCount = 0;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const cancel of [...delayed]) cancel();
        for (const w of waiters) {
          clearTimeout(w.timer);
          w.reject(new Error("the emulator was closed while waiting"));
        }
        waiters.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
