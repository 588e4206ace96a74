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
  /**
   * The same event as a plain object in the structured JSON form, for JSON.stringify: serializing
   * it skips CloudEvent#toJSON, which copies the event and re-parses its time on every call.
   */
  structured: Record<string, unknown>;
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
  const { attributes, code, info } = buildAttributes(record, registry, options);
  const event = strictCloudEvent(attributes);
  // What cloudevents filled in (it stamps "now" when there is no usable date); `time` is already
  // in toISOString form otherwise (rfc3339 normalises it), as toJSON would write it.
  attributes.time = event.time;
  return { event, structured: attributes, code, info };
}

/** What the pipeline needs of a mapped event: its id and the plain structured form to serialize. */
export interface WireEvent {
  id: string;
  structured: Record<string, unknown>;
  code: string;
  info: EventTypeInfo;
}

// Distinct (source, type) pairs are few (tenants x codes); bound them anyway, they come off the wire.
const MAX_VALIDATED = 10_000;

/**
 * mapRecord for the hot path, with the same result: the attributes are built the same way, but the
 * `cloudevents` package's strict validation (a CloudEvent object, ajv, a frozen copy, then toJSON's
 * copy) runs once per distinct source and type. Everything else an event holds is valid by
 * construction: id, subject and extensions are non-empty strings checked for forbidden characters,
 * extension names are fixed, and time is an RFC 3339 timestamp in toISOString form. Only `source`
 * (a URI reference) and `type` depend on content in a way this module does not check itself.
 * test/unit/map.test.ts holds this to mapRecord, on every code and on generated records.
 */
export class EventMapper {
  private readonly validated = new Set<string>();

  constructor(
    private readonly registry: EventTypeRegistry,
    private readonly options: MappingOptions,
  ) {}

  map(record: Auth0LogRecord): WireEvent {
    const { attributes, code, info } = buildAttributes(record, this.registry, this.options);
    const key = `${attributes.source as string}\n${attributes.type as string}`;
    if (!this.validated.has(key)) {
      strictCloudEvent(attributes);
      if (this.validated.size >= MAX_VALIDATED) this.validated.clear();
      this.validated.add(key);
    }
    attributes.time ??= new Date().toISOString();
    return { id: attributes.id as string, structured: attributes, code, info };
  }
}

function strictCloudEvent(attributes: Record<string, unknown>): CloudEvent<Record<string, unknown>> {
  try {
    return new CloudEvent<Record<string, unknown>>(attributes, true);
  } catch (err) {
    if (err instanceof ValidationError) throw new MappingError("invalid_cloudevent", describe(err));
    throw err;
  }
}

function buildAttributes(record: Auth0LogRecord, registry: EventTypeRegistry, options: MappingOptions) {
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
  const tenant = attrValue(fields.hostname) ?? attrValue(fields.tenant_name);
  const source = nonEmptyString(options.source) ?? `urn:auth0:${tenant ?? "unknown"}`;

  const attributes: Record<string, unknown> = {
    specversion: "1.0",
    id: eventId(record),
    type,
    source,
    datacontenttype: "application/json",
    // The record's own object, not a copy: cloudevents 10 freezes only the event (shallow), never `data`.
    data: fields,
    auth0code: code,
    auth0category: info.apiFilter,
  };
  const userId = attrValue(fields.user_id);
  const clientId = userId === undefined ? attrValue(fields.client_id) : undefined;
  if (userId !== undefined) attributes.subject = `users/${userId}`;
  else if (clientId !== undefined) attributes.subject = `clients/${clientId}`;
  if (tenant !== undefined) attributes.auth0tenant = tenant;
  const time = rfc3339(fields.date);
  // Absent or invalid date: the caller stamps "now" (cloudevents does, in mapRecord).
  if (time !== undefined) attributes.time = time;

  // CloudEvents strings must not hold control characters or lone surrogates, and the cloudevents
  // package does not check this. Values that only feed optional attributes (hostname, user_id,
  // ...) are skipped where they are read (attrValue); what an event cannot do without is checked here.
  for (const name of ["id", "type", "source", "auth0code"] as const) {
    const value = attributes[name];
    if (typeof value === "string" && !isCloudEventsString(value)) {
      throw new MappingError("invalid_cloudevent", `${name} contains control characters or unpaired surrogates`);
    }
  }
  return { attributes, code, info };
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

const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function isCloudEventsString(value: string): boolean {
  return !FORBIDDEN_CHARS.test(value);
}

/** A data field usable in an attribute value: a non-empty string CloudEvents allows. */
function attrValue(value: unknown): string | undefined {
  const s = nonEmptyString(value);
  return s !== undefined && isCloudEventsString(s) ? s : undefined;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Auth0's `date` as an RFC 3339 UTC timestamp, or undefined when it is not one. Strict on purpose:
 * Date.parse would take "2026-02-30" (as March 2), a missing offset (as local time) or trailing text.
 * Non-strings (the Management API model allows an object) count as absent.
 */
function rfc3339(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  // Fast path: Auth0's own form (2021-11-04T00:15:10.706Z) is valid exactly when it round-trips.
  if (value.length === 24 && value.charCodeAt(23) === 90 /* Z */) {
    const ms = Date.parse(value);
    if (Number.isFinite(ms) && new Date(ms).toISOString() === value) return value;
  }
  const m = RFC3339.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const calendar = new Date(Date.UTC(year, month - 1, day));
  if (calendar.getUTCFullYear() !== year || calendar.getUTCMonth() !== month - 1 || calendar.getUTCDate() !== day) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) return undefined;
  const date = new Date(ms);
  // Outside 0000-9999 toISOString writes an expanded year (+010000-...), which RFC 3339 has no room for.
  const utcYear = date.getUTCFullYear();
  if (utcYear < 0 || utcYear > 9999) return undefined;
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
