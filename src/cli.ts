#!/usr/bin/env node
// The package's command: `auth0-bridge` (or `auth0-bridge serve`) runs the bridge;
// `auth0-bridge replay ...` republishes dead-lettered events.
import { resolve } from "node:path";
import { loadConfig, ConfigError } from "./config/load.js";
import { createLogger } from "./observability/logger.js";
import { createMetrics } from "./observability/metrics.js";
import { main, ROOT_DIR, VERSION } from "./main.js";
import type { EventSink } from "./pipeline/pipeline.js";
import { runReplay } from "./replay.js";
import { secretValues } from "./config/load.js";
import { topologySecrets } from "./config/topology.js";
import { buildDestination } from "./sinks/destinations.js";

async function cli(argv: string[]): Promise<void> {
  const [command = "serve", ...rest] = argv;
  if (command === "serve") return main();
  if (command === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (command !== "replay") {
    process.stderr.write(`auth0-bridge: unknown command "${command}"; use "serve" (default) or "replay"\n`);
    process.exit(2);
  }
  let loaded;
  try {
    loaded = loadConfig({ env: process.env, defaultsPath: resolve(ROOT_DIR, "config/default.json") });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`auth0-bridge replay: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
  const { config, topology } = loaded;
  const code = await runReplay(rest, config, async () => {
    if (topology.destinations.length === 0) throw new ConfigError("EVENTGRID_ENDPOINT (or destinations in CONFIG_FILE) is required to replay");
    // Log lines (each failed attempt, each failure) go to stderr; the report goes to stdout.
    const logger = createLogger({
      level: config.LOG_LEVEL,
      format: config.LOG_FORMAT,
      secrets: [...secretValues(config), ...topologySecrets(topology)],
      stream: process.stderr,
      defaultMeta: { service: "auth0-eventgrid-bridge", command: "replay" },
    });
    const metrics = createMetrics({ version: VERSION, defaultMetrics: false });
    const sinks = new Map<string, EventSink>();
    for (const spec of topology.destinations) sinks.set(spec.name, (await buildDestination(spec, config, { logger, metrics })).publisher);
    return sinks;
  });
  process.exit(code);
}

cli(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`auth0-bridge: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
