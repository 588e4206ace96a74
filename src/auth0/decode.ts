// Body decoder: the text of one Auth0 Custom Webhook request in, candidate log records out.
// Pure: no I/O, no module state. The format is detected from the body, never from
// Content-Type, because Auth0 lets users send any content type with any format.

import {
  BodyParseError,
  type AcceptedItem,
  type Auth0LogRecord,
  type BodyFormat,
  type DecodedBody,
  type DecodedItem,
  type RejectedItem,
} from "./record.js";

export interface DecodeLimits {
  /** More candidate records than this -> BodyParseError. Default 100_000 (no legitimate batch is that big). */
  maxRecords?: number;
  /**
   * A record nested deeper than this is rejected with reason `too_deep`, so a hostile body cannot
   * blow the stack of later recursive code (JSON.stringify overflows at ~4,000 levels on Node 20).
   * The record object itself is depth 1: `{"data":{"type":"s"}}` has depth 2. Default 64.
   */
  maxDepth?: number;
}

export const DEFAULT_MAX_RECORDS = 100_000;
export const DEFAULT_MAX_DEPTH = 64;

/**
 * Decodes a log stream body (JSON Lines, JSON array, `{"logs":[...]}` or a single JSON object).
 *
 * - Throws {@link BodyParseError} when nothing in the body can be read (empty, not JSON, a broken
 *   array, every JSON Lines line malformed) or when it holds more than `maxRecords` records.
 * - Otherwise returns one item per candidate record, accepted or rejected, in body order.
 * - A body holding a single JSON object, even followed by a newline, is reported as format
 *   `"object"`: a one-line JSON Lines body is indistinguishable from it, and the records are the same.
 * - Positions and columns count UTF-16 code units in the text after an optional leading BOM.
 * - Accepted records are the objects JSON.parse returned (no copies). Rejected items keep the line
 *   text (JSON Lines) or the parsed value as `raw`, except `too_deep` values outside JSON Lines,
 *   whose `raw` is `undefined` because serialising them again could overflow the stack.
 */
export function decodeBody(text: string, limits?: DecodeLimits): DecodedBody {
  const maxRecords = checkLimit("maxRecords", limits?.maxRecords, DEFAULT_MAX_RECORDS);
  const maxDepth = checkLimit("maxDepth", limits?.maxDepth, DEFAULT_MAX_DEPTH);

  // Buffer#toString keeps a UTF-8 BOM as U+FEFF and JSON.parse rejects it.
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const start = skipWhitespace(body, 0);
  if (start === body.length) throw new BodyParseError("empty body", { line: 1 });

  const validator = new Validator(maxDepth);
  const first = body.charCodeAt(start);

  if (first === 0x5b /* [ */) {
    const parsed = tryParse(body);
    if (!parsed.ok) throw wholeBodyError("JSON array", body, parsed.error);
    // Only an array can start with "[", but the type system does not know that.
    const array = parsed.value as unknown[];
    return fromArray("array", array, validator, maxRecords);
  }

  if (first === 0x7b /* { */) {
    // Parse the first line on its own first: in a JSON Lines body it is record 1 and is then
    // reused, so every record is parsed exactly once. Only when it is not a complete value
    // (a pretty-printed object) is the whole body parsed as one JSON value.
    const lineStart = body.lastIndexOf("\n", start) + 1;
    const newline = body.indexOf("\n", start);
    const firstLineEnd = newline === -1 ? body.length : newline;
    const firstLine = tryParse(body.slice(lineStart, firstLineEnd));
    let whole: ParseResult | undefined;
    if (firstLine.ok) {
      // A complete value followed by more non-blank text cannot be valid JSON as a whole.
      if (skipWhitespace(body, firstLineEnd) === body.length) whole = firstLine;
    } else if (newline !== -1) {
      whole = tryParse(body);
    }
    if (whole?.ok) return fromObject(whole.value as Record<string, unknown>, validator, maxRecords);
    const firstLineIndex = countNewlines(body, lineStart);
    return fromLines(body, firstLineIndex, firstLine, validator, maxRecords);
  }

  const { line, column } = lineAndColumn(body, start);
  throw new BodyParseError(
    `line ${line}: ${describeToken(body.charAt(start))} at column ${column}; expected a JSON array, a JSON object or JSON Lines`,
    { line, position: start },
  );
}

function checkLimit(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  // A bad limit is a programming error, not a bad body: not a BodyParseError.
  if (!(value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= 1))) {
    throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function fromArray(
  format: BodyFormat,
  candidates: unknown[],
  validator: Validator,
  maxRecords: number,
): DecodedBody {
  if (candidates.length > maxRecords) {
    throw new BodyParseError(`too many records: ${candidates.length} (limit ${maxRecords})`, {});
  }
  const items: DecodedItem[] = [];
  for (let i = 0; i < candidates.length; i++) items.push(validator.check(candidates[i], i, RAW_IS_VALUE));
  return { format, items };
}

function fromObject(object: Record<string, unknown>, validator: Validator, maxRecords: number): DecodedBody {
  // The JSON Object format wraps the batch as {"logs":[...]}; anything else is one record.
  if (Object.hasOwn(object, "logs") && Array.isArray(object.logs)) {
    return fromArray("logs", object.logs as unknown[], validator, maxRecords);
  }
  return { format: "object", items: [validator.check(object, 0, RAW_IS_VALUE)] };
}

function fromLines(
  body: string,
  firstLineIndex: number,
  firstLine: ParseResult,
  validator: Validator,
  maxRecords: number,
): DecodedBody {
  const lines = body.split("\n");
  if (lines.length > maxRecords) {
    // Count before parsing, so an oversized body is refused without parsing 100k lines.
    let count = 0;
    for (let i = 0; i < lines.length; i++) {
      if (!isBlank(lines[i] as string) && ++count > maxRecords) {
        throw new BodyParseError(`too many records: more than ${maxRecords} lines`, { line: i + 1 });
      }
    }
  }

  const items: DecodedItem[] = [];
  let anyParsed = false;
  let firstError: { line: number; message: string } | undefined;
  for (let i = firstLineIndex; i < lines.length; i++) {
    let line = lines[i] as string;
    if (isBlank(line)) continue;
    if (line.charCodeAt(line.length - 1) === 0x0d) line = line.slice(0, -1); // CRLF
    const parsed = i === firstLineIndex ? firstLine : tryParse(line);
    if (parsed.ok) {
      anyParsed = true;
      items.push(validator.check(parsed.value, i, line));
    } else {
      const message = `line ${i + 1}: ${describeParseError(parsed.error, line)}`;
      firstError ??= { line: i + 1, message };
      items.push(reject(i, "malformed_json", message, line));
    }
  }
  // Not one readable line: the body is not JSON at all, so refuse it as a whole.
  if (!anyParsed && firstError) throw new BodyParseError(firstError.message, { line: firstError.line });
  return { format: "jsonl", items };
}

/** Marks "keep the parsed value as raw" (array formats), as opposed to a JSON Lines line text. */
const RAW_IS_VALUE = Symbol("raw is value");

class Validator {
  // One stack per decodeBody call, reused for every record: the depth walk allocates nothing else.
  private readonly stack: unknown[] = [];
  private readonly depths: number[] = [];

  constructor(private readonly maxDepth: number) {}

  /** `rawLine` is the JSON Lines line text (index = line number - 1), or RAW_IS_VALUE for the array formats. */
  check(value: unknown, index: number, rawLine: string | typeof RAW_IS_VALUE): DecodedItem {
    // Depth first: a too-deep value must never reach code that recurses, whatever its shape.
    if (this.tooDeep(value)) {
      const raw = rawLine === RAW_IS_VALUE ? undefined : rawLine;
      return fail(index, rawLine, "too_deep", `record is nested deeper than ${this.maxDepth} levels`, raw);
    }
    const raw = rawLine === RAW_IS_VALUE ? value : rawLine;
    if (!isPlainObject(value)) {
      return fail(index, rawLine, "not_an_object", `record must be an object, got ${kindOf(value)}`, raw);
    }
    if (!Object.hasOwn(value, "data")) return fail(index, rawLine, "missing_data", "data is missing", raw);
    const data = value.data;
    if (!isPlainObject(data)) {
      return fail(index, rawLine, "invalid_data", `data must be an object, got ${kindOf(data)}`, raw);
    }
    if (!Object.hasOwn(data, "type")) return fail(index, rawLine, "missing_type", "data.type is missing", raw);
    if (!isNonEmptyString(data.type)) {
      return fail(index, rawLine, "invalid_type", `data.type must be a non-empty string, got ${kindOf(data.type)}`, raw);
    }
    // A numeric log_id has already lost precision (Auth0 ids are 56 digits): refuse, don't guess.
    // "" and null count as absent (the dashboard's test payload sends ""): the id then falls back.
    if (Object.hasOwn(value, "log_id") && value.log_id !== null && typeof value.log_id !== "string") {
      return fail(index, rawLine, "invalid_log_id", `log_id must be a string, got ${kindOf(value.log_id)}`, raw);
    }
    if (Object.hasOwn(data, "log_id") && typeof data.log_id !== "string") {
      return fail(index, rawLine, "invalid_log_id", `data.log_id must be a string, got ${kindOf(data.log_id)}`, raw);
    }
    const accepted: AcceptedItem = { ok: true, index, record: value as Auth0LogRecord };
    return accepted;
  }

  /** Iterative, so a hostile depth cannot overflow the stack here either; stops at the first too-deep node. */
  private tooDeep(root: unknown): boolean {
    if (typeof root !== "object" || root === null) return false;
    const { stack, depths, maxDepth } = this;
    stack.length = 0;
    depths.length = 0;
    stack.push(root);
    depths.push(1);
    while (stack.length > 0) {
      const node = stack.pop() as object;
      const childDepth = (depths.pop() as number) + 1;
      if (Array.isArray(node)) {
        for (let i = 0; i < node.length; i++) {
          const child: unknown = node[i];
          if (typeof child === "object" && child !== null) {
            if (childDepth > maxDepth) return true;
            stack.push(child);
            depths.push(childDepth);
          }
        }
      } else {
        // JSON.parse objects have only own enumerable properties, so for-in sees exactly those
        // (and it is the fastest way to walk them in V8).
        for (const key in node) {
          const child: unknown = (node as Record<string, unknown>)[key];
          if (typeof child === "object" && child !== null) {
            if (childDepth > maxDepth) return true;
            stack.push(child);
            depths.push(childDepth);
          }
        }
      }
    }
    return false;
  }
}

function reject(index: number, reason: string, detail: string, raw: unknown): RejectedItem {
  return { ok: false, index, reason, detail, raw };
}

/** A validation rejection; JSON Lines details name the line, since humans count lines from 1. */
function fail(index: number, rawLine: string | typeof RAW_IS_VALUE, reason: string, detail: string, raw: unknown): RejectedItem {
  return reject(index, reason, rawLine === RAW_IS_VALUE ? detail : `line ${index + 1}: ${detail}`, raw);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

/** Names a value's JSON kind for a detail message; never the value itself. */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value === "") return "empty string";
  return typeof value;
}

type ParseResult = { ok: true; value: unknown } | { ok: false; error: unknown };

function tryParse(text: string): ParseResult {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    // Node 20's JSON.parse is iterative, but other engines/versions may throw RangeError on depth.
    return { ok: false, error };
  }
}

function wholeBodyError(what: string, body: string, error: unknown): BodyParseError {
  const { message, position } = parseErrorParts(error, body);
  if (position === undefined) return new BodyParseError(`invalid ${what}: ${message}`, {});
  const { line, column } = lineAndColumn(body, position);
  return new BodyParseError(`invalid ${what} at line ${line}, column ${column} (position ${position}): ${message}`, {
    line,
    position,
  });
}

function describeParseError(error: unknown, input: string): string {
  const { message, position } = parseErrorParts(error, input);
  return position === undefined ? message : `${message} at column ${position + 1}`;
}

/**
 * Turns V8's JSON.parse error into a short message that holds no body text. V8 quotes the input
 * ("Unexpected token 'x', "{"a":x}" is not valid JSON"), so only the known prefix is kept.
 */
function parseErrorParts(error: unknown, input: string): { message: string; position?: number } {
  if (!(error instanceof SyntaxError)) {
    return { message: error instanceof RangeError ? "too large or too deeply nested to parse" : "could not be parsed" };
  }
  const text = error.message;
  const atPosition = /^(.{1,120}?) in JSON at position (\d+)/.exec(text);
  if (atPosition) return { message: atPosition[1] as string, position: Number(atPosition[2]) };
  if (text.startsWith("Unexpected end of JSON input")) {
    return { message: "Unexpected end of JSON input", position: input.length };
  }
  const token = /^Unexpected token '([\s\S])'/.exec(text);
  // V8 gives no position for an unexpected token; find it ourselves (error path only).
  if (token) return { message: describeToken(token[1] as string), position: locateSyntaxError(input) };
  // Unknown wording (another Node version): keep the words before any quoted input.
  const prefix = /^[A-Za-z][A-Za-z ]{0,80}/.exec(text)?.[0].trim();
  return { message: prefix ? prefix : "Invalid JSON" };
}

/**
 * Position of the first JSON syntax error in `text` (`text.length` when it ends too early), or
 * undefined when there is none. Iterative, like JSON.parse, so deep nesting cannot overflow it.
 * Only used to place V8's position-less "Unexpected token" errors; the tests check it against V8.
 */
export function locateSyntaxError(text: string): number | undefined {
  const n = text.length;
  const open: number[] = []; // the brackets still open, innermost last
  let i = skipWhitespace(text, 0);
  for (;;) {
    // Here a value must start at i.
    if (i >= n) return n;
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      open.push(c);
      i = skipWhitespace(text, i + 1);
      if (i < n && text.charCodeAt(i) === c + 2 /* matching } or ] */) {
        open.pop();
        i++;
      } else if (c === 0x7b) {
        const afterKey = scanKey(text, i);
        if (afterKey.error !== undefined) return afterKey.error;
        i = afterKey.next;
        continue;
      } else {
        continue;
      }
    } else if (c === 0x22 /* " */) {
      const end = scanString(text, i);
      if (end.error !== undefined) return end.error;
      i = end.next;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const end = scanNumber(text, i);
      if (end.error !== undefined) return end.error;
      i = end.next;
    } else {
      const word = c === 0x74 ? "true" : c === 0x66 ? "false" : c === 0x6e ? "null" : "";
      if (word === "") return i;
      for (let k = 0; k < word.length; k++, i++) {
        if (i >= n) return n;
        if (text.charCodeAt(i) !== word.charCodeAt(k)) return i;
      }
    }
    // A value ended at i: close brackets or move on to the next element.
    for (;;) {
      i = skipWhitespace(text, i);
      const top = open[open.length - 1];
      if (top === undefined) return i === n ? undefined : i;
      if (i >= n) return n;
      const d = text.charCodeAt(i);
      if (d === top + 2) {
        open.pop();
        i++;
      } else if (d === 0x2c /* , */) {
        i = skipWhitespace(text, i + 1);
        if (top === 0x7b) {
          const afterKey = scanKey(text, i);
          if (afterKey.error !== undefined) return afterKey.error;
          i = afterKey.next;
        }
        break;
      } else {
        return i;
      }
    }
  }
}

interface Scan {
  next: number;
  error?: number;
}

/** A property name and its colon; `next` is where the value starts. */
function scanKey(text: string, i: number): Scan {
  if (i >= text.length) return { next: i, error: i };
  if (text.charCodeAt(i) !== 0x22) return { next: i, error: i };
  const end = scanString(text, i);
  if (end.error !== undefined) return end;
  const colon = skipWhitespace(text, end.next);
  if (colon >= text.length) return { next: colon, error: colon };
  if (text.charCodeAt(colon) !== 0x3a /* : */) return { next: colon, error: colon };
  return { next: skipWhitespace(text, colon + 1) };
}

function scanString(text: string, start: number): Scan {
  const n = text.length;
  let i = start + 1;
  for (;;) {
    if (i >= n) return { next: n, error: n };
    const c = text.charCodeAt(i);
    if (c === 0x22) return { next: i + 1 };
    if (c < 0x20) return { next: i, error: i };
    if (c !== 0x5c /* \ */) {
      i++;
      continue;
    }
    if (i + 1 >= n) return { next: n, error: n };
    const e = text.charCodeAt(i + 1);
    if (e === 0x75 /* u */) {
      for (let k = i + 2; k < i + 6; k++) {
        if (k >= n) return { next: n, error: n };
        if (!isHexDigit(text.charCodeAt(k))) return { next: k, error: k };
      }
      i += 6;
    } else if ('"\\/bfnrt'.includes(text.charAt(i + 1))) {
      i += 2;
    } else {
      return { next: i + 1, error: i + 1 };
    }
  }
}

function scanNumber(text: string, start: number): Scan {
  let i = start;
  if (text.charCodeAt(i) === 0x2d) i++;
  if (i >= text.length) return { next: i, error: i };
  if (text.charCodeAt(i) === 0x30) i++;
  else if (isDigit(text.charCodeAt(i))) i = skipDigits(text, i);
  else return { next: i, error: i };
  if (text.charCodeAt(i) === 0x2e /* . */) {
    if (!isDigit(text.charCodeAt(i + 1))) return { next: i + 1, error: Math.min(i + 1, text.length) };
    i = skipDigits(text, i + 1);
  }
  const e = text.charCodeAt(i);
  if (e === 0x65 || e === 0x45 /* e E */) {
    i++;
    const sign = text.charCodeAt(i);
    if (sign === 0x2b || sign === 0x2d) i++;
    if (!isDigit(text.charCodeAt(i))) return { next: i, error: Math.min(i, text.length) };
    i = skipDigits(text, i);
  }
  return { next: i };
}

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

function isHexDigit(code: number): boolean {
  return isDigit(code) || (code >= 0x41 && code <= 0x46) || (code >= 0x61 && code <= 0x66);
}

function skipDigits(text: string, from: number): number {
  let i = from;
  while (isDigit(text.charCodeAt(i))) i++;
  return i;
}

function describeToken(char: string): string {
  const code = char.charCodeAt(0);
  // Printable ASCII is shown as is; anything else by code point, so the message stays one clean line.
  const shown = code > 0x20 && code < 0x7f ? `'${char}'` : `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  return `Unexpected token ${shown}`;
}

/** JSON's own whitespace (what JSON.parse skips): space, tab, LF, CR. */
function isJsonWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

function skipWhitespace(text: string, from: number): number {
  let i = from;
  while (i < text.length && isJsonWhitespace(text.charCodeAt(i))) i++;
  return i;
}

function isBlank(line: string): boolean {
  return skipWhitespace(line, 0) === line.length;
}

function countNewlines(text: string, end: number): number {
  let count = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < end; i = text.indexOf("\n", i + 1)) count++;
  return count;
}

function lineAndColumn(text: string, position: number): { line: number; column: number } {
  const line = countNewlines(text, position) + 1;
  const lineStart = position === 0 ? 0 : text.lastIndexOf("\n", position - 1) + 1;
  const column = position - lineStart + 1;
  return { line, column };
}
