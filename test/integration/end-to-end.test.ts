// The whole chain users run: an Auth0 payload -> the bridge -> the Event Grid emulator -> an event
// subscription (with Event Grid's handshake on the way) -> the example consumer, which handles
// each event by its auth0code. And the bridge delivering to the consumer directly, as a webhook.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CloudEvent } from "cloudevents";
import { createConsumer } from "../../examples/consumer/consumer.js";
import { startBridge } from "../../src/main.js";
import { LogCapture, TOKEN, fixture, startStack, testLoaded } from "../helpers/harness.js";

async function startConsumer(options: Omit<Parameters<typeof createConsumer>[0], "handlers"> = {}) {
  const handled: Array<{ handler: string; event: CloudEvent<unknown> }> = [];
  const origins: string[] = [];
  const consumer = createConsumer({
    ...options,
    handlers: {
      f: (event) => void handled.push({ handler: "failed-login", event }),
      s: (event) => void handled.push({ handler: "login", event }),
    },
    fallback: (event) => void handled.push({ handler: "other", event }),
  });
  const server: Server = createServer((req, res) => {
    if (req.method === "OPTIONS") origins.push(String(req.headers["webhook-request-origin"]));
    consumer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/auth0-events`;
  return { url, handled, origins, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

test("Auth0 payload -> bridge -> Event Grid emulator -> subscription (handshake) -> example consumer, by auth0code", async () => {
  const consumer = await startConsumer();
  const stack = await startStack({ emulator: { subscriptions: [{ name: "auth0-consumer", endpoint: consumer.url, retryDelayMs: 10 }] } });
  try {
    // Examples built from Auth0's schemas (test/fixtures/README.md), one per code: a failed login,
    // a login, a password failure and a Management API call, as one JSON Lines request.
    const examples = readFileSync(fixture("auth0-examples.jsonl"), "utf8").trim().split("\n").map((line) => JSON.parse(line) as { log_id: string; data: { type: string } });
    const sent = ["f", "s", "fp", "sapi"].map((code) => examples.find((r) => r.data.type === code)!);
    const body = sent.map((r) => JSON.stringify(r)).join("\n");
    const res = await stack.post(body);
    assert.equal(res.status, 200);
    assert.equal(res.json.published, sent.length);
    await stack.emulator.waitForDeliveries(sent.length, 10_000);

    assert.deepEqual(consumer.origins, ["eventgrid.azure.net"], "Event Grid's handshake reached the consumer once, before the deliveries");
    assert.deepEqual(consumer.handled.map((h) => h.event.id).sort(), sent.map((r) => r.log_id).sort());
    assert.deepEqual(consumer.handled.map((h) => h.handler).sort(), ["failed-login", "login", "other", "other"]);
    for (const { handler, event } of consumer.handled) {
      const code = (event as unknown as { auth0code: string }).auth0code;
      assert.equal(handler, code === "f" ? "failed-login" : code === "s" ? "login" : "other");
      const original = sent.find((r) => r.log_id === event.id)!;
      assert.deepEqual(event.data, original.data, "the consumer gets Auth0's data unchanged");
      assert.equal(event.type, `com.auth0.log.${original.data.type}`);
    }
  } finally {
    await stack.close();
    await consumer.close();
  }
});

test("the bridge delivers to the example consumer directly as a webhook destination, after the consumer accepts its origin", async () => {
  const consumer = await startConsumer({ allowedOrigins: ["bridge.example.com"] });
  const dir = mkdtempSync(join(tmpdir(), "bridge-e2e-"));
  const configFile = join(dir, "bridge.yaml");
  writeFileSync(
    configFile,
    `destinations:\n  consumer:\n    type: webhook\n    url: ${consumer.url}\n    mode: batched\n    origin: bridge.example.com\n    allowInsecure: true\n`,
  );
  const { config, topology, warnings } = testLoaded({ CONFIG_FILE: configFile, DEAD_LETTER_DIR: join(dir, "dlq"), EVENTGRID_ENDPOINT: undefined, EVENTGRID_KEY: undefined });
  const bridge = await startBridge({ config, topology, warnings, logStream: new LogCapture() });
  try {
    await bridge.whenReady;
    const body = readFileSync(fixture("format-json-array.json"), "utf8");
    const sent = JSON.parse(body) as Array<{ log_id: string }>;
    const response = await fetch(bridge.ingestUrl, { method: "POST", headers: { authorization: TOKEN }, body });
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { published: number }).published, sent.length);
    assert.deepEqual(consumer.origins, ["bridge.example.com"]);
    assert.deepEqual(consumer.handled.map((h) => h.event.id).sort(), sent.map((r) => r.log_id).sort());
  } finally {
    await bridge.stop();
    await consumer.close();
  }
});
