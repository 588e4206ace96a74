// The Event Grid sink: publishes CloudEvents in batches with @azure/eventgrid, with the SDK's
// own retries off and p-retry driving attempts, backoff and Retry-After. It answers with what
// was published and what failed; the caller decides what the sender is told.
import { EventGridPublisherClient, type SendCloudEventInput } from "@azure/eventgrid";
import type { KeyCredential, SASCredential, TokenCredential } from "@azure/core-auth";
import pRetry from "p-retry";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { splitIntoBatches } from "./batches.js";
import { classifyError, failureReason, retryDelay, type AttemptError, type BackoffOptions, type FailureReason } from "./retry-policy.js";

export interface OutgoingEvent {
  /** CloudEvent id (the Auth0 log_id). */
  id: string;
  /** Auth0 type code, for logs and metrics. */
  code: string;
  /** Serialized size in bytes, measured once by the caller. */
  bytes: number;
  input: SendCloudEventInput<unknown>;
}

export interface BatchFailure {
  events: OutgoingEvent[];
  reason: FailureReason;
  status?: number;
  code?: string;
  message: string;
  attempts: number;
}

export interface DeliveryResult {
  published: OutgoingEvent[];
  failed: BatchFailure[];
}

export interface PublisherOptions {
  client: EventGridPublisherClient<"CloudEvent">;
  channel?: string;
  /** Retries after the first attempt (PUBLISH_RETRIES). */
  retries: number;
  timeoutMs: number;
  backoff: BackoffOptions;
  maxBatchBytes: number;
  maxBatchEvents: number;
  logger: Logger;
  metrics: Metrics;
  /** Injected so tests can count waits without sleeping long; defaults to setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

export function createEventGridClient(
  endpoint: string,
  credential: KeyCredential | SASCredential | TokenCredential,
  allowInsecure: boolean,
): EventGridPublisherClient<"CloudEvent"> {
  return new EventGridPublisherClient(endpoint, "CloudEvent", credential, {
    // p-retry owns the retry policy; leaving the SDK's on would multiply attempts (4 x 4).
    retryOptions: { maxRetries: 0 },
    allowInsecureConnection: allowInsecure,
    userAgentOptions: { userAgentPrefix: "auth0-eventgrid-bridge" },
  });
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class AttemptFailed extends Error {
  constructor(readonly detail: AttemptError) {
    super(detail.message);
  }
}

export class EventGridPublisher {
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly options: PublisherOptions) {
    this.sleep = options.sleep ?? defaultSleep;
  }

  /** Publishes every event; batches go out concurrently, each with its own retries. */
  async deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult> {
    const result: DeliveryResult = { published: [], failed: [] };
    if (events.length === 0) return result;
    const batches = splitIntoBatches(events, this.options.maxBatchBytes, this.options.maxBatchEvents);
    const outcomes = await Promise.all(batches.map((batch) => this.publishBatch(batch)));
    outcomes.forEach((failure, i) => {
      if (failure) result.failed.push(failure);
      else result.published.push(...batches[i]!);
    });
    return result;
  }

  private async publishBatch(batch: OutgoingEvent[]): Promise<BatchFailure | undefined> {
    const { client, channel, retries, timeoutMs, logger, metrics, backoff } = this.options;
    const inputs = batch.map((e) => e.input);
    const started = performance.now();
    let attempts = 0;
    let last: AttemptError | undefined;
    metrics.batchSize.observe(batch.length);
    try {
      await pRetry(
        async () => {
          attempts++;
          const t0 = performance.now();
          try {
            await client.send(inputs, {
              ...(channel ? { channelName: channel } : {}),
              abortSignal: AbortSignal.timeout(timeoutMs),
            });
          } catch (error) {
            const detail = classifyError(error);
            metrics.publishDuration.observe({ outcome: "failure" }, (performance.now() - t0) / 1000);
            throw new AttemptFailed(detail);
          }
          metrics.publishDuration.observe({ outcome: "success" }, (performance.now() - t0) / 1000);
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
            const willRetry = detail.retryable && retriesLeft > 0;
            metrics.publishRequests.inc({ outcome: willRetry ? "retry" : "failure" });
            const delayMs = willRetry ? retryDelay(attemptNumber, backoff, detail.retryAfterMs) : 0;
            logger.warn("publish attempt failed", {
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
      const detail = last ?? classifyError(error);
      const failure: BatchFailure = {
        events: batch,
        reason: failureReason(detail),
        message: detail.message,
        attempts,
        ...(detail.status !== undefined ? { status: detail.status } : {}),
        ...(detail.code !== undefined ? { code: detail.code } : {}),
      };
      logger.error("delivery failed", {
        reason: failure.reason,
        status: failure.status ?? null,
        code: failure.code ?? null,
        error: failure.message,
        attempts,
        elapsed_ms: Math.round(performance.now() - started),
        events: batch.length,
        log_ids: batch.map((e) => e.id),
        codes: batch.map((e) => e.code),
      });
      return failure;
    }
    metrics.publishRequests.inc({ outcome: "success" });
    metrics.lastPublishSuccess.set(Date.now() / 1000);
    return undefined;
  }
}
