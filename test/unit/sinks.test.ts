import { test } from "node:test";
import assert from "node:assert/strict";
import { RestError, createHttpHeaders } from "@azure/core-rest-pipeline";
import { arrayBytes, splitIntoBatches } from "../../src/sinks/batches.js";
import { EncodedEvent } from "../../src/sinks/encoded-event.js";
import { jsonArray } from "../../src/sinks/eventgrid.js";
import { classifyError, failureReason, parseRetryAfter, retryDelay, isRetryableStatus } from "../../src/sinks/retry-policy.js";

function restError(status: number | undefined, headers: Record<string, string> = {}, code?: string): RestError {
  const request = { headers: createHttpHeaders() } as never;
  const response = status === undefined ? undefined : ({ status, headers: createHttpHeaders(headers), request } as never);
  return new RestError(`failed with ${status}`, { ...(status !== undefined ? { statusCode: status, response } : {}), ...(code ? { code } : {}) });
}

test("batches respect the byte cap, counting brackets and commas", () => {
  const events = Array.from({ length: 10 }, (_, i) => ({ id: String(i), bytes: 100 }));
  // 3 events = 2 + 300 + 2 = 304 bytes; a 4th would make 405.
  const batches = splitIntoBatches(events, 304, 5000);
  assert.deepEqual(batches.map((b) => b.length), [3, 3, 3, 1]);
  for (const b of batches) assert.ok(arrayBytes(b.reduce((s, e) => s + e.bytes, 0), b.length) <= 304);
  assert.deepEqual(batches.flat().map((e) => e.id), events.map((e) => e.id), "order is kept");
});

test("batches respect the event cap", () => {
  const events = Array.from({ length: 12 }, () => ({ bytes: 1 }));
  assert.deepEqual(splitIntoBatches(events, 1_048_576, 5).map((b) => b.length), [5, 5, 2]);
  assert.deepEqual(splitIntoBatches([], 10, 5), []);
});

test("an event larger than the cap still goes alone (the caller rejects oversize events first)", () => {
  const batches = splitIntoBatches([{ bytes: 10 }, { bytes: 500 }, { bytes: 10 }], 100, 10);
  assert.deepEqual(batches.map((b) => b.length), [1, 1, 1]);
});

test("retryable statuses: 408, 429 and 5xx only", () => {
  for (const s of [408, 429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
  for (const s of [400, 401, 403, 404, 413, 422]) assert.equal(isRetryableStatus(s), false, String(s));
});

test("classifyError maps statuses to reasons and reads Retry-After", () => {
  const e503 = classifyError(restError(503, { "retry-after": "7" }));
  assert.equal(e503.retryable, true);
  assert.equal(e503.retryAfterMs, 7000);
  assert.equal(failureReason(e503), "exhausted");
  assert.equal(failureReason(classifyError(restError(400))), "bad_request");
  assert.equal(failureReason(classifyError(restError(401))), "unauthorized");
  assert.equal(failureReason(classifyError(restError(403))), "forbidden");
  assert.equal(failureReason(classifyError(restError(404))), "not_found");
  assert.equal(failureReason(classifyError(restError(413))), "too_large");
  assert.equal(failureReason(classifyError(restError(422))), "client_error");
  const network = classifyError(restError(undefined, {}, "ECONNRESET"));
  assert.equal(network.retryable, true);
  assert.equal(network.code, "ECONNRESET");
  const timeout = classifyError(Object.assign(new Error("aborted"), { name: "AbortError" }));
  assert.equal(timeout.code, "timeout");
  assert.equal(timeout.retryable, true);
  const bug = classifyError(new Error("invalid extension attribute name: X"));
  assert.equal(bug.retryable, false);
  assert.equal(failureReason(bug), "internal");
});

test("error messages lose query strings (a SAS could ride there)", () => {
  const detail = classifyError(new Error("Cannot connect to https://x.eventgrid.azure.net/api/events?api-version=2018-01-01&aeg-sas-key=SECRET"));
  assert.ok(!detail.message.includes("SECRET"));
});

test("parseRetryAfter: milliseconds header, seconds, HTTP date, garbage", () => {
  const now = () => Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("1500", undefined, now), 1500);
  assert.equal(parseRetryAfter(undefined, "3", now), 3000);
  assert.equal(parseRetryAfter(undefined, "Thu, 01 Jan 2026 00:00:10 GMT", now), 10_000);
  assert.equal(parseRetryAfter(undefined, "soon", now), undefined);
  assert.equal(parseRetryAfter(undefined, undefined, now), undefined);
});

test("retryDelay: exponential with jitter, capped, Retry-After wins up to its cap", () => {
  const opts = { baseDelayMs: 100, maxDelayMs: 1000, retryAfterMaxMs: 5000 };
  assert.equal(retryDelay(1, opts, undefined, () => 0), 50);
  assert.equal(retryDelay(1, opts, undefined, () => 1), 100);
  assert.equal(retryDelay(3, opts, undefined, () => 1), 400);
  assert.equal(retryDelay(10, opts, undefined, () => 1), 1000, "capped at maxDelayMs");
  assert.equal(retryDelay(1, opts, 3000, () => 0), 3000, "Retry-After honoured");
  assert.equal(retryDelay(1, opts, 60_000, () => 0), 5000, "Retry-After capped");
  assert.equal(retryDelay(3, opts, 10, () => 1), 400, "a short Retry-After does not shorten the backoff");
});

test("jsonArray: the events' JSON as one UTF-8 array, whatever their characters; wrong sizes cannot cut it short", () => {
  const event = (json: string, bytes = Buffer.byteLength(json)) => ({ id: "x", code: "s", json, bytes });
  const texts = ['{"a":1}', '{"name":"Zoë 名前 🎉"}', '{"b":"\\u0000 \\"q\\""}'];
  const events = texts.map((t) => event(t));
  const body = jsonArray(events);
  assert.equal(body.toString("utf8"), `[${texts.join(",")}]`);
  assert.equal(body.length, arrayBytes(events.reduce((n, e) => n + e.bytes, 0), events.length));
  assert.deepEqual(JSON.parse(body.toString("utf8")), texts.map((t) => JSON.parse(t)));
  assert.equal(jsonArray([]).toString(), "[]");
  assert.equal(jsonArray([events[1]!]).toString(), `[${texts[1]}]`);
  // A `bytes` too small (by more than the slack, by an emoji, by 1) or too large still gives the whole array.
  for (const delta of [-20, -4, -1, 3]) {
    const wrong = [events[0]!, event(texts[1]!, Buffer.byteLength(texts[1]!) + delta), events[2]!];
    assert.equal(jsonArray(wrong).toString("utf8"), `[${texts.join(",")}]`, `bytes off by ${delta}`);
  }
});

test("EncodedEvent: its JSON moves into the body it is written to and reads back the same, through splits", () => {
  const texts = ['{"id":"a","data":{"n":"Zoë"}}', '{"id":"b","data":{"e":"🎉"}}', '{"id":"c","data":{}}', '{"id":"d"}'];
  const events = texts.map((t, i) => new EncodedEvent(`e${i}`, "s", t));
  assert.deepEqual(events.map((e) => e.bytes), texts.map((t) => Buffer.byteLength(t)));
  const whole = jsonArray(events);
  assert.equal(whole.toString("utf8"), `[${texts.join(",")}]`);
  assert.deepEqual(events.map((e) => e.json), texts, "read back from the body");
  // A refused batch is split in halves: each half is built from the events as they now are.
  const first = jsonArray(events.slice(0, 2));
  const second = jsonArray(events.slice(2));
  assert.equal(first.toString("utf8"), `[${texts[0]},${texts[1]}]`);
  assert.equal(second.toString("utf8"), `[${texts[2]},${texts[3]}]`);
  whole.fill(0x20); // the first body is gone: nothing may still read from it
  assert.deepEqual(events.map((e) => e.json), texts, "read back from the halves");
  // Wrong sizes that cancel out (so the body itself comes out whole): the events keep their own
  // text rather than pointing at the wrong bytes.
  const short = new EncodedEvent("w", "s", texts[1]!, Buffer.byteLength(texts[1]!) - 1);
  const long = new EncodedEvent("x", "s", texts[2]!, Buffer.byteLength(texts[2]!) + 1);
  const body = jsonArray([short, long]);
  assert.equal(body.toString("utf8"), `[${texts[1]},${texts[2]}]`);
  body.fill(0x20);
  assert.deepEqual([short.json, long.json], [texts[1], texts[2]]);
});
