// The transform and delivery path of one ingested request: filter -> map -> deliver.
// It owns the answer the request gets: 200 only when every forwarded event was accepted by
// Event Grid; 503 with Retry-After otherwise, so that Auth0 keeps the logs and redelivers.
import type { DecodedBody } from "../auth0/record.js";
import type { EventTypeInfo, EventTypeRegistry } from "../auth0/registry.js";
import { mapRecord, MappingError, type MappingOptions } from "../cloudevents/map.js";
import type { HealthModel } from "../observability/health.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { DeliveryResult, OutgoingEvent } from "../sinks/eventgrid.js";
import type { RoutingRules } from "./routing.js";

export interface EventSink {
  deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult>;
}

export interface Rejection {
  index: number;
  reason: string;
  detail: string;
}

export interface IngestSummary {
  received: number;
  published: number;
  filtered: number;
  rejected: number;
  rejections: Rejection[];
}

export type PipelineOutcome =
  | { status: 200; body: IngestSummary }
  | { status: 503; retryAfterSeconds: number; body: IngestSummary & { error: string; message: string; failed: number } };

export interface PipelineOptions {
  registry: EventTypeRegistry;
  routing: RoutingRules;
  mapping: Omit<MappingOptions, "typeOverride">;
  sink: EventSink;
  logger: Logger;
  metrics: Metrics;
  health: HealthModel;
  /** Largest single event Event Grid takes (bytes); larger ones are never sent. */
  maxEventBytes: number;
  /** Retry-After sent with a 503. */
  retryAfterSeconds: number;
}

// Unknown codes come from the sender; cap how many distinct ones become metric labels.
const MAX_UNKNOWN_CODE_LABELS = 100;

export class Pipeline {
  private readonly mapping: MappingOptions;
  private readonly unknownCodes = new Set<string>();

  constructor(private readonly options: PipelineOptions) {
    this.mapping = { ...options.mapping, typeOverride: options.routing.typeOverride };
  }

  async process(decoded: DecodedBody): Promise<PipelineOutcome> {
    const { registry, routing, metrics, logger, health, sink } = this.options;
    const summary: IngestSummary = { received: decoded.items.length, published: 0, filtered: 0, rejected: 0, rejections: [] };
    const outgoing: OutgoingEvent[] = [];

    for (const item of decoded.items) {
      if (!item.ok) {
        this.reject(summary, item.index, item.reason, item.detail);
        continue;
      }
      const info = registry.lookup(item.record.data.type);
      const codeLabel = this.codeLabel(info);
      metrics.eventsReceived.inc({ code: codeLabel, category: info.apiFilter });
      if (routing.drops(info)) {
        summary.filtered++;
        metrics.eventsFiltered.inc({ code: codeLabel });
        continue;
      }
      try {
        const { event } = mapRecord(item.record, registry, this.mapping);
        const bytes = Buffer.byteLength(JSON.stringify(event));
        if (bytes > this.options.maxEventBytes) {
          this.reject(summary, item.index, "event_too_large", `event is ${bytes} bytes; Event Grid takes at most ${this.options.maxEventBytes}`, event.id);
          continue;
        }
        outgoing.push({
          id: event.id,
          code: codeLabel,
          bytes,
          input: {
            id: event.id,
            type: event.type,
            source: event.source,
            ...(event.time !== undefined ? { time: new Date(event.time) } : {}),
            ...(event.subject !== undefined ? { subject: event.subject } : {}),
            datacontenttype: event.datacontenttype ?? "application/json",
            data: event.data,
            extensionAttributes: extensionsOf(event as unknown as Record<string, unknown>),
          },
        });
      } catch (error) {
        const reason = error instanceof MappingError ? error.reason : "mapping_failed";
        const detail = error instanceof Error ? error.message : String(error);
        this.reject(summary, item.index, reason, detail);
      }
    }

    health.counters.received += summary.received;
    health.counters.filtered += summary.filtered;
    health.counters.rejected += summary.rejected;
    if (outgoing.length === 0) return { status: 200, body: summary };

    const result = await sink.deliver(outgoing);
    summary.published = result.published.length;
    for (const event of result.published) metrics.eventsPublished.inc({ code: event.code });
    health.counters.published += result.published.length;
    if (result.failed.length === 0) {
      health.recordDelivery(true);
      return { status: 200, body: summary };
    }

    let failed = 0;
    for (const failure of result.failed) {
      failed += failure.events.length;
      metrics.eventsFailed.inc({ reason: failure.reason }, failure.events.length);
      health.recordError({
        reason: failure.reason,
        message: failure.message,
        events: failure.events.length,
        ...(failure.status !== undefined ? { status: failure.status } : {}),
      });
    }
    health.counters.failed += failed;
    health.recordDelivery(false);
    logger.debug("request answered 503 so the sender redelivers", { failed, published: summary.published });
    return {
      status: 503,
      retryAfterSeconds: this.options.retryAfterSeconds,
      body: {
        error: "delivery_failed",
        message: `${failed} event(s) could not be delivered to Event Grid; send the request again later`,
        failed,
        ...summary,
      },
    };
  }

  private reject(summary: IngestSummary, index: number, reason: string, detail: string, logId?: string): void {
    summary.rejected++;
    summary.rejections.push({ index, reason, detail });
    this.options.metrics.eventsRejected.inc({ reason });
    this.options.logger.warn("record rejected", { index, reason, detail, ...(logId ? { log_id: logId } : {}) });
  }

  private codeLabel(info: EventTypeInfo): string {
    if (info.known) return info.code;
    if (this.unknownCodes.has(info.code)) return info.code;
    if (this.unknownCodes.size < MAX_UNKNOWN_CODE_LABELS && /^[A-Za-z0-9_.-]{1,64}$/.test(info.code)) {
      this.unknownCodes.add(info.code);
      return info.code;
    }
    return "_other_unknown";
  }
}

// Attributes the SDK takes as named fields (plus legacy fields the cloudevents package keeps on the object).
const CORE_ATTRIBUTES = new Set(["id", "type", "source", "specversion", "time", "subject", "datacontenttype", "dataschema", "data", "data_base64", "datacontentencoding", "schemaurl"]);

function extensionsOf(event: Record<string, unknown>): Record<string, unknown> {
  const extensions: Record<string, unknown> = {};
  for (const key of Object.keys(event)) if (!CORE_ATTRIBUTES.has(key) && event[key] !== undefined) extensions[key] = event[key];
  return extensions;
}
