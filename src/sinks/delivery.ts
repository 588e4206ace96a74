// The delivery machinery both publishers share: each batch goes out with its own retries (our
// backoff and Retry-After, awaited between attempts, p-retry's own timers off), behind a circuit
// breaker, with the publish metrics and logs. A batch refused as a whole (400, 413) is split in
// halves until the offending events stand alone, so one poison event never blocks the others.
// The publisher supplies the requests (a Sender); this module decides what their answers mean and
// reports what was published, which events were refused, and which batches failed.
import pRetry from "p-retry";
import type { Logger } from "../observability/logger.js";
import { BREAKER_STATE_VALUE, registerDestination, type Metrics } from "../observability/metrics.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import { failureReason, retryDelay, type AttemptError, type BackoffOptions, type FailureReason } from "./retry-policy.js";

export interface OutgoingEvent {
  /** CloudEvent id (the Auth0 log_id). */
  id: string;
  /** Auth0 type code, for logs and metrics. */
  code: string;
  /** The structured CloudEvent JSON, serialized once by the caller; sent as is. */
  json: string;
  /** Its size in bytes (UTF-8). */
  bytes: number;
  /** Told where its `bytes` bytes now sit in a request body, so it can drop its own copy (EncodedEvent). */
  writtenTo?(body: Buffer, start: number): void;
}

export interface AttemptLog {
  attempts: number;
  firstAttempt: string;
  lastAttempt: string;
}

/** A batch that could not be delivered: the destination unavailable or refusing us (not the events). */
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

/** A failed attempt as the sender describes it. */
export interface DeliveryError extends AttemptError {
  /**
   * The step that failed, logged as `stage`, for a target reached in steps (a webhook: "handshake",
   * then "post"); unset for a single request. "none": no request went out (breaker open, target
   * gone), so the attempt is neither counted nor logged nor reported to the breaker.
   */
  stage?: "handshake" | "post" | "none";
  /** The target answered 410 Gone, now or earlier: its events are rejected, not retried, and the
   * breaker is not told (nothing more will be sent to it). */
  gone?: boolean;
}

export class AttemptFailed extends Error {
  constructor(readonly detail: DeliveryError) {
    super(detail.message);
  }
}

/**
 * One attempt at a prepared batch: resolves once the target accepted it, throws AttemptFailed
 * otherwise, having told the breaker through `context` either way (see AttemptContext).
 */
export type Attempt = (context: AttemptContext) => Promise<void>;

/**
 * Given to each attempt. The breaker is told from inside the attempt, the moment the answer
 * comes, not once p-retry sees the attempt settle: a probe that succeeded has closed the breaker
 * before any other batch can ask it and be turned away.
 */
export interface AttemptContext {
  /** The target accepted the batch. */
  succeeded(): void;
  /** The attempt failed: tells the breaker what that says about the target; returns the error to throw. */
  failed(detail: DeliveryError): AttemptFailed;
  /** Counts one more attempt, when the sender sends again within this one (the webhook repeats
   * its handshake and POST once when refused with 401/403). */
  again(): void;
}

/** What a publisher supplies: how to send a batch, and how to word what happened. */
export interface Sender {
  /** The target as messages name it: "Event Grid", "the webhook". */
  name: string;
  /** Log message and rejection reason for an event the target refused on its own (400). */
  refused: { log: string; reason: EventRejection["reason"] };
  /** Readies a batch; undefined when it cannot be sent and the sender recorded it in `result`. */
  prepare(batch: OutgoingEvent[], result: DeliveryResult): Attempt | undefined;
  /** Describes an error an attempt threw that is not an AttemptFailed (a bug). */
  unexpected(error: unknown): DeliveryError;
  /** Asked before each attempt, ahead of the breaker: why not to send at all (a webhook gone). */
  blocked?(): DeliveryError | undefined;
  /** The rejection of one event of a batch that met a `gone` failure. */
  goneRejection?(event: OutgoingEvent, log: AttemptLog): EventRejection;
}

export interface DeliveryOptions {
  /** Destination name: the `destination` label of its metrics and a field of its logs. */
  destination: string;
  /** Retries after the first attempt. */
  retries: number;
  backoff: BackoffOptions;
  breaker: { failureThreshold: number; cooldownMs: number };
  logger: Logger;
  metrics: Metrics;
  /** Injected so tests can observe waits without sleeping; defaults to setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /** Injected clock (attempt times, breaker); defaults to Date.now. */
  now?: () => number;
}

export const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// Answers about the events themselves: the target is healthy, so they do not trip the breaker.
const EVENT_LEVEL_STATUSES = new Set([400, 413]);

/** A 400/413 to the request that carried the events (not to a handshake): it is about them. */
function refusesEvents(detail: DeliveryError): boolean {
  return (detail.stage === undefined || detail.stage === "post") && detail.status !== undefined && EVENT_LEVEL_STATUSES.has(detail.status);
}

type Outcome = { ok: true } | { ok: false; detail: DeliveryError; log: AttemptLog };

export class Delivery {
  readonly breaker: CircuitBreaker;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(
    private readonly options: DeliveryOptions,
    private readonly sender: Sender,
  ) {
    const { destination, metrics, logger } = options;
    this.sleep = options.sleep ?? defaultSleep;
    this.now = options.now ?? Date.now;
    registerDestination(metrics, destination);
    this.breaker = new CircuitBreaker({
      ...options.breaker,
      now: this.now,
      onStateChange: (state, previous) => {
        metrics.circuitBreakerState.set({ destination }, BREAKER_STATE_VALUE[state]);
        const log = state === "open" ? logger.error.bind(logger) : logger.info.bind(logger);
        log("circuit breaker " + state.replace("_", "-"), { destination, previous, cooldown_ms: options.breaker.cooldownMs });
      },
    });
  }

  /** Delivers every batch; they go out concurrently, each with its own retries. */
  async deliver(batches: readonly OutgoingEvent[][]): Promise<DeliveryResult> {
    const result: DeliveryResult = { published: [], rejected: [], failed: [] };
    if (batches.length === 0) return result;
    await Promise.all(batches.map((batch) => this.deliverBatch(batch, result)));
    return result;
  }

  /** Starts timing one request; the returned function records its duration with its outcome. */
  startTimer(): (outcome: "success" | "failure") => void {
    const { metrics, destination } = this.options;
    const t0 = performance.now();
    return (outcome) => metrics.publishDuration.observe({ outcome, destination }, (performance.now() - t0) / 1000);
  }

  private async deliverBatch(batch: OutgoingEvent[], result: DeliveryResult): Promise<void> {
    const { logger, destination } = this.options;
    const attempt = this.sender.prepare(batch, result);
    if (attempt === undefined) return;
    const outcome = await this.publishWithRetries(batch, attempt);
    if (outcome.ok) {
      result.published.push(...batch);
      return;
    }
    const { detail, log } = outcome;
    const goneRejection = this.sender.goneRejection;
    if (detail.gone && goneRejection) {
      for (const event of batch) result.rejected.push(goneRejection(event, log));
      return;
    }
    const status = detail.status;
    if (status !== undefined && refusesEvents(detail)) {
      if (batch.length > 1) {
        // Bisect: the halves go on separately until the offending events stand alone.
        const middle = Math.ceil(batch.length / 2);
        logger.info("isolating refused events", { destination, status, batch_size: batch.length });
        await Promise.all([this.deliverBatch(batch.slice(0, middle), result), this.deliverBatch(batch.slice(middle), result)]);
        return;
      }
      const event = batch[0]!;
      const reason = status === 413 ? "event_too_large" : this.sender.refused.reason;
      logger.error(this.sender.refused.log, { destination, reason, status, error: detail.message, log_id: event.id, code: event.code });
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
    logger.error("delivery failed", {
      destination,
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

  private async publishWithRetries(batch: OutgoingEvent[], attempt: Attempt): Promise<Outcome> {
    const { retries, logger, metrics, backoff, destination } = this.options;
    const firstAttempt = this.iso();
    let lastAttempt = firstAttempt;
    let attempts = 0;
    let last: DeliveryError | undefined;
    const context: AttemptContext = {
      succeeded: () => this.breaker.onSuccess(),
      failed: (detail) => {
        this.report(detail);
        return new AttemptFailed(detail);
      },
      again: () => {
        attempts++;
        lastAttempt = this.iso();
      },
    };
    metrics.batchSize.observe({ destination }, batch.length);
    try {
      await pRetry(
        // Not async, so that p-retry awaits the attempt's own promise: no extra turn between an
        // answer and its handling in which another batch could slip in.
        () => {
          const blocked = this.sender.blocked?.();
          if (blocked !== undefined) return Promise.reject(new AttemptFailed(blocked));
          if (this.breaker.acquire() === "reject") {
            const message = `circuit breaker open: ${this.sender.name} is not called for ${Math.ceil(this.breaker.retryInMs / 1000)} s`;
            return Promise.reject(new AttemptFailed({ stage: "none", code: "circuit_open", message, retryable: false }));
          }
          context.again();
          return attempt(context);
        },
        {
          retries,
          // Delays are computed here (backoff + Retry-After) and awaited in onFailedAttempt.
          minTimeout: 0,
          maxTimeout: 0,
          shouldRetry: ({ error }) => error instanceof AttemptFailed && error.detail.retryable,
          onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
            const detail = error instanceof AttemptFailed ? error.detail : this.sender.unexpected(error);
            last = detail;
            if (detail.stage === "none") return; // no request was made
            const willRetry = detail.retryable && retriesLeft > 0;
            metrics.publishRequests.inc({ outcome: willRetry ? "retry" : "failure", destination });
            const delayMs = willRetry ? retryDelay(attemptNumber, backoff, detail.retryAfterMs) : 0;
            logger.warn("publish attempt failed", {
              destination,
              attempt: attemptNumber,
              ...(detail.stage !== undefined ? { stage: detail.stage } : {}),
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
      return { ok: false, detail: last ?? this.sender.unexpected(error), log: { attempts, firstAttempt, lastAttempt } };
    }
    metrics.publishRequests.inc({ outcome: "success", destination });
    metrics.lastPublishSuccess.set({ destination }, this.now() / 1000);
    return { ok: true };
  }

  /** Tells the breaker what a failed attempt says about the target: nothing when no request went
   * out or the target is gone, healthy when it only refused the events. */
  private report(detail: DeliveryError): void {
    if (detail.stage === "none" || detail.gone) return;
    if (refusesEvents(detail)) this.breaker.onSuccess();
    else this.breaker.onFailure();
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}
