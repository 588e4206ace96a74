import { test } from "node:test";
import assert from "node:assert/strict";
import { CircuitBreaker, type BreakerState } from "../../src/sinks/circuit-breaker.js";
import { RecentIds } from "../../src/pipeline/dedupe.js";

test("circuit breaker: closed -> open after the threshold, rejects during cool-down, one probe when half-open", () => {
  let now = 0;
  const transitions: Array<[BreakerState, BreakerState]> = [];
  const breaker = new CircuitBreaker({ failureThreshold: 3, cooldownMs: 1000, now: () => now, onStateChange: (s, p) => transitions.push([p, s]) });
  assert.equal(breaker.acquire(), "allow");
  breaker.onFailure();
  breaker.onFailure();
  assert.equal(breaker.state, "closed", "below the threshold");
  breaker.onSuccess();
  breaker.onFailure();
  breaker.onFailure();
  assert.equal(breaker.state, "closed", "a success resets the run");
  breaker.onFailure();
  assert.equal(breaker.state, "open");
  assert.equal(breaker.acquire(), "reject");
  assert.equal(breaker.retryInMs, 1000);
  now = 999;
  assert.equal(breaker.acquire(), "reject");
  now = 1000;
  assert.equal(breaker.acquire(), "probe");
  assert.equal(breaker.state, "half_open");
  assert.equal(breaker.acquire(), "reject", "only one probe at a time");
  breaker.onFailure();
  assert.equal(breaker.state, "open", "a failed probe opens it again");
  now = 1500;
  assert.equal(breaker.acquire(), "reject", "a new cool-down started at the failed probe");
  now = 2000;
  assert.equal(breaker.acquire(), "probe");
  breaker.onSuccess();
  assert.equal(breaker.state, "closed");
  assert.equal(breaker.acquire(), "allow");
  assert.deepEqual(transitions, [
    ["closed", "open"],
    ["open", "half_open"],
    ["half_open", "open"],
    ["open", "half_open"],
    ["half_open", "closed"],
  ]);
});

test("dedupe window: remembers up to its capacity, forgets the oldest first", () => {
  const recent = new RecentIds(3);
  for (const id of ["a", "b", "c"]) recent.add(id);
  assert.ok(recent.has("a") && recent.has("b") && recent.has("c"));
  recent.add("a"); // already known: no second slot
  recent.add("d");
  assert.equal(recent.has("a"), false, "a was the oldest");
  assert.ok(recent.has("b") && recent.has("c") && recent.has("d"));
  assert.equal(recent.size, 3);
  for (let i = 0; i < 10; i++) recent.add(`x${i}`);
  assert.equal(recent.size, 3);
  assert.ok(recent.has("x7") && recent.has("x8") && recent.has("x9"));
  assert.equal(recent.has("d"), false);
});

test("dedupe window of 0 remembers nothing", () => {
  const recent = new RecentIds(0);
  recent.add("a");
  assert.equal(recent.has("a"), false);
  assert.equal(recent.size, 0);
});
