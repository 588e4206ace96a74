// What one Auth0 log stream record looks like once decoded. Auth0 adds fields freely,
// so only the envelope and `data.type` are typed; everything else passes through untouched.

export interface Auth0LogData {
  type: string;
  [field: string]: unknown;
}

export interface Auth0LogRecord {
  log_id?: string;
  data: Auth0LogData;
  [field: string]: unknown;
}

/** The body formats a Custom Webhook stream can send; detected from the body itself. */
export type BodyFormat = "jsonl" | "array" | "object" | "logs";

/** A record the decoder could read and that has the shape `{log_id?, data: {type: string}}`. */
export interface AcceptedItem {
  ok: true;
  /** 0-based position in the body: the line number - 1 for JSON Lines, the array index otherwise. */
  index: number;
  record: Auth0LogRecord;
}

/** A record that is not forwarded; the request still goes on with the others. */
export interface RejectedItem {
  ok: false;
  index: number;
  /** Machine-readable reason, e.g. `malformed_json`, `not_an_object`, `missing_data`, `missing_type`, `invalid_log_id`. */
  reason: string;
  /** Human-readable detail, safe to return to the caller (never contains the body). */
  detail: string;
  /** The raw text of the line (JSON Lines) or the parsed value, kept for the dead-letter store. */
  raw: unknown;
}

export type DecodedItem = AcceptedItem | RejectedItem;

export interface DecodedBody {
  format: BodyFormat;
  items: DecodedItem[];
}

/** The body is not JSON at all (nothing in it could be read). Answered with 400. */
export class BodyParseError extends Error {
  override readonly name = "BodyParseError";
  constructor(
    message: string,
    /** 1-based line number (JSON Lines) or character position, whichever the caller can act on. */
    readonly location: { line?: number; position?: number },
  ) {
    super(message);
  }
}
