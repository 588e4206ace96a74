// One Auth0 log record -> one CloudEvent 1.0. Pure and per-event hot: no I/O, no per-call setup.
// The attribute rules below are the bridge's public contract; test/fixtures/golden/ pins them down.

import { createHash } from "node:crypto";
import { CloudEvent, ValidationError } from "cloudevents";
import type { Auth0LogRecord } from "../auth0/record.js";
import type { EventTypeInfo, EventTypeRegistry } from "../auth0/registry.js";

export const DEFAULT_TYPE_PREFIX = "com.auth0.log";

export interface MappingOptions {
  /** type = `${typePrefix}.${code}`; an empty prefix falls back to DEFAULT_TYPE_PREFIX. */
  typePrefix: string;
  /** CLOUDEVENTS_SOURCE: when a non-empty string, the `source` of every event. */
  source?: string;
  /** Per code/category override decided by the caller; a returned string replaces the default type. */
  typeOverride?: (info: EventTypeInfo) => string | undefined;
}

export interface MappedEvent {
  event: CloudEvent<Record<string, unknown>>;
  code: string;
  info: EventTypeInfo;
}

export type MappingErrorReason =
  /** cloudevents' strict validation rejected the result (e.g. a hostname that is not URI-safe). */
  | "invalid_cloudevent"
  /** record.data is not an object (the decoder should have rejected it already). */
  | "missing_data"
  /** data.type is not a non-empty string (the decoder should have rejected it already). */
  | "missing_type";

/** Raised when a record cannot become a valid CloudEvent. The message never holds record content. */
export class MappingError extends Error {
  override readonly name = "MappingError";
  constructor(
    readonly reason: MappingErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export function mapRecord(
  record: Auth0LogRecord,
  registry: EventTypeRegistry,
  options: MappingOptions,
): MappedEvent {
  // Types say these hold, but records come off the wire: check cheaply rather than emit garbage.
  const data: unknown = record.data;
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new MappingError("missing_data", "record.data is not an object");
  }
  const fields = data as Record<string, unknown>;
  const code = fields.type;
  if (typeof code !== "string" || code === "") {
    throw new MappingError("missing_type", "record.data.type is not a non-empty string");
  }
  const info = registry.lookup(code);

  const override = options.typeOverride?.(info);
  const type =
    typeof override === "string" ? override : `${options.typePrefix || DEFAULT_TYPE_PREFIX}.${code}`;

  // Source fallback: the request hostname (tenant or custom domain) identifies the tenant best;
  // tenant_name is all some event types carry; "unknown" keeps the event valid when neither is there.
  const tenant = nonEmptyString(fields.hostname) ?? nonEmptyString(fields.tenant_name);
  const source = nonEmptyString(options.source) ?? `urn:auth0:${tenant ?? "unknown"}`;

  const attributes: Record<string, unknown> = {
    id: eventId(record),
    type,
    source,
    datacontenttype: "application/json",
    // The record's own object, not a copy: cloudevents 10 freezes only the event (shallow), never `data`.
    data: fields,
    auth0code: code,
    auth0category: info.apiFilter,
  };
  const userId = nonEmptyString(fields.user_id);
  const clientId = userId === undefined ? nonEmptyString(fields.client_id) : undefined;
  if (userId !== undefined) attributes.subject = `users/${userId}`;
  else if (clientId !== undefined) attributes.subject = `clients/${clientId}`;
  if (tenant !== undefined) attributes.auth0tenant = tenant;
  const time = rfc3339(fields.date);
  // Absent or invalid date: leave `time` to cloudevents, which stamps "now".
  if (time !== undefined) attributes.time = time;

  let event: CloudEvent<Record<string, unknown>>;
  try {
    event = new CloudEvent<Record<string, unknown>>(attributes, true);
  } catch (err) {
    if (err instanceof ValidationError) throw new MappingError("invalid_cloudevent", describe(err));
    throw err;
  }
  return { event, code, info };
}

/**
 * The CloudEvent id: Auth0's log_id (top level, else data.log_id, else data._id), so redeliveries of a
 * log keep their id and consumers can de-duplicate. Without one, a SHA-256 of the record's canonical
 * JSON (keys sorted at every level) gives the same guarantee whatever the key order.
 */
export function eventId(record: Auth0LogRecord): string {
  const top = nonEmptyString(record.log_id);
  if (top !== undefined) return top;
  const data: unknown = record.data;
  if (data !== null && typeof data === "object") {
    const fields = data as Record<string, unknown>;
    const inner = nonEmptyString(fields.log_id) ?? nonEmptyString(fields._id);
    if (inner !== undefined) return inner;
  }
  return `sha256:${createHash("sha256").update(canonicalJson(record) ?? "null").digest("hex")}`;
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * Auth0's `date` as an RFC 3339 UTC timestamp, or undefined when it is not a usable timestamp string.
 * Non-strings (the Management API model allows an object) count as absent.
 */
function rfc3339(value: unknown): string | undefined {
  // Only ISO 8601 date-times: Date.parse also takes "1" or "Nov 3 2021" and reads them in local time.
  if (typeof value !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(value)) return undefined;
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) return undefined;
  const date = new Date(ms);
  const year = date.getUTCFullYear();
  // Outside 0000-9999 toISOString writes an expanded year (+010000-...), which RFC 3339 has no room for.
  if (year < 0 || year > 9999) return undefined;
  return date.toISOString();
}

/** JSON.stringify semantics, but object keys sorted so that key order cannot change the hash. */
function canonicalJson(value: unknown): string | undefined {
  if (value === null || typeof value !== "object") {
    // Primitives as JSON.stringify writes them; undefined/functions/symbols give undefined (dropped).
    return JSON.stringify(value) as string | undefined;
  }
  const withToJson = value as { toJSON?: unknown };
  if (typeof withToJson.toJSON === "function") {
    return canonicalJson((withToJson.toJSON as () => unknown).call(value));
  }
  if (Array.isArray(value)) {
    return `[${value.map((item: unknown) => canonicalJson(item) ?? "null").join(",")}]`;
  }
  const object = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const key of Object.keys(object).sort()) {
    const encoded = canonicalJson(object[key]);
    if (encoded !== undefined) parts.push(`${JSON.stringify(key)}:${encoded}`);
  }
  return `{${parts.join(",")}}`;
}

/** A short reason from cloudevents' error, built from attribute paths only (its message may echo values). */
function describe(err: ValidationError): string {
  const problems: string[] = [];
  for (const e of err.errors ?? []) {
    if (typeof e === "object" && e !== null && "message" in e) {
      problems.push(`${e.instancePath || "/"} ${e.message ?? "is invalid"}`);
    }
  }
  const head = err.message.split(/[:\n]/, 1)[0] ?? "invalid";
  return `mapped event is not a valid CloudEvent: ${problems.length > 0 ? problems.join("; ") : head}`;
}
