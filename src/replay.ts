// `auth0-bridge replay`: republishes dead-lettered events through the same Event Grid publisher
// the bridge uses, and records what went through in the store's ledger so a second run does not
// publish it again. Exits non-zero when anything failed.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Config } from "./config/settings.js";
import { DEFAULT_NAME } from "./config/topology.js";
import type { EventSink } from "./pipeline/pipeline.js";
import { markReplayed, readDeadLetters, readLedger, type DeadLetterReason } from "./sinks/dead-letter.js";
import type { OutgoingEvent } from "./sinks/eventgrid.js";

export const REPLAY_USAGE = `usage: auth0-bridge replay [--reason REASON] [--since TIME] [--dry-run]

Republishes the CloudEvents kept in the dead-letter store (DEAD_LETTER_DIR) to the destination each
was meant for (EVENTGRID_ENDPOINT, or the destinations of CONFIG_FILE)
and marks what Event Grid accepted as replayed. Settings come from the environment (and CONFIG_FILE).
  --reason REASON  only records with this reason (exhausted, rejected_by_eventgrid, event_too_large,
                   invalid_record, unparseable_body)
  --since TIME     only records dead-lettered at or after TIME (ISO 8601, e.g. 2026-11-01T00:00:00Z)
  --dry-run        count what would be replayed; publish nothing
Exit code: 0 when everything selected was published, 1 when something failed, 2 on bad usage.`;

const REASONS: readonly DeadLetterReason[] = ["exhausted", "rejected_by_eventgrid", "rejected_by_destination", "destination_gone", "event_too_large", "invalid_record", "unparseable_body"];

export interface ReplayArgs {
  reason?: DeadLetterReason;
  since?: Date;
  dryRun: boolean;
}

export class UsageError extends Error {}

export function parseReplayArgs(argv: string[]): ReplayArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { reason: { type: "string" }, since: { type: "string" }, "dry-run": { type: "boolean" }, help: { type: "boolean" } }, strict: true });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values } = parsed;
  if (values.help) throw new UsageError("");
  const args: ReplayArgs = { dryRun: values["dry-run"] === true };
  if (values.reason !== undefined) {
    if (!REASONS.includes(values.reason as DeadLetterReason)) throw new UsageError(`--reason must be one of ${REASONS.join(", ")}`);
    args.reason = values.reason as DeadLetterReason;
  }
  if (values.since !== undefined) {
    const since = new Date(values.since);
    if (!/^\d{4}-\d{2}-\d{2}/.test(values.since) || Number.isNaN(since.getTime())) throw new UsageError("--since must be an ISO 8601 time such as 2026-11-01T00:00:00Z");
    args.since = since;
  }
  return args;
}

export interface ReplayReport {
  selected: number;
  published: number;
  failed: number;
  /** Records without a CloudEvent (invalid records, unparseable bodies): nothing to republish. */
  notReplayable: number;
  alreadyReplayed: number;
  /** Destinations named by records that the configuration no longer has. */
  unknownDestinations: Set<string>;
}

// Bounded chunks keep memory flat however large the store is.
const CHUNK = 1000;

/** Where a record goes back to: its own destination, or "default" for records from before routes existed. */
const destinationOf = (record: { destination?: string }) => record.destination ?? DEFAULT_NAME;

export async function replay(options: { dir: string; args: ReplayArgs; sinks?: ReadonlyMap<string, EventSink> }): Promise<ReplayReport> {
  const { dir, args } = options;
  const replayed = await readLedger(dir);
  const report: ReplayReport = { selected: 0, published: 0, failed: 0, notReplayable: 0, alreadyReplayed: 0, unknownDestinations: new Set() };
  const chunks = new Map<string, Array<{ dlqId: string; event: OutgoingEvent }>>();

  const flush = async (destination: string) => {
    const chunk = chunks.get(destination) ?? [];
    chunks.delete(destination);
    if (chunk.length === 0) return;
    const sink = options.sinks?.get(destination);
    if (!sink) {
      // Configured away since: counted as failed, and kept for a run that knows the destination.
      report.failed += chunk.length;
      report.unknownDestinations.add(destination);
      return;
    }
    const byEvent = new Map(chunk.map((c) => [c.event, c.dlqId]));
    const result = await sink.deliver(chunk.map((c) => c.event));
    const done = result.published.map((e) => byEvent.get(e)!);
    await markReplayed(dir, done);
    report.published += done.length;
    report.failed += chunk.length - done.length;
  };

  for await (const { record } of readDeadLetters(dir)) {
    if (args.reason && record.reason !== args.reason) continue;
    if (args.since && Date.parse(record.time) < args.since.getTime()) continue;
    if (replayed.has(record.dlq_id)) {
      report.alreadyReplayed++;
      continue;
    }
    if (!record.event || typeof record.event !== "object") {
      report.notReplayable++;
      continue;
    }
    report.selected++;
    if (args.dryRun) continue;
    const json = JSON.stringify(record.event);
    const destination = destinationOf(record);
    let chunk = chunks.get(destination);
    if (!chunk) chunks.set(destination, (chunk = []));
    chunk.push({ dlqId: record.dlq_id, event: { id: String(record.event.id), code: record.code ?? String(record.event.auth0code ?? ""), bytes: Buffer.byteLength(json), json } });
    if (chunk.length >= CHUNK) await flush(destination);
  }
  for (const destination of [...chunks.keys()]) await flush(destination);
  return report;
}

/** The command: configuration from the environment, output for a person on stdout. */
export async function runReplay(argv: string[], config: Config, makeSinks: () => Promise<ReadonlyMap<string, EventSink>>): Promise<number> {
  let args: ReplayArgs;
  try {
    args = parseReplayArgs(argv);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${message ? `auth0-bridge replay: ${message}\n\n` : ""}${REPLAY_USAGE}\n`);
    return message ? 2 : 0;
  }
  const dir = resolve(process.cwd(), config.DEAD_LETTER_DIR);
  const sinks = args.dryRun ? undefined : await makeSinks();
  const report = await replay({ dir, args, ...(sinks ? { sinks } : {}) });
  const verb = args.dryRun ? "would replay" : "replayed";
  process.stdout.write(
    `${verb} ${args.dryRun ? report.selected : report.published} event(s) from ${dir}` +
      (args.dryRun ? "" : `; failed ${report.failed}`) +
      `; skipped ${report.alreadyReplayed} already replayed, ${report.notReplayable} without a CloudEvent (invalid records, unparseable bodies)\n` +
      (report.unknownDestinations.size > 0 ? `; no destination named ${[...report.unknownDestinations].join(", ")} in the configuration: those records stay for a later run` : "") +
      "\n" +
      JSON.stringify({ ...report, unknownDestinations: [...report.unknownDestinations], dryRun: args.dryRun }) +
      "\n",
  );
  return report.failed > 0 ? 1 : 0;
}
