// Delivery to Event Grid: retries, Retry-After, refusals, batch splitting, what Auth0 is told,
// what is logged (and what never is), metrics, readiness and graceful shutdown.
import { test } from "node:test";
import assert from "node:assert/strict";
import { KEY, TOKEN, jsonLines, metricValue, record, startStack } from "../helpers/harness.js";

test("503 twice then success: three attempts, 200 to the sender", async () => {
  const stack = await startStack();
  try {
    stack.emulator.script({ status: 503 }, { status: 503 });
    const res = await stack.post(jsonLines([record("r-1"), record("r-2")]));
    assert.equal(res.status, 200);
    assert.equal(res.json.published, 2);
    assert.equal(stack.emulator.requests.filter((r) => r.method === "POST").length, 3);
    assert.deepEqual(stack.emulator.events.map((e) => e.id), ["r-1", "r-2"]);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_publish_requests_total", { outcome: "retry" }), 2);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_publish_requests_total", { outcome: "success" }), 1);
    assert.equal(stack.logs.find("publish attempt failed").length, 2);
  } finally {
    await stack.close();
  }
});

test("always 503: exactly 1 + PUBLISH_RETRIES attempts, then 503 with Retry-After and one 'delivery failed' naming every log_id", async () => {
  const stack = await startStack({ env: { PUBLISH_RETRIES: "3", RESPONSE_RETRY_AFTER_SECONDS: "42" } });
  try {
    stack.emulator.setFault(() => ({ status: 503 }));
    const ids = ["d-1", "d-2", "d-3"];
    const res = await stack.post(jsonLines(ids.map((id, i) => record(id, ["s", "f", "fp"][i]))));
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "42");
    assert.equal(res.json.error, "delivery_failed");
    assert.equal(res.json.failed, 3);
    assert.equal(stack.emulator.requests.filter((r) => r.method === "POST").length, 4);
    const failures = stack.logs.find("delivery failed");
    assert.equal(failures.length, 1);
    const line = failures[0]!;
    assert.equal(line.level, "error");
    assert.deepEqual(line.log_ids, ids);
    assert.deepEqual(line.codes, ["s", "f", "fp"]);
    assert.equal(line.reason, "exhausted");
    assert.equal(line.status, 503);
    assert.equal(line.attempts, 4);
    assert.equal(typeof line.elapsed_ms, "number");
    const warns = stack.logs.find("publish attempt failed");
    assert.deepEqual(warns.map((w) => w.attempt), [1, 2, 3, 4]);
    assert.ok(warns.every((w) => w.level === "warn" && w.status === 503 && w.batch_size === 3));
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_failed_total", { reason: "exhausted" }), 3);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_publish_requests_total", { outcome: "failure" }), 1);
    const health = (await (await fetch(`${stack.bridge.adminUrl}/health`)).json()) as { status: string; lastErrors: Array<{ reason: string }> };
    assert.equal(health.status, "failing");
    assert.equal(health.lastErrors[0]!.reason, "exhausted");
  } finally {
    await stack.close();
  }
});

test("no retry on 401, 403 or 404: one attempt, 503 to the sender so Auth0 keeps the logs", async () => {
  const stack = await startStack();
  try {
    for (const status of [401, 403, 404]) {
      stack.emulator.reset();
      stack.emulator.script({ status });
      const res = await stack.post(jsonLines([record(`nr-${status}`)]));
      assert.equal(res.status, 503, String(status));
      assert.ok(res.headers.get("retry-after"));
      assert.equal(stack.emulator.requests.filter((r) => r.method === "POST").length, 1, `one attempt for ${status}`);
    }
    const reasons = stack.logs.find("delivery failed").map((l) => l.reason);
    assert.deepEqual(reasons, ["unauthorized", "forbidden", "not_found"]);
  } finally {
    await stack.close();
  }
});

test("no retry on 400 or 413 for a single event: it is dead-lettered and the sender gets 200", async () => {
  const stack = await startStack();
  try {
    for (const [status, reason] of [
      [400, "rejected_by_eventgrid"],
      [413, "event_too_large"],
    ] as const) {
      stack.emulator.reset();
      stack.emulator.script({ status, message: `emulated ${status}` });
      const res = await stack.post(jsonLines([record(`nr-${status}`)]));
      assert.equal(res.status, 200, String(status));
      assert.equal(res.json.dead_lettered, 1);
      assert.equal(res.json.rejections[0].reason, reason);
      assert.equal(stack.emulator.requests.filter((r) => r.method === "POST").length, 1, `one attempt for ${status}`);
    }
  } finally {
    await stack.close();
  }
});

test("Retry-After from Event Grid is honoured (and capped by RETRY_AFTER_MAX_MS)", async () => {
  const waits: number[] = [];
  const stack = await startStack({
    env: { RETRY_AFTER_MAX_MS: "5000" },
    sleep: async (ms) => {
      waits.push(ms);
    },
  });
  try {
    stack.emulator.script({ status: 429, retryAfter: 3 }, { status: 503, retryAfter: 3600 });
    const res = await stack.post(jsonLines([record("ra-1")]));
    assert.equal(res.status, 200);
    assert.deepEqual(waits, [3000, 5000]);
  } finally {
    await stack.close();
  }
});

test("dropped connections and timeouts are retried", async () => {
  const stack = await startStack({ env: { PUBLISH_TIMEOUT_MS: "200" } });
  try {
    stack.emulator.script({ status: 200, drop: true }, { status: 200, delayMs: 1000 });
    const res = await stack.post(jsonLines([record("t-1")]));
    assert.equal(res.status, 200);
    const codes = stack.logs.find("publish attempt failed").map((l) => l.code);
    assert.equal(codes.length, 2);
    assert.equal(codes[1], "timeout");
    assert.ok(stack.emulator.events.some((e) => e.id === "t-1"));
  } finally {
    await stack.close();
  }
});

test("batches are split at 1 MB and at MAX_BATCH_EVENTS", async () => {
  const stack = await startStack({ env: { MAX_BATCH_EVENTS: "4" } });
  try {
    const big = Array.from({ length: 5 }, (_, i) => record(`big-${i}`, "s", { padding: "y".repeat(300_000) }));
    const res = await stack.post(jsonLines(big));
    assert.equal(res.status, 200);
    const posts = stack.emulator.requests.filter((r) => r.method === "POST");
    assert.ok(posts.length >= 2, `expected a split, got ${posts.length} request(s)`);
    for (const p of posts) assert.ok(p.bytes <= 1_048_576, `request of ${p.bytes} bytes`);
    assert.equal(stack.emulator.events.length, 5);

    stack.emulator.reset();
    const small = await stack.post(jsonLines(Array.from({ length: 10 }, (_, i) => record(`small-${i}`))));
    assert.equal(small.status, 200);
    assert.deepEqual(stack.emulator.requests.filter((r) => r.method === "POST").map((r) => r.eventCount).sort(), [2, 4, 4]);
  } finally {
    await stack.close();
  }
});

test("an event over 1 MB is never sent: rejected and reported, the rest goes through", async () => {
  const stack = await startStack({ env: { MAX_BODY_BYTES: "5000000" } });
  try {
    const res = await stack.post(jsonLines([record("ok-1"), record("huge-1", "s", { padding: "z".repeat(1_100_000) })]));
    assert.equal(res.status, 200);
    assert.equal(res.json.published, 1);
    assert.equal(res.json.rejections[0].reason, "event_too_large");
    assert.deepEqual(stack.emulator.events.map((e) => e.id), ["ok-1"]);
  } finally {
    await stack.close();
  }
});

test("filters and type overrides by code and by category", async () => {
  const stack = await startStack({
    env: {
      FILTER_DROP_CODES: "sapi",
      FILTER_DROP_CATEGORIES: "auth.silent_auth.success",
      TYPE_OVERRIDES: JSON.stringify({ fp: "com.example.password.failed", "auth.login.fail": "com.example.login.failed" }),
    },
  });
  try {
    const res = await stack.post(jsonLines([record("f-1", "sapi"), record("f-2", "ssa"), record("f-3", "fp"), record("f-4", "f"), record("f-5", "s")]));
    assert.equal(res.status, 200);
    assert.equal(res.json.filtered, 2);
    assert.equal(res.json.published, 3);
    assert.deepEqual(
      stack.emulator.events.map((e) => [e.id, e.type]),
      [
        ["f-3", "com.example.password.failed"],
        ["f-4", "com.example.login.failed"],
        ["f-5", "com.auth0.log.s"],
      ],
    );
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_filtered_total", { code: "sapi" }), 1);
  } finally {
    await stack.close();
  }
});

test("partner namespace: the channel name is sent and required", async () => {
  const stack = await startStack({ env: { EVENTGRID_CHANNEL: "auth0-channel" }, emulator: { channel: "auth0-channel" } });
  try {
    const res = await stack.post(jsonLines([record("ch-1")]));
    assert.equal(res.status, 200);
    assert.equal(stack.emulator.requests.at(-1)!.headers["aeg-channel-name"], "auth0-channel");
  } finally {
    await stack.close();
  }
});

test("metric values after a run", async () => {
  const stack = await startStack();
  try {
    await stack.post(jsonLines([record("m-1", "s"), record("m-2", "s"), record("m-3", "f"), { log_id: "m-4" }]));
    const admin = stack.bridge.adminUrl;
    assert.equal(await metricValue(admin, "auth0_bridge_events_received_total", { code: "s", category: "auth.login.success" }), 2);
    assert.equal(await metricValue(admin, "auth0_bridge_events_received_total", { code: "f", category: "auth.login.fail" }), 1);
    assert.equal(await metricValue(admin, "auth0_bridge_events_published_total", { code: "s" }), 2);
    assert.equal(await metricValue(admin, "auth0_bridge_events_rejected_total", { reason: "missing_data" }), 1);
    assert.equal(await metricValue(admin, "auth0_bridge_batch_size_events_count"), 1);
    assert.equal(await metricValue(admin, "auth0_bridge_batch_size_events_sum"), 3);
    assert.equal(await metricValue(admin, "auth0_bridge_publish_duration_seconds_count", { outcome: "success" }), 1);
    assert.equal(await metricValue(admin, "auth0_bridge_ingest_requests_total", { status: "200" }), 1);
    assert.ok((await metricValue(admin, "auth0_bridge_last_publish_success_timestamp_seconds")) > Date.now() / 1000 - 60);
    assert.ok((await metricValue(admin, "process_cpu_seconds_total")) > 0, "default process metrics");
    const health = (await (await fetch(`${admin}/health`)).json()) as { status: string; counters: { published: number; rejected: number } };
    assert.equal(health.status, "active");
    assert.equal(health.counters.published, 3);
    assert.equal(health.counters.rejected, 1);
  } finally {
    await stack.close();
  }
});

test("no secret appears in any log line, error or metric", async () => {
  // The emulator wants another key, so Event Grid refuses ours (401) and errors are logged.
  const stack = await startStack({ emulator: { key: "the-emulator-wants-another-key" }, waitReady: false });
  try {
    const res = await stack.post(jsonLines([record("s-1")]));
    assert.equal(res.status, 503);
    await fetch(stack.bridge.ingestUrl, { method: "POST", headers: { authorization: `${TOKEN}-wrong` }, body: "{}" });
    const ready = await fetch(`${stack.bridge.adminUrl}/readyz`);
    assert.equal(ready.status, 503);
    const readyBody = await ready.text();
    const metrics = await (await fetch(`${stack.bridge.adminUrl}/metrics`)).text();
    const health = await (await fetch(`${stack.bridge.adminUrl}/health`)).text();
    assert.ok(stack.logs.raw.length > 3);
    for (const text of [...stack.logs.raw, JSON.stringify(res.json), readyBody, metrics, health]) {
      assert.ok(!text.includes(KEY), `key leaked: ${text.slice(0, 200)}`);
      assert.ok(!text.includes(TOKEN), `token leaked: ${text.slice(0, 200)}`);
    }
  } finally {
    await stack.close();
  }
});

test("readiness: not ready until the target answers as a CloudEvents topic; clear reason otherwise", async () => {
  const stack = await startStack({ emulator: { inputSchema: "EventGridEvent" }, waitReady: false });
  try {
    // The check repeats every 50 ms; wait until it has run at least twice.
    await stack.emulator.waitForRequests(2);
    const res = await fetch(`${stack.bridge.adminUrl}/readyz`);
    assert.equal(res.status, 503);
    const body = (await res.json()) as { reason: string };
    assert.match(body.reason, /EventGridEvent.*CloudEventV10/);
    assert.equal((await fetch(`${stack.bridge.adminUrl}/healthz`)).status, 200, "liveness does not depend on Event Grid");
  } finally {
    await stack.close();
  }
  const good = await startStack();
  try {
    assert.equal((await fetch(`${good.bridge.adminUrl}/readyz`)).status, 200);
    assert.equal(await metricValue(good.bridge.adminUrl, "auth0_bridge_ready"), 1);
  } finally {
    await good.close();
  }
});

test("graceful shutdown: readiness turns 503, the request in flight finishes with 200, new connections are refused", async () => {
  const stack = await startStack();
  try {
    stack.emulator.script({ status: 200, delayMs: 300 });
    const inFlight = stack.post(jsonLines([record("g-1")]));
    await stack.emulator.waitForRequests(2); // the OPTIONS check and our POST
    const stopped = stack.bridge.stop();
    const ready = await fetch(`${stack.bridge.adminUrl}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { reason: string }).reason, "shutting down");
    const res = await inFlight;
    assert.equal(res.status, 200);
    await stopped;
    assert.deepEqual(stack.emulator.events.map((e) => e.id), ["g-1"]);
    await assert.rejects(fetch(stack.bridge.ingestUrl, { method: "POST", headers: { authorization: TOKEN }, body: jsonLines([record("g-2")]) }));
    assert.ok(stack.logs.find("stopped").length === 1);
  } finally {
    await stack.close();
  }
});
