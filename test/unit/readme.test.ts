// The README is part of the product: every setting and every metric the bridge has is documented.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SETTINGS } from "../../src/config/settings.js";
import { describeSettings, loadConfig } from "../../src/config/load.js";
import { EventTypeRegistry } from "../../src/auth0/registry.js";
import { loadRedactionPresets } from "../../src/cloudevents/redact.js";
import { Router } from "../../src/pipeline/router.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { ADMIN_PATHS } from "../../src/observability/admin.js";

const readme = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), "../../README.md"), "utf8");

test("the README's settings table is the one generated from the schema", () => {
  assert.ok(readme.includes(describeSettings().trim()), "regenerate it: node --import tsx src/config/render-docs.ts");
  for (const s of SETTINGS) assert.ok(readme.includes(`\`${s.name}\``), s.name);
});

test("every bridge metric is documented", async () => {
  const { registry } = createMetrics({ version: "0.0.0", defaultMetrics: false });
  const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
  assert.ok(names.length >= 15);
  for (const name of names) assert.ok(readme.includes(`\`${name}\``), name);
});

test("every admin endpoint is documented", () => {
  for (const path of Object.values(ADMIN_PATHS)) assert.ok(readme.includes(`\`GET ${path}\``), path);
});

test("the README's routing example is a configuration the bridge loads, and routes as the README says", () => {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

  const block = /```yaml\n(# \/etc\/auth0-eventgrid-bridge\/config\.yaml[\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, "the README has the routing example");
  // The example names secret files and Azure placeholders: point them at real files and a real URL.
  const dir = mkdtempSync(join(tmpdir(), "readme-routes-"));
  mkdirSync(join(dir, "secrets"));
  const secretPaths = [...new Set(block.match(/\/var\/run\/secrets\/bridge\/[\w-]+/g) ?? [])];
  assert.ok(secretPaths.length >= 4);
  let yaml = block.replace("https://<topic>.<region>-1.eventgrid.azure.net/api/events", "https://topic.westeurope-1.eventgrid.azure.net/api/events");
  for (const path of secretPaths) {
    const file = join(dir, "secrets", path.split("/").pop()!);
    writeFileSync(file, `secret-${path.length}-0123456789abcdef\n`);
    yaml = yaml.replaceAll(path, file);
  }
  const configFile = join(dir, "config.yaml");
  writeFileSync(configFile, yaml);
  const { topology } = loadConfig({ env: { CONFIG_FILE: configFile, AUTH0_STREAM_TOKEN: "default-stream-token-0123456789" }, defaultsPath: resolve(root, "config/default.json") });
  assert.deepEqual(topology.streams.map((s) => s.path), ["/api/logs", "/api/logs/prod", "/api/logs/staging"]);
  assert.deepEqual(topology.destinations.map((d) => `${d.name}:${d.type}`), ["security-topic:eventgrid", "audit-hook:webhook"]);

  const router = new Router(topology.routes, { presets: loadRedactionPresets(resolve(root, "config/redaction-presets.json")), hashKey: "readme-hash-key" });
  const registry = EventTypeRegistry.fromTsv(readFileSync(resolve(root, "config/auth0-log-event-types.tsv"), "utf8"));
  const where = (stream: string, code: string) => router.plan(stream, registry.lookup(code)).map((t) => `${t.route}->${t.destinations.join("+")}${t.type ? `:${t.type}` : ""}`);
  assert.deepEqual(where("default", "f"), ["security->security-topic"], "a failed login goes to the security topic");
  assert.deepEqual(where("prod", "sapi"), ["audit->audit-hook+security-topic:com.example.audit.auth0"]);
  assert.deepEqual(where("default", "sapi"), [], "audit matches the prod stream only");
  assert.deepEqual(where("staging", "s"), ["pii-free-copy->audit-hook"]);
});
