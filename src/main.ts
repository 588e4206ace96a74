// Composition root: load the configuration, build the pipeline (HTTP source -> filter/map ->
// Event Grid sink), start the ingestion and admin listeners, and shut down cleanly on signals.
// Only this file knows every module; tests call startBridge() to run a real bridge in-process.
import { readFileSync, realpathSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:http";
import { dirname, resolve } from "node:path";
import type { Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";
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
import { Router, RouteError } from "./pipeline/router.js";
import { RoutingRules } from "./pipeline/routing.js";
import { loadRedactionPresets } from "./cloudevents/redact.js";
import { buildTopology, DEFAULT_NAME, topologySecrets, TopologyError, type Topology } from "./config/topology.js";
import { DeadLetterStore } from "./sinks/dead-letter.js";
import { buildDestination, type BuiltDestination } from "./sinks/destinations.js";

export const ROOT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const VERSION: string = (JSON.parse(readFileSync(resolve(ROOT_DIR, "package.json"), "utf8")) as { version: string }).version;

// Event Grid refuses single events over 1 MB whatever the batch size.
const EVENTGRID_MAX_EVENT_BYTES = 1_048_576;

export interface BridgeOptions {
  config: Config;
  /** Streams, destinations and routes (loadConfig builds it); by default, from the settings alone. */
  topology?: Topology;
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

export async function startBridge(options: BridgeOptions): Promise<Bridge> {
  const { config } = options;
  let topology: Topology;
  try {
    topology = options.topology ?? buildTopology(config, {});
  } catch (error) {
    throw error instanceof TopologyError ? new ConfigError(error.message, "CONFIG_FILE") : error;
  }
  if (topology.destinations.length === 0) throw new ConfigError("EVENTGRID_ENDPOINT is required to start the bridge (or declare destinations in CONFIG_FILE)");
  const logger = createLogger({
    level: config.LOG_LEVEL,
    format: config.LOG_FORMAT,
    // The development token is public (documented), so local mode may print it.
    secrets: [...secretValues(config), ...topologySecrets(topology)].filter((s) => s !== DEV_STREAM_TOKEN),
    defaultMeta: { service: "auth0-eventgrid-bridge" },
    ...(options.logStream ? { stream: options.logStream } : {}),
  });
  for (const warning of options.warnings ?? []) logger.warn(warning);

  const metrics = createMetrics({ version: VERSION });
  const registry = await loadRegistry(resolve(ROOT_DIR, config.EVENT_TYPES_FILE));
  let router: Router;
  try {
    router = new Router(topology.routes, {
      presets: loadRedactionPresets(resolve(ROOT_DIR, "config/redaction-presets.json")),
      ...(config.REDACTION_HASH_KEY ? { hashKey: config.REDACTION_HASH_KEY } : {}),
    });
  } catch (error) {
    throw error instanceof RouteError ? new ConfigError(error.message, "CONFIG_FILE") : error;
  }
  const known = { codes: new Set(registry.codes()), categories: new Set(registry.categories()) };
  for (const problem of router.unknownNames({ code: (c) => known.codes.has(c), category: (c) => known.categories.has(c) })) logger.warn(`CONFIG_FILE ${problem}`);

  const built: BuiltDestination[] = [];
  for (const spec of topology.destinations) {
    built.push(await buildDestination(spec, config, { logger, metrics, ...(options.sleep ? { sleep: options.sleep } : {}) }));
  }
  const first = built[0]!.describe();
  const health = new HealthModel({
    version: VERSION,
    target: { endpoint: String(first.endpoint ?? first.url), auth: String(first.auth), ...(typeof first.channel === "string" ? { channel: first.channel } : {}) },
  });

  const deadLetters = await DeadLetterStore.open({
    dir: resolve(process.cwd(), config.DEAD_LETTER_DIR),
    maxFileBytes: config.DEAD_LETTER_MAX_FILE_BYTES,
    version: VERSION,
    onCountChange: (waiting) => metrics.deadLetterRecords.set(waiting),
  });
  const pipeline = new Pipeline({
    registry,
    routing: new RoutingRules(config),
    router,
    mapping: { typePrefix: config.CLOUDEVENTS_TYPE_PREFIX, ...(config.CLOUDEVENTS_SOURCE ? { source: config.CLOUDEVENTS_SOURCE } : {}) },
    destinations: new Map(built.map((d) => [d.name, { name: d.name, sink: d.sink, recent: new RecentIds(config.DEDUPE_WINDOW), down: d.down }])),
    deadLetters,
    logger,
    metrics,
    health,
    maxEventBytes: Math.min(EVENTGRID_MAX_EVENT_BYTES, config.MAX_BATCH_BYTES - 2),
    maxInflightEvents: config.MAX_INFLIGHT_EVENTS,
    onExhausted: config.ON_EXHAUSTED,
    retryAfterSeconds: config.RESPONSE_RETRY_AFTER_SECONDS,
  });
  const BREAKER_RANK = { closed: 0, half_open: 1, open: 2 } as const;
  health.setLiveState(() => ({
    circuitBreaker: built.map((d) => d.publisher.breaker.state).reduce((a, b) => (BREAKER_RANK[b] > BREAKER_RANK[a] ? b : a), "closed" as keyof typeof BREAKER_RANK),
    destinations: built.map((d) => d.describe()),
    deadLetterRecords: deadLetters.waitingRecords,
    inflightEvents: pipeline.inflightEvents,
  }));
  // A replay run in another process settles records; pick that up for the gauge now and then.
  const recountTimer = setInterval(() => {
    deadLetters.recount().catch((error: unknown) => logger.warn("dead-letter recount failed", { error: error instanceof Error ? error.message : String(error) }));
  }, 60_000);
  recountTimer.unref();

  const ingestApp = createIngestApp({
    streams: topology.streams.map((s) => ({ name: s.name, path: s.path, verifyToken: tokenVerifier(s.tokens) })),
    maxBodyBytes: config.MAX_BODY_BYTES,
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
  const ingestUrl = urlOf(ingestAddress, topology.streams[0]!.path);
  const adminUrl = urlOf(adminAddress, "");
  logger.info("bridge listening", {
    ingest: ingestUrl,
    streams: topology.streams.map((s) => ({ name: s.name, path: s.path })),
    admin: adminUrl,
    destinations: built.map((d) => d.describe()),
    routes: topology.routes.map((r) => r.name),
    version: VERSION,
  });

  // Readiness: keep checking every destination until each answers as it should.
  let readinessTimer: NodeJS.Timeout | undefined;
  const whenReady = new Promise<void>((resolveReady) => {
    const pending = new Set(built);
    const check = async () => {
      if (shuttingDown) return;
      for (const destination of [...pending]) {
        const result = await destination.check();
        if (shuttingDown) return;
        if (result.ok) {
          pending.delete(destination);
          logger.info("destination checked", { destination: destination.name, check: result.message });
        } else {
          health.setReady(false, built.length > 1 ? `${destination.name}: ${result.message}` : result.message);
          logger.error("destination start-up check failed; not ready", { destination: destination.name, error: result.message, status: result.status ?? null, retry_in_ms: config.STARTUP_CHECK_INTERVAL_MS });
        }
      }
      if (pending.size === 0) {
        health.setReady(true);
        metrics.ready.set(1);
        logger.info("ready");
        resolveReady();
        return;
      }
      readinessTimer = setTimeout(check, config.STARTUP_CHECK_INTERVAL_MS);
    };
    health.setReady(false, "checking the destinations");
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
  const fail = (error: unknown): never => {
    if (error instanceof ConfigError) {
      process.stderr.write(`auth0-eventgrid-bridge: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  };
  let loaded;
  try {
    loaded = loadConfig({ env: process.env, defaultsPath: resolve(ROOT_DIR, "config/default.json") });
  } catch (error) {
    fail(error);
  }
  let { config, topology } = loaded!;
  const warnings = [...loaded!.warnings];
  let emulator: Emulator | undefined;
  if (topology.destinations.length === 0) {
    // Local mode: no Event Grid configured, so events go to the bundled emulator.
    const key = "local-emulator-key";
    const outFile = resolve(process.cwd(), "data/emulator-events.jsonl");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(dirname(outFile), { recursive: true });
    emulator = await startEmulator({ key, outFile });
    config = { ...config, EVENTGRID_ENDPOINT: emulator.url, EVENTGRID_KEY: key, EVENTGRID_SAS_TOKEN: undefined, EVENTGRID_ALLOW_INSECURE: true };
    topology = { ...topology, destinations: [{ type: "eventgrid", name: DEFAULT_NAME, endpoint: emulator.url, key, allowInsecure: true }] };
    warnings.push(`EVENTGRID_ENDPOINT is not set: publishing to the local Event Grid emulator at ${emulator.url}; accepted events are appended to ${outFile}`);
  }
  let bridge: Bridge;
  try {
    bridge = await startBridge({ config, topology, warnings });
  } catch (error) {
    await emulator?.close();
    return fail(error);
  }
  if (emulator) {
    const token = config.AUTH0_STREAM_TOKEN ?? "";
    process.stdout.write(
      `\nLocal mode. Try it:\n  curl -sS -X POST '${bridge.ingestUrl}' -H 'Authorization: ${token === DEV_STREAM_TOKEN ? token : "<your stream token>"}' --data-binary @test/fixtures/format-json-lines.jsonl\n` +
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
