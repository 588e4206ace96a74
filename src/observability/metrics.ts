// Prometheus metrics (prom-client). One registry per bridge instance, passed to whoever
// records, so tests can run several bridges in one process and read their own numbers.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  registry: Registry;
  eventsReceived: Counter<"code" | "category">;
  eventsPublished: Counter<"code" | "destination">;
  eventsFailed: Counter<"reason" | "destination">;
  eventsFiltered: Counter<"code">;
  eventsRejected: Counter<"reason">;
  publishRequests: Counter<"outcome" | "destination">;
  publishDuration: Histogram<"outcome" | "destination">;
  batchSize: Histogram<"destination">;
  ingestRequests: Counter<"status">;
  lastPublishSuccess: Gauge<"destination">;
  ready: Gauge;
  info: Gauge<"version">;
  eventsDeadLettered: Counter<"reason">;
  deadLetterRecords: Gauge;
  eventsDuplicate: Counter<"destination">;
  inflightEvents: Gauge;
  circuitBreakerState: Gauge<"destination">;
  destinationGone: Gauge<"destination">;
  ingestRejectedBusy: Counter;
}

/** Numeric values of auth0_bridge_circuit_breaker_state. */
export const BREAKER_STATE_VALUE = { closed: 0, half_open: 1, open: 2 } as const;

export function createMetrics(options: { version: string; defaultMetrics?: boolean }): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const metrics: Metrics = {
    registry,
    eventsReceived: new Counter({
      name: "auth0_bridge_events_received_total",
      help: "Valid Auth0 log events received, by type code and API filter category (unknown codes: category \"unknown\").",
      labelNames: ["code", "category"],
      registers,
    }),
    eventsPublished: new Counter({
      name: "auth0_bridge_events_published_total",
      help: "Events accepted by Event Grid, by type code.",
      labelNames: ["code", "destination"],
      registers,
    }),
    eventsFailed: new Counter({
      name: "auth0_bridge_events_failed_total",
      help: "Events whose delivery finally failed (after retries, or refused), by reason.",
      labelNames: ["reason", "destination"],
      registers,
    }),
    eventsFiltered: new Counter({
      name: "auth0_bridge_events_filtered_total",
      help: "Events dropped on purpose by the configured filters, or matched by no route, by type code.",
      labelNames: ["code"],
      registers,
    }),
    eventsRejected: new Counter({
      name: "auth0_bridge_events_rejected_total",
      help: "Records not forwarded because they are not valid Auth0 log records, by reason.",
      labelNames: ["reason"],
      registers,
    }),
    publishRequests: new Counter({
      name: "auth0_bridge_publish_requests_total",
      help: "HTTP publish attempts to Event Grid: success, retry (failed, will be retried) or failure (failed for good).",
      labelNames: ["outcome", "destination"],
      registers,
    }),
    publishDuration: new Histogram({
      name: "auth0_bridge_publish_duration_seconds",
      help: "Duration of one HTTP publish attempt to Event Grid.",
      labelNames: ["outcome", "destination"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    batchSize: new Histogram({
      name: "auth0_bridge_batch_size_events",
      help: "Events per Event Grid publish request.",
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
      labelNames: ["destination"],
      registers,
    }),
    ingestRequests: new Counter({
      name: "auth0_bridge_ingest_requests_total",
      help: "Requests on the ingestion endpoint, by HTTP status answered.",
      labelNames: ["status"],
      registers,
    }),
    lastPublishSuccess: new Gauge({
      name: "auth0_bridge_last_publish_success_timestamp_seconds",
      help: "Unix time of the last publish request Event Grid accepted (0 until the first).",
      labelNames: ["destination"],
      registers,
    }),
    ready: new Gauge({
      name: "auth0_bridge_ready",
      help: "1 when the bridge is ready to accept traffic (configuration valid, Event Grid target checked, not shutting down).",
      registers,
    }),
    info: new Gauge({
      name: "auth0_bridge_info",
      help: "Build information; the value is always 1.",
      labelNames: ["version"],
      registers,
    }),
    eventsDeadLettered: new Counter({
      name: "auth0_bridge_events_dead_lettered_total",
      help: "Events (or unparseable bodies) written to the dead-letter store, by reason.",
      labelNames: ["reason"],
      registers,
    }),
    deadLetterRecords: new Gauge({
      name: "auth0_bridge_dead_letter_records",
      help: "Records waiting in the dead-letter store (not yet replayed).",
      registers,
    }),
    eventsDuplicate: new Counter({
      name: "auth0_bridge_events_duplicate_total",
      help: "Events not published again because their log_id was published recently (redelivery).",
      labelNames: ["destination"],
      registers,
    }),
    inflightEvents: new Gauge({
      name: "auth0_bridge_inflight_events",
      help: "Events accepted from senders and not yet answered for.",
      registers,
    }),
    circuitBreakerState: new Gauge({
      name: "auth0_bridge_circuit_breaker_state",
      help: "Event Grid circuit breaker: 0 closed (publishing), 1 half-open (probing), 2 open (not calling Event Grid).",
      labelNames: ["destination"],
      registers,
    }),
    ingestRejectedBusy: new Counter({
      name: "auth0_bridge_ingest_throttled_total",
      help: "Requests answered 429 because MAX_INFLIGHT_EVENTS events were already in flight.",
      registers,
    }),
    destinationGone: new Gauge({
      name: "auth0_bridge_destination_gone",
      help: "1 when a webhook destination answered 410 Gone: the bridge stopped delivering there and dead-letters its events until restarted.",
      labelNames: ["destination"],
      registers,
    }),
  };
  metrics.info.set({ version: options.version }, 1);
  metrics.ready.set(0);
  // Pre-create the outcome series so dashboards and alerts see zeros rather than absent series.
  return metrics;
}

/** Pre-creates a destination's series so dashboards and alerts see zeros rather than absent series. */
export function registerDestination(metrics: Metrics, destination: string): void {
  for (const outcome of ["success", "retry", "failure"]) metrics.publishRequests.inc({ outcome, destination }, 0);
  metrics.lastPublishSuccess.set({ destination }, 0);
  metrics.circuitBreakerState.set({ destination }, BREAKER_STATE_VALUE.closed);
  metrics.destinationGone.set({ destination }, 0);
}
