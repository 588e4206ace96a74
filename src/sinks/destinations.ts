// Builds one destination from its specification: the Event Grid or webhook publisher (each with
// its own retries and circuit breaker), the cross-request batching in front of it, and its
// readiness check. The bridge and the replay command build destinations the same way.
import { AzureKeyCredential, AzureSASCredential } from "@azure/core-auth";
import type { DestinationSpec } from "../config/topology.js";
import type { Config } from "../config/settings.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import type { CircuitBreaker } from "./circuit-breaker.js";
import { Coalescer, type Deliverer } from "./coalescer.js";
import { EventGridPublisher, EventGridTransport } from "./eventgrid.js";
import { checkEventGridTarget, type EventGridCredential } from "./eventgrid-target.js";
import { WebhookPublisher } from "./webhook.js";

export interface BuiltDestination {
  name: string;
  spec: DestinationSpec;
  /** The publisher itself (no batching window): what replay uses. */
  publisher: Deliverer & { readonly breaker: CircuitBreaker };
  /** What the pipeline delivers to: the publisher behind the BATCH_WINDOW_MS coalescer. */
  sink: Deliverer;
  /** For /health: where it goes and how it authenticates (never a secret). */
  describe(): Record<string, unknown>;
  /** Readiness: Event Grid answers as a CloudEvents topic. Webhooks are checked by their handshake at first delivery. */
  check(): Promise<{ ok: boolean; message: string; status?: number }>;
  /** True while its circuit breaker is open (or it answered 410 Gone). */
  down(): boolean;
}

export interface DestinationDeps {
  logger: Logger;
  metrics: Metrics;
  sleep?: (ms: number) => Promise<void>;
}

export async function credentialFor(spec: { key?: string; sasToken?: string }): Promise<EventGridCredential> {
  if (spec.key) return new AzureKeyCredential(spec.key);
  if (spec.sasToken) return new AzureSASCredential(spec.sasToken);
  // Loaded only when used: workload identity on Kubernetes, az login on a laptop.
  const { DefaultAzureCredential } = await import("@azure/identity");
  return new DefaultAzureCredential();
}

/** Settings shared by every destination: retries, timeouts, batch caps, breaker. */
function common(config: Config, deps: DestinationDeps) {
  return {
    retries: config.PUBLISH_RETRIES,
    timeoutMs: config.PUBLISH_TIMEOUT_MS,
    backoff: { baseDelayMs: config.RETRY_BASE_DELAY_MS, maxDelayMs: config.RETRY_MAX_DELAY_MS, retryAfterMaxMs: config.RETRY_AFTER_MAX_MS },
    maxBatchBytes: config.MAX_BATCH_BYTES,
    maxBatchEvents: config.MAX_BATCH_EVENTS,
    breaker: { failureThreshold: config.BREAKER_FAILURE_THRESHOLD, cooldownMs: config.BREAKER_COOLDOWN_MS },
    logger: deps.logger,
    metrics: deps.metrics,
    ...(deps.sleep ? { sleep: deps.sleep } : {}),
  };
}

export async function buildDestination(spec: DestinationSpec, config: Config, deps: DestinationDeps): Promise<BuiltDestination> {
  const batched = (publisher: Deliverer): Deliverer =>
    config.BATCH_WINDOW_MS > 0 ? new Coalescer(publisher, { windowMs: config.BATCH_WINDOW_MS, maxEvents: config.MAX_BATCH_EVENTS, maxBytes: config.MAX_BATCH_BYTES }) : publisher;
  const down = (breaker: CircuitBreaker) => breaker.state === "open" && breaker.retryInMs > 0;

  if (spec.type === "eventgrid") {
    const credential = await credentialFor(spec);
    const auth = spec.key ? "access key" : spec.sasToken ? "SAS token" : "Microsoft Entra ID";
    const publisher = new EventGridPublisher({
      destination: spec.name,
      client: new EventGridTransport(spec.endpoint, credential, spec.allowInsecure),
      ...(spec.channel ? { channel: spec.channel } : {}),
      ...common(config, deps),
    });
    return {
      name: spec.name,
      spec,
      publisher,
      sink: batched(publisher),
      describe: () => ({ name: spec.name, type: "eventgrid", endpoint: spec.endpoint, auth, ...(spec.channel ? { channel: spec.channel } : {}), circuitBreaker: publisher.breaker.state }),
      check: () =>
        checkEventGridTarget({ endpoint: spec.endpoint, credential, timeoutMs: config.PUBLISH_TIMEOUT_MS, ...(spec.channel ? { channel: spec.channel } : {}) }),
      down: () => down(publisher.breaker),
    };
  }

  const publisher = new WebhookPublisher({
    destination: spec.name,
    url: spec.url,
    mode: spec.mode,
    origin: spec.origin,
    allowInsecure: spec.allowInsecure,
    ...(spec.requestRate !== undefined ? { requestRate: spec.requestRate } : {}),
    ...(spec.authorization !== undefined ? { authorization: spec.authorization } : {}),
    ...common(config, deps),
  });
  return {
    name: spec.name,
    spec,
    publisher,
    sink: batched(publisher),
    describe: () => ({
      name: spec.name,
      type: "webhook",
      url: spec.url,
      mode: spec.mode,
      auth: spec.authorization ? "authorization header" : "none",
      circuitBreaker: publisher.breaker.state,
      gone: publisher.gone,
    }),
    check: async () => ({ ok: true, message: "webhook: checked by the abuse-protection handshake before the first delivery" }),
    // A gone webhook is not "down": its events are dead-lettered and the sender gets 200.
    down: () => down(publisher.breaker),
  };
}
