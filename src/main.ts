// Composition root: load the configuration, build the pipeline (HTTP source -> filter/map ->
// Event Grid sink), start the ingestion and admin listeners, and shut down cleanly on signals.
// Only this file knows every module; tests call startBridge() to run a real bridge in-process.
import { readFileSync, realpathSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:http";
import { dirname, resolve } from "node:path";
import type { Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AzureKeyCredential, AzureSASCredential } from "@azure/core-auth";
import { loadRegistry } from "./auth0/registry.js";
import { loadConfig, ConfigError, secretValues, DEV_STREAM_TOKEN } from "./config/load.js";
import type { Config } from "./config/settings.js";
import { startEmulator, type Emulator } from "./emulator/emulator.js";
import { tokenVerifier } from "./ingest/auth.js";
import { createIngestApp } from "./ingest/app.js";
import { createAdminApp } from "./observability/admin.js";
import { HealthModel } from "./observability/health.js";
import { createLogger, flushLogger, type Logger } from "./observability/logger.js";
import { createMetrics, type Metrics } from "./observability/metrics.js";
import { RecentIds } from "./pipeline/dedupe.js";
import { Pipeline } from "./pipeline/pipeline.js";
import { RoutingRules } from "./pipeline/routing.js";
import { Coalescer } from "./sinks/coalescer.js";
import { DeadLetterStore } from "./sinks/dead-letter.js";
import { EventGridPublisher, EventGridTransport } from "./sinks/eventgrid.js";
import { checkEventGridTarget, type EventGridCredential } from "./sinks/eventgrid-target.js";

export const ROOT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const VERSION: string = (JSON.parse(readFileSync(resolve(ROOT_DIR, "package.json"), "utf8")) as { version: string }).version;

// Event Grid refuses single events over 1 MB whatever the batch size.
const EVENTGRID_MAX_EVENT_BYTES = 1_048_576;

export interface BridgeOptions {
  config: Config;
  /** Where log lines go (stdout by default; tests capture them). */
  logStream?: Writable;
  /** Warnings from loading the configuration, logged once the logger exists. */
  warnings?: string[];
  /** Used instead of building one from the configuration (tests use this to count waits). */
  sleep?: (ms: number) => Promise<void>;
}

export interface Bridge {
  ingestUrl: string;
  adminUrl: string;
  logger: Logger;
  metrics: Metrics;
  health: HealthModel;
  deadLetters: DeadLetterStore;
  /** Resolves when the start-up check of the Event Grid target has passed. */
  whenReady: Promise<void>;
  stop(): Promise<void>;
}

export async function credentialFor(config: Config): Promise<EventGridCredential> {
  if (config.EVENTGRID_KEY) return new AzureKeyCredential(config.EVENTGRID_KEY);
  if (config.EVENTGRID_SAS_TOKEN) return new AzureSASCredential(config.EVENTGRID_SAS_TOKEN);
  // Loaded only when used: workload identity on Kubernetes, az login on a laptop.
  const { DefaultAzureCredential } = await import("@azure/identity");
  return new DefaultAzureCredential();
}

function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolvePromise(server.address() as AddressInfo);
    });
  });
}

const urlOf = (address: AddressInfo, path: string) =>
  `http://${address.family === "IPv6" ? `[${address.address}]` : address.address === "0.0.0.0" ? "127.0.0.1" : address.address}:${address.port}${path}`;

/** The Event Grid sink as configured; the bridge and the replay command publish through it. */
export function createPublisher(
  config: Config,
  credential: EventGridCredential,
  deps: { logger: Logger; metrics: Metrics; sleep?: (ms: number) => Promise<void> },
): EventGridPublisher {
  if (!config.EVENTGRID_ENDPOINT) throw new ConfigError("EVENTGRID_ENDPOINT is required to publish");
  return new EventGridPublisher({
    client: new EventGridTransport(config.EVENTGRID_ENDPOINT, credential, config.EVENTGRID_ALLOW_INSECURE),
    ...(config.EVENTGRID_CHANNEL ? { channel: config.EVENTGRID_CHANNEL } : {}),
    retries: config.PUBLISH_RETRIES,
    timeoutMs: config.PUBLISH_TIMEOUT_MS,
    backoff: { baseDelayMs: config.RETRY_BASE_DELAY_MS, maxDelayMs: config.RETRY_MAX_DELAY_MS, retryAfterMaxMs: config.RETRY_AFTER_MAX_MS },
    maxBatchBytes: config.MAX_BATCH_BYTES,
    maxBatchEvents: config.MAX_BATCH_EVENTS,
    breaker: { failureThreshold: config.BREAKER_FAILURE_THRESHOLD, cooldownMs: config.BREAKER_COOLDOWN_MS },
    ...deps,
  });
}

export async function startBridge(options: BridgeOptions): Promise<Bridge> {
  const { config } = options;
  if (!config.EVENTGRID_ENDPOINT) throw new ConfigError("EVENTGRID_ENDPOINT is required to start the bridge");
  const logger = createLogger({
    level: config.LOG_LEVEL,
    format: config.LOG_FORMAT,
    // The development token is public (documented), so local mode may print it.
    secrets: secretValues(config).filter((s) => s !== DEV_STREAM_TOKEN),
    defaultMeta: { service: "auth0-eventgrid-bridge" },
    ...(options.logStream ? { stream: options.logStream } : {}),
  });
  for (const warning of options.warnings ?? []) logger.warn(warning);

  const metrics = createMetrics({ version: VERSION });
  const credential = await credentialFor(config);
  const authMode = config.EVENTGRID_KEY ? "access key" : config.EVENTGRID_SAS_TOKEN ? "SAS token" : "Microsoft Entra ID";
  const health = new HealthModel({
    version: VERSION,
    target: { endpoint: config.EVENTGRID_ENDPOINT, auth: authMode, ...(config.EVENTGRID_CHANNEL ? { channel: config.EVENTGRID_CHANNEL } : {}) },
  });
  const registry = await loadRegistry(resolve(ROOT_DIR, config.EVENT_TYPES_FILE));

  const deadLetters = await DeadLetterStore.open({
    dir: resolve(process.cwd(), config.DEAD_LETTER_DIR),
    maxFileBytes: config.DEAD_LETTER_MAX_FILE_BYTES,
    version: VERSION,
    onCountChange: (waiting) => metrics.deadLetterRecords.set(waiting),
  });
  const publisher = createPublisher(config, credential, { logger, metrics, ...(options.sleep ? { sleep: options.sleep } : {}) });
  const pipeline = new Pipeline({
    registry,
    routing: new RoutingRules(config),
    mapping: { typePrefix: config.CLOUDEVENTS_TYPE_PREFIX, ...(config.CLOUDEVENTS_SOURCE ? { source: config.CLOUDEVENTS_SOURCE } : {}) },
    sink:
      config.BATCH_WINDOW_MS > 0
        ? new Coalescer(publisher, { windowMs: config.BATCH_WINDOW_MS, maxEvents: config.MAX_BATCH_EVENTS, maxBytes: config.MAX_BATCH_BYTES })
        : publisher,
    deadLetters,
    recent: new RecentIds(config.DEDUPE_WINDOW),
    logger,
    metrics,
    health,
    maxEventBytes: Math.min(EVENTGRID_MAX_EVENT_BYTES, config.MAX_BATCH_BYTES - 2),
    maxInflightEvents: config.MAX_INFLIGHT_EVENTS,
    onExhausted: config.ON_EXHAUSTED,
    retryAfterSeconds: config.RESPONSE_RETRY_AFTER_SECONDS,
    targetDown: () => publisher.breaker.state === "open" && publisher.breaker.retryInMs > 0,
  });
  health.setLiveState(() => ({ circuitBreaker: publisher.breaker.state, deadLetterRecords: deadLetters.waitingRecords, inflightEvents: pipeline.inflightEvents }));
  // A replay run in another process settles records; pick that up for the gauge now and then.
  const recountTimer = setInterval(() => {
    deadLetters.recount().catch((error: unknown) => logger.warn("dead-letter recount failed", { error: error instanceof Error ? error.message : String(error) }));
  }, 60_000);
  recountTimer.unref();

  const tokens = [config.AUTH0_STREAM_TOKEN, config.AUTH0_STREAM_TOKEN_PREVIOUS].filter((t): t is string => typeof t === "string" && t.length > 0);
  const ingestApp = createIngestApp({
    path: config.INGEST_PATH,
    maxBodyBytes: config.MAX_BODY_BYTES,
    verifyToken: tokenVerifier(tokens),
    pipeline,
    logger,
    metrics,
  });
  let shuttingDown = false;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const ingest = createServer({
    // Slow senders hold sockets and memory: bound the whole request, and check often enough
    // that the bound means something (Node checks every 30 s by default).
    requestTimeout: config.INGEST_REQUEST_TIMEOUT_MS,
    headersTimeout: Math.min(20_000, config.INGEST_REQUEST_TIMEOUT_MS),
    connectionsCheckingInterval: Math.min(1000, config.INGEST_REQUEST_TIMEOUT_MS),
  }, (req, res) => {
    inFlight++;
    res.on("close", () => {
      inFlight--;
      if (inFlight === 0) drained?.();
    });
    // During shutdown, answer what is in flight but do not keep connections open for more.
    if (shuttingDown) res.setHeader("connection", "close");
    ingestApp(req, res);
  });
  const admin = createServer(createAdminApp({ metrics, health }));
  const ingestAddress = await listen(ingest, config.PORT, config.HOST);
  const adminAddress = await listen(admin, config.ADMIN_PORT, config.HOST);
  const ingestUrl = urlOf(ingestAddress, config.INGEST_PATH);
  const adminUrl = urlOf(adminAddress, "");
  logger.info("bridge listening", { ingest: ingestUrl, admin: adminUrl, target: config.EVENTGRID_ENDPOINT, channel: config.EVENTGRID_CHANNEL ?? null, auth: authMode, version: VERSION });

  // Readiness: keep checking the target until it answers as a CloudEvents topic.
  let readinessTimer: NodeJS.Timeout | undefined;
  const whenReady = new Promise<void>((resolveReady) => {
    const check = async () => {
      if (shuttingDown) return;
      const result = await checkEventGridTarget({
        endpoint: config.EVENTGRID_ENDPOINT!,
        credential,
        timeoutMs: config.PUBLISH_TIMEOUT_MS,
        ...(config.EVENTGRID_CHANNEL ? { channel: config.EVENTGRID_CHANNEL } : {}),
      });
      if (shuttingDown) return;
      if (result.ok) {
        health.setReady(true);
        metrics.ready.set(1);
        logger.info("ready", { check: result.message });
        resolveReady();
        return;
      }
      health.setReady(false, result.message);
      logger.error("Event Grid start-up check failed; not ready", { error: result.message, status: result.status ?? null, retry_in_ms: config.STARTUP_CHECK_INTERVAL_MS });
      readinessTimer = setTimeout(check, config.STARTUP_CHECK_INTERVAL_MS);
    };
    health.setReady(false, "checking the Event Grid target");
    void check();
  });

  const closeServer = (server: Server) => new Promise<void>((r) => server.close(() => r()));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      shuttingDown = true;
      clearTimeout(readinessTimer);
      health.setReady(false, "shutting down");
      metrics.ready.set(0);
      logger.info("shutting down", { in_flight: inFlight, timeout_ms: config.SHUTDOWN_TIMEOUT_MS });
      const ingestClosed = closeServer(ingest);
      ingest.closeIdleConnections();
      if (inFlight > 0) {
        const timedOut = await new Promise<boolean>((r) => {
          const timer = setTimeout(() => r(true), config.SHUTDOWN_TIMEOUT_MS);
          drained = () => {
            clearTimeout(timer);
            r(false);
          };
        });
        if (timedOut) logger.warn("shutdown timeout reached; closing connections with requests in flight", { in_flight: inFlight });
      }
      ingest.closeAllConnections();
      await ingestClosed;
      const adminClosed = closeServer(admin);
      admin.closeAllConnections();
      await adminClosed;
      clearInterval(recountTimer);
      await deadLetters.close();
      logger.info("stopped");
      await flushLogger(logger);
    })());

  return { ingestUrl, adminUrl, logger, metrics, health, deadLetters, whenReady, stop };
}

/** Run as a program: configuration from the environment, the local emulator when no target is set. */
export async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig({ env: process.env, defaultsPath: resolve(ROOT_DIR, "config/default.json") });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`auth0-eventgrid-bridge: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  let { config } = loaded;
  const warnings = [...loaded.warnings];
  let emulator: Emulator | undefined;
  if (!config.EVENTGRID_ENDPOINT) {
    // Local mode: no Event Grid configured, so events go to the bundled emulator.
    const key = "local-emulator-key";
    const outFile = resolve(process.cwd(), "data/emulator-events.jsonl");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(dirname(outFile), { recursive: true });
    emulator = await startEmulator({ key, outFile });
    config = { ...config, EVENTGRID_ENDPOINT: emulator.url, EVENTGRID_KEY: key, EVENTGRID_SAS_TOKEN: undefined, EVENTGRID_ALLOW_INSECURE: true };
    warnings.push(`EVENTGRID_ENDPOINT is not set: publishing to the local Event Grid emulator at ${emulator.url}; accepted events are appended to ${outFile}`);
  }
  const bridge = await startBridge({ config, warnings });
  if (emulator) {
    const token = config.AUTH0_STREAM_TOKEN ?? "";
    process.stdout.write(
      `\nLocal mode. Try it:\n  curl -sS -X POST '${bridge.ingestUrl}' -H 'Authorization: ${token === DEV_STREAM_TOKEN ? token : "<your AUTH0_STREAM_TOKEN>"}' --data-binary @test/fixtures/format-json-lines.jsonl\n` +
        `Events land in data/emulator-events.jsonl; metrics at ${bridge.adminUrl}/metrics, health at ${bridge.adminUrl}/health\n\n`,
    );
  }
  process.on("unhandledRejection", (reason) => bridge.logger.error("unhandled rejection", { error: reason instanceof Error ? reason.message : String(reason) }));
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) process.exit(1); // a second signal means "now"
    bridge.logger.info("signal received", { signal });
    void bridge
      .stop()
      .then(() => emulator?.close())
      .then(() => process.exit(0));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(realpathSync(entry)).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`auth0-eventgrid-bridge: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
