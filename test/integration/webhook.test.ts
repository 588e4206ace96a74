// The CloudEvents webhook sink against a real HTTP target on loopback (test/helpers/webhook-receiver):
// the abuse-protection handshake, the granted request rate, the three content modes, retries,
// bisecting, 410 Gone and secrets. Waits go through an injected clock, so nothing really sleeps.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { CloudEvent } from "cloudevents";
import { createLogger } from "../../src/observability/logger.js";
import { createMetrics, type Metrics } from "../../src/observability/metrics.js";
import type { OutgoingEvent } from "../../src/sinks/eventgrid.js";
import { WebhookPublisher, type WebhookOptions } from "../../src/sinks/webhook.js";
import { startReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

const ORIGIN = "bridge.example.com";
// Awaited events that never come must fail the test, not hang it.
const LIMIT = { timeout: 10_000 };
const TENANT = 'tenant with spaces ë 😀 "q" 50%';

interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

class LogCapture extends Writable {
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) this.raw.push(line);
    done();
  }
  find(message: string): LogLine[] {
    return this.raw.map((l) => JSON.parse(l) as LogLine).filter((l) => l.msg === message);
  }
}

interface Held {
  ms: number;
  release(): void;
}

/** A clock that moves only when the code under test sleeps: instantly, or when the test releases it. */
class FakeClock {
  // A whole second, so that an HTTP-date Retry-After converts to an exact delay.
  time = Math.floor(Date.now() / 1000) * 1000;
  readonly waits: number[] = [];
  /** When set, sleeps wait for the test to release them. */
  hold = false;
  private readonly held: Held[] = [];
  private onHeld: (() => void) | undefined;

  readonly now = (): number => this.time;

  readonly sleep = (ms: number): Promise<void> => {
    this.waits.push(ms);
    if (!this.hold) {
      this.time += ms;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.held.push({
        ms,
        release: () => {
          this.time += ms;
          resolve();
        },
      });
      this.onHeld?.();
    });
  };

  async nextHeld(): Promise<Held> {
    while (this.held.length === 0) await new Promise<void>((resolve) => (this.onHeld = resolve));
    return this.held.shift()!;
  }
}

function makeEvent(id: string, data: Record<string, unknown> = {}): OutgoingEvent {
  const event = new CloudEvent<Record<string, unknown>>({
    id,
    type: "com.auth0.log.s",
    source: "urn:auth0:example.eu.auth0.com",
    time: "2026-01-02T03:04:05.678Z",
    datacontenttype: "application/json",
    subject: "users/auth0|abc",
    data: { log_id: id, type: "s", description: "Olá — ok", ...data },
    auth0code: "s",
    auth0category: "login.success",
    auth0tenant: TENANT,
  });
  const json = JSON.stringify(event);
  return { id, code: "s", json, bytes: Buffer.byteLength(json) };
}

interface Setup {
  receiver: WebhookReceiver;
  publisher: WebhookPublisher;
  logs: LogCapture;
  metrics: Metrics;
  clock: FakeClock;
}

async function setup(t: TestContext, overrides: Partial<WebhookOptions> | ((url: string) => Partial<WebhookOptions>) = {}): Promise<Setup> {
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const logs = new LogCapture();
  // No secrets given to the logger: what the sink keeps out of its logs must stay out on its own.
  const logger = createLogger({ level: "debug", format: "json", secrets: [], stream: logs });
  const metrics = createMetrics({ version: "0.0.0-test", defaultMetrics: false });
  const clock = new FakeClock();
  const options: WebhookOptions = {
    destination: "hook",
    url: receiver.url,
    mode: "structured",
    origin: ORIGIN,
    allowInsecure: true,
    retries: 2,
    timeoutMs: 5000,
    backoff: { baseDelayMs: 10, maxDelayMs: 40, retryAfterMaxMs: 60_000 },
    maxBatchBytes: 1_048_576,
    maxBatchEvents: 100,
    breaker: { failureThreshold: 100, cooldownMs: 30_000 },
    logger,
    metrics,
    sleep: clock.sleep,
    now: clock.now,
    ...(typeof overrides === "function" ? overrides(receiver.url) : overrides),
  };
  return { receiver, publisher: new WebhookPublisher(options), logs, metrics, clock };
}

async function metricValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  assert.ok(metric, name);
  const values = (await metric.get()).values;
  return values.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value))?.value;
}

test("handshake: the origin is echoed; concurrent first deliveries share one handshake; POSTs carry the origin", LIMIT, async (t) => {
  const { receiver, publisher, logs } = await setup(t);
  const [a, b] = await Promise.all([publisher.deliver([makeEvent("a")]), publisher.deliver([makeEvent("b")])]);
  const c = await publisher.deliver([makeEvent("c")]);
  for (const result of [a, b, c]) {
    assert.equal(result.published.length, 1);
    assert.deepEqual([result.rejected.length, result.failed.length], [0, 0]);
  }
  assert.equal(receiver.options.length, 1, "one handshake for all deliveries");
  assert.equal(receiver.requests[0]!.method, "OPTIONS", "the handshake comes first");
  assert.equal(receiver.options[0]!.headers["webhook-request-origin"], ORIGIN);
  assert.equal(receiver.options[0]!.headers["webhook-request-rate"], undefined, "no rate asked unless configured");
  assert.equal(receiver.posts.length, 3);
  for (const post of receiver.posts) assert.equal(post.headers["webhook-request-origin"], ORIGIN);
  assert.equal(logs.find("webhook handshake accepted").length, 1);
});

test("handshake: WebHook-Allowed-Origin '*' grants any origin", LIMIT, async (t) => {
  const { receiver, publisher } = await setup(t);
  receiver.handshake = () => ({ status: 200, headers: { "webhook-allowed-origin": "*" } });
  const result = await publisher.deliver([makeEvent("a")]);
  assert.equal(result.published.length, 1);
  assert.equal(receiver.posts.length, 1);
});

test("handshake: a wrong origin means nothing is POSTed, a handshake_refused failure and a breaker failure", LIMIT, async (t) => {
  const { receiver, publisher, logs } = await setup(t, { breaker: { failureThreshold: 1, cooldownMs: 30_000 } });
  receiver.handshake = () => ({ status: 200, headers: { "webhook-allowed-origin": "someone-else.example" } });
  const events = [makeEvent("a"), makeEvent("b")];
  const result = await publisher.deliver(events);
  assert.equal(result.published.length, 0);
  assert.equal(result.rejected.length, 0);
  assert.deepEqual(result.failed.map((f) => f.reason), ["handshake_refused", "handshake_refused"]);
  assert.deepEqual(result.failed.flatMap((f) => f.events.map((e) => e.id)).sort(), ["a", "b"], "the events stay undelivered");
  assert.equal(receiver.posts.length, 0);
  assert.equal(receiver.options.length, 1, "the concurrent batches shared the refused handshake");
  const refused = logs.find("webhook handshake refused");
  assert.equal(refused.length, 1);
  assert.match(String(refused[0]!.why), /WebHook-Allowed-Origin does not match/);
  assert.equal(refused[0]!.allowed_origin, "someone-else.example");
  assert.equal(publisher.breaker.state, "open", "a refused handshake counts as a breaker failure");
  const later = await publisher.deliver([makeEvent("c")]);
  assert.equal(later.failed[0]?.reason, "circuit_open");
  assert.equal(receiver.requests.length, 1, "an open breaker calls nobody");
});

test("handshake: a missing WebHook-Allowed-Origin or a non-2xx answer is a refusal, and refusals are not cached", LIMIT, async (t) => {
  const { receiver, publisher, logs } = await setup(t);
  receiver.handshake = () => ({ status: 200, headers: { allow: "POST" } });
  const first = await publisher.deliver([makeEvent("a")]);
  assert.equal(first.failed[0]?.reason, "handshake_refused");
  assert.equal(first.failed[0]?.status, 200);
  assert.match(String(logs.find("webhook handshake refused")[0]?.why), /WebHook-Allowed-Origin header missing/);

  receiver.handshake = () => ({ status: 405 });
  const second = await publisher.deliver([makeEvent("a")]);
  assert.equal(second.failed[0]?.reason, "handshake_refused");
  assert.equal(second.failed[0]?.status, 405);
  assert.equal(receiver.options.length, 2, "asked again on the next delivery");
  assert.equal(receiver.posts.length, 0);

  receiver.handshake = () => ({ status: 200, headers: { "webhook-allowed-origin": ORIGIN, "webhook-allowed-rate": "lots" } });
  const third = await publisher.deliver([makeEvent("a")]);
  assert.equal(third.failed[0]?.reason, "handshake_refused", "an unreadable rate is not taken as no limit");
  assert.equal(receiver.posts.length, 0);
});

test("handshake is repeated after a 403 and the delivery goes through; a second refusal ends in a failure", LIMIT, async (t) => {
  // retries: 0 — the repeat does not depend on the retry budget.
  const { receiver, publisher, logs } = await setup(t, { retries: 0, breaker: { failureThreshold: 2, cooldownMs: 30_000 } });
  receiver.postScript.push({ status: 403 });
  const result = await publisher.deliver([makeEvent("a")]);
  assert.equal(result.published.length, 1);
  assert.equal(receiver.options.length, 2, "handshake, 403, handshake again");
  assert.deepEqual(receiver.requests.map((r) => r.method), ["OPTIONS", "POST", "OPTIONS", "POST"]);
  assert.equal(logs.find("webhook refused the request; repeating the handshake").length, 1);
  assert.equal(publisher.breaker.state, "closed");

  receiver.postScript.push({ status: 401 }, { status: 401 });
  const refused = await publisher.deliver([makeEvent("b")]);
  assert.equal(refused.failed[0]?.reason, "unauthorized");
  assert.equal(refused.failed[0]?.attempts, 2);
  assert.deepEqual(receiver.requests.slice(4).map((r) => r.method), ["POST", "OPTIONS", "POST"], "one repeat, no loop");
});

test("rate: WebHook-Request-Rate is asked for and WebHook-Allowed-Rate holds across concurrent deliveries", LIMIT, async (t) => {
  const { receiver, publisher, clock } = await setup(t, { requestRate: 120 });
  receiver.handshake = (request) => ({ status: 200, headers: { "webhook-allowed-origin": String(request.headers["webhook-request-origin"]), "webhook-allowed-rate": "3" } });
  clock.hold = true;
  const deliveries = Promise.all([publisher.deliver([makeEvent("a"), makeEvent("b")]), publisher.deliver([makeEvent("c"), makeEvent("d")])]);
  const wait = await Promise.race([clock.nextHeld(), deliveries.then(() => assert.fail("all four requests went out without waiting"))]);
  await receiver.waitForPosts(3);
  assert.equal(wait.ms, 60_000, "the 4th request waits until the first leaves the one-minute window");
  assert.equal(receiver.posts.length, 3, "held back while the window is full");
  wait.release();
  const results = await deliveries;
  assert.equal(receiver.posts.length, 4);
  assert.deepEqual(results.flatMap((r) => r.published.map((e) => e.id)).sort(), ["a", "b", "c", "d"]);
  assert.equal(receiver.options[0]!.headers["webhook-request-rate"], "120");
  assert.deepEqual(clock.waits, [60_000]);
});

test("rate: without a limit nothing waits", LIMIT, async (t) => {
  const { receiver, publisher, clock } = await setup(t, { maxConcurrentRequests: 2 });
  const events = Array.from({ length: 12 }, (_, i) => makeEvent(`e${i}`));
  const result = await publisher.deliver(events);
  assert.equal(result.published.length, 12);
  assert.equal(receiver.posts.length, 12);
  assert.deepEqual(clock.waits, []);
});

test("structured mode: one POST per event, application/cloudevents+json, the event JSON as is", LIMIT, async (t) => {
  const { receiver, publisher } = await setup(t, { mode: "structured" });
  const events = [makeEvent("a"), makeEvent("b"), makeEvent("c")];
  const result = await publisher.deliver(events);
  assert.equal(result.published.length, 3);
  assert.equal(receiver.posts.length, 3);
  for (const post of receiver.posts) {
    assert.equal(post.headers["content-type"], "application/cloudevents+json; charset=utf-8");
    const sent = events.find((e) => e.json === post.body);
    assert.ok(sent, "body is one event's JSON, byte for byte");
    assert.equal(post.headers["ce-id"], undefined, "no binary headers in structured mode");
  }
});

test("batched mode: JSON arrays split by maxBatchEvents, application/cloudevents-batch+json", LIMIT, async (t) => {
  const { receiver, publisher } = await setup(t, { mode: "batched", maxBatchEvents: 2 });
  const events = ["a", "b", "c", "d", "e"].map((id) => makeEvent(id));
  const result = await publisher.deliver(events);
  assert.equal(result.published.length, 5);
  assert.equal(receiver.posts.length, 3);
  const bodies = receiver.posts.map((p) => p.body).sort();
  assert.deepEqual(bodies, [`[${events[0]!.json},${events[1]!.json}]`, `[${events[2]!.json},${events[3]!.json}]`, `[${events[4]!.json}]`].sort());
  for (const post of receiver.posts) assert.equal(post.headers["content-type"], "application/cloudevents-batch+json; charset=utf-8");
});

test("binary mode: attributes as percent-encoded ce- headers, data as the body, datacontenttype as Content-Type", LIMIT, async (t) => {
  const { receiver, publisher } = await setup(t, { mode: "binary" });
  const event = makeEvent("bin-1");
  const result = await publisher.deliver([event]);
  assert.equal(result.published.length, 1);
  const post = receiver.posts[0]!;
  const h = post.headers;
  assert.equal(h["content-type"], "application/json");
  assert.equal(h["ce-id"], "bin-1");
  assert.equal(h["ce-type"], "com.auth0.log.s");
  assert.equal(h["ce-source"], "urn:auth0:example.eu.auth0.com");
  assert.equal(h["ce-specversion"], "1.0");
  assert.equal(h["ce-time"], "2026-01-02T03:04:05.678Z");
  assert.equal(h["ce-subject"], "users/auth0|abc");
  assert.equal(h["ce-auth0code"], "s");
  assert.equal(h["ce-auth0category"], "login.success");
  // HTTP binding 3.1.3.2: space, '"', '%' and non-ASCII as %XX of the UTF-8 bytes.
  assert.equal(h["ce-auth0tenant"], "tenant%20with%20spaces%20%C3%AB%20%F0%9F%98%80%20%22q%22%2050%25");
  assert.equal(decodeURIComponent(String(h["ce-auth0tenant"])), TENANT);
  assert.equal(h["ce-datacontenttype"], undefined, "datacontenttype travels as Content-Type only");
  assert.equal(h["ce-data"], undefined);
  const parsed = JSON.parse(event.json) as { data: unknown };
  assert.equal(post.body, JSON.stringify(parsed.data));
  assert.equal(h["webhook-request-origin"], ORIGIN);
});

test("429 with Retry-After is retried after the delay asked for (seconds, then an HTTP date)", LIMIT, async (t) => {
  const { receiver, publisher, clock, logs } = await setup(t);
  receiver.postScript.push({ status: 429, headers: { "retry-after": "3" } });
  const first = await publisher.deliver([makeEvent("a")]);
  assert.equal(first.published.length, 1);
  assert.equal(receiver.posts.length, 2);
  assert.deepEqual(clock.waits, [3000]);
  assert.equal(logs.find("publish attempt failed")[0]?.retry_in_ms, 3000);

  receiver.postScript.push({ status: 429, headers: { "retry-after": new Date(clock.time + 5000).toUTCString() } });
  const second = await publisher.deliver([makeEvent("b")]);
  assert.equal(second.published.length, 1);
  assert.deepEqual(clock.waits, [3000, 5000]);
});

test("503 is retried, then the batch fails as exhausted", LIMIT, async (t) => {
  const { receiver, publisher, clock, metrics } = await setup(t, { retries: 2 });
  receiver.post = () => ({ status: 503, body: "maintenance" });
  const result = await publisher.deliver([makeEvent("a")]);
  assert.equal(result.published.length, 0);
  assert.equal(result.failed.length, 1);
  const failure = result.failed[0]!;
  assert.equal(failure.reason, "exhausted");
  assert.equal(failure.status, 503);
  assert.equal(failure.attempts, 3);
  assert.match(failure.message, /503: maintenance/);
  assert.equal(receiver.posts.length, 3);
  assert.equal(clock.waits.length, 2, "a backoff wait before each retry");
  assert.equal(await metricValue(metrics, "auth0_bridge_publish_requests_total", { outcome: "retry", destination: "hook" }), 2);
  assert.equal(await metricValue(metrics, "auth0_bridge_publish_requests_total", { outcome: "failure", destination: "hook" }), 1);
});

test("batched mode: a 400 is bisected down to the refused event; the others are delivered", LIMIT, async (t) => {
  // Threshold 1: refusals of events must not open the breaker.
  const { receiver, publisher } = await setup(t, { mode: "batched", breaker: { failureThreshold: 1, cooldownMs: 30_000 } });
  receiver.post = (request) => (request.body.includes('"id":"bad"') ? { status: 400, body: "invalid event" } : { status: 200 });
  const result = await publisher.deliver(["a", "bad", "c", "d"].map((id) => makeEvent(id)));
  assert.deepEqual(result.published.map((e) => e.id).sort(), ["a", "c", "d"]);
  assert.equal(result.failed.length, 0);
  assert.equal(result.rejected.length, 1);
  assert.equal(result.rejected[0]!.event.id, "bad");
  assert.equal(result.rejected[0]!.reason, "rejected_by_destination");
  assert.equal(result.rejected[0]!.status, 400);
  assert.equal(publisher.breaker.state, "closed");
});

test("structured mode: a 400 rejects its event, a 413 marks it too large", LIMIT, async (t) => {
  const { receiver, publisher } = await setup(t);
  receiver.post = (request) => (request.body.includes('"id":"bad"') ? { status: 400 } : request.body.includes('"id":"big"') ? { status: 413 } : { status: 202 });
  const result = await publisher.deliver(["ok", "bad", "big"].map((id) => makeEvent(id)));
  assert.deepEqual(result.published.map((e) => e.id), ["ok"]);
  const reasons = Object.fromEntries(result.rejected.map((r) => [r.event.id, [r.reason, r.status]]));
  assert.deepEqual(reasons, { bad: ["rejected_by_destination", 400], big: ["event_too_large", 413] });
  assert.equal(receiver.posts.length, 3, "event-level refusals are not retried");
});

test("410 Gone: destination_gone for this and every later delivery, without calling the target again", LIMIT, async (t) => {
  const { receiver, publisher, logs, metrics } = await setup(t);
  assert.equal(await metricValue(metrics, "auth0_bridge_destination_gone", { destination: "hook" }), 0);
  receiver.post = () => ({ status: 410 });
  const first = await publisher.deliver([makeEvent("a")]);
  assert.equal(publisher.gone, true);
  assert.deepEqual(first.rejected.map((r) => [r.event.id, r.reason, r.status]), [["a", "destination_gone", 410]]);
  assert.equal(first.failed.length, 0);
  const requests = receiver.requests.length;
  const later = await publisher.deliver([makeEvent("b"), makeEvent("c")]);
  assert.deepEqual(later.rejected.map((r) => [r.event.id, r.reason, r.status]), [["b", "destination_gone", 410], ["c", "destination_gone", 410]]);
  assert.equal(later.published.length + later.failed.length, 0);
  assert.equal(receiver.requests.length, requests, "no further request, not even a handshake");
  assert.equal(await metricValue(metrics, "auth0_bridge_destination_gone", { destination: "hook" }), 1);
  assert.equal(logs.raw.filter((l) => (JSON.parse(l) as LogLine).msg.startsWith("webhook destination gone")).length, 1, "logged once");
});

test("a target that does not answer times out, and that is retryable", LIMIT, async (t) => {
  const { receiver, publisher } = await setup(t, { retries: 1, timeoutMs: 100 });
  receiver.post = () => ({ status: 0, hang: true });
  const result = await publisher.deliver([makeEvent("a")]);
  assert.equal(result.failed[0]?.reason, "exhausted");
  assert.equal(result.failed[0]?.code, "timeout");
  assert.equal(receiver.posts.length, 2);
});

test("allowInsecure: false refuses an http:// URL without echoing it", LIMIT, async (t) => {
  const { receiver } = await setup(t);
  const logger = createLogger({ level: "error", format: "json", secrets: [], stream: new LogCapture() });
  const base: WebhookOptions = {
    destination: "hook",
    url: `${receiver.url}?access_token=QUERYSECRET`,
    mode: "structured",
    origin: ORIGIN,
    allowInsecure: false,
    retries: 0,
    timeoutMs: 1000,
    backoff: { baseDelayMs: 1, maxDelayMs: 1, retryAfterMaxMs: 1 },
    maxBatchBytes: 1000,
    maxBatchEvents: 10,
    breaker: { failureThreshold: 1, cooldownMs: 1 },
    logger,
    metrics: createMetrics({ version: "0.0.0-test", defaultMetrics: false }),
  };
  assert.throws(
    () => new WebhookPublisher(base),
    (error: Error) => /http:\/\/ is refused/.test(error.message) && !error.message.includes("QUERYSECRET"),
  );
  assert.doesNotThrow(() => new WebhookPublisher({ ...base, url: "https://hooks.example.com/x" }));
  assert.doesNotThrow(() => new WebhookPublisher({ ...base, allowInsecure: true }));
});

test("authorization goes on OPTIONS and POST and never into logs, errors or metrics; nor does the query string", LIMIT, async (t) => {
  const TOKEN = "TOKENSECRET-0123456789";
  const QUERY = "QUERYSECRET-9876543210";
  const { receiver, publisher, logs, metrics } = await setup(t, (url) => ({ url: `${url}?access_token=${QUERY}`, authorization: `Bearer ${TOKEN}`, retries: 1 }));
  // A careless target echoing the credentials back in its error bodies.
  receiver.postScript.push({ status: 503, body: `upstream down for Bearer ${TOKEN}` });
  const ok = await publisher.deliver([makeEvent("a")]);
  assert.equal(ok.published.length, 1);
  receiver.postScript.push({ status: 401, body: `bad token ${TOKEN}` }, { status: 401, body: `bad token ${TOKEN} at ${receiver.url}?access_token=${QUERY}` });
  const refused = await publisher.deliver([makeEvent("b")]);
  assert.equal(refused.failed[0]?.reason, "unauthorized");

  assert.ok(receiver.options.length >= 1 && receiver.posts.length >= 3);
  for (const request of receiver.requests) {
    assert.equal(request.headers.authorization, `Bearer ${TOKEN}`, `${request.method} carries Authorization`);
    assert.ok(request.url.endsWith(`?access_token=${QUERY}`), "the URL is used as given");
  }
  assert.ok(logs.raw.length > 0);
  const logText = logs.raw.join("\n");
  assert.ok(logs.find("publish attempt failed").length >= 2, "the failures were logged");
  assert.ok(!logText.includes(TOKEN), "no token in logs");
  assert.ok(!logText.includes(QUERY), "no query string in logs");
  const failureText = JSON.stringify(refused.failed);
  assert.ok(!failureText.includes(TOKEN) && !failureText.includes(QUERY), "no secret in the failure handed to the caller");
  const metricsText = await metrics.registry.metrics();
  assert.ok(!metricsText.includes(TOKEN) && !metricsText.includes(QUERY), "no secret in metrics");
});
