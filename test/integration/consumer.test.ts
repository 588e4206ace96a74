// The example consumer (examples/consumer/consumer.ts) over real HTTP on loopback: the webhook
// handshake, the three CloudEvents HTTP modes, dispatch by auth0code, and the status codes that
// steer Event Grid's retries.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { CloudEvent } from "cloudevents";
import { createConsumer } from "../../examples/consumer/consumer.js";
import type { ConsumerOptions } from "../../examples/consumer/consumer.js";

interface Served {
  url: string;
  close(): Promise<void>;
}

async function serve(options: ConsumerOptions): Promise<Served> {
  const server: Server = createServer(createConsumer(options));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/auth0-events`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function ev(id: string, code: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    type: `com.auth0.log.${code}`,
    source: "urn:auth0:acme.eu.auth0.com",
    specversion: "1.0",
    time: "2024-05-01T12:00:00.123Z",
    datacontenttype: "application/json",
    auth0code: code,
    auth0category: code === "f" ? "auth.login.fail" : "auth.login.success",
    data: { log_id: id, type: code, user_name: "ada@example.com" },
    ...extra,
  };
}

function post(url: string, body: string, headers: Record<string, string>): Promise<Response> {
  return fetch(url, { method: "POST", headers, body });
}
const structured = (url: string, event: unknown, contentType = "application/cloudevents+json; charset=utf-8") => post(url, JSON.stringify(event), { "content-type": contentType });
const batch = (url: string, events: unknown[]) => post(url, JSON.stringify(events), { "content-type": "application/cloudevents-batch+json; charset=utf-8" });

async function errorOf(res: Response, status: number): Promise<{ error: string; message?: string; eventId?: string }> {
  assert.equal(res.status, status);
  assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
  return (await res.json()) as { error: string; message?: string; eventId?: string };
}

describe("example consumer: dispatch", () => {
  const calls: { handler: string; event: CloudEvent<unknown> }[] = [];
  let failWith: Error | undefined;
  let srv: Served;
  before(async () => {
    srv = await serve({
      handlers: {
        f: (event) => void calls.push({ handler: "f", event }),
        s: async (event) => {
          await Promise.resolve();
          if (failWith) throw failWith;
          calls.push({ handler: "s", event });
        },
      },
      fallback: (event) => void calls.push({ handler: "fallback", event }),
      onHandlerError: (err, event) => void calls.push({ handler: `error:${(err as Error).message}`, event }),
    });
  });
  after(() => srv.close());
  beforeEach(() => {
    calls.length = 0;
    failWith = undefined;
  });

  test("structured mode: one event to the handler of its auth0code, with every attribute and the data", async () => {
    const res = await structured(srv.url, ev("st1", "f"));
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { received: 1 });
    assert.deepEqual(calls.map((c) => [c.handler, c.event.id]), [["f", "st1"]]);
    const e = calls[0]!.event;
    assert.equal(e.type, "com.auth0.log.f");
    assert.equal(e.source, "urn:auth0:acme.eu.auth0.com");
    assert.equal(e.time, "2024-05-01T12:00:00.123Z");
    assert.equal(e.auth0category, "auth.login.fail");
    assert.deepEqual(e.data, { log_id: "st1", type: "f", user_name: "ada@example.com" });
  });

  test("structured mode with another spelling of the charset is accepted", async () => {
    const res = await structured(srv.url, ev("st2", "s"), "application/cloudevents+json;charset=UTF-8");
    assert.equal(res.status, 200);
    assert.deepEqual(calls.map((c) => [c.handler, c.event.id]), [["s", "st2"]]);
  });

  test("batched mode: every event in order, unknown codes to the fallback", async () => {
    const res = await batch(srv.url, [ev("b1", "s"), ev("b2", "fp"), ev("b3", "f"), ev("b4", "s")]);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { received: 4 });
    assert.deepEqual(calls.map((c) => [c.handler, c.event.id]), [["s", "b1"], ["fallback", "b2"], ["f", "b3"], ["s", "b4"]]);
  });

  test("binary mode: attributes from ce- headers (extensions included), JSON data parsed", async () => {
    const res = await post(srv.url, JSON.stringify({ log_id: "bin1", type: "s" }), {
      "content-type": "application/json; charset=utf-8",
      "ce-id": "bin1",
      "ce-source": "urn:auth0:acme.eu.auth0.com",
      "ce-type": "com.auth0.log.s",
      "ce-specversion": "1.0",
      "ce-time": "2024-05-01T12:00:00.123Z",
      "ce-auth0code": "s",
      "ce-auth0category": "auth.login.success",
    });
    assert.equal(res.status, 200);
    assert.deepEqual(calls.map((c) => [c.handler, c.event.id]), [["s", "bin1"]]);
    const e = calls[0]!.event;
    assert.equal(e.auth0category, "auth.login.success");
    assert.deepEqual(e.data, { log_id: "bin1", type: "s" });
  });

  test("an auth0code naming an Object.prototype member goes to the fallback", async () => {
    const res = await batch(srv.url, [ev("proto1", "constructor"), ev("proto2", "toString")]);
    assert.equal(res.status, 200);
    assert.deepEqual(calls.map((c) => c.handler), ["fallback", "fallback"]);
  });

  test("a handler that throws (or rejects) answers 500 with the event id; later events of the batch wait for the retry", async () => {
    failWith = new Error("database down");
    const res = await batch(srv.url, [ev("e1", "f"), ev("e2", "s"), ev("e3", "f")]);
    const body = await errorOf(res, 500);
    assert.deepEqual(body, { error: "handler_failed", eventId: "e2" });
    assert.ok(!JSON.stringify(body).includes("database down"), "the error is not echoed");
    assert.deepEqual(calls.map((c) => [c.handler, c.event.id]), [["f", "e1"], ["error:database down", "e2"]]);
  });
});

describe("example consumer: invalid input", () => {
  let handled = 0;
  let srv: Served;
  before(async () => {
    srv = await serve({ handlers: {}, fallback: () => void handled++ });
  });
  after(() => srv.close());

  const cases: [string, (url: string) => Promise<Response>, RegExp][] = [
    ["malformed JSON", (u) => post(u, "{", { "content-type": "application/cloudevents+json" }), /JSON/],
    ["a structured event without source", (u) => structured(u, { ...ev("x", "s"), source: undefined }), /'source'/],
    // cloudevents 10 would invent an id and a specversion for these: the consumer must not.
    ["a structured event without id", (u) => structured(u, { ...ev("x", "s"), id: undefined }), /'id'/],
    ["a structured event without specversion", (u) => structured(u, { ...ev("x", "s"), specversion: undefined }), /'specversion'/],
    ["specversion 0.3", (u) => structured(u, { ...ev("x", "s"), specversion: "0.3" }), /specversion must be "1\.0"/],
    ["an invalid time", (u) => structured(u, { ...ev("x", "s"), time: "yesterday" }), /'time'/],
    ["an invalid attribute name", (u) => structured(u, { ...ev("x", "s"), "Auth0-Code": "s" }), /attribute name/],
    ["a structured body that is an array", (u) => structured(u, [ev("x", "s")]), /JSON object/],
    ["a batch that is not an array", (u) => post(u, JSON.stringify(ev("x", "s")), { "content-type": "application/cloudevents-batch+json" }), /JSON array/],
    ["a batch with one bad event", (u) => batch(u, [ev("ok", "s"), { ...ev("x", "s"), type: "" }]), /event 1: required attribute 'type'/],
    ["plain JSON without ce- headers", (u) => post(u, JSON.stringify(ev("x", "s")), { "content-type": "application/json" }), /not a CloudEvent/],
    ["binary mode without ce-source", (u) => post(u, "{}", { "content-type": "application/json", "ce-id": "x", "ce-type": "t", "ce-specversion": "1.0" }), /'source'/],
  ];
  for (const [name, send, message] of cases) {
    test(`${name} -> 400 with a JSON error, no handler runs`, async () => {
      const before = handled;
      const body = await errorOf(await send(srv.url), 400);
      assert.equal(body.error, "invalid_cloudevent");
      assert.match(body.message ?? "", message);
      assert.equal(handled, before);
    });
  }

  test("a valid event still goes through (the cases above fail for the reason they name)", async () => {
    const before = handled;
    assert.equal((await structured(srv.url, ev("fine", "s"))).status, 200);
    assert.equal(handled, before + 1);
  });
});

describe("example consumer: handshake and HTTP", () => {
  let srv: Served;
  let star: Served;
  before(async () => {
    srv = await serve({ handlers: {} });
    star = await serve({ handlers: {}, allowedOrigins: ["*"], allowedRate: 60 });
  });
  after(async () => {
    await srv.close();
    await star.close();
  });

  const options = (url: string, headers: Record<string, string>) => fetch(url, { method: "OPTIONS", headers });

  test("Event Grid's origin is allowed by default: echoed, with the rate and Allow: POST", async () => {
    const res = await options(srv.url, { "WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("webhook-allowed-origin"), "eventgrid.azure.net");
    assert.equal(res.headers.get("webhook-allowed-rate"), "*");
    assert.equal(res.headers.get("allow"), "POST");
    assert.equal(await res.text(), "");
  });

  test("the origin is compared case-insensitively", async () => {
    const res = await options(srv.url, { "WebHook-Request-Origin": "EventGrid.Azure.NET" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("webhook-allowed-origin"), "EventGrid.Azure.NET");
  });

  test("another origin, or none, is refused with 403 and no allowed origin", async () => {
    for (const headers of [{ "WebHook-Request-Origin": "evil.example.com" }, {} as Record<string, string>]) {
      const res = await options(srv.url, headers);
      const body = await errorOf(res, 403);
      assert.equal(body.error, "handshake_refused");
      assert.equal(res.headers.get("webhook-allowed-origin"), null);
    }
  });

  test("allowedOrigins ['*'] accepts any origin; allowedRate is answered", async () => {
    const res = await options(star.url, { "WebHook-Request-Origin": "events.example.org" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("webhook-allowed-origin"), "events.example.org");
    assert.equal(res.headers.get("webhook-allowed-rate"), "60");
  });

  test("other methods -> 405 with Allow", async () => {
    for (const method of ["GET", "PUT", "DELETE"]) {
      const res = await fetch(srv.url, { method });
      const body = await errorOf(res, 405);
      assert.equal(body.error, "method_not_allowed");
      assert.equal(res.headers.get("allow"), "POST, OPTIONS");
    }
  });

  test("a body over maxBodyBytes -> 413 (declared or streamed), and the connection stays usable", async () => {
    const small = await serve({ handlers: {}, fallback: () => undefined, maxBodyBytes: 1024 });
    try {
      const big = JSON.stringify(ev("big", "s", { data: { pad: "x".repeat(4096) } }));
      const declared = await structured(small.url, JSON.parse(big) as unknown);
      assert.equal((await errorOf(declared, 413)).error, "too_large");
      // Chunked, no Content-Length: the limit is enforced while reading.
      const stream = new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(big));
          controller.close();
        },
      });
      const streamed = await fetch(small.url, { method: "POST", headers: { "content-type": "application/cloudevents+json" }, body: stream, duplex: "half" } as RequestInit);
      assert.equal((await errorOf(streamed, 413)).error, "too_large");
      assert.equal((await structured(small.url, ev("small", "s"))).status, 200);
    } finally {
      await small.close();
    }
  });

  test("handle() serves hosts without node:http (the Azure Functions shape)", async () => {
    const seen: string[] = [];
    const consumer = createConsumer({ handlers: { s: (e) => void seen.push(e.id) } });
    const handshake = await consumer.handle({ method: "OPTIONS", headers: { "WebHook-Request-Origin": "eventgrid.azure.net" }, body: "" });
    assert.equal(handshake.status, 200);
    assert.equal(handshake.headers["webhook-allowed-origin"], "eventgrid.azure.net");
    const answer = await consumer.handle({ method: "POST", headers: { "Content-Type": "application/cloudevents+json" }, body: JSON.stringify(ev("h1", "s")) });
    assert.equal(answer.status, 200);
    assert.deepEqual(seen, ["h1"]);
    const bad = await consumer.handle({ method: "POST", headers: { "content-type": "application/cloudevents+json" }, body: "{}" });
    assert.equal(bad.status, 400);
  });
});
