// Event subscriptions of the local Event Grid emulator: real HTTP on loopback from the emulator to
// webhook endpoints (the example consumer, or a scripted node:http receiver defined below).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { EventEmitter, once } from "node:events";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import type { CloudEvent } from "cloudevents";
import { startEmulator } from "../../src/emulator/emulator.js";
import type { Emulator, EmulatorOptions, SubscriptionSpec } from "../../src/emulator/emulator.js";
import { createConsumer } from "../../examples/consumer/consumer.js";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CE_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8";

// ---- a scripted webhook receiver ----

interface Hit {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Position in the receiver's timeline (arrivals and answers share one counter). */
  seq: number;
  answeredSeq?: number;
  aborted: boolean;
  at: number;
}

interface Reply {
  status: number;
  headers?: Record<string, string>;
  /** Answer only when this settles; never settles = hold the request until the client gives up. */
  after?: Promise<unknown>;
}

type Script = (hit: Hit, nth: number) => Reply;

interface Receiver {
  url: string;
  hits: Hit[];
  posts(path?: string): Hit[];
  options(path?: string): Hit[];
  /** Resolves once `pred` holds; checked after every arrival, answer and abort. */
  until(pred: (hits: Hit[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const allowOrigin: Script = (hit) => ({ status: 200, headers: { "webhook-allowed-origin": String(hit.headers["webhook-request-origin"]), "webhook-allowed-rate": "120" } });
const ok: Script = () => ({ status: 200 });

async function startReceiver(script: { options?: Script; post?: Script } = {}): Promise<Receiver> {
  const hits: Hit[] = [];
  const changed = new EventEmitter();
  let seq = 0;
  let optionsCount = 0;
  let postCount = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const hit: Hit = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), seq: ++seq, aborted: false, at: performance.now() };
      hits.push(hit);
      res.on("close", () => {
        if (!res.writableFinished) {
          hit.aborted = true;
          changed.emit("change");
        }
      });
      changed.emit("change");
      const reply = hit.method === "OPTIONS" ? (script.options ?? allowOrigin)(hit, ++optionsCount) : (script.post ?? ok)(hit, ++postCount);
      const answer = (): void => {
        if (res.destroyed) return;
        hit.answeredSeq = ++seq;
        res.writeHead(reply.status, { ...reply.headers, "content-length": "0" });
        res.end();
        changed.emit("change");
      };
      if (reply.after) void reply.after.then(answer);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    posts: (path) => hits.filter((h) => h.method === "POST" && (path === undefined || h.path === path)),
    options: (path) => hits.filter((h) => h.method === "OPTIONS" && (path === undefined || h.path === path)),
    until(pred, timeoutMs = 5000) {
      if (pred(hits)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (!pred(hits)) return;
          clearTimeout(timer);
          changed.off("change", check);
          resolve();
        };
        const timer = setTimeout(() => {
          changed.off("change", check);
          reject(new Error(`receiver condition not met within ${timeoutMs} ms; hits: ${JSON.stringify(hits.map((h) => [h.method, h.path, h.aborted]))}`));
        }, timeoutMs);
        changed.on("change", check);
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

// ---- helpers ----

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const NEVER = new Promise<void>(() => undefined);

function ev(id: string, code = "s", extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    type: `com.auth0.log.${code}`,
    source: "urn:auth0:acme.eu.auth0.com",
    specversion: "1.0",
    time: "2024-05-01T12:00:00.123Z",
    datacontenttype: "application/json",
    auth0code: code,
    data: { log_id: id, type: code },
    ...extra,
  };
}

async function publish(emu: Emulator, ...events: Record<string, unknown>[]): Promise<void> {
  const res = await fetch(`${emu.url}?api-version=2018-01-01`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json; charset=utf-8" },
    body: JSON.stringify(events),
  });
  assert.equal(res.status, 200, await res.text());
}

/** Runs fn with a fresh emulator and closes it (and the given receivers) afterwards, bounded in time. */
async function withEmulator(options: EmulatorOptions, fn: (emu: Emulator) => Promise<void>, closeAlso: { close(): Promise<void> }[] = [], timeoutMs = 10_000): Promise<void> {
  const emu = await startEmulator(options);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`test body did not finish within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([fn(emu), deadline]);
  } finally {
    clearTimeout(timer);
    await emu.close();
    for (const c of closeAlso) await c.close();
  }
}

function sub(name: string, endpoint: string, extra: Partial<SubscriptionSpec> = {}): SubscriptionSpec {
  return { name, endpoint, retryDelayMs: 10, ...extra };
}

// ---- tests ----

describe("emulator subscriptions: delivery to the example consumer", () => {
  test("published events reach the consumer's handlers by auth0code, one delivery record each", async () => {
    const seen: { handler: string; event: CloudEvent<unknown> }[] = [];
    const consumer = createConsumer({
      handlers: {
        f: (event) => void seen.push({ handler: "f", event }),
        s: (event) => void seen.push({ handler: "s", event }),
      },
      fallback: (event) => void seen.push({ handler: "fallback", event }),
    });
    const server = createServer(consumer);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/auth0-events`;
    const closeServer = { close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }) };
    await withEmulator({ subscriptions: [sub("consumer", endpoint)] }, async (emu) => {
      await publish(emu, ev("e-f", "f", { auth0category: "auth.login.fail" }), ev("e-s", "s"), ev("e-fp", "fp"));
      await emu.waitForDeliveries(3);
      const byId = new Map(seen.map((s) => [s.event.id, s]));
      assert.equal(seen.length, 3);
      assert.equal(byId.get("e-f")?.handler, "f");
      assert.equal(byId.get("e-s")?.handler, "s");
      assert.equal(byId.get("e-fp")?.handler, "fallback");
      const f = byId.get("e-f")!.event;
      assert.equal(f.type, "com.auth0.log.f");
      assert.equal(f.source, "urn:auth0:acme.eu.auth0.com");
      assert.equal(f.auth0category, "auth.login.fail");
      assert.equal(f.time, "2024-05-01T12:00:00.123Z");
      assert.deepEqual(f.data, { log_id: "e-f", type: "f" });
      assert.deepEqual(
        [...emu.deliveries].sort((a, b) => a.eventId.localeCompare(b.eventId)).map((d) => [d.subscription, d.eventId, d.eventType, d.attempts, d.status, d.outcome]),
        [
          ["consumer", "e-f", "com.auth0.log.f", 1, 200, "delivered"],
          ["consumer", "e-fp", "com.auth0.log.fp", 1, 200, "delivered"],
          ["consumer", "e-s", "com.auth0.log.s", 1, 200, "delivered"],
        ],
      );
      const status = emu.subscriptionStatus("consumer");
      assert.equal(status?.validation, "succeeded");
      assert.equal(status?.handshakes, 1);
      assert.equal(status?.allowedRate, "*", "the consumer grants any rate by default");
      assert.equal(status?.delivered, 3);
      assert.equal(status?.pending, 0);
    }, [closeServer]);
  });
});

describe("emulator subscriptions: handshake", () => {
  test("OPTIONS with Event Grid's origin first; events wait for the allowed answer, then go one per structured POST", async () => {
    const release = deferred();
    const rcv = await startReceiver({ options: (hit) => ({ ...allowOrigin(hit, 1), after: release.promise }) });
    await withEmulator({ subscriptions: [sub("orders", `${rcv.url}/hook?code=abc`)] }, async (emu) => {
      const published = [ev("h1", "f"), ev("h2", "s")];
      await publish(emu, ...published);
      await rcv.until((h) => h.length === 1);
      // The handshake is still unanswered: nothing may have been posted yet.
      assert.equal(rcv.posts().length, 0);
      assert.equal(emu.subscriptionStatus("orders")?.validation, "in_progress");
      assert.equal(emu.subscriptionStatus("orders")?.pending, 2);
      await publish(emu, ev("h3", "s")); // answered while the handshake is held
      published.push(ev("h3", "s"));
      release.resolve();
      await emu.waitForDeliveries(3);

      const [handshake] = rcv.options();
      assert.equal(rcv.options().length, 1, "one handshake for all held events");
      assert.equal(handshake?.path, "/hook?code=abc");
      assert.equal(handshake?.headers["webhook-request-origin"], "eventgrid.azure.net");
      assert.equal(handshake?.headers["webhook-request-rate"], "120");
      const posts = rcv.posts();
      assert.equal(posts.length, 3);
      for (const p of posts) {
        assert.ok(p.seq > handshake!.answeredSeq!, "every POST arrived after the handshake was answered");
        assert.equal(p.path, "/hook?code=abc");
        assert.equal(p.headers["content-type"], CE_CONTENT_TYPE);
        assert.equal(p.headers["aeg-event-type"], "Notification");
        assert.equal(p.headers["aeg-subscription-name"], "ORDERS");
        assert.equal(p.headers["aeg-delivery-count"], "0");
      }
      const bodies = posts.map((p) => JSON.parse(p.body) as Record<string, unknown>).sort((a, b) => String(a.id).localeCompare(String(b.id)));
      assert.deepEqual(bodies, published, "each body is one event, as published");
      assert.equal(emu.subscriptionStatus("orders")?.allowedRate, "120");

      // Validated once: later events go straight out.
      await publish(emu, ev("h4"));
      await emu.waitForDeliveries(4);
      assert.equal(rcv.options().length, 1);
      assert.equal(emu.subscriptionStatus("orders")?.handshakes, 1);
    }, [rcv]);
  });

  test("a refused handshake (wrong origin, no header, non-2xx) delivers nothing; the next event tries again", async () => {
    let mode: "wrong" | "missing" | "forbidden" | "allow" = "wrong";
    const rcv = await startReceiver({
      options: (hit) =>
        mode === "wrong" ? { status: 200, headers: { "webhook-allowed-origin": "example.com" } }
        : mode === "missing" ? { status: 200 }
        : mode === "forbidden" ? { status: 403, headers: { "webhook-allowed-origin": "eventgrid.azure.net" } }
        : allowOrigin(hit, 0),
    });
    await withEmulator({ subscriptions: [sub("picky", rcv.url)] }, async (emu) => {
      await publish(emu, ev("v1"), ev("v2"));
      await emu.waitForDeliveries(2, 5000, "validation_failed");
      let status = emu.subscriptionStatus("picky")!;
      assert.equal(status.validation, "failed");
      assert.equal(status.validationStatus, 200);
      assert.match(status.validationReason ?? "", /WebHook-Allowed-Origin 'example\.com' allows neither eventgrid\.azure\.net nor \*/);
      assert.equal(status.undeliverable, 2);
      assert.deepEqual(emu.deliveries.map((d) => [d.eventId, d.outcome, d.attempts, d.status]), [["v1", "validation_failed", 0, 200], ["v2", "validation_failed", 0, 200]]);
      assert.equal(status.handshakes, 1, "one handshake for the batch");

      mode = "missing";
      await publish(emu, ev("v3"));
      await emu.waitForDeliveries(3, 5000, "validation_failed");
      status = emu.subscriptionStatus("picky")!;
      assert.match(status.validationReason ?? "", /no WebHook-Allowed-Origin header/);
      assert.equal(status.handshakes, 2);

      mode = "forbidden";
      await publish(emu, ev("v4"));
      await emu.waitForDeliveries(4, 5000, "validation_failed");
      status = emu.subscriptionStatus("picky")!;
      assert.equal(status.validationStatus, 403);
      assert.match(status.validationReason ?? "", /HTTP 403/);
      assert.equal(rcv.posts().length, 0, "nothing was posted to a refusing endpoint");

      mode = "allow";
      await publish(emu, ev("v5"));
      await emu.waitForDeliveries(1);
      status = emu.subscriptionStatus("picky")!;
      assert.equal(status.validation, "succeeded");
      assert.equal(status.validationReason, undefined);
      assert.equal(status.handshakes, 4);
      assert.equal(status.undeliverable, 4);
      assert.deepEqual(rcv.posts().map((p) => (JSON.parse(p.body) as { id: string }).id), ["v5"], "refused events are not delivered later");
    }, [rcv]);
  });

  test("an unreachable endpoint fails validation with the network error", async () => {
    const rcv = await startReceiver();
    const deadUrl = rcv.url;
    await rcv.close(); // nothing listens on this port any more
    await withEmulator({ subscriptions: [sub("gone", deadUrl)] }, async (emu) => {
      await publish(emu, ev("n1"));
      await emu.waitForDeliveries(1, 5000, "validation_failed");
      const status = emu.subscriptionStatus("gone")!;
      assert.equal(status.validationStatus, undefined);
      assert.match(status.validationReason ?? "", /no answer: ECONNREFUSED/);
    });
  });

  test("WebHook-Allowed-Origin: * is accepted", async () => {
    const rcv = await startReceiver({ options: () => ({ status: 200, headers: { "webhook-allowed-origin": "*" } }) });
    await withEmulator({ subscriptions: [sub("star", rcv.url)] }, async (emu) => {
      await publish(emu, ev("w1"));
      await emu.waitForDeliveries(1);
      assert.equal(emu.subscriptionStatus("star")?.validation, "succeeded");
      assert.equal(emu.subscriptionStatus("star")?.allowedRate, undefined, "no rate answered");
      assert.equal(rcv.posts().length, 1);
    }, [rcv]);
  });
});

describe("emulator subscriptions: filtering and subscribing", () => {
  test("includedEventTypes delivers only the listed types; other subscriptions get everything", async () => {
    const rcv = await startReceiver();
    const subscriptions = [sub("fails", `${rcv.url}/fails`, { includedEventTypes: ["com.auth0.log.f", "com.auth0.log.fp"] }), sub("all", `${rcv.url}/all`)];
    await withEmulator({ subscriptions }, async (emu) => {
      await publish(emu, ev("t-f", "f"), ev("t-s", "s"), ev("t-fp", "fp"), ev("t-fu", "fu"));
      await emu.waitForDeliveries(6);
      const ids = (path: string): string[] => rcv.posts(path).map((p) => (JSON.parse(p.body) as { id: string }).id).sort();
      assert.deepEqual(ids("/fails"), ["t-f", "t-fp"]);
      assert.deepEqual(ids("/all"), ["t-f", "t-fp", "t-fu", "t-s"]);
      assert.equal(emu.subscriptionStatus("fails")?.pending, 0, "filtered events are not queued");
      assert.deepEqual(emu.subscriptionStatus("fails")?.includedEventTypes, ["com.auth0.log.f", "com.auth0.log.fp"]);
      assert.deepEqual(emu.deliveries.filter((d) => d.subscription === "fails").map((d) => d.eventType).sort(), ["com.auth0.log.f", "com.auth0.log.fp"]);
    }, [rcv]);
  });

  test("subscribe() at run time receives events accepted from then on; bad specs are refused", async () => {
    const rcv = await startReceiver();
    await withEmulator({}, async (emu) => {
      await publish(emu, ev("before"));
      emu.subscribe(sub("late", rcv.url));
      await publish(emu, ev("after"));
      await emu.waitForDeliveries(1);
      assert.deepEqual(rcv.posts().map((p) => (JSON.parse(p.body) as { id: string }).id), ["after"]);
      assert.equal(emu.subscriptionStatus("nope"), undefined);
      assert.throws(() => emu.subscribe(sub("late", rcv.url)), /a subscription named 'late' already exists/);
      assert.throws(() => emu.subscribe(sub("bad", "not a url")), /endpoint 'not a url' is not a URL/);
      assert.throws(() => emu.subscribe(sub("ftp", "ftp://example.com/x")), /must be an http\(s\) URL/);
      assert.throws(() => emu.subscribe(sub("many", rcv.url, { maxDeliveryAttempts: 31 })), /maxDeliveryAttempts must be an integer from 1 to 30/);
      assert.throws(() => emu.subscribe(sub("none", rcv.url, { includedEventTypes: [] })), /includedEventTypes must be a non-empty list/);
      assert.throws(() => emu.subscribe({ name: "", endpoint: rcv.url }), /non-empty name/);
    }, [rcv]);
    await assert.rejects(startEmulator({ subscriptions: [sub("x", "mailto:a@b.c")] }), /subscription 'x': endpoint must be an http\(s\) URL/);
  });

  test("reset() clears delivery records and counts, drops pending deliveries and starts the handshake over", async () => {
    const rcv = await startReceiver();
    await withEmulator({ subscriptions: [sub("r", rcv.url)] }, async (emu) => {
      await publish(emu, ev("r1"));
      await emu.waitForDeliveries(1);
      emu.reset();
      assert.equal(emu.deliveries.length, 0);
      const status = emu.subscriptionStatus("r")!;
      assert.deepEqual([status.validation, status.handshakes, status.delivered, status.pending], ["pending", 0, 0, 0]);
      await assert.rejects(emu.waitForDeliveries(1, 50), /waiting for 1 delivered deliveries; the emulator has 0/);
      await publish(emu, ev("r2"));
      await emu.waitForDeliveries(1);
      assert.equal(rcv.options().length, 2, "a new handshake after the reset");
      assert.deepEqual(emu.deliveries.map((d) => d.eventId), ["r2"]);
    }, [rcv]);
  });
});

describe("emulator subscriptions: retries and dead-lettering", () => {
  test("503 and 500 are retried with exponential backoff until a 2xx", async () => {
    const rcv = await startReceiver({ post: (_hit, n) => ({ status: n === 1 ? 503 : n === 2 ? 500 : 200 }) });
    await withEmulator({ subscriptions: [sub("flaky", rcv.url, { retryDelayMs: 20, maxDeliveryAttempts: 5 })] }, async (emu) => {
      await publish(emu, ev("x1", "f"));
      await emu.waitForDeliveries(1);
      const posts = rcv.posts();
      assert.deepEqual(posts.map((p) => p.headers["aeg-delivery-count"]), ["0", "1", "2"]);
      assert.ok(posts.every((p) => p.body === posts[0]!.body), "the same event every time");
      // Backoff retryDelayMs * 2^(attempt-1): 20 ms, then 40 ms (timers may fire ~1 ms early).
      assert.ok(posts[1]!.at - posts[0]!.at >= 19, `first wait ${posts[1]!.at - posts[0]!.at} ms`);
      assert.ok(posts[2]!.at - posts[1]!.at >= 39, `second wait ${posts[2]!.at - posts[1]!.at} ms`);
      assert.deepEqual(emu.deliveries.map((d) => [d.eventId, d.attempts, d.status, d.outcome]), [["x1", 3, 200, "delivered"]]);
    }, [rcv]);
  });

  test("Retry-After on 503 replaces the backoff; on 429 it is capped by maxRetryDelayMs", async () => {
    const hinting = await startReceiver({ post: (_hit, n) => ({ status: n === 1 ? 503 : 200, headers: { "retry-after": "0" } }) });
    const stalling = await startReceiver({ post: (_hit, n) => ({ status: n === 1 ? 429 : 200, headers: { "retry-after": "3600" } }) });
    const subscriptions = [
      // A 60 s backoff: only honouring Retry-After: 0 brings the retry in time.
      sub("hinted", hinting.url, { retryDelayMs: 60_000 }),
      // Retry-After: 3600 would stall it for an hour; the 30 ms cap lets it through.
      sub("capped", stalling.url, { retryDelayMs: 5, maxRetryDelayMs: 30 }),
    ];
    await withEmulator({ subscriptions }, async (emu) => {
      await publish(emu, ev("ra1"));
      await emu.waitForDeliveries(2, 3000);
      assert.deepEqual(emu.deliveries.map((d) => [d.subscription, d.attempts, d.status]).sort(), [["capped", 2, 200], ["hinted", 2, 200]]);
    }, [hinting, stalling]);
  });

  test("400 and 413 are dead-lettered at once, without a retry", async () => {
    const rcv = await startReceiver({ post: (hit) => ({ status: (JSON.parse(hit.body) as { id: string }).id === "bad" ? 400 : 413 }) });
    await withEmulator({ subscriptions: [sub("strict", rcv.url, { maxDeliveryAttempts: 10 })] }, async (emu) => {
      await publish(emu, ev("bad"), ev("big"));
      await emu.waitForDeliveries(2, 5000, "dead_lettered");
      const recs = [...emu.deliveries].sort((a, b) => a.eventId.localeCompare(b.eventId));
      assert.deepEqual(recs.map((d) => [d.eventId, d.attempts, d.status, d.outcome]), [["bad", 1, 400, "dead_lettered"], ["big", 1, 413, "dead_lettered"]]);
      assert.match(recs[0]?.reason ?? "", /HTTP 400 is not retried/);
      const status = emu.subscriptionStatus("strict")!;
      assert.equal(status.pending, 0, "no retry is scheduled");
      assert.equal(status.deadLettered, 2);
      assert.equal(rcv.posts().length, 2);
    }, [rcv]);
  });

  test("after maxDeliveryAttempts failures the event is dead-lettered with the last status", async () => {
    const rcv = await startReceiver({ post: () => ({ status: 500 }) });
    await withEmulator({ subscriptions: [sub("down", rcv.url, { maxDeliveryAttempts: 3, retryDelayMs: 5 })] }, async (emu) => {
      await publish(emu, ev("m1"));
      await emu.waitForDeliveries(1, 5000, "dead_lettered");
      assert.deepEqual(emu.deliveries.map((d) => [d.eventId, d.attempts, d.status, d.outcome]), [["m1", 3, 500, "dead_lettered"]]);
      assert.match(emu.deliveries[0]?.reason ?? "", /gave up after 3 attempt\(s\); the last got HTTP 500/);
      assert.equal(rcv.posts().length, 3);
      assert.equal(emu.subscriptionStatus("down")?.pending, 0);
    }, [rcv]);
  });

  test("an answer that does not come within timeoutMs is a failed attempt", async () => {
    const rcv = await startReceiver({ post: () => ({ status: 200, after: NEVER }) });
    await withEmulator({ subscriptions: [sub("slow", rcv.url, { timeoutMs: 100, maxDeliveryAttempts: 2, retryDelayMs: 5 })] }, async (emu) => {
      await publish(emu, ev("to1"));
      await emu.waitForDeliveries(1, 5000, "dead_lettered");
      const [rec] = emu.deliveries;
      assert.equal(rec?.attempts, 2);
      assert.equal(rec?.status, undefined);
      assert.match(rec?.reason ?? "", /no answer within 100 ms/);
      await rcv.until((h) => h.filter((x) => x.aborted).length === 2); // the emulator hung up both
    }, [rcv]);
  });
});

describe("emulator subscriptions: background delivery", () => {
  test("a slow subscriber never delays the publish answer; close() aborts deliveries and leaves no timer", async () => {
    const handshakeGate = deferred();
    const rcv = await startReceiver({
      options: (hit) => ({ ...allowOrigin(hit, 0), after: hit.path === "/held" ? handshakeGate.promise : Promise.resolve() }),
      post: () => ({ status: 200, after: NEVER }),
    });
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const emu = await startEmulator({
      subscriptions: [
        sub("held", `${rcv.url}/held`),
        // Times out after 50 ms, then waits a minute for its retry: a pending timer at close().
        sub("retrying", `${rcv.url}/retrying`, { timeoutMs: 50, retryDelayMs: 60_000 }),
      ],
    });
    try {
      // The handshake of "held" is unanswered, and stays so until after this publish was answered.
      await publish(emu, ev("p1"));
      await rcv.until((h) => h.some((x) => x.method === "OPTIONS" && x.path === "/held"));
      assert.equal(rcv.posts("/held").length, 0);
      handshakeGate.resolve();
      // Now "held" has a POST in flight that is never answered: publishing is still immediate.
      await rcv.until((h) => h.some((x) => x.method === "POST" && x.path === "/held"));
      const started = performance.now();
      await publish(emu, ev("p2"));
      assert.ok(performance.now() - started < 1000, "the publish answer did not wait for the subscriber");
      assert.equal(emu.deliveries.length, 0, "nothing settled: the subscriber has not answered");
      // The first attempt of "retrying" was abandoned (the emulator hung up), so its retry is pending.
      await rcv.until((h) => h.some((x) => x.path === "/retrying" && x.method === "POST" && x.aborted));
      assert.ok(emu.subscriptionStatus("retrying")!.pending >= 1);
    } finally {
      await emu.close();
    }
    // close() hung up on the POSTs still in flight...
    await rcv.until((h) => h.filter((x) => x.path === "/held" && x.method === "POST").every((x) => x.aborted));
    // ...and cancelled the retry and request timers: none of the emulator's is left.
    assert.equal(timers(), before);
    assert.equal(emu.deliveries.length, 0, "nothing was recorded after close");
    await rcv.close();
  });
});

/** Resolves with the first line a stream prints; rejects if it ends first. */
async function lineMatching(stream: Readable, re: RegExp): Promise<string> {
  let text = "";
  for await (const chunk of stream) {
    text += String(chunk);
    const line = text.split("\n").find((l) => re.test(l));
    if (line !== undefined) return line;
  }
  throw new Error(`stream ended before a line matching ${re}: ${JSON.stringify(text)}`);
}

describe("emulator CLI: --subscribe", () => {
  test("delivers to --subscribe URLs filtered by --subscribe-types and reports a refused handshake on stderr", { timeout: 30_000 }, async () => {
    const rcv = await startReceiver({
      options: (hit) => (hit.path === "/refuse" ? { status: 403 } : allowOrigin(hit, 0)),
    });
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "src/emulator/cli.ts", "--port", "0", "--subscribe", `${rcv.url}/ok`, "--subscribe", `${rcv.url}/refuse`, "--subscribe-types", "com.auth0.log.f,com.auth0.log.fp"],
      { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      const line = await lineMatching(child.stdout, /EVENTGRID_ENDPOINT=/);
      assert.match(line, new RegExp(`delivering to ${rcv.url}/ok ${rcv.url}/refuse \\(types com\\.auth0\\.log\\.f,com\\.auth0\\.log\\.fp\\)`));
      const url = /EVENTGRID_ENDPOINT=(\S+)/.exec(line)![1]!;
      const stderrLine = lineMatching(child.stderr, /handshake failed/);
      const res = await fetch(`${url}?api-version=2018-01-01`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents-batch+json", "aeg-sas-key": "any" },
        body: JSON.stringify([ev("c-s", "s"), ev("c-f", "f")]),
      });
      assert.equal(res.status, 200);
      await rcv.until((h) => h.some((x) => x.method === "POST"));
      assert.match(await stderrLine, /subscription-2: event c-f not delivered, handshake failed: the handshake was answered with HTTP 403/);
      assert.deepEqual(rcv.posts().map((p) => [p.path, (JSON.parse(p.body) as { id: string }).id]), [["/ok", "c-f"]]);
      child.kill("SIGTERM");
      const [code] = await exited;
      assert.equal(code, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await rcv.close();
    }
  });

  test("a --subscribe value that is not an http(s) URL: one line on stderr, exit 2", { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/emulator/cli.ts", "--subscribe", "localhost:7071"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += String(chunk);
    });
    const [code] = (await once(child, "close")) as [number | null];
    assert.equal(code, 2);
    assert.match(stderr, /^eventgrid-emulator: --subscribe must be an http\(s\) URL, got 'localhost:7071'\n$/);
  });
});
