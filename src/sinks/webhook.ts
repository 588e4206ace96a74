// The CloudEvents HTTP webhook sink (CloudEvents "HTTP 1.1 Web Hooks for Event Delivery" 1.0.2):
// delivers to any HTTPS endpoint in structured, batched or binary content mode, once the target
// has granted delivery in the abuse-protection handshake (OPTIONS), and never faster than the
// request rate it allowed. Retries, backoff, Retry-After, the circuit breaker and the bisecting of
// refused batches are the shared delivery machinery (delivery.ts); a 410 Gone retires the
// destination until restart. The rate window (rate-limit.ts), the cap on POSTs in flight
// (semaphore.ts) and the binary-mode encoding (binary-mode.ts) are helpers of their own.
import { splitIntoBatches } from "./batches.js";
import { binaryRequest } from "./binary-mode.js";
import type { CircuitBreaker } from "./circuit-breaker.js";
import { AttemptFailed, Delivery, defaultSleep, type Attempt, type AttemptLog, type DeliveryError, type DeliveryOptions, type DeliveryResult, type EventRejection, type OutgoingEvent } from "./delivery.js";
import { RateGate } from "./rate-limit.js";
import { isRetryableStatus, parseRetryAfter, safeMessage } from "./retry-policy.js";
import { Semaphore } from "./semaphore.js";

export type WebhookMode = "structured" | "batched" | "binary";

/** Destination, retries, backoff, breaker, logger, metrics, sleep and now: see DeliveryOptions
 * (here `now` also drives the rate window and Retry-After dates). */
export interface WebhookOptions extends DeliveryOptions {
  url: string;
  mode: WebhookMode;
  /** Sent as WebHook-Request-Origin (a DNS name identifying the bridge). */
  origin: string;
  /** Requests per minute asked for in the handshake (WebHook-Request-Rate). */
  requestRate?: number;
  /** Authorization header value for OPTIONS and POST. A secret: never logged. */
  authorization?: string;
  /** Allows http:// URLs (local tests only). */
  allowInsecure: boolean;
  timeoutMs: number;
  /** Batched mode: caps per request. */
  maxBatchBytes: number;
  maxBatchEvents: number;
  /** POSTs in flight at once (per-event modes would otherwise open one connection per event). Default 8. */
  maxConcurrentRequests?: number;
}

const CE_JSON = "application/cloudevents+json; charset=utf-8";
const CE_BATCH = "application/cloudevents-batch+json; charset=utf-8";
const MODES: readonly WebhookMode[] = ["structured", "batched", "binary"];

interface WebhookAttemptError extends DeliveryError {
  /** Where it failed: the OPTIONS handshake, the POST, or before any request (breaker open, gone). */
  stage: "handshake" | "post" | "none";
}

/** What the handshake granted; compared by identity so that one refusal invalidates it only once. */
interface Grant {
  /** Requests per minute, undefined for no limit. */
  rate: number | undefined;
}

interface OutgoingRequest {
  headers: Record<string, string>;
  body: string | Uint8Array;
}

export class WebhookPublisher {
  readonly breaker: CircuitBreaker;
  private readonly target: string;
  /** Scheme, host and port: what logs may say about the URL (path and query can hold tokens). */
  private readonly host: string;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private readonly gate: RateGate;
  private readonly slots: Semaphore;
  private readonly delivery: Delivery;
  private grant: Grant | undefined;
  private pendingHandshake: Promise<Grant> | undefined;
  private isGone = false;

  constructor(private readonly options: WebhookOptions) {
    const label = `webhook destination "${options.destination}"`;
    // Messages name the destination, never the URL: its path or query can carry a token.
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new Error(`${label}: url is not a valid absolute URL`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error(`${label}: url must be https://`);
    if (url.protocol === "http:" && !options.allowInsecure) throw new Error(`${label}: http:// is refused (HTTPS is required; allowInsecure is for local tests)`);
    // fetch refuses such URLs; say so at startup rather than on every delivery.
    if (url.username !== "" || url.password !== "") throw new Error(`${label}: credentials in the URL are not supported; use authorization`);
    if (!MODES.includes(options.mode)) throw new Error(`${label}: mode must be one of ${MODES.join(", ")}`);
    if (!/^[\x21-\x7e]+$/.test(options.origin)) throw new Error(`${label}: origin must be a non-empty DNS name`);
    if (options.requestRate !== undefined && !(Number.isInteger(options.requestRate) && options.requestRate > 0)) {
      throw new Error(`${label}: requestRate must be a positive integer (requests per minute)`);
    }
    if (options.authorization !== undefined && !/^[\x20-\x7e]+$/.test(options.authorization)) {
      throw new Error(`${label}: authorization must be a non-empty printable ASCII header value`);
    }
    this.target = url.href;
    this.host = url.origin;
    this.sleep = options.sleep ?? defaultSleep;
    this.now = options.now ?? Date.now;
    this.gate = new RateGate(this.now, this.sleep);
    this.slots = new Semaphore(Math.max(1, options.maxConcurrentRequests ?? 8));
    this.delivery = new Delivery(options, {
      name: "the webhook",
      refused: { log: "event refused by webhook", reason: "rejected_by_destination" },
      prepare: (batch, result) => this.prepare(batch, result),
      unexpected: (error) => ({ stage: "none", code: "internal", message: safeMessage(error instanceof Error ? error.message : String(error)), retryable: false }),
      blocked: () => (this.isGone ? GONE_BEFORE_SENDING : undefined),
      goneRejection: (event, log) => this.goneRejection(event, log),
    });
    this.breaker = this.delivery.breaker;
  }

  /** True once the target answered 410 Gone: nothing more is sent to it until restart. */
  get gone(): boolean {
    return this.isGone;
  }

  /** Delivers every event: one request per event (structured, binary) or per batch (batched). */
  deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult> {
    if (this.isGone) {
      const result: DeliveryResult = { published: [], rejected: [], failed: [] };
      const at = this.iso();
      for (const event of events) result.rejected.push(this.goneRejection(event, { attempts: 0, firstAttempt: at, lastAttempt: at }));
      return Promise.resolve(result);
    }
    const { mode, maxBatchBytes, maxBatchEvents } = this.options;
    return this.delivery.deliver(mode === "batched" ? splitIntoBatches(events, maxBatchBytes, maxBatchEvents) : events.map((event) => [event]));
  }

  /** The request for a batch, and the attempt that sends it: handshake first, then the POST. */
  private prepare(batch: OutgoingEvent[], result: DeliveryResult): Attempt | undefined {
    const { logger, metrics, destination } = this.options;
    let request: OutgoingRequest;
    try {
      request = this.buildRequest(batch);
    } catch (error) {
      // A bug or an event binary mode cannot express: nothing was sent and retrying cannot help.
      // The message names the error class only: JSON.parse messages quote the (personal) content.
      const at = this.iso();
      const message = `event could not be encoded for ${this.options.mode} mode (${error instanceof Error ? error.name : "error"})`;
      logger.error("delivery failed", { destination, reason: "internal", error: message, events: batch.length, log_ids: batch.map((e) => e.id) });
      result.failed.push({ events: batch, reason: "internal", message, attempts: 0, firstAttempt: at, lastAttempt: at });
      return undefined;
    }
    // The handshake is repeated at most once per batch, so a target that keeps refusing us costs
    // one extra OPTIONS and POST, not a loop.
    let rehandshaken = false;
    return async (context) => {
      for (;;) {
        let grant: Grant;
        try {
          grant = await this.handshake();
        } catch (error) {
          // A refused or failed handshake says the target is not usable: a breaker failure.
          throw error instanceof AttemptFailed ? context.failed(error.detail) : error;
        }
        const detail = await this.post(request);
        if (detail === undefined) {
          context.succeeded();
          return;
        }
        if ((detail.status === 401 || detail.status === 403) && !rehandshaken) {
          // The target may have been reconfigured: ask again before giving up.
          rehandshaken = true;
          this.invalidate(grant);
          metrics.publishRequests.inc({ outcome: "retry", destination });
          logger.warn("webhook refused the request; repeating the handshake", { destination, status: detail.status, batch_size: batch.length });
          context.again();
          continue;
        }
        throw context.failed(detail);
      }
    };
  }

  /** The cached grant, or the one handshake in flight (concurrent first deliveries share it). */
  private handshake(): Promise<Grant> {
    if (this.grant !== undefined) return Promise.resolve(this.grant);
    this.pendingHandshake ??= this.validate().then(
      (grant) => {
        this.grant = grant;
        this.pendingHandshake = undefined;
        return grant;
      },
      (error: unknown) => {
        // Refusals are not cached: the next delivery asks again (the breaker limits how often).
        this.pendingHandshake = undefined;
        throw error;
      },
    );
    return this.pendingHandshake;
  }

  /** Drops `grant` unless a newer handshake already replaced it (several POSTs refused at once). */
  private invalidate(grant: Grant): void {
    if (this.grant === grant) this.grant = undefined;
  }

  /** The abuse-protection handshake (spec section 4): OPTIONS, then check what was granted. */
  private async validate(): Promise<Grant> {
    const { origin, requestRate, timeoutMs, logger, destination } = this.options;
    const headers: Record<string, string> = { ...this.commonHeaders() };
    if (requestRate !== undefined) headers["webhook-request-rate"] = String(requestRate);
    let response: Response;
    try {
      response = await fetch(this.target, { method: "OPTIONS", headers, redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      const detail = this.transportError(error, "handshake");
      logger.warn("webhook handshake failed", { destination, target: this.host, code: detail.code ?? null, error: detail.message });
      throw new AttemptFailed(detail);
    }
    // Read the body so the connection returns to the keep-alive pool.
    await response.arrayBuffer().catch(() => undefined);
    const status = response.status;
    if (status === 410) {
      this.markGone("handshake");
      throw new AttemptFailed({ stage: "handshake", status, code: "gone", gone: true, message: "the webhook answered the handshake with 410 Gone", retryable: false });
    }
    if (isRetryableStatus(status)) {
      const retryAfterMs = this.retryAfter(response);
      logger.warn("webhook handshake failed", { destination, target: this.host, status });
      throw new AttemptFailed({ stage: "handshake", status, message: `handshake: OPTIONS answered ${status}`, retryable: true, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
    }
    const refuse = (why: string, fields: Record<string, unknown> = {}): AttemptFailed => {
      logger.error("webhook handshake refused", { destination, target: this.host, status, why, origin, ...fields });
      return new AttemptFailed({ stage: "handshake", status, code: "handshake_refused", message: `handshake refused: ${why}`, retryable: false });
    };
    if (status < 200 || status > 299) throw refuse(`OPTIONS answered ${status}`);
    const allowedOrigin = response.headers.get("webhook-allowed-origin");
    if (allowedOrigin === null) throw refuse("WebHook-Allowed-Origin header missing");
    const granted = allowedOrigin.trim();
    // Origins are DNS names: compared without regard to case.
    if (granted !== "*" && granted.toLowerCase() !== origin.toLowerCase()) {
      throw refuse("WebHook-Allowed-Origin does not match our origin", { allowed_origin: clip(granted) });
    }
    const rateHeader = response.headers.get("webhook-allowed-rate");
    let rate: number | undefined;
    if (rateHeader === null) {
      // The spec makes the header mandatory when a rate was asked for; without it, keep to what we asked.
      rate = requestRate;
    } else if (rateHeader.trim() === "*") {
      rate = undefined;
    } else if (/^\d+$/.test(rateHeader.trim()) && Number(rateHeader.trim()) > 0) {
      rate = Number(rateHeader.trim());
    } else {
      // We cannot tell what the target meant, and sending unlimited could be the abuse it guards against.
      throw refuse("WebHook-Allowed-Rate is neither a positive integer nor *", { allowed_rate: clip(rateHeader) });
    }
    this.gate.setLimit(rate);
    logger.info("webhook handshake accepted", { destination, target: this.host, allowed_origin: granted, allowed_rate: rate ?? "*" });
    return { rate };
  }

  /** One POST, once a connection slot and the rate window allow it. Never throws. */
  private async post(request: OutgoingRequest): Promise<WebhookAttemptError | undefined> {
    const { timeoutMs, backoff } = this.options;
    const release = await this.slots.acquire();
    try {
      await this.gate.take();
      // Another request may have met a 410 while this one waited.
      if (this.isGone) return GONE_BEFORE_SENDING;
      const observe = this.delivery.startTimer();
      let response: Response;
      try {
        response = await fetch(this.target, {
          method: "POST",
          headers: { ...request.headers, ...this.commonHeaders() },
          body: request.body,
          // The spec forbids following redirects; a 3xx is a client error below.
          redirect: "manual",
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (error) {
        observe("failure");
        return this.transportError(error, "post");
      }
      // The status decides; the body only feeds error messages (and frees the connection).
      const text = await response.text().catch(() => "");
      const status = response.status;
      if (response.ok) {
        observe("success");
        return undefined;
      }
      observe("failure");
      const snippet = this.scrub(text);
      const message = `webhook answered ${status}${snippet ? `: ${snippet}` : ""}`;
      if (status === 410) {
        this.markGone("post");
        return { stage: "post", status, code: "gone", gone: true, message, retryable: false };
      }
      const retryable = isRetryableStatus(status);
      const retryAfterMs = retryable ? this.retryAfter(response) : undefined;
      // Retry-After holds back every request to this target, not only the one that was told.
      if (retryAfterMs !== undefined) this.gate.pauseUntil(this.now() + Math.min(retryAfterMs, backoff.retryAfterMaxMs));
      return { stage: "post", status, message, retryable, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    } finally {
      release();
    }
  }

  private buildRequest(batch: OutgoingEvent[]): OutgoingRequest {
    switch (this.options.mode) {
      case "structured":
        return { headers: { "content-type": CE_JSON }, body: batch[0]!.json };
      case "batched":
        return { headers: { "content-type": CE_BATCH }, body: `[${batch.map((e) => e.json).join(",")}]` };
      case "binary":
        return binaryRequest(batch[0]!);
    }
  }

  /** Headers on every request: the spec wants the origin on deliveries too, not only on OPTIONS. */
  private commonHeaders(): Record<string, string> {
    const headers: Record<string, string> = { "webhook-request-origin": this.options.origin };
    if (this.options.authorization !== undefined) headers.authorization = this.options.authorization;
    return headers;
  }

  private retryAfter(response: Response): number | undefined {
    return parseRetryAfter(undefined, response.headers.get("retry-after") ?? undefined, this.now);
  }

  private transportError(error: unknown, stage: "handshake" | "post"): WebhookAttemptError {
    const what = stage === "handshake" ? "handshake: OPTIONS" : "POST";
    if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
      return { stage, code: "timeout", message: `${what} got no answer within ${this.options.timeoutMs} ms`, retryable: true };
    }
    // fetch reports connection problems as TypeError("fetch failed") with the socket error as cause;
    // a TypeError without a cause is a request it refused to build (a bug or a bad header value).
    const cause: unknown = error instanceof Error ? error.cause : undefined;
    if (error instanceof TypeError && cause !== undefined) {
      const code = typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : "network_error";
      const detail = cause instanceof Error ? cause.message : String(cause);
      return { stage, code, message: this.scrub(`${what} failed: ${detail}`), retryable: true };
    }
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return { stage, code: "internal", message: this.scrub(`${what} failed: ${message}`), retryable: false };
  }

  /** Text from the target or the HTTP stack, made safe to log: no token, no query string, short. */
  private scrub(text: string): string {
    let out = text;
    const authorization = this.options.authorization;
    if (authorization !== undefined) {
      // The credential alone too ("Bearer abc" echoed as "abc").
      const credential = authorization.replace(/^\S+\s+/, "");
      for (const secret of [authorization, credential]) if (secret.length >= 4) out = out.split(secret).join("[REDACTED]");
    }
    return clip(safeMessage(out).replace(/\s+/g, " ").trim());
  }

  private markGone(stage: "handshake" | "post"): void {
    if (this.isGone) return;
    this.isGone = true;
    this.options.metrics.destinationGone.set({ destination: this.options.destination }, 1);
    this.options.logger.error("webhook destination gone: delivery stopped until restart, its events are dead-lettered", {
      destination: this.options.destination,
      target: this.host,
      status: 410,
      stage,
    });
  }

  private goneRejection(event: OutgoingEvent, log: AttemptLog): EventRejection {
    return { event, reason: "destination_gone", status: 410, message: "the webhook answered 410 Gone; nothing is sent to it until restart", ...log };
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

const GONE_BEFORE_SENDING: WebhookAttemptError = { stage: "none", status: 410, code: "gone", gone: true, message: "the webhook answered 410 Gone earlier", retryable: false };

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}
