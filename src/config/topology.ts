// Where events go: the `streams`, `destinations` and `routes` sections of CONFIG_FILE, validated,
// with their secret files read. Without those sections the environment settings describe one
// stream (INGEST_PATH + AUTH0_STREAM_TOKEN), one Event Grid destination named "default" and one
// route that sends it everything: the single-destination shorthand of the core bridge.
import { readFileSync } from "node:fs";
import { z } from "zod";
import type { Config } from "./settings.js";

/** The name of the destination (and route, and stream) the environment settings describe. */
export const DEFAULT_NAME = "default";

const name = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "names are 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit");
// Same rule as the environment's secrets: header values are trimmed and cannot hold control characters.
const secret = z.string().min(1).refine((s) => s === s.trim() && !/[\u0000-\u001f\u007f]/.test(s), "must not be empty, padded with whitespace or hold control characters");
const path = z.string().trim().min(1);
const httpUrl = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" });
const strings = z.array(z.string().trim().min(1));

const streamSchema = z.strictObject({
  token: secret.optional(),
  tokenFile: path.optional(),
  previousToken: secret.optional(),
  previousTokenFile: path.optional(),
});

const eventGridSchema = z.strictObject({
  type: z.literal("eventgrid"),
  endpoint: httpUrl,
  key: secret.optional(),
  keyFile: path.optional(),
  sasToken: secret.optional(),
  sasTokenFile: path.optional(),
  channel: z.string().trim().min(1).optional(),
  allowInsecure: z.boolean().default(false),
});

const webhookSchema = z.strictObject({
  type: z.literal("webhook"),
  url: httpUrl,
  mode: z.enum(["structured", "batched", "binary"]).default("structured"),
  origin: z.string().trim().min(1).optional(),
  requestRate: z.number().int().min(1).optional(),
  authorization: secret.optional(),
  authorizationFile: path.optional(),
  allowInsecure: z.boolean().default(false),
});

const selectorSchema = z.strictObject({ codes: strings.optional(), categories: strings.optional(), streams: z.array(name).optional() });

const routeSchema = z.strictObject({
  name,
  match: selectorSchema.optional(),
  exclude: selectorSchema.optional(),
  to: z.array(name).min(1),
  type: z.string().trim().min(1).optional(),
  // Validated by the redaction module when the router is built (it knows the presets).
  redact: z.array(z.record(z.string(), z.unknown())).optional(),
});

const fileSchema = z.strictObject({
  streams: z.record(name, streamSchema).optional(),
  destinations: z.record(name, z.discriminatedUnion("type", [eventGridSchema, webhookSchema])).optional(),
  routes: z.array(routeSchema).optional(),
});

export type Selector = z.output<typeof selectorSchema>;
export type RouteSpec = z.output<typeof routeSchema>;

export interface StreamSpec {
  name: string;
  /** Ingestion path: INGEST_PATH for the default stream, INGEST_PATH/<name> for the others. */
  path: string;
  tokens: string[];
}

export type DestinationSpec =
  | { type: "eventgrid"; name: string; endpoint: string; key?: string; sasToken?: string; channel?: string; allowInsecure: boolean }
  | {
      type: "webhook";
      name: string;
      url: string;
      mode: "structured" | "batched" | "binary";
      origin: string;
      requestRate?: number;
      authorization?: string;
      allowInsecure: boolean;
    };

export interface Topology {
  streams: StreamSpec[];
  destinations: DestinationSpec[];
  routes: RouteSpec[];
  /** True when CONFIG_FILE declared destinations (the EVENTGRID_* settings are then unused). */
  declared: boolean;
}

/** The keys of CONFIG_FILE this module owns (the others are settings). */
export const TOPOLOGY_KEYS = ["streams", "destinations", "routes"] as const;

export class TopologyError extends Error {}

function readSecretFile(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new TopologyError(`${what}: cannot read ${JSON.stringify(file)} (${(error as NodeJS.ErrnoException).code ?? "unknown error"})`);
  }
  const value = text.replace(/\r?\n$/, "");
  if (!secret.safeParse(value).success) throw new TopologyError(`${what}: the file ${JSON.stringify(file)} must hold one non-empty line`);
  return value;
}

/** `x` or `xFile`, never both; the file's content when a file is named. */
function oneSecret(value: string | undefined, file: string | undefined, what: string): string | undefined {
  if (value !== undefined && file !== undefined) throw new TopologyError(`${what}: set either the value or the file, not both`);
  return file !== undefined ? readSecretFile(file, what) : value;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length ? issue.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("").replace(/^\./, "") : "(top level)";
  // Zod's messages never quote the value, so secrets cannot leak through them.
  return `${where}: ${issue.message}`;
}

/**
 * Builds the topology: from CONFIG_FILE's sections when present, else from the environment.
 * `sections` holds only the TOPOLOGY_KEYS of the file. Throws TopologyError (one line).
 */
export function buildTopology(config: Config, sections: Record<string, unknown>): Topology {
  const parsed = fileSchema.safeParse(sections);
  if (!parsed.success) throw new TopologyError(`CONFIG_FILE ${describeIssue(parsed.error.issues[0]!)}`);
  const file = parsed.data;

  const streams: StreamSpec[] = [];
  const defaultTokens = [config.AUTH0_STREAM_TOKEN, config.AUTH0_STREAM_TOKEN_PREVIOUS].filter((t): t is string => typeof t === "string" && t !== "");
  if (defaultTokens.length > 0) streams.push({ name: DEFAULT_NAME, path: config.INGEST_PATH, tokens: defaultTokens });
  for (const [streamName, spec] of Object.entries(file.streams ?? {})) {
    if (streamName === DEFAULT_NAME) throw new TopologyError(`CONFIG_FILE streams.${DEFAULT_NAME}: the name is taken by AUTH0_STREAM_TOKEN on INGEST_PATH`);
    const what = `CONFIG_FILE streams.${streamName}`;
    const tokens = [oneSecret(spec.token, spec.tokenFile, `${what}.token`), oneSecret(spec.previousToken, spec.previousTokenFile, `${what}.previousToken`)].filter(
      (t): t is string => t !== undefined,
    );
    if (tokens.length === 0) throw new TopologyError(`${what}: set token or tokenFile (the Authorization Token of that Auth0 log stream)`);
    streams.push({ name: streamName, path: `${config.INGEST_PATH.replace(/\/+$/, "")}/${streamName}`, tokens });
  }
  if (streams.length === 0) throw new TopologyError("no ingestion stream: set AUTH0_STREAM_TOKEN, or declare streams in CONFIG_FILE");

  const destinations: DestinationSpec[] = [];
  const declared = file.destinations !== undefined;
  if (!declared) {
    if (config.EVENTGRID_ENDPOINT !== undefined) {
      destinations.push({
        type: "eventgrid",
        name: DEFAULT_NAME,
        endpoint: config.EVENTGRID_ENDPOINT,
        allowInsecure: config.EVENTGRID_ALLOW_INSECURE,
        ...(config.EVENTGRID_KEY ? { key: config.EVENTGRID_KEY } : {}),
        ...(config.EVENTGRID_SAS_TOKEN ? { sasToken: config.EVENTGRID_SAS_TOKEN } : {}),
        ...(config.EVENTGRID_CHANNEL ? { channel: config.EVENTGRID_CHANNEL } : {}),
      });
    }
  } else {
    for (const [destName, spec] of Object.entries(file.destinations ?? {})) {
      const what = `CONFIG_FILE destinations.${destName}`;
      const insecureOk = (url: string) => {
        if (new URL(url).protocol === "http:" && !spec.allowInsecure) throw new TopologyError(`${what}: expected an https:// URL (set allowInsecure: true only for local tests)`);
        if (spec.allowInsecure && config.NODE_ENV === "production") throw new TopologyError(`${what}.allowInsecure: must not be true in production`);
      };
      if (spec.type === "eventgrid") {
        insecureOk(spec.endpoint);
        const key = oneSecret(spec.key, spec.keyFile, `${what}.key`);
        const sasToken = oneSecret(spec.sasToken, spec.sasTokenFile, `${what}.sasToken`);
        if (key !== undefined && sasToken !== undefined) throw new TopologyError(`${what}: set at most one of key and sasToken (neither means Microsoft Entra ID)`);
        destinations.push({
          type: "eventgrid",
          name: destName,
          endpoint: spec.endpoint,
          allowInsecure: spec.allowInsecure,
          ...(key !== undefined ? { key } : {}),
          ...(sasToken !== undefined ? { sasToken } : {}),
          ...(spec.channel !== undefined ? { channel: spec.channel } : {}),
        });
      } else {
        insecureOk(spec.url);
        const authorization = oneSecret(spec.authorization, spec.authorizationFile, `${what}.authorization`);
        destinations.push({
          type: "webhook",
          name: destName,
          url: spec.url,
          mode: spec.mode,
          // The spec asks for the sender's DNS name; without one, say who we are.
          origin: spec.origin ?? "auth0-eventgrid-bridge",
          allowInsecure: spec.allowInsecure,
          ...(spec.requestRate !== undefined ? { requestRate: spec.requestRate } : {}),
          ...(authorization !== undefined ? { authorization } : {}),
        });
      }
    }
    if (destinations.length === 0) throw new TopologyError("CONFIG_FILE destinations: declare at least one destination");
  }

  // Without declared destinations there is one, "default": EVENTGRID_ENDPOINT, or the local emulator
  // that `npm start` puts in its place when that is unset.
  const names = declared ? new Set(destinations.map((d) => d.name)) : new Set([DEFAULT_NAME]);
  let routes = file.routes;
  if (routes === undefined) {
    // Without routes, one destination takes everything; with several the user must say which gets what.
    if (names.size > 1) throw new TopologyError("CONFIG_FILE routes: several destinations are declared, so routes must say which events go where");
    routes = [{ name: DEFAULT_NAME, to: [...names] }];
  }
  const routeNames = new Set<string>();
  const streamNames = new Set(streams.map((s) => s.name));
  for (const [index, route] of routes.entries()) {
    const what = `CONFIG_FILE routes[${index}] (${route.name})`;
    if (routeNames.has(route.name)) throw new TopologyError(`${what}: another route has the same name`);
    routeNames.add(route.name);
    for (const target of route.to) {
      if (!names.has(target)) throw new TopologyError(`${what}.to: no destination named ${JSON.stringify(target)} (declared: ${[...names].join(", ") || "none"})`);
    }
    for (const selector of [route.match, route.exclude]) {
      for (const stream of selector?.streams ?? []) {
        if (!streamNames.has(stream)) throw new TopologyError(`${what}: no stream named ${JSON.stringify(stream)} (declared: ${[...streamNames].join(", ")})`);
      }
    }
  }
  return { streams, destinations, routes, declared };
}

/** Secret values the topology holds, for the logger to redact. */
export function topologySecrets(topology: Topology): string[] {
  const values: string[] = [];
  for (const s of topology.streams) values.push(...s.tokens);
  for (const d of topology.destinations) {
    if (d.type === "eventgrid") values.push(...[d.key, d.sasToken].filter((v): v is string => v !== undefined));
    else if (d.authorization !== undefined) values.push(d.authorization);
  }
  return values;
}
