import { test } from "node:test";
import assert from "node:assert/strict";
import { HealthModel } from "../../src/observability/health.js";

const target = { endpoint: "https://t.westeurope-1.eventgrid.azure.net/api/events", auth: "access key" };

test("status moves active -> failing -> active_with_errors -> active", () => {
  let now = Date.parse("2026-11-01T00:00:00Z");
  const health = new HealthModel({ version: "1.2.3", target }, () => now);
  assert.equal(health.status(), "active");
  health.recordError({ reason: "exhausted", message: "503", status: 503 });
  health.recordDelivery(false);
  assert.equal(health.status(), "failing");
  now += 1000;
  health.recordDelivery(true);
  assert.equal(health.status(), "active_with_errors");
  now += 16 * 60 * 1000;
  assert.equal(health.status(), "active");
});

test("keeps the last 10 errors, newest first, and reports readiness with a reason", () => {
  const health = new HealthModel({ version: "1.2.3", target });
  for (let i = 0; i < 15; i++) health.recordError({ reason: `r${i}`, message: "m" });
  const snap = health.snapshot();
  assert.equal(snap.lastErrors.length, 10);
  assert.equal(snap.lastErrors[0]!.reason, "r14");
  assert.equal(snap.ready, false);
  health.setReady(false, "shutting down");
  assert.equal(health.snapshot().readinessReason, "shutting down");
  health.setReady(true);
  assert.equal(health.snapshot().ready, true);
  assert.equal(health.snapshot().readinessReason, undefined);
  assert.equal(snap.version, "1.2.3");
  assert.deepEqual(snap.target, target);
});
