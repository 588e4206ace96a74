// The README is part of the product: every setting and every metric the bridge has is documented.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { SETTINGS } from "../../src/config/settings.js";
import { describeSettings } from "../../src/config/load.js";
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
