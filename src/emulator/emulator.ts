// Local Event Grid emulator: a lean node:http double of a CloudEvents-schema custom topic (or a
// partner namespace when `channel` is set). It checks what Event Grid checks on publish (auth,
// api-version, content type, channel header, sizes, CloudEvents 1.0 shape), answers with Event
// Grid style errors, and lets tests script failures. Used by developers, integration tests and
// benchmarks, so the hot path avoids per-event allocations beyond JSON.parse/stringify.
// It can also hold event subscriptions with webhook destinations and deliver what it accepted the
// way Event Grid does with the CloudEvents 1.0 delivery schema (handshake, one event per POST,
// retries, dead-lettering); see SubscriptionSpec. Delivery runs after the publish answer.
import { Agent as HttpAgent, createServer, request as httpRequest } from "node:http";
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
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
  /** Event subscriptions to deliver accepted events to (more can be added with `subscribe`). */
  subscriptions?: SubscriptionSpec[];
  /** Called with each final delivery record (also when records are not retained). A throw is ignored. */
  onDelivery?: (record: DeliveryRecord) => void;
}

/**
 * An Event Grid event subscription with a webhook destination. Only the CloudEvents 1.0 delivery
 * schema is modelled (what this bridge publishes): the CloudEvents abuse-protection handshake
 * (HTTP OPTIONS), not the Event Grid schema's SubscriptionValidationEvent, and no batching
 * (one event per POST, Event Grid's default). No TTL, no dead-letter storage: dead-lettered
 * events only show up in `deliveries`.
 */
export interface SubscriptionSpec {
  /** Unique among the emulator's subscriptions; sent upper-cased in `aeg-subscription-name`. */
  name: string;
  /** Webhook URL (http or https). */
  endpoint: string;
  /** Exact CloudEvent `type` values to deliver; absent means all. */
  includedEventTypes?: string[];
  /** POST attempts per event before it is dead-lettered (1 to 30; default 30 like Event Grid). */
  maxDeliveryAttempts?: number;
  /** Base of the exponential backoff between attempts: retryDelayMs * 2^(attempt-1) (default 1000). */
  retryDelayMs?: number;
  /** Cap on any wait between attempts, backoff or Retry-After (default 60000). */
  maxRetryDelayMs?: number;
  /** Time allowed for the answer to a POST or to the handshake (default 30000, Event Grid's). */
  timeoutMs?: number;
}

export type DeliveryOutcome = "delivered" | "dead_lettered" | "validation_failed";

/** The final fate of one event for one subscription. */
export interface DeliveryRecord {
  subscription: string;
  eventId: string;
  eventType: string;
  /** POSTs made for this event (0 when the handshake failed). */
  attempts: number;
  /** Status of the last answer (of the handshake for validation_failed); undefined after a
   * network error or timeout. */
  status: number | undefined;
  outcome: DeliveryOutcome;
  /** Why the event was not delivered. */
  reason?: string;
  at: number;
}

export interface SubscriptionStatus {
  name: string;
  endpoint: string;
  includedEventTypes: string[] | undefined;
  /** "pending" until the first handshake; a failed one is tried again for the next event. */
  validation: "pending" | "in_progress" | "succeeded" | "failed";
  /** HTTP status of the last handshake answer (undefined: none, or a network error/timeout). */
  validationStatus: number | undefined;
  /** Why the last handshake failed. */
  validationReason: string | undefined;
  /** WebHook-Allowed-Rate of the last successful handshake (recorded, not enforced). */
  allowedRate: string | undefined;
  handshakes: number;
  delivered: number;
  deadLettered: number;
  /** Events dropped because the handshake failed. */
  undeliverable: number;
  /** Events waiting for the handshake, a free slot, an answer or a retry. */
  pending: number;
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
  /** Final delivery records, one per event and subscription, in the order they settled (kept
   * only when `retainEvents` is true; the counts in subscriptionStatus move either way). */
  readonly deliveries: DeliveryRecord[];
  /** Adds a subscription; it receives events accepted from now on. Throws on an invalid spec or a
   * name already in use. */
  subscribe(spec: SubscriptionSpec): void;
  /** A snapshot of one subscription's state, or undefined for an unknown name. */
  subscriptionStatus(name: string): SubscriptionStatus | undefined;
  /** Resolves when `count` events have settled with `outcome` (default "delivered", i.e. a 2xx)
   * across all subscriptions since start/reset. */
  waitForDeliveries(count: number, timeoutMs?: number, outcome?: DeliveryOutcome): Promise<void>;
  /** Clears records, counts, scripts and the fault hook. Subscriptions stay, but their pending
   * deliveries are dropped and their handshake starts over. */
  reset(): void;
  /** Stops the server and every pending delivery (in-flight requests are aborted). */
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

// ---- Event subscriptions (CloudEvents 1.0 delivery schema) ----

// Event Grid identifies itself with this origin in the CloudEvents webhook handshake.
const DELIVERY_ORIGIN = "eventgrid.azure.net";
const DELIVERY_RATE = "120";
const DELIVERY_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8";
// Concurrent POSTs per subscription, so a backlog does not open hundreds of sockets at once.
const MAX_IN_FLIGHT = 8;
// Answers Event Grid dead-letters at once instead of retrying.
const NOT_RETRIED = new Set([400, 413]);

interface Subscription {
  name: string;
  endpoint: string;
  target: URL;
  types: Set<string> | undefined;
  maxAttempts: number;
  retryDelayMs: number;
  maxRetryDelayMs: number;
  timeoutMs: number;
  validation: SubscriptionStatus["validation"];
  validationStatus: number | undefined;
  validationReason: string | undefined;
  allowedRate: string | undefined;
  handshakes: number;
  /** Events held until the handshake succeeds. */
  waiting: DeliveryJob[];
  /** Events ready for a POST, waiting for a free slot. */
  ready: DeliveryJob[];
  inFlight: number;
  retrying: number;
  delivered: number;
  deadLettered: number;
  undeliverable: number;
}

interface DeliveryJob {
  id: string;
  type: string;
  body: string;
  attempts: number;
  /** The reset generation the job belongs to; answers to older generations are ignored. */
  gen: number;
}

interface CallResult {
  status?: number;
  headers?: IncomingHttpHeaders;
  error?: string;
}

function intInRange(value: number | undefined, fallback: number, min: number, max: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${what} must be an integer from ${min} to ${max}, got ${value}`);
  return value;
}

function toSubscription(spec: SubscriptionSpec): Subscription {
  if (typeof spec.name !== "string" || spec.name.trim() === "") throw new Error("a subscription needs a non-empty name");
  const where = `subscription '${spec.name}'`;
  let target: URL;
  try {
    target = new URL(spec.endpoint);
  } catch {
    throw new Error(`${where}: endpoint '${spec.endpoint}' is not a URL`);
  }
  if (target.protocol !== "http:" && target.protocol !== "https:") throw new Error(`${where}: endpoint must be an http(s) URL, got '${spec.endpoint}'`);
  const included = spec.includedEventTypes;
  if (included !== undefined && (!Array.isArray(included) || included.length === 0 || included.some((t) => typeof t !== "string" || t === ""))) {
    // An empty list would deliver nothing; leaving the field out is how to say "all types".
    throw new Error(`${where}: includedEventTypes must be a non-empty list of event types (leave it out for all types)`);
  }
  return {
    name: spec.name,
    endpoint: spec.endpoint,
    target,
    types: included ? new Set(included) : undefined,
    maxAttempts: intInRange(spec.maxDeliveryAttempts, 30, 1, 30, `${where}: maxDeliveryAttempts`),
    retryDelayMs: intInRange(spec.retryDelayMs, 1000, 0, 86_400_000, `${where}: retryDelayMs`),
    maxRetryDelayMs: intInRange(spec.maxRetryDelayMs, 60_000, 0, 86_400_000, `${where}: maxRetryDelayMs`),
    timeoutMs: intInRange(spec.timeoutMs, 30_000, 1, 86_400_000, `${where}: timeoutMs`),
    validation: "pending",
    validationStatus: undefined,
    validationReason: undefined,
    allowedRate: undefined,
    handshakes: 0,
    waiting: [],
    ready: [],
    inFlight: 0,
    retrying: 0,
    delivered: 0,
    deadLettered: 0,
    undeliverable: 0,
  };
}

/** Retry-After in delta-seconds or HTTP-date form, in ms from now; undefined when absent or invalid. */
function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const v = firstValue(value)?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function describeCall(r: CallResult): string {
  return r.status !== undefined ? `HTTP ${r.status}` : (r.error ?? "no answer");
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

  const subscriptions = new Map<string, Subscription>();
  // Replaced, never mutated, on subscribe: a batch keeps the list as it was when it was accepted.
  let subscriptionList: readonly Subscription[] = [];
  const deliveries: DeliveryRecord[] = [];
  const outcomeCounts: Record<DeliveryOutcome, number> = { delivered: 0, dead_lettered: 0, validation_failed: 0 };
  const onDelivery = options.onDelivery;
  // Accepted batches not yet handed to subscriptions; fanned out in a setImmediate (see keep).
  let toFanOut: { events: ReceivedEvent[]; subs: readonly Subscription[] }[] = [];
  let fanOutImmediate: NodeJS.Immediate | undefined;
  // Bumped by reset(): answers to requests started before it are ignored.
  let generation = 0;
  const retryTimers = new Set<NodeJS.Timeout>();
  // Cancels for in-flight handshakes and POSTs, so reset() and close() leave nothing running.
  const outbound = new Set<() => void>();
  // Own agents, so close() can destroy the kept-alive sockets to subscribers too.
  const httpAgent = new HttpAgent({ keepAlive: true });
  const httpsAgent = new HttpsAgent({ keepAlive: true });
  for (const spec of options.subscriptions ?? []) addSubscription(spec);

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
    // Without subscriptions the publish path pays one size check. With them, the fan-out waits for
    // a setImmediate so the publish answer (written right after this) never waits on delivery.
    if (subscriptionList.length !== 0) {
      toFanOut.push({ events: accepted, subs: subscriptionList });
      fanOutImmediate ??= setImmediate(fanOut);
    }
    notify();
  }

  // ---- Delivery to subscriptions ----

  function addSubscription(spec: SubscriptionSpec): void {
    const sub = toSubscription(spec);
    if (subscriptions.has(sub.name)) throw new Error(`a subscription named '${sub.name}' already exists`);
    subscriptions.set(sub.name, sub);
    subscriptionList = [...subscriptionList, sub];
  }

  function fanOut(): void {
    fanOutImmediate = undefined;
    const batches = toFanOut;
    toFanOut = [];
    for (const batch of batches) {
      for (const ev of batch.events) {
        // Serialized once per event, shared by every subscription that takes it. The body is the
        // accepted event re-serialized (same attributes and order, JSON whitespace not kept).
        let body: string | undefined;
        for (const sub of batch.subs) {
          if (sub.types && !sub.types.has(ev.type)) continue;
          body ??= JSON.stringify(ev);
          const job: DeliveryJob = { id: ev.id, type: ev.type, body, attempts: 0, gen: generation };
          if (sub.validation === "succeeded") sub.ready.push(job);
          else sub.waiting.push(job);
        }
      }
    }
    for (const sub of subscriptions.values()) {
      if (sub.waiting.length !== 0 && sub.validation !== "in_progress") handshake(sub);
      pump(sub);
    }
  }

  function settle(sub: Subscription, job: DeliveryJob, outcome: DeliveryOutcome, status: number | undefined, reason?: string): void {
    if (outcome === "delivered") sub.delivered++;
    else if (outcome === "dead_lettered") sub.deadLettered++;
    else sub.undeliverable++;
    outcomeCounts[outcome]++;
    const rec: DeliveryRecord = { subscription: sub.name, eventId: job.id, eventType: job.type, attempts: job.attempts, status, outcome, at: Date.now() };
    if (reason !== undefined) rec.reason = reason;
    if (retain) deliveries.push(rec);
    if (onDelivery) {
      try {
        onDelivery(rec);
      } catch {
        // A reporting hook must not break delivery.
      }
    }
    notify();
  }

  /** One outbound request; resolves (never rejects) with the status or the error. */
  function call(target: URL, method: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<CallResult> {
    return new Promise((resolve) => {
      const secure = target.protocol === "https:";
      const allHeaders = body === undefined ? headers : { ...headers, "content-length": String(Buffer.byteLength(body)) };
      let req: ClientRequest;
      try {
        req = (secure ? httpsRequest : httpRequest)(target, { method, headers: allHeaders, agent: secure ? httpsAgent : httpAgent });
      } catch (err) {
        return resolve({ error: (err as Error).message });
      }
      let done = false;
      const finish = (r: CallResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        outbound.delete(cancel);
        resolve(r);
      };
      const cancel = (): void => {
        finish({ error: "cancelled" });
        req.destroy();
      };
      const timer = setTimeout(() => {
        finish({ error: `no answer within ${timeoutMs} ms` });
        req.destroy();
      }, timeoutMs);
      outbound.add(cancel);
      req.on("response", (res) => {
        // Only the status matters; drain the body so the socket can be reused.
        res.on("error", () => undefined);
        res.resume();
        finish({ status: res.statusCode ?? 0, headers: res.headers });
      });
      req.on("error", (err: NodeJS.ErrnoException) => finish({ error: err.code ?? err.message }));
      req.end(body);
    });
  }

  // CloudEvents HTTP Webhook spec, section 4 (abuse protection), as Event Grid sends it.
  function handshake(sub: Subscription): void {
    sub.validation = "in_progress";
    sub.handshakes++;
    const gen = generation;
    const headers = { "webhook-request-origin": DELIVERY_ORIGIN, "webhook-request-rate": DELIVERY_RATE };
    void call(sub.target, "OPTIONS", headers, undefined, sub.timeoutMs).then((r) => {
      if (gen !== generation || closing) return;
      sub.validationStatus = r.status;
      const allowed = firstValue(r.headers?.["webhook-allowed-origin"])?.trim().toLowerCase();
      let problem: string | undefined;
      if (r.status === undefined) problem = `the handshake got no answer: ${describeCall(r)}`;
      else if (r.status < 200 || r.status >= 300) problem = `the handshake was answered with HTTP ${r.status}`;
      else if (allowed === undefined) problem = "the handshake answer has no WebHook-Allowed-Origin header";
      else if (allowed !== DELIVERY_ORIGIN && allowed !== "*") problem = `WebHook-Allowed-Origin '${allowed}' allows neither ${DELIVERY_ORIGIN} nor *`;
      const held = sub.waiting;
      sub.waiting = [];
      if (problem === undefined) {
        sub.validation = "succeeded";
        sub.validationReason = undefined;
        sub.allowedRate = firstValue(r.headers?.["webhook-allowed-rate"]);
        for (const job of held) sub.ready.push(job);
        pump(sub);
        return;
      }
      sub.validation = "failed";
      sub.validationReason = problem;
      for (const job of held) settle(sub, job, "validation_failed", r.status, problem);
    });
  }

  function pump(sub: Subscription): void {
    while (sub.inFlight < MAX_IN_FLIGHT && sub.ready.length !== 0) attempt(sub, sub.ready.shift()!);
  }

  function attempt(sub: Subscription, job: DeliveryJob): void {
    job.attempts++;
    sub.inFlight++;
    const headers = {
      "content-type": DELIVERY_CONTENT_TYPE,
      "aeg-event-type": "Notification",
      "aeg-subscription-name": sub.name.toUpperCase(),
      // Attempts made before this one, so the first delivery carries 0.
      "aeg-delivery-count": String(job.attempts - 1),
    };
    void call(sub.target, "POST", headers, job.body, sub.timeoutMs).then((r) => {
      if (job.gen !== generation || closing) return;
      sub.inFlight--;
      const status = r.status;
      if (status !== undefined && status >= 200 && status < 300) {
        settle(sub, job, "delivered", status);
      } else if (status !== undefined && NOT_RETRIED.has(status)) {
        settle(sub, job, "dead_lettered", status, `HTTP ${status} is not retried`);
      } else if (job.attempts >= sub.maxAttempts) {
        settle(sub, job, "dead_lettered", status, `gave up after ${job.attempts} attempt(s); the last got ${describeCall(r)}`);
      } else {
        const hinted = status === 429 || status === 503 ? retryAfterMs(r.headers?.["retry-after"]) : undefined;
        const backoff = sub.retryDelayMs * 2 ** (job.attempts - 1);
        const delay = Math.min(hinted ?? backoff, sub.maxRetryDelayMs);
        sub.retrying++;
        const timer = setTimeout(() => {
          retryTimers.delete(timer);
          sub.retrying--;
          sub.ready.push(job);
          pump(sub);
        }, delay);
        retryTimers.add(timer);
      }
      pump(sub);
    });
  }

  /** Drops every queued, waiting and in-flight delivery (reset and close). */
  function stopDeliveries(): void {
    generation++;
    if (fanOutImmediate) clearImmediate(fanOutImmediate);
    fanOutImmediate = undefined;
    toFanOut = [];
    for (const timer of retryTimers) clearTimeout(timer);
    retryTimers.clear();
    for (const cancel of [...outbound]) cancel();
    for (const sub of subscriptions.values()) {
      sub.waiting = [];
      sub.ready = [];
      sub.inFlight = 0;
      sub.retrying = 0;
    }
  }

  function statusOf(sub: Subscription): SubscriptionStatus {
    return {
      name: sub.name,
      endpoint: sub.endpoint,
      includedEventTypes: sub.types ? [...sub.types] : undefined,
      validation: sub.validation,
      validationStatus: sub.validationStatus,
      validationReason: sub.validationReason,
      allowedRate: sub.allowedRate,
      handshakes: sub.handshakes,
      delivered: sub.delivered,
      deadLettered: sub.deadLettered,
      undeliverable: sub.undeliverable,
      pending: sub.waiting.length + sub.ready.length + sub.inFlight + sub.retrying,
    };
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

  function waitFor(what: string, have: () => number, count: number, timeoutMs: number): Promise<void> {
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
    // Without retention the lists stay empty: wait on the counters instead.
    waitForEvents: (count, timeoutMs = 5000) => waitFor("events", () => (retain ? events.length : acceptedCount), count, timeoutMs),
    waitForRequests: (count, timeoutMs = 5000) => waitFor("requests", () => (retain ? requests.length : requestCount), count, timeoutMs),
    deliveries,
    subscribe(spec) {
      if (closing) throw new Error("the emulator is closed");
      addSubscription(spec);
    },
    subscriptionStatus(name) {
      const sub = subscriptions.get(name);
      return sub && statusOf(sub);
    },
    waitForDeliveries: (count, timeoutMs = 5000, outcome = "delivered") =>
      waitFor(`${outcome} deliveries`, () => outcomeCounts[outcome], count, timeoutMs),
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
      stopDeliveries();
      deliveries.length = 0;
      for (const k of Object.keys(outcomeCounts) as DeliveryOutcome[]) outcomeCounts[k] = 0;
      for (const sub of subscriptions.values()) {
        sub.validation = "pending";
        sub.validationStatus = undefined;
        sub.validationReason = undefined;
        sub.allowedRate = undefined;
        sub.handshakes = sub.delivered = sub.deadLettered = sub.undeliverable = 0;
      }
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const cancel of [...delayed]) cancel();
        stopDeliveries();
        httpAgent.destroy();
        httpsAgent.destroy();
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
