// Routes from CONFIG_FILE: events go by type code, category and stream to several destinations,
// each isolated from the others (its own retries, breaker, dedupe window and metrics), with
// per-route CloudEvent types and redaction. Real HTTP on loopback against two emulated topics.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../src/config/load.js";
import { startEmulator, type Emulator } from "../../src/emulator/emulator.js";
import { startBridge, type Bridge } from "../../src/main.js";
import { readDeadLetters } from "../../src/sinks/dead-letter.js";
import { KEY, LogCapture, TOKEN, jsonLines, metricValue, record, testLoaded } from "../helpers/harness.js";

const PROD_TOKEN = "prod-stream-token-0123456789abcdef";
const HASH_KEY = "redaction-hash-key-for-tests-0123";

interface Routed {
  security: Emulator;
  audit: Emulator;
  bridge: Bridge;
  logs: LogCapture;
  deadLetterDir: string;
  post(body: string, path?: string, token?: string): Promise<{ status: number; headers: Headers; json: any }>;
  close(): Promise<void>;
}

/** Two emulated topics and a bridge whose CONFIG_FILE routes between them. */
async function startRouted(yaml: (urls: { security: string; audit: string }) => string, env: Record<string, string> = {}): Promise<Routed> {
  const security = await startEmulator({ key: KEY });
  const audit = await startEmulator({ key: "audit-topic-key-0123456789" });
  const dir = mkdtempSync(join(tmpdir(), "bridge-routes-"));
  const configFile = join(dir, "bridge.yaml");
  writeFileSync(configFile, yaml({ security: security.url, audit: audit.url }));
  const deadLetterDir = join(dir, "dead-letter");
  const { config, topology, warnings } = testLoaded({ CONFIG_FILE: configFile, DEAD_LETTER_DIR: deadLetterDir, EVENTGRID_ENDPOINT: undefined, EVENTGRID_KEY: undefined, ...env });
  const logs = new LogCapture();
  const bridge = await startBridge({ config, topology, warnings, logStream: logs });
  await bridge.whenReady;
  const base = bridge.ingestUrl;
  return {
    security,
    audit,
    bridge,
    logs,
    deadLetterDir,
    async post(body, path = "", token = TOKEN) {
      const response = await fetch(base + path, { method: "POST", headers: { authorization: token }, body });
      const text = await response.text();
      return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : undefined };
    },
    async close() {
      await bridge.stop();
      await security.close();
      await audit.close();
    },
  };
}

const twoTopics = (urls: { security: string; audit: string }, routes: string, extra = "") => `
streams:
  prod:
    token: ${PROD_TOKEN}
destinations:
  security-topic:
    type: eventgrid
    endpoint: ${urls.security}
    key: ${KEY}
    allowInsecure: true
  audit-topic:
    type: eventgrid
    endpoint: ${urls.audit}
    key: audit-topic-key-0123456789
    allowInsecure: true
${extra}
routes:
${routes}
`;

const SECURITY_AND_AUDIT = `
  - name: security
    match: { categories: [auth.login.fail], codes: [limit_wc, pwd_leak] }
    to: [security-topic]
  - name: audit
    match: { codes: [sapi] }
    to: [audit-topic, security-topic]
    type: com.example.audit.auth0
`;

test("routes by code and by category to two topics; an event no route matches goes nowhere and is counted as filtered", async () => {
  const stack = await startRouted((urls) => twoTopics(urls, SECURITY_AND_AUDIT));
  try {
    const res = await stack.post(jsonLines([record("f-1", "f"), record("lw-1", "limit_wc"), record("sapi-1", "sapi"), record("s-1", "s"), record("ss-1", "ss")]));
    assert.equal(res.status, 200);
    assert.equal(res.json.received, 5);
    assert.equal(res.json.filtered, 2, "s and ss match no route");
    // sapi goes to both topics: published counts deliveries (event x destination).
    assert.equal(res.json.published, 4);
    assert.deepEqual(stack.security.events.map((e) => e.id).sort(), ["f-1", "lw-1", "sapi-1"]);
    assert.deepEqual(stack.audit.events.map((e) => e.id), ["sapi-1"]);
    const types = Object.fromEntries(stack.security.events.map((e) => [e.id, e.type]));
    assert.equal(types["f-1"], "com.auth0.log.f");
    assert.equal(types["sapi-1"], "com.example.audit.auth0", "the first route that sends an event to a destination sets its type");
    assert.equal(stack.audit.events[0]!.type, "com.example.audit.auth0");
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_published_total", { code: "sapi", destination: "audit-topic" }), 1);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_published_total", { destination: "security-topic" }), 3);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_filtered_total", { code: "s" }), 1);
  } finally {
    await stack.close();
  }
});

test("one topic down: the other still gets its events, Auth0 gets 503, and the redelivery adds no duplicates to the healthy topic", async () => {
  const stack = await startRouted((urls) => twoTopics(urls, SECURITY_AND_AUDIT), { PUBLISH_RETRIES: "1", BREAKER_FAILURE_THRESHOLD: "100" });
  try {
    stack.audit.setFault(() => ({ status: 503 }));
    const body = jsonLines([record("f-1", "f"), record("sapi-1", "sapi"), record("sapi-2", "sapi")]);
    const first = await stack.post(body);
    assert.equal(first.status, 503);
    assert.ok(first.headers.get("retry-after"));
    assert.match(first.json.message, /audit-topic/);
    assert.equal(first.json.failed, 2);
    assert.deepEqual(stack.security.events.map((e) => e.id).sort(), ["f-1", "sapi-1", "sapi-2"], "the healthy topic was not held back");
    assert.equal(stack.audit.events.length, 0);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_failed_total", { reason: "exhausted", destination: "audit-topic" }), 2);
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_failed_total", { destination: "security-topic" }), 0);

    stack.audit.setFault(undefined);
    const again = await stack.post(body); // Auth0 redelivers the whole request
    assert.equal(again.status, 200);
    assert.equal(again.json.published, 2);
    assert.equal(again.json.duplicates, 3);
    assert.deepEqual(stack.audit.events.map((e) => e.id).sort(), ["sapi-1", "sapi-2"]);
    assert.equal(stack.security.events.length, 3, "no duplicates reached the healthy topic");
    assert.equal(await metricValue(stack.bridge.adminUrl, "auth0_bridge_events_duplicate_total", { destination: "security-topic" }), 3);
  } finally {
    await stack.close();
  }
});

test("streams: each has its own path and token, and routes can match on the stream", async () => {
  const routes = `
  - name: prod-only
    match: { codes: [f], streams: [prod] }
    to: [security-topic]
  - name: everything-else
    exclude: { streams: [prod] }
    to: [audit-topic]
`;
  const stack = await startRouted((urls) => twoTopics(urls, routes));
  try {
    assert.equal((await stack.post(jsonLines([record("x-1", "f")]), "/prod", TOKEN)).status, 401, "the default stream's token does not open another stream");
    assert.equal((await stack.post(jsonLines([record("x-1", "f")]), "", PROD_TOKEN)).status, 401);
    const prod = await stack.post(jsonLines([record("p-1", "f"), record("p-2", "s")]), "/prod", PROD_TOKEN);
    assert.equal(prod.status, 200);
    assert.equal(prod.json.filtered, 1, "s from prod matches no route");
    const dflt = await stack.post(jsonLines([record("d-1", "f")]));
    assert.equal(dflt.status, 200);
    assert.deepEqual(stack.security.events.map((e) => e.id), ["p-1"]);
    assert.deepEqual(stack.audit.events.map((e) => e.id), ["d-1"]);
    assert.equal((await fetch(stack.bridge.ingestUrl + "/nope", { method: "POST", headers: { authorization: TOKEN }, body: "{}" })).status, 404);
  } finally {
    await stack.close();
  }
});

test("redaction: drop, mask and hash on nested and array paths; no raw value in published events, dead letters or logs", async () => {
  const routes = `
  - name: security
    match: { codes: [f, sapi] }
    to: [security-topic]
    redact:
      - { path: ip, action: hash }
      - { path: user_name, action: mask }
      - { path: details.request.body.password, action: drop }
      - { path: details.prompts.*.user_name, action: mask, replacement: "***" }
  - name: audit
    match: { codes: [f] }
    to: [audit-topic]
`;
  const stack = await startRouted((urls) => twoTopics(urls, routes), { REDACTION_HASH_KEY: HASH_KEY });
  try {
    const secret = {
      ip: "203.0.113.77",
      user_name: "alice.secret@example.com",
      details: { request: { body: { password: "hunter2-Secret!", connection: "db" } }, prompts: [{ name: "login", user_name: "alice-prompt-one" }, { name: "mfa", user_name: "alice-prompt-two" }] },
    };
    // The security topic refuses the second event on its own: it ends in the dead-letter store, redacted.
    stack.security.setFault(({ events }) => (events.some((e) => e.id === "poison-1") ? { status: 400, message: "bad event" } : undefined));
    const res = await stack.post(jsonLines([record("red-1", "f", secret), record("poison-1", "sapi", secret)]));
    assert.equal(res.status, 200);
    assert.equal(res.json.dead_lettered, 1);

    const published = stack.security.events.find((e) => e.id === "red-1")!;
    const data = published.data as any;
    assert.equal(data.ip, createHmac("sha256", HASH_KEY).update("203.0.113.77").digest("hex"));
    assert.equal(data.user_name, "[redacted]");
    assert.deepEqual(data.details.request.body, { connection: "db" });
    assert.deepEqual(data.details.prompts.map((p: any) => p.user_name), ["***", "***"]);
    assert.deepEqual(data.details.prompts.map((p: any) => p.name), ["login", "mfa"], "untouched fields stay");
    // The audit route redacts nothing: the same record goes there as Auth0 sent it.
    assert.equal((stack.audit.events[0]!.data as any).ip, "203.0.113.77");

    const raw = ["203.0.113.77", "alice.secret@example.com", "hunter2-Secret!", "alice-prompt-one", "alice-prompt-two"];
    const securityText = JSON.stringify(stack.security.events);
    for (const value of raw) assert.ok(!securityText.includes(value), `published: ${value}`);
    const deadLetters = [];
    for await (const { record: stored } of readDeadLetters(stack.deadLetterDir)) deadLetters.push(stored);
    assert.equal(deadLetters.length, 1);
    assert.equal(deadLetters[0]!.destination, "security-topic");
    assert.equal(deadLetters[0]!.reason, "rejected_by_eventgrid");
    const deadText = JSON.stringify(deadLetters);
    for (const value of raw) assert.ok(!deadText.includes(value), `dead letter: ${value}`);
    const logText = stack.logs.raw.join("\n");
    for (const value of raw) assert.ok(!logText.includes(value), `logs: ${value}`);
  } finally {
    await stack.close();
  }
});

test("invalid records kept in the dead-letter store are redacted by every route's rules", async () => {
  const routes = `
  - name: security
    match: { codes: [f] }
    to: [security-topic]
    redact: [{ preset: personal }]
`;
  const stack = await startRouted((urls) => twoTopics(urls, routes).replace(/audit-topic:[\s\S]*?allowInsecure: true\n/, ""));
  try {
    // A log_id that is a number is invalid: the record is kept, but not with its personal data.
    const res = await stack.post(JSON.stringify([{ log_id: 42, data: { type: "f", user_name: "bob.private@example.com", ip: "198.51.100.9" } }]));
    assert.equal(res.status, 200);
    assert.equal(res.json.rejected, 1);
    const stored = [];
    for await (const { record: entry } of readDeadLetters(stack.deadLetterDir)) stored.push(entry);
    assert.equal(stored.length, 1);
    const text = JSON.stringify(stored);
    assert.ok(!text.includes("bob.private@example.com") && !text.includes("198.51.100.9"), text);
  } finally {
    await stack.close();
  }
});

test("configuration errors stop start-up with one line naming the problem", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bridge-routes-bad-"));
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const destinations = `destinations:\n  a:\n    type: eventgrid\n    endpoint: https://a.westeurope-1.eventgrid.azure.net/api/events\n  b:\n    type: webhook\n    url: https://hooks.example.com/auth0\n`;
  assert.throws(() => testLoaded({ CONFIG_FILE: write("no-routes.yaml", destinations) }), /several destinations are declared, so routes must say/);
  assert.throws(() => testLoaded({ CONFIG_FILE: write("bad-to.yaml", `${destinations}routes:\n  - name: r\n    to: [c]\n`) }), /routes\[0\] \(r\)\.to: no destination named "c"/);
  assert.throws(() => testLoaded({ CONFIG_FILE: write("insecure.yaml", `destinations:\n  a:\n    type: webhook\n    url: http://hooks.example.com/x\n`) }), /destinations\.a: expected an https:\/\/ URL/);
  assert.throws(() => testLoaded({ CONFIG_FILE: write("typo.yaml", `${destinations}routes:\n  - name: r\n    to: [a]\n    matches: {}\n`) }), ConfigError);
  // Hashing needs a key: refused when the bridge starts, not at the first event.
  const hashing = testLoaded({ CONFIG_FILE: write("hash.yaml", `routes:\n  - name: r\n    to: [default]\n    redact: [{ path: ip, action: hash }]\n`) });
  await assert.rejects(startBridge({ config: hashing.config, topology: hashing.topology, logStream: new LogCapture() }), (error: unknown) => error instanceof ConfigError && /REDACTION_HASH_KEY/.test(error.message));
  // In production, declared destinations and streams replace EVENTGRID_ENDPOINT and AUTH0_STREAM_TOKEN.
  const prodFile = write("prod.yaml", `streams:\n  prod:\n    token: ${PROD_TOKEN}\ndestinations:\n  a:\n    type: eventgrid\n    endpoint: https://a.westeurope-1.eventgrid.azure.net/api/events\n`);
  const prod = testLoaded({ NODE_ENV: "production", CONFIG_FILE: prodFile, AUTH0_STREAM_TOKEN: undefined, EVENTGRID_ENDPOINT: undefined, EVENTGRID_ALLOW_INSECURE: "false", EVENTGRID_KEY: undefined });
  assert.deepEqual(prod.topology.streams.map((s) => s.path), ["/api/logs/prod"]);
  assert.deepEqual(prod.topology.destinations.map((d) => d.name), ["a"]);
});
