// The Event Grid sink: publishes CloudEvents in batches with @azure/eventgrid, with the SDK's
// own retries off. Retries, backoff, Retry-After, the circuit breaker and the bisecting of
// refused batches are the shared delivery machinery (delivery.ts); this file holds what is
// Event Grid's: the SDK transport fed with our own bytes, the channel, and RestError's reading.
import { randomUUID } from "node:crypto";
import { EventGridPublisherClient } from "@azure/eventgrid";
import type { KeyCredential, SASCredential, TokenCredential } from "@azure/core-auth";
import type { PipelinePolicy } from "@azure/core-rest-pipeline";
import { splitIntoBatches } from "./batches.js";
import type { CircuitBreaker } from "./circuit-breaker.js";
import { Delivery, type Attempt, type DeliveryOptions, type DeliveryResult, type OutgoingEvent } from "./delivery.js";
import { classifyError } from "./retry-policy.js";

// The delivery types live with the machinery that produces them; they are re-exported so that
// their users keep importing them from here.
export type { AttemptLog, BatchFailure, DeliveryResult, EventRejection, OutgoingEvent } from "./delivery.js";

/** Destination, retries, backoff, breaker, logger, metrics and sleep: see DeliveryOptions. */
export interface PublisherOptions extends Omit<DeliveryOptions, "now"> {
  client: EventGridTransport;
  channel?: string;
  timeoutMs: number;
  maxBatchBytes: number;
  maxBatchEvents: number;
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
  private readonly bodies = new Map<string, Buffer>();
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

  /** POSTs a JSON array of structured CloudEvents (already serialized, UTF-8) to the topic. */
  async send(body: Buffer, options: { channel?: string; abortSignal: AbortSignal }): Promise<void> {
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

export class EventGridPublisher {
  readonly breaker: CircuitBreaker;
  private readonly delivery: Delivery;

  constructor(private readonly options: PublisherOptions) {
    this.delivery = new Delivery(options, {
      name: "Event Grid",
      refused: { log: "event refused by Event Grid", reason: "rejected_by_eventgrid" },
      prepare: (batch) => this.prepare(batch),
      unexpected: (error) => classifyError(error),
    });
    this.breaker = this.delivery.breaker;
  }

  /** Publishes every event; batches go out concurrently, each with its own retries. */
  deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult> {
    return this.delivery.deliver(splitIntoBatches(events, this.options.maxBatchBytes, this.options.maxBatchEvents));
  }

  /** One request per batch: the events' JSON written into an array once, sent as is on every attempt. */
  private prepare(batch: OutgoingEvent[]): Attempt {
    const { client, channel, timeoutMs } = this.options;
    const body = jsonArray(batch);
    return async (context) => {
      const observe = this.delivery.startTimer();
      try {
        await client.send(body, { ...(channel ? { channel } : {}), abortSignal: AbortSignal.timeout(timeoutMs) });
      } catch (error) {
        const detail = classifyError(error);
        observe("failure");
        throw context.failed(detail);
      }
      context.succeeded();
      observe("success");
    };
  }
}

/**
 * The events as one JSON array, in UTF-8 bytes. A Buffer rather than a joined string: it is encoded
 * once (the HTTP client would encode a string twice, once to measure it and once to send it), it
 * lives outside the JavaScript heap while the request is out, and its size is the events' `bytes`.
 */
export function jsonArray(events: readonly OutgoingEvent[]): Buffer {
  let size = 1 + Math.max(events.length, 1);
  for (const event of events) size += event.bytes;
  // 4 bytes of slack (the longest UTF-8 character): while the writes end before them, none of
  // them was cut short, even if an event's `bytes` was wrong.
  const body = Buffer.allocUnsafe(size + 4);
  const starts: number[] = [];
  let at = 0;
  body[at++] = 0x5b; // [
  for (let i = 0; i < events.length; i++) {
    if (i > 0) body[at++] = 0x2c; // ,
    starts.push(at);
    at += body.write(events[i]!.json, at, "utf8");
  }
  if (at > size - 1) return Buffer.from(`[${events.map((e) => e.json).join(",")}]`);
  body[at++] = 0x5d; // ]
  // Only now that every event is known to be whole in the body.
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    const end = i + 1 < events.length ? starts[i + 1]! - 1 : at - 1;
    if (end - starts[i]! === event.bytes) event.writtenTo?.(body, starts[i]!);
  }
  return body.subarray(0, at);
}
