// CloudEvents binary content mode for the webhook sink: an event's attributes become ce-* headers
// and its data the body. Kept apart from the publisher because the encoding (notably the
// percent-encoding of header values the cloudevents package leaves undone) is a detail of the
// HTTP binding, not of delivery.
import { CloudEvent, HTTP } from "cloudevents";
import type { OutgoingEvent } from "./delivery.js";

/** Headers and body of a binary-mode request. */
export interface BinaryRequest {
  headers: Record<string, string>;
  body: string | Uint8Array;
}

/**
 * Binary content mode: attributes as ce-* headers and `data` as the body, by the cloudevents
 * package. It copies attribute values into headers as they are, so they are percent-encoded here
 * as the HTTP binding (3.1.3.2) requires: fetch would refuse characters above U+00FF and send
 * U+0080..U+00FF as Latin-1 bytes, which receivers would misread.
 */
export function binaryRequest(event: OutgoingEvent): BinaryRequest {
  const attributes = JSON.parse(event.json) as Record<string, unknown>;
  // Not strict: the event was validated when it was mapped; this only re-reads it.
  const message = HTTP.binary(new CloudEvent<unknown>(attributes, false));
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) {
    if (value === undefined) continue;
    const text = Array.isArray(value) ? value.join(",") : String(value);
    headers[name] = name.startsWith("ce-") ? percentEncode(text) : text;
  }
  const body = message.body;
  return { headers, body: typeof body === "string" ? body : body instanceof Uint8Array ? body : body === undefined ? "" : JSON.stringify(body) };
}

/** HTTP binding 3.1.3.2: space, '"', '%' and anything outside U+0021..U+007E as %XX of its UTF-8 bytes. */
export function percentEncode(value: string): string {
  if (/^[\x21\x23\x24\x26-\x7e]*$/.test(value)) return value;
  let out = "";
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (code >= 0x21 && code <= 0x7e && code !== 0x22 && code !== 0x25) out += char;
    else for (const byte of Buffer.from(char, "utf8")) out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
