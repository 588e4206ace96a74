// The settings schema: the one place that names every setting. The loader (load.ts), the README
// table (render-docs.ts) and the tests all read this list, so a setting cannot exist in one of
// them and be missing from another. Default values live in config/default.json, not here.
import { z } from "zod";

/**
 * How a raw string (environment variable, or a quoted scalar in a config file) becomes a typed value.
 * - string / enum: trimmed (secrets are never trimmed: they must match byte for byte).
 * - integer: decimal digits only ("8080"); anything else is an error.
 * - boolean: true/false/1/0/yes/no, case-insensitive.
 * - list: comma-separated in the environment; a native array in a config file.
 * - map: a JSON object or `key=value,key=value` in the environment; a native object in a config file.
 */
export type SettingKind = "string" | "enum" | "integer" | "boolean" | "list" | "map";

/**
 * - "default": config/default.json holds its default, so it is always set.
 * - "optional": no default; `undefined` when unset.
 * - "derived": no default in the file, but the loader always fills it.
 */
export type SettingPresence = "default" | "optional" | "derived";

export interface SettingSpec {
  readonly name: string;
  readonly kind: SettingKind;
  /** Validates the value after coercion from its string form (or the native file value). */
  readonly schema: z.ZodType;
  /** What a valid value looks like, for error messages: "expected <this>, got ...". */
  readonly expected: string;
  /** One sentence, for the README table. */
  readonly description: string;
  /** Never printed; may also come from `<NAME>_FILE`; never in config/default.json. */
  readonly secret: boolean;
  readonly presence: SettingPresence;
  /** Read from the environment only (CONFIG_FILE cannot name itself). */
  readonly envOnly: boolean;
  readonly example?: string;
}

/** Accepted by the ingestion listener when AUTH0_STREAM_TOKEN is unset outside production (documented, never secret). */
export const DEV_STREAM_TOKEN = "dev-stream-token";

// --- value types, each with the wording its error message uses -----------------------------------

const integer = (min: number, max: number) =>
  ({ kind: "integer", schema: z.number().int().min(min).max(max), expected: `an integer between ${min} and ${max}` }) as const;

const port = integer(0, 65535);

const boolean = {
  kind: "boolean",
  schema: z.boolean(),
  expected: "a boolean (true/false, 1/0, yes/no)",
} as const;

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  ({ kind: "enum", schema: z.enum(values), expected: `one of ${values.map((v) => `"${v}"`).join(", ")}` }) as const;

// Tokens and keys end up in HTTP headers, whose values are trimmed and cannot hold control
// characters: a value with either could never match, so it is refused at start-up instead.
const secretString = {
  kind: "string",
  schema: z
    .string()
    .min(1)
    .refine((s) => s === s.trim() && !/[\u0000-\u001f\u007f]/.test(s)),
  expected: "a non-empty string without leading or trailing whitespace or control characters",
} as const;

const word = (what: string) =>
  ({ kind: "string", schema: z.string().regex(/^\S+$/), expected: `${what} (non-empty, no whitespace)` }) as const;

const nonEmpty = (what: string) => ({ kind: "string", schema: z.string().trim().min(1), expected: what }) as const;

const list = (what: string) =>
  ({ kind: "list", schema: z.array(z.string().regex(/^\S+$/)), expected: `a list of ${what} (comma-separated in the environment)` }) as const;

const isHttpUrl = (s: string): boolean => {
  try {
    const url = new URL(s);
    // Credentials in the URL would end up in logs; Event Grid authenticates with headers anyway.
    return (url.protocol === "https:" || url.protocol === "http:") && url.hostname !== "" && url.username === "" && url.password === "";
  } catch {
    return false;
  }
};

// --- the settings ----------------------------------------------------------------------------------

const SETTING_LIST = [
  {
    name: "NODE_ENV",
    ...oneOf(["production", "development", "test"]),
    description: "Run mode; `production` enforces a stream token, an Event Grid endpoint and TLS.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "HOST",
    ...word("a bind address"),
    description: "Bind address of both listeners (ingestion and admin).",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "PORT",
    ...port,
    description: "Port of the ingestion listener that Auth0 posts to (0 picks a free port).",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "INGEST_PATH",
    kind: "string",
    schema: z.string().regex(/^\/[^\s?#]*$/),
    expected: 'a path starting with "/" (no whitespace, "?" or "#")',
    description: "Request path Auth0 posts log batches to.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "ADMIN_PORT",
    ...port,
    description: "Port of the admin listener (/metrics, /healthz, /readyz, /health); must differ from PORT.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "AUTH0_STREAM_TOKEN",
    ...secretString,
    description: "The Authorization Token configured on the Auth0 log stream, accepted on INGEST_PATH; required in production unless CONFIG_FILE declares `streams`. Outside production, when neither is set, the development token `dev-stream-token` is accepted.",
    secret: true,
    // Filled with the development token outside production; unset when only CONFIG_FILE streams are used.
    presence: "optional",
    envOnly: false,
  },
  {
    name: "AUTH0_STREAM_TOKEN_PREVIOUS",
    ...secretString,
    description: "A second accepted token, for rotating AUTH0_STREAM_TOKEN without dropping batches.",
    secret: true,
    presence: "optional",
    envOnly: false,
  },
  {
    name: "MAX_BODY_BYTES",
    ...integer(1, Number.MAX_SAFE_INTEGER),
    description: "Largest accepted request body in bytes, after gunzip.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "INGEST_REQUEST_TIMEOUT_MS",
    ...integer(1000, 3600000),
    description: "How long a sender may take to send one whole request (headers and body) before the connection is closed; bounds slow clients.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "CLOUDEVENTS_TYPE_PREFIX",
    kind: "string",
    schema: z.string().regex(/^[^\s.](?:\S*[^\s.])?$/),
    expected: 'a non-empty string without whitespace that does not start or end with "."',
    description: "CloudEvent `type` prefix; the type is `<prefix>.<Auth0 log type code>`.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "CLOUDEVENTS_SOURCE",
    ...word("a URI reference"),
    description: "Fixed CloudEvent `source`; by default it is derived from the tenant hostname.",
    secret: false,
    presence: "optional",
    envOnly: false,
    example: "https://example.eu.auth0.com/",
  },
  {
    name: "EVENT_TYPES_FILE",
    ...nonEmpty("a file path"),
    description: "The Auth0 log type code table (TSV); a relative path resolves against the package root.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "FILTER_DROP_CODES",
    ...list("Auth0 log type codes"),
    description: "Auth0 log type codes that are dropped instead of forwarded (comma-separated).",
    secret: false,
    presence: "default",
    envOnly: false,
    example: "sapi,fsa",
  },
  {
    name: "FILTER_DROP_CATEGORIES",
    ...list("categories"),
    description: "Management API filter categories that are dropped (comma-separated).",
    secret: false,
    presence: "default",
    envOnly: false,
    example: "management.success,system.notification",
  },
  {
    name: "FILTER_ONLY_CATEGORIES",
    ...list("categories"),
    description: "When non-empty, only events of these Management API filter categories are forwarded (comma-separated).",
    secret: false,
    presence: "default",
    envOnly: false,
    example: "auth.login.fail,auth.login.success",
  },
  {
    name: "TYPE_OVERRIDES",
    kind: "map",
    schema: z.record(z.string().regex(/^\S+$/), z.string().regex(/^\S+$/)),
    expected:
      "an object mapping type codes or categories to CloudEvent types, all non-empty without whitespace (a JSON object or key=value,key=value in the environment)",
    description: "CloudEvent `type` per type code or category, overriding the prefix rule (JSON object or `key=value,key=value`).",
    secret: false,
    presence: "default",
    envOnly: false,
    example: "f=com.example.login.failed,auth.login.success=com.example.login",
  },
  {
    name: "EVENTGRID_ENDPOINT",
    kind: "string",
    schema: z.string().refine(isHttpUrl),
    expected: "an absolute https:// URL without user:password@",
    description: "Event Grid topic or partner namespace endpoint; required in production.",
    secret: false,
    presence: "optional",
    envOnly: false,
    example: "https://my-topic.westeurope-1.eventgrid.azure.net/api/events",
  },
  {
    name: "EVENTGRID_KEY",
    ...secretString,
    description: "Event Grid access key; leave it and EVENTGRID_SAS_TOKEN unset to use Microsoft Entra ID (DefaultAzureCredential).",
    secret: true,
    presence: "optional",
    envOnly: false,
  },
  {
    name: "EVENTGRID_SAS_TOKEN",
    ...secretString,
    description: "Event Grid SAS token, instead of EVENTGRID_KEY (set at most one of them).",
    secret: true,
    presence: "optional",
    envOnly: false,
  },
  {
    name: "EVENTGRID_CHANNEL",
    ...word("a channel name"),
    description: "Partner namespace channel name, sent as the `aeg-channel-name` header.",
    secret: false,
    presence: "optional",
    envOnly: false,
  },
  {
    name: "EVENTGRID_ALLOW_INSECURE",
    ...boolean,
    description: "Allow an http:// EVENTGRID_ENDPOINT (local emulator, tests); refused in production.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "MAX_BATCH_BYTES",
    ...integer(1, 1048576),
    description: "Largest Event Grid request body in bytes (Event Grid's limit is 1 MiB).",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "MAX_BATCH_EVENTS",
    ...integer(1, 5000),
    description: "Most events in one Event Grid request.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "BATCH_WINDOW_MS",
    ...integer(0, 1000),
    description: "How long events of concurrent requests are gathered into one Event Grid request, in milliseconds (0 publishes each request on its own).",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "PUBLISH_RETRIES",
    ...integer(0, 10),
    description: "Retries of a failed Event Grid request after the first attempt.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "PUBLISH_TIMEOUT_MS",
    ...integer(1, 600000),
    description: "Timeout of one Event Grid request attempt, in milliseconds.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "RETRY_BASE_DELAY_MS",
    ...integer(0, 600000),
    description: "Delay before the first retry, in milliseconds; it doubles per retry (with jitter).",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "RETRY_MAX_DELAY_MS",
    ...integer(0, 600000),
    description: "Longest delay between retries, in milliseconds; at least RETRY_BASE_DELAY_MS.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "RETRY_AFTER_MAX_MS",
    ...integer(0, 3600000),
    description: "Cap on how long a Retry-After from Event Grid is honoured, in milliseconds.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "RESPONSE_RETRY_AFTER_SECONDS",
    ...integer(0, 86400),
    description: "Retry-After (seconds) the bridge sends back to Auth0 with a 503.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "STARTUP_CHECK_INTERVAL_MS",
    ...integer(1, 3600000),
    description: "How often the readiness check of the Event Grid target is retried until it succeeds, in milliseconds.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "SHUTDOWN_TIMEOUT_MS",
    ...integer(0, 3600000),
    description: "How long requests in flight may take to finish after SIGTERM, in milliseconds.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "DEAD_LETTER_DIR",
    ...nonEmpty("a directory path"),
    description: "Directory of the dead-letter store (append-only JSON Lines files); relative paths resolve against the working directory.",
    secret: false,
    presence: "default",
    envOnly: false,
    example: "/var/lib/auth0-eventgrid-bridge/dead-letter",
  },
  {
    name: "DEAD_LETTER_MAX_FILE_BYTES",
    ...integer(4096, 1073741824),
    description: "Size at which the dead-letter store starts a new file.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "ON_EXHAUSTED",
    ...oneOf(["retry", "dead-letter"]),
    description: "When Event Grid stays unavailable after the retries: `retry` answers 503 so Auth0 redelivers; `dead-letter` keeps the events in the dead-letter store and answers 200.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "DEDUPE_WINDOW",
    ...integer(0, 10000000),
    description: "How many recently published log_ids are remembered so a redelivered request publishes only what is new (0 turns dedupe off).",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "MAX_INFLIGHT_EVENTS",
    ...integer(1, 10000000),
    description: "Most events in flight at once (a request's share is estimated from its Content-Length before its body is read, at 1 KB per event); past it the bridge answers 429 with Retry-After instead of queueing.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "BREAKER_FAILURE_THRESHOLD",
    ...integer(1, 1000),
    description: "Consecutive failed Event Grid attempts (5xx, 429, timeouts, network, 401/403/404) that open the circuit breaker.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "BREAKER_COOLDOWN_MS",
    ...integer(1, 3600000),
    description: "How long the open circuit breaker answers 503 without calling Event Grid before it lets one probe batch through.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "REDACTION_HASH_KEY",
    ...secretString,
    description: "Key of the HMAC-SHA256 that `hash` redaction rules use (routes in CONFIG_FILE); required when a rule hashes. Keep it stable: the same value then always hashes the same.",
    secret: true,
    presence: "optional",
    envOnly: false,
  },
  {
    name: "LOG_LEVEL",
    ...oneOf(["error", "warn", "info", "debug"]),
    description: "Least severe log level written.",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "LOG_FORMAT",
    ...oneOf(["json", "pretty"]),
    description: "Log line format: `json` (one object per line) or `pretty` (for humans).",
    secret: false,
    presence: "default",
    envOnly: false,
  },
  {
    name: "CONFIG_FILE",
    ...nonEmpty("a file path"),
    description: "A JSON or YAML file with any of these settings; it overrides the defaults and the environment overrides it (environment only).",
    secret: false,
    presence: "optional",
    envOnly: true,
    example: "/etc/auth0-eventgrid-bridge/config.yaml",
  },
] as const satisfies readonly SettingSpec[];

export const SETTINGS: readonly SettingSpec[] = SETTING_LIST;

type SettingEntry = (typeof SETTING_LIST)[number];

export type SettingName = SettingEntry["name"];

/** The loaded configuration: one key per setting, typed by its schema. Plain data. */
export type Config = {
  -readonly [S in SettingEntry as S["name"]]: S["presence"] extends "optional" ? z.output<S["schema"]> | undefined : z.output<S["schema"]>;
};

/** The non-empty secret values of a loaded config, for the logger to redact. */
export function secretValues(config: Config): string[] {
  const values: string[] = [];
  for (const spec of SETTINGS) {
    if (!spec.secret) continue;
    const value: unknown = config[spec.name as SettingName];
    if (typeof value === "string" && value !== "") values.push(value);
  }
  return values;
}
