// Runs the local Event Grid emulator from the command line for development:
//   node --import tsx src/emulator/cli.ts [--port 4000] [--host 127.0.0.1] [--key K] [--sas-token T]
//     [--channel C] [--out events.jsonl] [--input-schema CloudEventV10] [--path /api/events]
//     [--no-retain] [--delay-ms N] [--subscribe URL]... [--subscribe-types T1,T2]
// --no-retain keeps only counts of accepted events and requests (for long benchmarks);
// --delay-ms answers every valid publish after N ms (a slow Event Grid);
// --subscribe (repeatable) adds an event subscription delivering every accepted event to the
// webhook URL as Event Grid does with the CloudEvents 1.0 schema (OPTIONS handshake first, one
// event per POST, retries); --subscribe-types limits all of them to those exact event types.
// Prints one line with the endpoint and the bridge settings that point at it; stops on SIGINT/SIGTERM.
// Deliveries that fail (handshake refused, dead-lettered) are reported on stderr, one line each.
import { parseArgs } from "node:util";
import { startEmulator } from "./emulator.js";
import type { DeliveryRecord, EmulatorOptions, InputSchema, SubscriptionSpec } from "./emulator.js";

const INPUT_SCHEMAS: readonly InputSchema[] = ["CloudEventV10", "EventGridEvent", "CustomInputEvent"];

interface CliOptions extends EmulatorOptions {
  /** Delay before every answer to a valid publish (0: answer at once). */
  delayMs?: number;
}

/** Turns argv into emulator options; throws an Error with a one-line message on bad input. */
function parseCliArgs(argv: string[]): CliOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      key: { type: "string" },
      "sas-token": { type: "string" },
      channel: { type: "string" },
      out: { type: "string" },
      "input-schema": { type: "string" },
      path: { type: "string" },
      "no-retain": { type: "boolean" },
      "delay-ms": { type: "string" },
      subscribe: { type: "string", multiple: true },
      "subscribe-types": { type: "string" },
    },
  });
  const options: CliOptions = {};
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!/^\d+$/.test(values.port) || port > 65535) throw new Error(`--port must be an integer from 0 to 65535, got '${values.port}'`);
    options.port = port;
  } else {
    options.port = 4000;
  }
  if (values.host !== undefined) {
    if (!values.host) throw new Error("--host must not be empty");
    options.host = values.host;
  }
  for (const [flag, value] of [["--key", values.key], ["--sas-token", values["sas-token"]], ["--channel", values.channel], ["--out", values.out]] as const) {
    if (value === "") throw new Error(`${flag} must not be empty`);
  }
  if (values.key !== undefined) options.key = values.key;
  if (values["sas-token"] !== undefined) options.sasToken = values["sas-token"];
  if (values.channel !== undefined) options.channel = values.channel;
  if (values.out !== undefined) options.outFile = values.out;
  const schema = values["input-schema"];
  if (schema !== undefined) {
    if (!(INPUT_SCHEMAS as readonly string[]).includes(schema)) {
      throw new Error(`--input-schema must be one of ${INPUT_SCHEMAS.join(", ")}, got '${schema}'`);
    }
    options.inputSchema = schema as InputSchema;
  }
  if (values.path !== undefined) {
    if (!values.path.startsWith("/")) throw new Error(`--path must start with '/', got '${values.path}'`);
    options.path = values.path;
  }
  if (values["no-retain"]) options.retainEvents = false;
  const delay = values["delay-ms"];
  if (delay !== undefined) {
    if (!/^\d+$/.test(delay) || Number(delay) > 600_000) throw new Error(`--delay-ms must be an integer from 0 to 600000, got '${delay}'`);
    options.delayMs = Number(delay);
  }
  const types = values["subscribe-types"]?.split(",").map((t) => t.trim()).filter((t) => t !== "");
  if (values["subscribe-types"] !== undefined && (!types?.length || !values.subscribe?.length)) {
    throw new Error("--subscribe-types needs a comma-separated list of event types and at least one --subscribe");
  }
  if (values.subscribe?.length) {
    options.subscriptions = values.subscribe.map((endpoint, i): SubscriptionSpec => {
      let protocol: string;
      try {
        protocol = new URL(endpoint).protocol;
      } catch {
        throw new Error(`--subscribe must be an http(s) URL, got '${endpoint}'`);
      }
      if (protocol !== "http:" && protocol !== "https:") throw new Error(`--subscribe must be an http(s) URL, got '${endpoint}'`);
      return { name: `subscription-${i + 1}`, endpoint, ...(types ? { includedEventTypes: types } : {}) };
    });
  }
  return options;
}

function subscriptionSummary(subs: SubscriptionSpec[] | undefined): string {
  if (!subs?.length) return "";
  const types = subs[0]?.includedEventTypes;
  return `, delivering to ${subs.map((s) => s.endpoint).join(" ")}${types ? ` (types ${types.join(",")})` : ""}`;
}

// Successful deliveries stay quiet (they can be thousands); failures are what a developer must see.
function reportFailure(rec: DeliveryRecord): void {
  if (rec.outcome === "delivered") return;
  process.stderr.write(
    `eventgrid-emulator: ${rec.subscription}: event ${rec.eventId} ${rec.outcome === "validation_failed" ? "not delivered, handshake failed" : "dead-lettered"}: ${rec.reason ?? "unknown reason"}\n`,
  );
}

async function main(): Promise<void> {
  let options: CliOptions;
  try {
    options = parseCliArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`eventgrid-emulator: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const { delayMs, ...emulatorOptions } = options;
  const emulator = await startEmulator({ ...emulatorOptions, onDelivery: reportFailure });
  if (delayMs) emulator.setFault(() => ({ status: 200, delayMs }));
  // The key printed is the emulator's own (given on this command line), so showing it is the point;
  // with no auth configured any value is accepted.
  const env = [`EVENTGRID_ENDPOINT=${emulator.url}`];
  if (options.key !== undefined || options.sasToken === undefined) env.push(`EVENTGRID_KEY=${options.key ?? "any-value"}`);
  if (options.sasToken !== undefined) env.push(`EVENTGRID_SAS_TOKEN=${options.sasToken}`);
  if (options.channel !== undefined) env.push(`EVENTGRID_CHANNEL=${options.channel}`);
  env.push("EVENTGRID_ALLOW_INSECURE=true");
  process.stdout.write(
    `Event Grid emulator listening on ${emulator.url} (input schema ${options.inputSchema ?? "CloudEventV10"}` +
      `${options.outFile ? `, appending events to ${options.outFile}` : ""}` +
      `${options.retainEvents === false ? ", counting only" : ""}${delayMs ? `, answering after ${delayMs} ms` : ""}` +
      `${subscriptionSummary(options.subscriptions)}); point the bridge at it with: ${env.join(" ")}\n`,
  );

  const stop = (): void => {
    // A second signal gets the default handler (immediate exit), so a stuck stop can be forced.
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    emulator.close().then(
      () => {
        process.exitCode = 0;
      },
      (err: unknown) => {
        process.stderr.write(`eventgrid-emulator: error while stopping: ${(err as Error).message}\n`);
        process.exitCode = 1;
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((err: unknown) => {
  // e.g. EADDRINUSE: one line, no stack, non-zero exit.
  process.stderr.write(`eventgrid-emulator: ${(err as Error).message}\n`);
  process.exit(1);
});
