// The Event Grid sink: publishes CloudEvents in batches with @azure/eventgrid, with the SDK's
// own retries off and p-retry driving attempts, backoff and Retry-After. A batch Event Grid
// refuses as a whole (400, 413) is split in halves until the offending events are isolated, so
// one poison event never blocks the others. It reports what was published, which events Event
// Grid refused, and which batches failed; the caller decides what the sender is told.
import { randomUUID } from "node:crypto";
import { EventGridPublisherClient } from "@azure/eventgrid";
import type { KeyCredential, SASCredential, TokenCredential } from "@azure/core-auth";
import type { PipelinePolicy } from "@azure/core-rest-pipeline";
import pRetry from "p-retry";
import type { Logger } from "../observability/logger.js";
import { BREAKER_STATE_VALUE, registerDestination, type Metrics } from "../observability/metrics.js";
import { splitIntoBatches } from "./batches.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import { classifyError, failureReason, retryDelay, type AttemptError, type BackoffOptions, type FailureReason } from "./retry-policy.js";

export interface OutgoingEvent {
  /** CloudEvent id (the Auth0 log_id). */
  id: string;
  /** Auth0 type code, for logs and metrics. */
  code: string;
  /** The structured CloudEvent JSON, serialized once by the caller; sent as is. */
  json: string;
  /** Its size in bytes (UTF-8). */
  bytes: number;
}

export interface AttemptLog {
  attempts: number;
  firstAttempt: string;
  lastAttempt: string;
}

/** A batch that could not be delivered: Event Grid unavailable or refusing us (not the events). */
export interface BatchFailure extends AttemptLog {
  events: OutgoingEvent[];
  reason: FailureReason;
  status?: number;
  code?: string;
  message: string;
}

/** One event the destination refused on its own (400 for it alone, 413: too large, 410: the
 * webhook is gone for good). */
export interface EventRejection extends AttemptLog {
  event: OutgoingEvent;
  reason: "rejected_by_eventgrid" | "rejected_by_destination" | "event_too_large" | "destination_gone";
  status: number;
  message: string;
}

export interface DeliveryResult {
  published: OutgoingEvent[];
  rejected: EventRejection[];
  failed: BatchFailure[];
}

export interface PublisherOptions {
  /** Destination name: the `destination` label of its metrics and a field of its logs. */
  destination: string;
  client: EventGridTransport;
  channel?: string;
  /** Retries after the first attempt (PUBLISH_RETRIES). */
  retries: number;
  timeoutMs: number;
  backoff: BackoffOptions;
  maxBatchBytes: number;
  maxBatchEvents: number;
  breaker: { failureThreshold: number; cooldownMs: number };
  logger: Logger;
  metrics: Metrics;
  /** Injected so tests can observe waits without sleeping; defaults to setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

const BODY_HEADER = "x-auth0-bridge-body";

/**
 * @azure/eventgrid, fed with bytes we serialized ourselves. The SDK keeps its jobs (credentials,
 * channel header, pipeline, RestError); a last pipeline policy swaps in our body. Each event is
 * thus serialized exactly once, the batch limits are measured on the bytes that are really sent,
 * and `data` goes out as Auth0 sent it (the SDK's own serializer would re-copy it and drop a
 * literal "__proto__" key, for one).
 */
export class EventGridTransport {
  private readonly bodies = new Map<string, string>();
  private readonly client: EventGridPublisherClient<"CloudEvent">;

  constructor(endpoint: string, credential: KeyCredential | SASCredential | TokenCredential, allowInsecure: boolean) {
    const bodies = this.bodies;
    const serializedBody: PipelinePolicy = {
      name: "auth0BridgeSerializedBody",
      async sendRequest(request, next) {
        const id = request.headers.get(BODY_HEADER);
        if (id !== undefined) {
          request.headers.delete(BODY_HEADER);
          const body = bodies.get(id);
          if (body !== undefined) request.body = body;
        }
        return next(request);
      },
    };
    this.client = new EventGridPublisherClient(endpoint, "CloudEvent", credential, {
      // p-retry owns the retry policy; leaving the SDK's on would multiply attempts (4 x 4).
      retryOptions: { maxRetries: 0 },
      allowInsecureConnection: allowInsecure,
      userAgentOptions: { userAgentPrefix: "auth0-eventgrid-bridge" },
      additionalPolicies: [{ policy: serializedBody, position: "perRetry" }],
    });
  }

  /** POSTs a JSON array of structured CloudEvents (already serialized) to the topic. */
  async send(body: string, options: { channel?: string; abortSignal: AbortSignal }): Promise<void> {
    const id = randomUUID();
    this.bodies.set(id, body);
    try {
      await this.client.send([], {
        ...(options.channel ? { channelName: options.channel } : {}),
        abortSignal: options.abortSignal,
        requestOptions: { customHeaders: { [BODY_HEADER]: id } },
      });
    } finally {
      this.bodies.delete(id);
    }
  }
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class AttemptFailed extends Error {
  constructor(readonly detail: AttemptError) {
    super(detail.message);
  }
}

// Answers about the events themselves: the target is healthy, so they do not trip the breaker.
const EVENT_LEVEL_STATUSES = new Set([400, 413]);

export class EventGridPublisher {
  private readonly sleep: (ms: number) => Promise<void>;
  readonly breaker: CircuitBreaker;

  constructor(private readonly options: PublisherOptions) {
    this.sleep = options.sleep ?? defaultSleep;
    const { metrics, logger } = options;
    const destination = options.destination;
    registerDestination(metrics, destination);
    this.breaker = new CircuitBreaker({
      ...options.breaker,
      onStateChange: (state, previous) => {
        metrics.circuitBreakerState.set({ destination }, BREAKER_STATE_VALUE[state]);
        const log = state === "open" ? logger.error.bind(logger) : logger.info.bind(logger);
        log("circuit breaker " + state.replace("_", "-"), { destination, previous, cooldown_ms: options.breaker.cooldownMs });
      },
    });
  }

  /** Publishes every event; batches go out concurrently, each with its own retries. */
  async deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult> {
    const result: DeliveryResult = { published: [], rejected: [], failed: [] };
    if (events.length === 0) return result;
    const batches = splitIntoBatches(events, this.options.maxBatchBytes, this.options.maxBatchEvents);
    await Promise.all(batches.map((batch) => this.deliverBatch(batch, result)));
    return result;
  }

  private async deliverBatch(batch: OutgoingEvent[], result: DeliveryResult): Promise<void> {
    const outcome = await this.publishWithRetries(batch);
    if (outcome.ok) {
      result.published.push(...batch);
      return;
    }
    const { detail, log } = outcome;
    const status = detail.status;
    if (status !== undefined && EVENT_LEVEL_STATUSES.has(status)) {
      if (batch.length > 1) {
        // Bisect: the halves go on separately until the offending events stand alone.
        const middle = Math.ceil(batch.length / 2);
        this.options.logger.info("isolating refused events", { destination: this.options.destination, status, batch_size: batch.length });
        await Promise.all([this.deliverBatch(batch.slice(0, middle), result), this.deliverBatch(batch.slice(middle), result)]);
        return;
      }
      const event = batch[0]!;
      const reason = status === 413 ? "event_too_large" : "rejected_by_eventgrid";
      this.options.logger.error("event refused by Event Grid", { destination: this.options.destination, reason, status, error: detail.message, log_id: event.id, code: event.code });
      result.rejected.push({ event, reason, status, message: detail.message, ...log });
      return;
    }
    const failure: BatchFailure = {
      events: batch,
      reason: failureReason(detail),
      message: detail.message,
      ...log,
      ...(status !== undefined ? { status } : {}),
      ...(detail.code !== undefined ? { code: detail.code } : {}),
    };
    this.options.logger.error("delivery failed", {
      destination: this.options.destination,
      reason: failure.reason,
      status: failure.status ?? null,
      code: failure.code ?? null,
      error: failure.message,
      attempts: failure.attempts,
      elapsed_ms: Date.parse(failure.lastAttempt) - Date.parse(failure.firstAttempt),
      events: batch.length,
      log_ids: batch.map((e) => e.id),
      codes: batch.map((e) => e.code),
    });
    result.failed.push(failure);
  }

  private async publishWithRetries(batch: OutgoingEvent[]): Promise<{ ok: true } | { ok: false; detail: AttemptError; log: AttemptLog }> {
    const { client, channel, retries, timeoutMs, logger, metrics, backoff } = this.options;
    const body = `[${batch.map((e) => e.json).join(",")}]`;
    const firstAttempt = new Date().toISOString();
    let lastAttempt = firstAttempt;
    let attempts = 0;
    let last: AttemptError | undefined;
    const destination = this.options.destination;
    metrics.batchSize.observe({ destination }, batch.length);
    try {
      await pRetry(
        async () => {
          const permit = this.breaker.acquire();
          if (permit === "reject") {
            throw new AttemptFailed({ code: "circuit_open", message: `circuit breaker open: Event Grid is not called for ${Math.ceil(this.breaker.retryInMs / 1000)} s`, retryable: false });
          }
          attempts++;
          lastAttempt = new Date().toISOString();
          const t0 = performance.now();
          try {
            await client.send(body, { ...(channel ? { channel } : {}), abortSignal: AbortSignal.timeout(timeoutMs) });
          } catch (error) {
            const detail = classifyError(error);
            metrics.publishDuration.observe({ outcome: "failure", destination }, (performance.now() - t0) / 1000);
            if (detail.status !== undefined && EVENT_LEVEL_STATUSES.has(detail.status)) this.breaker.onSuccess();
            else this.breaker.onFailure();
            throw new AttemptFailed(detail);
          }
          this.breaker.onSuccess();
          metrics.publishDuration.observe({ outcome: "success", destination }, (performance.now() - t0) / 1000);
        },
        {
          retries,
          // Delays are computed here (backoff + Retry-After) and awaited in onFailedAttempt.
          minTimeout: 0,
          maxTimeout: 0,
          shouldRetry: ({ error }) => error instanceof AttemptFailed && error.detail.retryable,
          onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
            const detail = error instanceof AttemptFailed ? error.detail : classifyError(error);
            last = detail;
            if (detail.code === "circuit_open") return; // no request was made
            const willRetry = detail.retryable && retriesLeft > 0;
            metrics.publishRequests.inc({ outcome: willRetry ? "retry" : "failure", destination });
            const delayMs = willRetry ? retryDelay(attemptNumber, backoff, detail.retryAfterMs) : 0;
            logger.warn("publish attempt failed", {
              destination,
              attempt: attemptNumber,
              status: detail.status ?? null,
              code: detail.code ?? null,
              error: detail.message,
              batch_size: batch.length,
              will_retry: willRetry,
              ...(willRetry ? { retry_in_ms: delayMs } : {}),
            });
            if (willRetry && delayMs > 0) await this.sleep(delayMs);
          },
        },
      );
    } catch (error) {
      return { ok: false, detail: last ?? classifyError(error), log: { attempts, firstAttempt, lastAttempt } };
    }
    metrics.publishRequests.inc({ outcome: "success", destination });
    metrics.lastPublishSuccess.set({ destination }, Date.now() / 1000);
    return { ok: true };
  }
}
