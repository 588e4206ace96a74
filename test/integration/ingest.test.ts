// Ingestion end to end: real HTTP into the bridge, real @azure/eventgrid publishing to the
// emulator on loopback. Body formats, authentication, limits and record validation.
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { TOKEN, fixture, gzip, jsonLines, metricValue, record, startStack, type Running } from "../helpers/harness.js";

let stack: Running;
before(async () => {
  stack = await startStack({ env: { AUTH0_STREAM_TOKEN_PREVIOUS: "previous-stream-token-xyz", MAX_BODY_BYTES: "200000" } });
});
after(async () => stack.close());

const sampleLines = readFileSync(fixture("format-json-lines.jsonl"), "utf8");
const sampleIds = sampleLines.trim().split("\n").map((l) => (JSON.parse(l) as { log_id: string }).log_id);

test("JSON Lines (Auth0's default) is published as CloudEvents", async () => {
  stack.emulator.reset();
  const res = await stack.post(sampleLines);
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { received: sampleIds.length, published: sampleIds.length, filtered: 0, rejected: 0, duplicates: 0, dead_lettered: 0, rejections: [] });
  assert.deepEqual(stack.emulator.events.map((e) => e.id), sampleIds);
  const first = stack.emulator.events[0]!;
  assert.equal(first.specversion, "1.0");
  assert.match(String(first.type), /^com\.auth0\.log\./);
  assert.equal(first.datacontenttype, "application/json");
  assert.equal(typeof first.auth0code, "string");
});

test("JSON array, JSON object, {logs: [...]} and gzip bodies all arrive", async () => {
  const records = [record("a-1"), record("a-2", "f")];
  const bodies: Array<[string, string | Buffer, Record<string, string>]> = [
    ["array", JSON.stringify(records), {}],
    ["object", JSON.stringify(record("o-1")), {}],
    ["logs", JSON.stringify({ logs: [record("l-1"), record("l-2")] }), {}],
    ["gzip jsonl", gzip(jsonLines([record("g-1"), record("g-2")])), { "content-encoding": "gzip" }],
    ["text/plain content type", jsonLines([record("t-1")]), { "content-type": "text/plain" }],
  ];
  for (const [name, body, headers] of bodies) {
    stack.emulator.reset();
    const res = await stack.post(body, headers);
    assert.equal(res.status, 200, name);
    assert.equal(res.json.published, res.json.received, name);
    assert.equal(stack.emulator.events.length, res.json.received, name);
  }
});

test("authentication: missing and wrong tokens get 401 and nothing is published", async () => {
  stack.emulator.reset();
  for (const authorization of [undefined, "wrong-token", `Bearer wrong`, `${TOKEN}x`]) {
    const res = await fetch(stack.bridge.ingestUrl, {
      method: "POST",
      headers: authorization === undefined ? {} : { authorization },
      body: jsonLines([record("unauth-1")]),
    });
    assert.equal(res.status, 401, String(authorization));
    assert.equal(((await res.json()) as { error: string }).error, "unauthorized");
  }
  assert.equal(stack.emulator.requests.length, 0);
});

test("authentication: Bearer form and the previous token (rotation) are accepted", async () => {
  for (const authorization of [`Bearer ${TOKEN}`, "previous-stream-token-xyz", "Bearer previous-stream-token-xyz"]) {
    const res = await stack.post(jsonLines([record(`rot-${authorization.length}`)]), { authorization });
    assert.equal(res.status, 200, authorization);
  }
});

test("a body over MAX_BODY_BYTES gets 413, also when it only gets that big after gunzip", async () => {
  stack.emulator.reset();
  const big = jsonLines([record("big-1", "s", { padding: "x".repeat(250_000) })]);
  const plain = await stack.post(big);
  assert.equal(plain.status, 413);
  assert.equal(plain.json.error, "body_too_large");
  const zipped = gzip(big);
  assert.ok(zipped.length < 200_000);
  const inflated = await stack.post(zipped, { "content-encoding": "gzip" });
  assert.equal(inflated.status, 413);
  assert.equal(stack.emulator.events.length, 0);
});

test("wrong method gets 405 with Allow; other paths 404", async () => {
  const get = await fetch(stack.bridge.ingestUrl, { headers: { authorization: TOKEN } });
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
  const other = await fetch(stack.bridge.ingestUrl.replace("/api/logs", "/metrics"));
  assert.equal(other.status, 404, "the ingestion port serves ingestion only");
});

test("a body that is not JSON at all gets 400 naming the line or position", async () => {
  const text = await stack.post("this is not json\nneither is this\n");
  assert.equal(text.status, 400);
  assert.equal(text.json.error, "invalid_body");
  assert.match(text.json.message, /line 1/);
  const truncated = await stack.post('[{"log_id":"1","data":{"type":"s"}');
  assert.equal(truncated.status, 400);
  assert.match(truncated.json.message, /position|line/);
  const empty = await stack.post("");
  assert.equal(empty.status, 400);
  const badGzip = await stack.post(Buffer.from("not gzip"), { "content-encoding": "gzip" });
  assert.equal(badGzip.status, 400);
});

test("malformed lines and invalid records are reported; valid records of the same request go through", async () => {
  stack.emulator.reset();
  const body = [
    JSON.stringify(record("mix-1")),
    "{not json",
    JSON.stringify({ log_id: "mix-nodata" }),
    JSON.stringify({ log_id: "mix-notype", data: { date: "2026-01-01T00:00:00Z" } }),
    JSON.stringify({ log_id: 12345, data: { type: "s" } }),
    JSON.stringify(record("mix-2", "fp")),
  ].join("\n");
  const before = await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_rejected_total");
  const res = await stack.post(body);
  assert.equal(res.status, 200);
  assert.equal(res.json.received, 6);
  assert.equal(res.json.published, 2);
  assert.equal(res.json.rejected, 4);
  assert.deepEqual(res.json.rejections.map((r: { index: number }) => r.index), [1, 2, 3, 4]);
  assert.deepEqual(res.json.rejections.map((r: { reason: string }) => r.reason), ["malformed_json", "missing_data", "missing_type", "invalid_log_id"]);
  assert.deepEqual(stack.emulator.events.map((e) => e.id), ["mix-1", "mix-2"]);
  assert.equal((await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_rejected_total")) - before, 4);
  const logged = stack.logs.find("record rejected").filter((l) => l.index === 1);
  assert.ok(logged.length >= 1, "each rejected record is logged");
});

test("unknown type codes are forwarded with category unknown and counted", async () => {
  stack.emulator.reset();
  const res = await stack.post(jsonLines([record("unk-1", "brand_new_code_2027")]));
  assert.equal(res.status, 200);
  const event = stack.emulator.events[0]!;
  assert.equal(event.type, "com.auth0.log.brand_new_code_2027");
  assert.equal(event.auth0category, "unknown");
  assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_received_total", { code: "brand_new_code_2027", category: "unknown" }), 1);
});

test("CloudEvent attributes follow the mapping contract", async () => {
  stack.emulator.reset();
  const input = record("map-1", "f", { hostname: "acme.eu.auth0.com", date: "2026-10-31T12:34:56.789Z" });
  await stack.post(jsonLines([input]));
  const e = stack.emulator.events[0]!;
  assert.equal(e.id, "map-1");
  assert.equal(e.source, "urn:auth0:acme.eu.auth0.com");
  assert.equal(e.subject, "users/auth0|user-map-1");
  assert.equal(e.time, "2026-10-31T12:34:56.789Z");
  assert.equal(e.auth0code, "f");
  assert.equal(e.auth0category, "auth.login.fail");
  assert.equal(e.auth0tenant, "acme.eu.auth0.com");
  assert.deepEqual(e.data, input.data);
});
