// The delivery guarantee: every event is delivered, dead-lettered, or left for Auth0 to
// redeliver. Dead-letter store contents, poison isolation, ON_EXHAUSTED, dedupe, back-pressure,
// the circuit breaker and an unwritable store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { readDeadLetters, type StoredDeadLetter } from "../../src/sinks/dead-letter.js";
import { TOKEN, jsonLines, metricValue, record, startStack } from "../helpers/harness.js";

async function stored(dir: string): Promise<StoredDeadLetter[]> {
  const out: StoredDeadLetter[] = [];
  for await (const { record: r } of readDeadLetters(dir)) out.push(r);
  return out;
}

test("invalid records and unparseable bodies are kept in the dead-letter store", async () => {
  const stack = await startStack();
  try {
    const res = await stack.post([JSON.stringify(record("ok-1")), "{broken", JSON.stringify({ log_id: "x", data: { no: "type" } })].join("\n"));
    assert.equal(res.status, 200);
    assert.equal(res.json.dead_lettered, 2);
    const bad = await stack.post("definitely not json");
    assert.equal(bad.status, 400);
    const records = await stored(stack.deadLetterDir);
    assert.deepEqual(records.map((r) => [r.reason, r.detail ?? null]), [
      ["invalid_record", "malformed_json"],
      ["invalid_record", "missing_type"],
      ["unparseable_body", null],
    ]);
    assert.equal(records[0]!.raw, "{broken");
    assert.equal(records[1]!.raw, JSON.stringify({ log_id: "x", data: { no: "type" } }), "JSON Lines keep the line as sent");
    assert.equal(records[2]!.raw, "definitely not json");
    for (const r of records) {
      assert.match(r.dlq_id, /^[0-9a-f-]{36}$/);
      assert.equal(r.bridge_version, stack.bridge.health.snapshot().version);
    }
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_dead_lettered_total", { reason: "invalid_record" }), 2);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_dead_letter_records"), 3);
  } finally {
    await stack.close();
  }
});

test("poison isolation: a batch with poisoned events is bisected, the rest published, the offenders dead-lettered", async () => {
  const stack = await startStack();
  try {
    const poison = new Set(["p-3", "p-6"]);
    stack.emulator.setFault(({ events }) => (events.some((e) => poison.has(e.id)) ? { status: 400, message: "poisoned event" } : undefined));
    const ids = Array.from({ length: 8 }, (_, i) => `p-${i}`);
    // A field beside log_id and data must survive into the dead letter too.
    const posted = ids.map((id) => (id === "p-6" ? { ...record(id), stream_note: { kept: true } } : record(id)));
    const res = await stack.post(jsonLines(posted));
    assert.equal(res.status, 200);
    assert.equal(res.json.published, 6);
    assert.equal(res.json.dead_lettered, 2);
    assert.deepEqual(stack.emulator.events.map((e) => e.id).sort(), ids.filter((id) => !poison.has(id)).sort());
    const records = await stored(stack.deadLetterDir);
    assert.deepEqual(records.map((r) => r.log_id).sort(), ["p-3", "p-6"]);
    for (const r of records) {
      assert.equal(r.reason, "rejected_by_eventgrid");
      assert.equal(r.status, 400);
      assert.match(String(r.error), /poisoned event/);
      assert.equal((r.event as { id: string }).id, r.log_id);
      assert.equal((r.event as { specversion: string }).specversion, "1.0");
      assert.equal((r.event as { auth0code: string }).auth0code, "s");
      assert.deepEqual(r.record, posted.find((p) => p.log_id === r.log_id), "the dead letter keeps the record as posted");
      assert.equal(r.attempts, 1);
      assert.ok(r.first_attempt && r.last_attempt);
    }
  } finally {
    await stack.close();
  }
});

test("413 on a batch: split and resent until it fits", async () => {
  const stack = await startStack({ emulator: { maxRequestBytes: 3000 } });
  try {
    const res = await stack.post(jsonLines(Array.from({ length: 10 }, (_, i) => record(`s-${i}`))));
    assert.equal(res.status, 200);
    assert.equal(res.json.published, 10);
    assert.equal(stack.emulator.events.length, 10);
    assert.ok(stack.emulator.requests.some((r) => r.status === 413));
  } finally {
    await stack.close();
  }
});

test("ON_EXHAUSTED=dead-letter: events are kept and the sender gets 200", async () => {
  const stack = await startStack({ env: { ON_EXHAUSTED: "dead-letter", PUBLISH_RETRIES: "1" } });
  try {
    stack.emulator.setFault(() => ({ status: 503 }));
    const posted = [record("e-1"), record("e-2")];
    const res = await stack.post(jsonLines(posted));
    assert.equal(res.status, 200);
    assert.equal(res.json.dead_lettered, 2);
    const records = await stored(stack.deadLetterDir);
    assert.deepEqual(records.map((r) => [r.reason, r.log_id, r.status, r.attempts]), [
      ["exhausted", "e-1", 503, 2],
      ["exhausted", "e-2", 503, 2],
    ]);
    assert.deepEqual(records.map((r) => r.record), posted, "the dead letters keep the records as posted");
  } finally {
    await stack.close();
  }
});

test("dedupe: a redelivered request publishes only what was not published before", async () => {
  const stack = await startStack({ env: { PUBLISH_RETRIES: "0", MAX_BATCH_EVENTS: "2" } });
  try {
    // First delivery: the second batch fails, so the sender gets 503 and redelivers everything.
    stack.emulator.setFault(({ events }) => (events.some((e) => e.id === "dd-3") ? { status: 503 } : undefined));
    const body = jsonLines(["dd-1", "dd-2", "dd-3", "dd-4"].map((id) => record(id)));
    const first = await stack.post(body);
    assert.equal(first.status, 503);
    assert.equal(first.json.published, 2);
    stack.emulator.setFault(undefined);
    const second = await stack.post(body);
    assert.equal(second.status, 200);
    assert.equal(second.json.duplicates, 2);
    assert.equal(second.json.published, 2);
    assert.deepEqual(stack.emulator.events.map((e) => e.id), ["dd-1", "dd-2", "dd-3", "dd-4"], "nothing reached Event Grid twice");
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_duplicate_total"), 2);
  } finally {
    await stack.close();
  }
});

test("back-pressure: past MAX_INFLIGHT_EVENTS the bridge answers 429 with Retry-After at once", async () => {
  const stack = await startStack({ env: { MAX_INFLIGHT_EVENTS: "3", RESPONSE_RETRY_AFTER_SECONDS: "7" } });
  try {
    stack.emulator.script({ status: 200, delayMs: 400 });
    const slow = stack.post(jsonLines([record("bp-1"), record("bp-2"), record("bp-3")]));
    await stack.emulator.waitForRequests(2); // the readiness OPTIONS and the slow POST
    const busy = await stack.post(jsonLines([record("bp-4")]));
    assert.equal(busy.status, 429);
    assert.equal(busy.headers.get("retry-after"), "7");
    assert.equal(busy.json.error, "too_busy");
    assert.equal((await slow).status, 200);
    const after = await stack.post(jsonLines([record("bp-4")]));
    assert.equal(after.status, 200, "accepted again once the load is gone");
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_ingest_throttled_total"), 1);
  } finally {
    await stack.close();
  }
});

test("circuit breaker: opens after consecutive failures, answers 503 without calling Event Grid, closes after a good probe", async () => {
  const stack = await startStack({ env: { BREAKER_FAILURE_THRESHOLD: "3", BREAKER_COOLDOWN_MS: "300", PUBLISH_RETRIES: "0" } });
  try {
    stack.emulator.setFault(() => ({ status: 500 }));
    for (let i = 0; i < 3; i++) assert.equal((await stack.post(jsonLines([record(`cb-${i}`)]))).status, 503);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_circuit_breaker_state"), 2);
    const posts = stack.emulator.requests.filter((r) => r.method === "POST").length;
    const fast = await stack.post(jsonLines([record("cb-fast")]));
    assert.equal(fast.status, 503);
    assert.ok(fast.headers.get("retry-after"));
    assert.equal(fast.json.error, "eventgrid_unavailable", "answered before the body was read");
    assert.equal(stack.emulator.requests.filter((r) => r.method === "POST").length, posts, "Event Grid was not called while open");
    const health = (await (await fetch(`${stack.bridge.adminUrl}/health`)).json()) as { circuitBreaker: string };
    assert.equal(health.circuitBreaker, "open");
    stack.emulator.setFault(undefined);
    // Wait out the cool-down by polling the breaker rather than sleeping a fixed time.
    let res;
    for (let i = 0; i < 100; i++) {
      res = await stack.post(jsonLines([record("cb-probe")]));
      if (res.status === 200) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(res!.status, 200);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_circuit_breaker_state"), 0);
  } finally {
    await stack.close();
  }
});

test("an unwritable dead-letter store means 503: nothing is acknowledged that is not kept", async () => {
  const stack = await startStack();
  try {
    rmSync(stack.deadLetterDir, { recursive: true });
    writeFileSync(stack.deadLetterDir, "not a directory");
    const res = await stack.post([JSON.stringify(record("w-1")), "{broken"].join("\n"));
    assert.equal(res.status, 503);
    assert.ok(res.headers.get("retry-after"));
    assert.equal(res.json.error, "dead_letter_unavailable");
    const body = await fetch(stack.bridge.ingestUrl, { method: "POST", headers: { authorization: TOKEN }, body: "garbage" });
    assert.equal(body.status, 503, "an unparseable body that cannot be kept is not acknowledged either");
    assert.ok(stack.logs.find("dead-letter store write failed; the sender must redeliver").length >= 1);
  } finally {
    await stack.close();
  }
});
