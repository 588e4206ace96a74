// The transform and delivery path of one ingested request: filter -> route -> redact + map ->
// dedupe -> deliver to each destination, then keep what could not be delivered in the dead-letter
// store. It owns the answer the request gets: 200 only when every event reached every destination
// its routes name (or was durably dead-lettered); 503 with Retry-After when a destination is
// unavailable (Auth0 keeps the logs and redelivers, and the per-destination dedupe window keeps
// the healthy ones from getting them twice); 429 when too many events are already in flight.
import type { Auth0LogRecord, DecodedBody } from "../auth0/record.js";
import type { EventTypeInfo, EventTypeRegistry } from "../auth0/registry.js";
import { EventMapper, MappingError, type MappingOptions } from "../cloudevents/map.js";
import type { HealthModel } from "../observability/health.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { DeadLetterEntry } from "../sinks/dead-letter.js";
import { EncodedEvent } from "../sinks/encoded-event.js";
import type { BatchFailure, DeliveryResult, OutgoingEvent } from "../sinks/eventgrid.js";
import type { RecentIds } from "./dedupe.js";
import type { Router } from "./router.js";
import type { RoutingRules } from "./routing.js";

/** Room reserved for one request's events (see Pipeline.admit). */
export interface Admission {
  /** Adjusts the reservation to the decoded count; false when the larger count does not fit. */
  resize(events: number): boolean;
  release(): void;
}

export interface EventSink {
  deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult>;
}

/** One destination as the pipeline sees it: where its events go and what it already has. */
export interface Destination {
  name: string;
  sink: EventSink;
  /** Ids this destination accepted recently (its own dedupe window). */
  recent: RecentIds;
  /** True while the destination is known to be unavailable (its circuit breaker is open). */
  down(): boolean;
}

export interface DeadLetterSink {
  append(entries: readonly DeadLetterEntry[]): Promise<void>;
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
  duplicates: number;
  dead_lettered: number;
  rejections: Rejection[];
}

type ErrorBody = { error: string; message: string };

export type PipelineOutcome =
  | { status: 200; body: IngestSummary }
  | { status: 400; body: ErrorBody & Record<string, unknown> }
  | { status: 429 | 503; retryAfterSeconds: number; body: ErrorBody & Partial<IngestSummary> & { failed?: number } };

export interface PipelineOptions {
  registry: EventTypeRegistry;
  /** The global filters (FILTER_*) and type overrides (TYPE_OVERRIDES). */
  routing: RoutingRules;
  router: Router;
  mapping: Omit<MappingOptions, "typeOverride">;
  destinations: ReadonlyMap<string, Destination>;
  deadLetters: DeadLetterSink;
  logger: Logger;
  metrics: Metrics;
  health: HealthModel;
  /** Largest single event Event Grid takes (bytes); larger ones are never sent. */
  maxEventBytes: number;
  maxInflightEvents: number;
  /** What happens to events when a destination stays unavailable: 503 (retry) or dead-letter + 200. */
  onExhausted: "retry" | "dead-letter";
  /** Retry-After sent with a 503 or 429. */
  retryAfterSeconds: number;
}

// Unknown codes come from the sender; cap how many distinct ones become metric labels.
const MAX_UNKNOWN_CODE_LABELS = 100;

const eventJson = (event: OutgoingEvent) => JSON.parse(event.json) as Record<string, unknown>;

/**
 * An event on its way to one destination, with what the dead-letter store needs if it fails there.
 * Not the parsed record itself: its `data` is in the event's JSON already, and keeping the object
 * graph alive while the destination answers made the garbage collector copy and promote every
 * record (S1 ran ~12% faster without it). Only the record's other fields (normally `log_id`) are kept.
 */
interface Pending {
  index: number;
  envelope: Record<string, unknown>;
}

/** The record minus `data`. */
function envelopeOf(record: Auth0LogRecord): Record<string, unknown> {
  const envelope: Record<string, unknown> = {};
  for (const key in record) if (key !== "data") envelope[key] = (record as unknown as Record<string, unknown>)[key];
  return envelope;
}

/** The (redacted) record an event was mapped from, for a dead-letter entry. */
function recordOf(pending: Pending, event: Record<string, unknown>): Record<string, unknown> {
  return { ...pending.envelope, data: event.data };
}

/** A request's events, mapped and sorted by destination, and what already went wrong with them. */
interface Routed {
  summary: IngestSummary;
  outgoing: Map<string, OutgoingEvent[]>;
  dead: DeadLetterEntry[];
  pending: Map<OutgoingEvent, Pending>;
}

export class Pipeline {
  private readonly mapper: EventMapper;
  /** Mappers per route type (a route's `type` wins over TYPE_OVERRIDES). */
  private readonly routeMappers = new Map<string, EventMapper>();
  private readonly unknownCodes = new Set<string>();
  private readonly destinationList: Destination[];
  private inflight = 0;

  constructor(private readonly options: PipelineOptions) {
    this.mapper = new EventMapper(options.registry, { ...options.mapping, typeOverride: options.routing.typeOverride });
    this.destinationList = [...options.destinations.values()];
  }

  private mapperFor(type: string | undefined): EventMapper {
    if (type === undefined) return this.mapper;
    let mapper = this.routeMappers.get(type);
    if (!mapper) this.routeMappers.set(type, (mapper = new EventMapper(this.options.registry, { ...this.options.mapping, typeOverride: () => type })));
    return mapper;
  }

  /**
   * Reserves room for a request's events before its body is read (the estimate comes from its
   * Content-Length), so a burst of large requests is refused at the door instead of being read
   * and parsed first. Undefined: no room, answer 429. The reservation is resized to the real
   * count once the body is decoded, and released when the request is answered.
   */
  /**
   * While Event Grid is known to be down (circuit breaker open) and failures are answered with 503
   * anyway, answer before reading the body: an outage then costs almost nothing per request.
   */
  get refusingFast(): boolean {
    return this.options.onExhausted === "retry" && this.destinationList.length > 0 && this.destinationList.every((d) => d.down());
  }

  unavailable(): PipelineOutcome {
    return {
      status: 503,
      retryAfterSeconds: this.options.retryAfterSeconds,
      body: { error: "eventgrid_unavailable", message: "every destination is unavailable (circuit breaker open); send this request again later" },
    };
  }

  admit(estimate: number): Admission | undefined {
    const max = this.options.maxInflightEvents;
    // One request larger than the cap still goes through when nothing else is in flight.
    if (this.inflight > 0 && this.inflight + estimate > max) return undefined;
    let held = estimate;
    let done = false;
    this.setInflight(this.inflight + held);
    return {
      resize: (events) => {
        const others = this.inflight - held;
        if (events > held && others > 0 && others + events > max) return false;
        this.setInflight(others + events);
        held = events;
        return true;
      },
      release: () => {
        if (done) return;
        done = true;
        this.setInflight(this.inflight - held);
      },
    };
  }

  private setInflight(value: number): void {
    this.inflight = value;
    this.options.metrics.inflightEvents.set(value);
  }

  get inflightEvents(): number {
    return this.inflight;
  }

  throttled(): PipelineOutcome {
    this.options.metrics.ingestRejectedBusy.inc();
    return {
      status: 429,
      retryAfterSeconds: this.options.retryAfterSeconds,
      body: { error: "too_busy", message: `more than ${this.options.maxInflightEvents} events are being delivered; send this request again later` },
    };
  }

  /** An authenticated body that is not JSON at all: kept in the dead-letter store, answered 400. */
  async rejectBody(raw: string, message: string, location: Record<string, unknown>): Promise<PipelineOutcome> {
    if (raw.trim() === "") return { status: 400, body: { error: "invalid_body", message, ...location } };
    try {
      await this.options.deadLetters.append([{ reason: "unparseable_body", raw, error: message }]);
    } catch (error) {
      return this.storeUnavailable(error);
    }
    this.options.metrics.eventsDeadLettered.inc({ reason: "unparseable_body" });
    return { status: 400, body: { error: "invalid_body", message, ...location } };
  }

  /**
   * Runs a decoded request from a stream (the default stream unless named); with an admission
   * from admit(), its reservation is resized to the real count.
   */
  process(decoded: DecodedBody, admission?: Admission, stream = "default"): Promise<PipelineOutcome> {
    const count = decoded.items.length;
    const own = admission ? undefined : this.admit(count);
    if (admission ? !admission.resize(count) : own === undefined) return Promise.resolve(this.throttled());
    // Not an async function on purpose: the parsed records are only needed until they are mapped,
    // and a suspended async function would keep its `decoded` argument alive until it finishes.
    let delivered: Promise<PipelineOutcome>;
    try {
      delivered = this.deliver(this.route(decoded, stream));
    } catch (error) {
      delivered = Promise.reject(error);
    }
    return own ? delivered.finally(() => own.release()) : delivered;
  }

  /** A record kept before any route is known (invalid records): redacted by every route's rules. */
  private redactUnrouted(value: unknown): unknown {
    const redactor = this.options.router.anyRouteRedactor;
    if (!redactor || typeof value !== "object" || value === null || Array.isArray(value)) return value;
    const data = (value as Record<string, unknown>).data;
    if (typeof data !== "object" || data === null || Array.isArray(data)) return value;
    return { ...value, data: redactor.apply(data as Record<string, unknown>) };
  }

  /** Filter, route, redact, map and dedupe a request's records (synchronous: nothing here waits). */
  private route(decoded: DecodedBody, stream: string): Routed {
    const { registry, routing, router, metrics, health, destinations } = this.options;
    const summary: IngestSummary = { received: decoded.items.length, published: 0, filtered: 0, rejected: 0, duplicates: 0, dead_lettered: 0, rejections: [] };
    const outgoing = new Map<string, OutgoingEvent[]>();
    const dead: DeadLetterEntry[] = [];
    const pending = new Map<OutgoingEvent, Pending>();
    // Counted per request and added once per label set: prom-client's label lookup is not free.
    const received = new Map<string, { code: string; category: string; n: number }>();
    const filtered = new Map<string, number>();
    const duplicates = new Map<string, number>();

    for (const item of decoded.items) {
      if (!item.ok) {
        this.reject(summary, item.index, item.reason, item.detail);
        dead.push({ reason: "invalid_record", detail: item.reason, error: item.detail, ...(typeof item.raw === "string" ? { raw: item.raw } : item.raw !== undefined ? { record: this.redactUnrouted(item.raw) } : {}) });
        continue;
      }
      const info = registry.lookup(item.record.data.type);
      const codeLabel = this.codeLabel(info);
      const tally = received.get(codeLabel);
      if (tally) tally.n++;
      else received.set(codeLabel, { code: codeLabel, category: info.apiFilter, n: 1 });
      const plan = routing.drops(info) ? [] : router.plan(stream, info);
      if (plan.length === 0) {
        summary.filtered++;
        filtered.set(codeLabel, (filtered.get(codeLabel) ?? 0) + 1);
        continue;
      }
      let rejected = false;
      for (const target of plan) {
        const record = target.redactor ? { ...item.record, data: target.redactor.apply(item.record.data) as Auth0LogRecord["data"] } : item.record;
        let event;
        try {
          event = this.mapperFor(target.type).map(record);
        } catch (error) {
          const reason = error instanceof MappingError ? error.reason : "mapping_failed";
          const detail = error instanceof Error ? error.message : String(error);
          if (!rejected) this.reject(summary, item.index, reason, detail);
          rejected = true;
          dead.push({ reason: "invalid_record", detail: reason, error: detail, record, code: info.code, destination: target.destinations.join(",") });
          continue;
        }
        let structured: string | undefined;
        let bytes = 0;
        let envelope: Record<string, unknown> | undefined;
        for (const name of target.destinations) {
          if (destinations.get(name)!.recent.has(event.id)) {
            summary.duplicates++;
            duplicates.set(name, (duplicates.get(name) ?? 0) + 1);
            continue;
          }
          if (structured === undefined) {
            structured = JSON.stringify(event.structured);
            bytes = Buffer.byteLength(structured);
          }
          if (bytes > this.options.maxEventBytes) {
            const detail = `event is ${bytes} bytes; Event Grid takes at most ${this.options.maxEventBytes}`;
            if (!rejected) this.reject(summary, item.index, "event_too_large", detail, event.id);
            rejected = true;
            dead.push({ reason: "event_too_large", error: detail, log_id: event.id, code: info.code, destination: name, record, event: JSON.parse(structured) as Record<string, unknown> });
            continue;
          }
          const out = new EncodedEvent(event.id, codeLabel, structured, bytes);
          let list = outgoing.get(name);
          if (!list) outgoing.set(name, (list = []));
          list.push(out);
          pending.set(out, { index: item.index, envelope: (envelope ??= envelopeOf(record)) });
        }
      }
    }

    for (const t of received.values()) metrics.eventsReceived.inc({ code: t.code, category: t.category }, t.n);
    for (const [code, n] of filtered) metrics.eventsFiltered.inc({ code }, n);
    for (const [destination, n] of duplicates) metrics.eventsDuplicate.inc({ destination }, n);
    health.counters.received += summary.received;
    health.counters.filtered += summary.filtered;
    return { summary, outgoing, dead, pending };
  }

  /** Delivers routed events to their destinations and decides the answer. */
  private async deliver({ summary, outgoing, dead, pending }: Routed): Promise<PipelineOutcome> {
    const { metrics, health, destinations } = this.options;
    // Destinations are delivered to side by side: a slow or failing one does not hold up the others.
    const results = await Promise.all(
      [...outgoing].map(async ([name, events]) => ({ name, result: await destinations.get(name)!.sink.deliver(events) })),
    );

    const unavailable: BatchFailure[] = [];
    let sent = false;
    for (const { name: destination, result } of results) {
      sent = true;
      const recent = destinations.get(destination)!.recent;
      summary.published += result.published.length;
      const published = new Map<string, number>();
      for (const event of result.published) {
        published.set(event.code, (published.get(event.code) ?? 0) + 1);
        recent.add(event.id);
      }
      for (const [code, n] of published) metrics.eventsPublished.inc({ code, destination }, n);
      health.counters.published += result.published.length;

      for (const r of result.rejected) {
        const meta = pending.get(r.event)!;
        const event = eventJson(r.event);
        this.reject(summary, meta.index, r.reason, `${destination} answered ${r.status}: ${r.message}`, r.event.id);
        dead.push({
          reason: r.reason,
          log_id: r.event.id,
          code: r.event.code,
          destination,
          record: recordOf(meta, event),
          event,
          status: r.status,
          attempts: r.attempts,
          error: r.message,
          first_attempt: r.firstAttempt,
          last_attempt: r.lastAttempt,
        });
        health.recordError({ reason: r.reason, message: `${destination}: ${r.message}`, status: r.status, events: 1 });
      }

      for (const failure of result.failed) {
        const keep = this.options.onExhausted === "dead-letter" && (failure.reason === "exhausted" || failure.reason === "circuit_open");
        if (keep) {
          for (const out of failure.events) {
            const event = eventJson(out);
            dead.push({
              reason: "exhausted",
              detail: failure.reason,
              log_id: out.id,
              code: out.code,
              destination,
              record: recordOf(pending.get(out)!, event),
              event,
              attempts: failure.attempts,
              error: failure.message,
              first_attempt: failure.firstAttempt,
              last_attempt: failure.lastAttempt,
              ...(failure.status !== undefined ? { status: failure.status } : {}),
            });
          }
        } else {
          unavailable.push(failure);
        }
        metrics.eventsFailed.inc({ reason: failure.reason, destination }, failure.events.length);
        health.recordError({ reason: failure.reason, message: `${destination}: ${failure.message}`, events: failure.events.length, ...(failure.status !== undefined ? { status: failure.status } : {}) });
      }
    }

    if (dead.length > 0) {
      try {
        await this.options.deadLetters.append(dead);
      } catch (error) {
        return this.storeUnavailable(error, summary);
      }
      for (const entry of dead) {
        metrics.eventsDeadLettered.inc({ reason: entry.reason });
        // Kept is as good as delivered for a redelivery: do not send it there again.
        if (entry.log_id && entry.destination) destinations.get(entry.destination)?.recent.add(entry.log_id);
      }
      summary.dead_lettered = dead.length;
    }
    health.counters.rejected += summary.rejected;

    if (unavailable.length === 0) {
      if (sent) health.recordDelivery(results.every((r) => r.result.failed.length === 0));
      return { status: 200, body: summary };
    }
    const failed = unavailable.reduce((n, f) => n + f.events.length, 0);
    health.counters.failed += failed;
    health.recordDelivery(false);
    const where = [...new Set(unavailable.map((f) => results.find((r) => r.result.failed.includes(f))!.name))];
    return {
      status: 503,
      retryAfterSeconds: this.options.retryAfterSeconds,
      body: {
        error: "delivery_failed",
        message: `${failed} event(s) could not be delivered to ${where.join(", ")}; send the request again later`,
        failed,
        ...summary,
      },
    };
  }

  private storeUnavailable(error: unknown, summary?: IngestSummary): PipelineOutcome {
    const message = error instanceof Error ? error.message : String(error);
    this.options.logger.error("dead-letter store write failed; the sender must redeliver", { error: message });
    this.options.health.recordError({ reason: "dead_letter_unavailable", message });
    return {
      status: 503,
      retryAfterSeconds: this.options.retryAfterSeconds,
      body: { error: "dead_letter_unavailable", message: "the dead-letter store cannot be written; send the request again later", ...summary },
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
