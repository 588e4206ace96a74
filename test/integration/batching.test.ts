// Cross-request batching (BATCH_WINDOW_MS): concurrent requests share Event Grid requests, and
// each request is still answered for its own events only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { jsonLines, record, startStack } from "../helpers/harness.js";

const posts = (stack: { emulator: { requests: Array<{ method: string; eventCount: number; status: number | string }> } }) =>
  stack.emulator.requests.filter((r) => r.method === "POST");

test("concurrent single-event requests are coalesced into shared Event Grid requests", async () => {
  const stack = await startStack({ env: { BATCH_WINDOW_MS: "200" } });
  try {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => stack.post(jsonLines([record(`co-${i}`)]))));
    assert.ok(results.every((r) => r.status === 200 && r.json.published === 1));
    assert.equal(stack.emulator.events.length, 20);
    assert.ok(posts(stack).length < 20, `expected fewer Event Grid requests than ingest requests, got ${posts(stack).length}`);
    assert.ok(posts(stack).some((r) => r.eventCount > 1), "at least one request carried events of several senders");
  } finally {
    await stack.close();
  }
});

test("a batch never exceeds MAX_BATCH_EVENTS: a full one is sent without waiting for the rest", async () => {
  const stack = await startStack({ env: { BATCH_WINDOW_MS: "200", MAX_BATCH_EVENTS: "4" } });
  try {
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => stack.post(jsonLines([record(`full-${i}`)]))));
    assert.ok(results.every((r) => r.status === 200));
    assert.deepEqual(posts(stack).map((r) => r.eventCount), [4, 2]);
  } finally {
    await stack.close();
  }
});

test("each request gets its own outcome: a poisoned event only affects the request that sent it", async () => {
  const stack = await startStack({ env: { BATCH_WINDOW_MS: "200" } });
  try {
    stack.emulator.setFault(({ events }) => (events.some((e) => e.id === "bad-1") ? { status: 400, message: "poison" } : undefined));
    const [a, b, c] = await Promise.all([
      stack.post(jsonLines([record("good-1"), record("bad-1")])),
      stack.post(jsonLines([record("good-2")])),
      stack.post(jsonLines([record("good-3"), record("good-4")])),
    ]);
    assert.equal(a!.status, 200);
    assert.equal(a!.json.published, 1);
    assert.equal(a!.json.dead_lettered, 1);
    assert.deepEqual(a!.json.rejections.map((r: { reason: string }) => r.reason), ["rejected_by_eventgrid"]);
    assert.equal(b!.json.published, 1);
    assert.equal(b!.json.dead_lettered, 0);
    assert.equal(c!.json.published, 2);
    assert.deepEqual(stack.emulator.events.map((e) => e.id).sort(), ["good-1", "good-2", "good-3", "good-4"]);
  } finally {
    await stack.close();
  }
});

test("when a shared batch fails, every request in it is told 503 with only its own events counted", async () => {
  const stack = await startStack({ env: { BATCH_WINDOW_MS: "200", PUBLISH_RETRIES: "0" } });
  try {
    stack.emulator.setFault(() => ({ status: 503 }));
    const [a, b] = await Promise.all([stack.post(jsonLines([record("f-1"), record("f-2")])), stack.post(jsonLines([record("f-3")]))]);
    assert.equal(a!.status, 503);
    assert.equal(a!.json.failed, 2);
    assert.equal(b!.status, 503);
    assert.equal(b!.json.failed, 1);
    assert.equal(posts(stack).length, 1, "one shared attempt");
  } finally {
    await stack.close();
  }
});
