// Webhook destinations through the whole bridge: Auth0 payload in, CloudEvents out to a webhook
// (after the abuse-protection handshake) next to an Event Grid topic; a refused handshake makes
// Auth0 redeliver; 410 Gone dead-letters that destination's events and the stream keeps flowing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmulator } from "../../src/emulator/emulator.js";
import { startBridge } from "../../src/main.js";
import { readDeadLetters } from "../../src/sinks/dead-letter.js";
import { KEY, LogCapture, TOKEN, jsonLines, metricValue, record, testLoaded } from "../helpers/harness.js";
import { startReceiver } from "../helpers/webhook-receiver.js";

const HOOK_AUTH = "Bearer hook-secret-0123456789abcdef";

async function startWithHook(mode: "structured" | "batched" | "binary", env: Record<string, string> = {}) {
  const topic = await startEmulator({ key: KEY });
  const hook = await startReceiver();
  const dir = mkdtempSync(join(tmpdir(), "bridge-hook-"));
  const configFile = join(dir, "bridge.yaml");
  writeFileSync(
    configFile,
    `destinations:
  topic:
    type: eventgrid
    endpoint: ${topic.url}
    key: ${KEY}
    allowInsecure: true
  hook:
    type: webhook
    url: ${hook.url}
    mode: ${mode}
    origin: bridge.example.com
    authorization: "${HOOK_AUTH}"
    allowInsecure: true
routes:
  - name: failures-to-hook
    match: { categories: [auth.login.fail] }
    to: [hook]
  - name: all-to-topic
    to: [topic]
`,
  );
  const deadLetterDir = join(dir, "dead-letter");
  const { config, topology, warnings } = testLoaded({ CONFIG_FILE: configFile, DEAD_LETTER_DIR: deadLetterDir, EVENTGRID_ENDPOINT: undefined, EVENTGRID_KEY: undefined, ...env });
  const logs = new LogCapture();
  const bridge = await startBridge({ config, topology, warnings, logStream: logs });
  await bridge.whenReady;
  const post = async (body: string) => {
    const response = await fetch(bridge.ingestUrl, { method: "POST", headers: { authorization: TOKEN }, body });
    return { status: response.status, headers: response.headers, json: (await response.json()) as any };
  };
  return {
    topic,
    hook,
    bridge,
    logs,
    deadLetterDir,
    post,
    async close() {
      await bridge.stop();
      await topic.close();
      await hook.close();
    },
  };
}

for (const mode of ["structured", "batched", "binary"] as const) {
  test(`webhook destination, ${mode} mode: handshake first, then the routed events; the topic gets everything`, async () => {
    const stack = await startWithHook(mode);
    try {
      const res = await stack.post(jsonLines([record("w-1", "f"), record("w-2", "s"), record("w-3", "fp")]));
      assert.equal(res.status, 200);
      assert.equal(res.json.published, 5, "3 to the topic + 2 to the hook");
      assert.equal(stack.hook.options.length, 1);
      assert.equal(stack.hook.options[0]!.headers["webhook-request-origin"], "bridge.example.com");
      assert.equal(stack.hook.options[0]!.headers.authorization, HOOK_AUTH);
      assert.ok(stack.hook.requests.indexOf(stack.hook.options[0]!) < stack.hook.requests.indexOf(stack.hook.posts[0]!), "the handshake comes before the first delivery");
      let ids: string[];
      if (mode === "binary") {
        assert.equal(stack.hook.posts.length, 2);
        ids = stack.hook.posts.map((p) => String(p.headers["ce-id"]));
        assert.deepEqual(stack.hook.posts.map((p) => p.headers["ce-auth0code"]), ["f", "fp"]);
        assert.equal(JSON.parse(stack.hook.posts[0]!.body).type, "f", "the body is the Auth0 data");
      } else if (mode === "batched") {
        assert.equal(stack.hook.posts.length, 1);
        assert.match(String(stack.hook.posts[0]!.headers["content-type"]), /^application\/cloudevents-batch\+json/);
        ids = (JSON.parse(stack.hook.posts[0]!.body) as Array<{ id: string }>).map((e) => e.id);
      } else {
        assert.equal(stack.hook.posts.length, 2);
        assert.match(String(stack.hook.posts[0]!.headers["content-type"]), /^application\/cloudevents\+json/);
        ids = stack.hook.posts.map((p) => (JSON.parse(p.body) as { id: string }).id);
      }
      assert.deepEqual(ids.sort(), ["w-1", "w-3"]);
      assert.deepEqual(stack.topic.events.map((e) => e.id).sort(), ["w-1", "w-2", "w-3"]);
      assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_published_total", { destination: "hook" }), 2);
      assert.ok(!stack.logs.raw.join("\n").includes("hook-secret-0123456789abcdef"), "the webhook's authorization never reaches the logs");
    } finally {
      await stack.close();
    }
  });
}

test("a refused handshake: 503 so Auth0 redelivers; once the target allows us, only the hook gets the redelivery", async () => {
  const stack = await startWithHook("structured", { BREAKER_FAILURE_THRESHOLD: "100" });
  try {
    stack.hook.handshake = () => ({ status: 200, headers: { "webhook-allowed-origin": "someone-else.example.com" } });
    const body = jsonLines([record("h-1", "f"), record("h-2", "s")]);
    const first = await stack.post(body);
    assert.equal(first.status, 503);
    assert.ok(first.headers.get("retry-after"));
    assert.equal(stack.hook.posts.length, 0, "nothing is delivered without the target's consent");
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_failed_total", { destination: "hook", reason: "handshake_refused" }), 1);
    assert.equal(stack.topic.events.length, 2);

    stack.hook.handshake = (request) => ({ status: 200, headers: { "webhook-allowed-origin": String(request.headers["webhook-request-origin"]) } });
    const again = await stack.post(body);
    assert.equal(again.status, 200);
    assert.equal(again.json.duplicates, 2);
    assert.deepEqual(stack.hook.posts.map((p) => (JSON.parse(p.body) as { id: string }).id), ["h-1"]);
    assert.equal(stack.topic.events.length, 2, "no duplicate reached the topic");
  } finally {
    await stack.close();
  }
});

test("410 Gone: that destination's events are dead-lettered (destination_gone), Auth0 gets 200, and the hook is not called again", async () => {
  const stack = await startWithHook("structured");
  try {
    stack.hook.post = () => ({ status: 410 });
    const first = await stack.post(jsonLines([record("g-1", "f"), record("g-2", "s")]));
    assert.equal(first.status, 200);
    assert.equal(first.json.dead_lettered, 1);
    const postsAfterGone = stack.hook.posts.length;
    const second = await stack.post(jsonLines([record("g-3", "f")]));
    assert.equal(second.status, 200);
    assert.equal(stack.hook.posts.length, postsAfterGone, "a gone destination is not called again");
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_destination_gone", { destination: "hook" }), 1);
    const stored = [];
    for await (const { record: entry } of readDeadLetters(stack.deadLetterDir)) stored.push(entry);
    assert.deepEqual(stored.map((e) => [e.log_id, e.reason, e.destination]).sort(), [["g-1", "destination_gone", "hook"], ["g-3", "destination_gone", "hook"]]);
    assert.deepEqual(stack.topic.events.map((e) => e.id).sort(), ["g-1", "g-2", "g-3"]);
    const health = (await (await fetch(`${stack.bridge.adminUrl}/health`)).json()) as { destinations: Array<{ name: string; gone?: boolean }> };
    assert.equal(health.destinations.find((d) => d.name === "hook")!.gone, true);
  } finally {
    await stack.close();
  }
});
