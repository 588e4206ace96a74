// Tests of the local Event Grid emulator itself: the real @azure/eventgrid publisher for the
// happy paths and scripted failures, raw fetch for requests the SDK would never send.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Readable } from "node:stream";
import { EventGridPublisherClient } from "@azure/eventgrid";
import type { SendCloudEventInput } from "@azure/eventgrid";
import { AzureKeyCredential, AzureSASCredential } from "@azure/core-auth";
import type { KeyCredential, SASCredential } from "@azure/core-auth";
import { startEmulator } from "../../src/emulator/emulator.js";
import type { Emulator, EmulatorOptions } from "../../src/emulator/emulator.js";

const KEY = "emulator-test-key";
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLIENT_OPTIONS = { allowInsecureConnection: true, retryOptions: { maxRetries: 0 } };

function client(emu: Emulator, credential: KeyCredential | SASCredential = new AzureKeyCredential(KEY)) {
  return new EventGridPublisherClient(emu.url, "CloudEvent", credential, CLIENT_OPTIONS);
}

/** Runs fn against a fresh emulator. A body that hangs fails after timeoutMs, and closing the
 * emulator then releases any request it was stuck on, so a broken emulator cannot hang the run. */
async function withEmulator(options: EmulatorOptions, fn: (emu: Emulator) => Promise<void>, timeoutMs = 10_000): Promise<void> {
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
  }
}

function input(id: string, extra: Partial<SendCloudEventInput<unknown>> = {}): SendCloudEventInput<unknown> {
  return { id, type: "com.auth0.log.s", source: "urn:auth0:acme", data: { log_id: id }, ...extra };
}

function rawEvent(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, type: "com.auth0.log.s", source: "urn:auth0:acme", specversion: "1.0", time: "2024-05-01T12:00:00.123Z", data: { n: 1 }, ...extra };
}

function post(emu: Emulator, body: string, headers: Record<string, string> = {}, query = "?api-version=2018-01-01"): Promise<Response> {
  return fetch(emu.url + query, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json; charset=utf-8", "aeg-sas-key": KEY, ...headers },
    body,
  });
}

interface ErrorBody { code: string; message: string; details: { code: string; message: string }[] }

/** Asserts an Event Grid style JSON error answer and returns its `error` object. */
async function eventGridError(res: Response, status: number): Promise<ErrorBody> {
  assert.equal(res.status, status);
  assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
  const body = (await res.json()) as { error: ErrorBody };
  assert.equal(typeof body.error.code, "string");
  assert.equal(typeof body.error.message, "string");
  assert.ok(Array.isArray(body.error.details) && body.error.details.length > 0);
  return body.error;
}

/** assert.rejects validator for a RestError with the given status. */
function restError(statusCode: number | undefined, code?: string) {
  return (err: unknown): boolean => {
    const e = err as { name?: string; statusCode?: number; code?: string };
    assert.equal(e.name, "RestError");
    assert.equal(e.statusCode, statusCode);
    if (code !== undefined) assert.equal(e.code, code);
    return true;
  };
}

describe("publishing with @azure/eventgrid", () => {
  test("key credential: events are stored with extension attributes at top level", () =>
    withEmulator({ key: KEY }, async (emu) => {
      await client(emu).send([
        input("a1", { extensionAttributes: { auth0tenant: "acme", auth0code: "s" } }),
        input("a2", { subject: "user/1" }),
      ]);
      assert.deepEqual(emu.events.map((e) => e.id), ["a1", "a2"]);
      const [first, second] = emu.events;
      assert.equal(first?.type, "com.auth0.log.s");
      assert.equal(first?.source, "urn:auth0:acme");
      assert.equal(first?.specversion, "1.0");
      assert.equal(first?.auth0tenant, "acme");
      assert.equal(first?.auth0code, "s");
      assert.deepEqual(first?.data, { log_id: "a1" });
      assert.equal(second?.subject, "user/1");
      assert.equal(emu.requests.length, 1);
      const req = emu.requests[0]!;
      assert.equal(req.method, "POST");
      assert.equal(req.path, "/api/events");
      assert.equal(req.query, "api-version=2018-01-01");
      assert.equal(req.status, 200);
      assert.equal(req.eventCount, 2);
      assert.ok(req.bytes > 0);
    }));

  test("SAS credential (aeg-sas-token) and Authorization: SharedAccessSignature are accepted", () =>
    withEmulator({ sasToken: "r=x&e=y&s=z" }, async (emu) => {
      await client(emu, new AzureSASCredential("r=x&e=y&s=z")).send([input("s1")]);
      const res = await post(emu, JSON.stringify([rawEvent("s2")]), { "aeg-sas-key": "", authorization: "SharedAccessSignature r=x&e=y&s=z" });
      assert.equal(res.status, 200);
      assert.deepEqual(emu.events.map((e) => e.id), ["s1", "s2"]);
      await assert.rejects(client(emu, new AzureSASCredential("r=x&e=y&s=wrong")).send([input("s3")]), restError(401, "Unauthorized"));
    }));

  test("wrong or missing key -> 401, nothing stored, the key is not echoed", () =>
    withEmulator({ key: KEY }, async (emu) => {
      await assert.rejects(client(emu, new AzureKeyCredential("not-the-key-123")).send([input("w1")]), (err: unknown) => {
        restError(401, "Unauthorized")(err);
        assert.doesNotMatch(String((err as Error).message), /not-the-key-123/);
        return true;
      });
      const res = await fetch(emu.url + "?api-version=2018-01-01", {
        method: "POST",
        headers: { "content-type": "application/cloudevents-batch+json" },
        body: JSON.stringify([rawEvent("w2")]),
      });
      const error = await eventGridError(res, 401);
      assert.equal(error.code, "Unauthorized");
      assert.equal(emu.events.length, 0);
      assert.deepEqual(emu.requests.map((r) => r.status), [401, 401]);
    }));

  test("partner namespace: channelName accepted, missing -> 400, wrong -> 404", () =>
    withEmulator({ key: KEY, channel: "auth0-channel" }, async (emu) => {
      const publisher = client(emu);
      await publisher.send([input("c1")], { channelName: "auth0-channel" });
      assert.equal(emu.requests[0]?.headers["aeg-channel-name"], "auth0-channel");
      await assert.rejects(publisher.send([input("c2")]), restError(400));
      await assert.rejects(publisher.send([input("c3")], { channelName: "other" }), (err: unknown) => {
        restError(404, "NotFound")(err);
        assert.match((err as Error).message, /channel 'other' was not found/);
        return true;
      });
      assert.deepEqual(emu.events.map((e) => e.id), ["c1"]);
    }));

  test("requests over maxRequestBytes from the SDK get 413 without socket errors on close", async () => {
    // Growing bodies on one client: if the emulator answered before the body was fully read, the
    // SDK would still be writing when close() lands and crash this process with an unhandled EPIPE.
    await withEmulator({ key: KEY, maxRequestBytes: 1000 }, async (emu) => {
      const publisher = client(emu);
      for (const size of [2000, 200_000, 5_000_000]) {
        await assert.rejects(publisher.send([input("big", { data: { blob: "x".repeat(size) } })]), restError(413, "RequestEntityTooLarge"));
      }
      assert.equal(emu.events.length, 0);
      assert.deepEqual(emu.requests.map((r) => r.status), [413, 413, 413]);
    });
    // Give a late socket error (it arrives after close) the chance to surface inside this test.
    await new Promise<void>((resolve) => setImmediate(resolve));
  });
});

describe("malformed requests (raw fetch)", () => {
  test("wrong content type -> 400 with the Event Grid message", () =>
    withEmulator({ key: KEY }, async (emu) => {
      const error = await eventGridError(await post(emu, JSON.stringify([rawEvent("x")]), { "content-type": "application/json" }), 400);
      assert.match(error.message, /The Content-Type header is either missing or it doesn't have a valid value/);
      await eventGridError(await post(emu, JSON.stringify([rawEvent("x")]), { "content-type": "" }), 400);
      assert.equal(emu.events.length, 0);
    }));

  test("api-version must be 2018-01-01", () =>
    withEmulator({ key: KEY }, async (emu) => {
      await eventGridError(await post(emu, JSON.stringify([rawEvent("v")]), {}, ""), 400);
      await eventGridError(await post(emu, JSON.stringify([rawEvent("v")]), {}, "?api-version=2024-06-01"), 400);
      assert.equal(emu.events.length, 0);
    }));

  test("body shape: not JSON, batch type with an object, single type with an object", () =>
    withEmulator({ key: KEY }, async (emu) => {
      await eventGridError(await post(emu, "[{not json"), 400);
      await eventGridError(await post(emu, JSON.stringify(rawEvent("o1"))), 400);
      const single = await post(emu, JSON.stringify(rawEvent("o2")), { "content-type": "application/cloudevents+json; charset=utf-8" });
      assert.equal(single.status, 200);
      assert.equal(await single.text(), "");
      assert.deepEqual(emu.events.map((e) => e.id), ["o2"]);
    }));

  const invalid: [string, Record<string, unknown>, RegExp][] = [
    ["missing source", rawEvent("bad", { source: undefined }), /'source'/],
    ["empty type", rawEvent("bad", { type: "" }), /'type'/],
    ["attribute name with upper case and underscore", rawEvent("bad", { Bad_Name: "x" }), /Bad_Name/],
    ["specversion 0.3", rawEvent("bad", { specversion: "0.3" }), /specversion/],
    ["time not RFC 3339", rawEvent("bad", { time: "yesterday" }), /'time'/],
    ["time with month 13", rawEvent("bad", { time: "2024-13-01T00:00:00Z" }), /'time'/],
    ["not an object", 42 as unknown as Record<string, unknown>, /object/],
  ];
  for (const [name, bad, problem] of invalid) {
    test(`invalid CloudEvent (${name}) -> 400 naming the index, nothing stored`, () =>
      withEmulator({ key: KEY }, async (emu) => {
        const error = await eventGridError(await post(emu, JSON.stringify([rawEvent("good"), bad])), 400);
        assert.match(error.message, /index 1/);
        assert.match(error.message, problem);
        assert.equal(emu.events.length, 0);
        assert.equal(emu.requests[0]?.status, 400);
      }));
  }

  test("time with an offset and no fraction is valid", () =>
    withEmulator({ key: KEY }, async (emu) => {
      const res = await post(emu, JSON.stringify([rawEvent("t1", { time: "2024-02-29T23:59:60+05:30" })]));
      assert.equal(res.status, 200);
      assert.equal(emu.events.length, 1);
    }));

  test("more than maxEventsPerRequest -> 413", () =>
    withEmulator({ key: KEY, maxEventsPerRequest: 3 }, async (emu) => {
      const four = ["1", "2", "3", "4"].map((id) => rawEvent(id));
      await eventGridError(await post(emu, JSON.stringify(four)), 413);
      assert.equal(emu.events.length, 0);
      assert.equal((await post(emu, JSON.stringify(four.slice(0, 3)))).status, 200);
      assert.equal(emu.events.length, 3);
    }));

  test("an event over maxEventBytes -> 413 naming the index", () =>
    withEmulator({ key: KEY, maxEventBytes: 500 }, async (emu) => {
      const body = JSON.stringify([rawEvent("small"), rawEvent("large", { data: "x".repeat(600) })]);
      const error = await eventGridError(await post(emu, body), 413);
      assert.match(error.message, /index 1/);
      assert.equal(emu.events.length, 0);
    }));

  test("event size is the byte length of JSON.stringify of the parsed event", () =>
    withEmulator({ key: KEY, maxEventBytes: 300 }, async (emu) => {
      const exact = (data: string): Record<string, unknown> => rawEvent("x", { data });
      const base = Buffer.byteLength(JSON.stringify(exact("")));
      // Exactly at the limit is accepted, one byte over is not (multi-byte characters count as bytes).
      const fill = "é".repeat(Math.floor((300 - base) / 2)) + "a".repeat((300 - base) % 2);
      assert.equal(Buffer.byteLength(JSON.stringify(exact(fill))), 300);
      assert.equal((await post(emu, JSON.stringify([exact(fill)]))).status, 200);
      await eventGridError(await post(emu, JSON.stringify([exact(fill + "a")])), 413);
      // Whitespace in the request does not count...
      const padded = `[ ${JSON.stringify(rawEvent("pad")).replaceAll('","', `",${" ".repeat(200)}"`)} ]`;
      assert.ok(Buffer.byteLength(padded) > 1000);
      assert.equal((await post(emu, padded)).status, 200);
      // ...but numbers that serialize longer than they were written do.
      const tricky = JSON.stringify(rawEvent("num", { data: "X" })).replace('"X"', `[${Array(12).fill("1e20").join(",")}]`);
      assert.ok(Buffer.byteLength(tricky) < 300);
      // Event 0's escaped quotes and brackets must not confuse the per-event size bounds.
      const first = String.raw`{"source":"\\","id":"s\"},{\"","type":"t","specversion":"1.0"}`;
      const error = await eventGridError(await post(emu, `[${first},${tricky}]`), 413);
      assert.match(error.message, /index 1/);
      assert.equal(emu.events.length, 2);
    }));

  test("a body over maxRequestBytes -> 413, and the connection stays usable", () =>
    withEmulator({ key: KEY, maxRequestBytes: 2000 }, async (emu) => {
      await eventGridError(await post(emu, JSON.stringify([rawEvent("big", { data: "x".repeat(5000) })])), 413);
      assert.equal((await post(emu, JSON.stringify([rawEvent("ok")]))).status, 200);
      assert.deepEqual(emu.events.map((e) => e.id), ["ok"]);
      assert.deepEqual(emu.requests.map((r) => r.status), [413, 200]);
    }));

  test("a chunked body (no content-length) over maxRequestBytes -> 413 while streaming", () =>
    withEmulator({ key: KEY, maxRequestBytes: 10_000 }, async (emu) => {
      const chunk = new TextEncoder().encode(JSON.stringify(rawEvent("c", { data: "x".repeat(4000) })) + ",");
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          // 100 chunks of ~4 KB: the emulator must give up buffering long before the end.
          if (sent++ < 100) controller.enqueue(chunk);
          else controller.close();
        },
      });
      const res = await fetch(emu.url + "?api-version=2018-01-01", {
        method: "POST",
        headers: { "content-type": "application/cloudevents-batch+json", "aeg-sas-key": KEY },
        body,
        duplex: "half",
      } as RequestInit);
      const error = await eventGridError(res, 413);
      assert.equal(error.code, "RequestEntityTooLarge");
      const record = emu.requests[0];
      assert.equal(record?.headers["content-length"], undefined);
      assert.ok(record !== undefined && record.bytes > 10_000 && record.bytes < 100 * chunk.length, `bytes read: ${record?.bytes}`);
    }));

  test("other paths -> 404, other methods -> 405 with Allow", () =>
    withEmulator({ key: KEY }, async (emu) => {
      const notFound = await fetch(new URL("/api/other?api-version=2018-01-01", emu.url), { method: "POST", headers: { "aeg-sas-key": KEY } });
      await eventGridError(notFound, 404);
      const get = await fetch(emu.url, { headers: { "aeg-sas-key": KEY } });
      await eventGridError(get, 405);
      assert.equal(get.headers.get("allow"), "POST, OPTIONS");
      assert.deepEqual(emu.requests.map((r) => [r.method, r.status]), [["POST", 404], ["GET", 405]]);
    }));
});

describe("OPTIONS", () => {
  test("reports the configured input schema and needs auth", () =>
    withEmulator({ key: KEY, inputSchema: "EventGridEvent" }, async (emu) => {
      const ok = await fetch(emu.url, { method: "OPTIONS", headers: { "aeg-sas-key": KEY } });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("aeg-input-event-schema"), "EventGridEvent");
      assert.equal(ok.headers.get("allow"), "POST,OPTIONS");
      assert.equal(ok.headers.get("api-supported-versions"), "2018-01-01");
      assert.match(ok.headers.get("x-ms-request-id") ?? "", /^[0-9a-f-]{36}$/);
      const denied = await fetch(emu.url, { method: "OPTIONS" });
      await eventGridError(denied, 401);
      assert.equal(denied.headers.get("aeg-input-event-schema"), null);
      assert.deepEqual(emu.requests.map((r) => [r.method, r.status]), [["OPTIONS", 200], ["OPTIONS", 401]]);
    }));

  test("defaults to CloudEventV10", () =>
    withEmulator({}, async (emu) => {
      const res = await fetch(emu.url, { method: "OPTIONS" });
      assert.equal(res.headers.get("aeg-input-event-schema"), "CloudEventV10");
    }));
});

describe("scripted answers and faults", () => {
  test("503 with Retry-After, then normal behaviour", () =>
    withEmulator({ key: KEY }, async (emu) => {
      emu.script({ status: 503, retryAfter: 7 });
      const publisher = client(emu);
      await assert.rejects(publisher.send([input("r1")]), (err: unknown) => {
        restError(503, "ServiceUnavailable")(err);
        const response = (err as { response?: { headers: { get(name: string): string | undefined } } }).response;
        assert.equal(response?.headers.get("retry-after"), "7");
        return true;
      });
      assert.equal(emu.events.length, 0);
      await publisher.send([input("r1")]);
      assert.deepEqual(emu.events.map((e) => e.id), ["r1"]);
      assert.deepEqual(emu.requests.map((r) => r.status), [503, 200]);
    }));

  test("scripted message and default bodies", () =>
    withEmulator({}, async (emu) => {
      emu.script({ status: 429, message: "slow down" }, { status: 500 });
      const throttled = await eventGridError(await post(emu, JSON.stringify([rawEvent("m1")])), 429);
      assert.equal(throttled.message, "slow down");
      await eventGridError(await post(emu, JSON.stringify([rawEvent("m1")])), 500);
      assert.equal((await post(emu, JSON.stringify([rawEvent("m1")]))).status, 200);
      assert.equal(emu.events.length, 1);
    }));

  test("drop: the client sees a transport error without a status", () =>
    withEmulator({ key: KEY }, async (emu) => {
      emu.script({ status: 200, drop: true });
      const publisher = client(emu);
      await assert.rejects(publisher.send([input("d1")]), restError(undefined));
      assert.equal(emu.requests[0]?.status, "dropped");
      assert.equal(emu.events.length, 0);
      await publisher.send([input("d1")]);
      assert.equal(emu.events.length, 1);
    }));

  test("delayMs: the request is recorded before the (slow) success answer", () =>
    withEmulator({ key: KEY }, async (emu) => {
      emu.script({ status: 200, delayMs: 300 });
      let answered = false;
      const sending = client(emu).send([input("slow")]).then(() => {
        answered = true;
      });
      await emu.waitForRequests(1);
      assert.equal(answered, false);
      assert.equal(emu.events.length, 0, "events are stored when the delayed answer is sent");
      await sending;
      assert.deepEqual(emu.events.map((e) => e.id), ["slow"]);
    }));

  test("close() does not hang on an in-flight delayed request", { timeout: 10_000 }, async () => {
    const emu = await startEmulator({ key: KEY });
    emu.script({ status: 200, delayMs: 60_000 });
    const sending = client(emu).send([input("stuck")]);
    await emu.waitForRequests(1);
    await emu.close();
    await assert.rejects(sending, restError(undefined));
    assert.equal(emu.requests[0]?.status, "dropped");
    assert.equal(emu.events.length, 0);
  });

  test("setFault rejects requests that contain a poisoned event", () =>
    withEmulator({ key: KEY }, async (emu) => {
      const seen: number[] = [];
      emu.setFault(({ events, requestNumber }) => {
        seen.push(requestNumber);
        return events.some((e) => e.id === "poison") ? { status: 400, message: "poisoned event" } : undefined;
      });
      const publisher = client(emu);
      await assert.rejects(publisher.send([input("p1"), input("poison")]), (err: unknown) => {
        restError(400)(err);
        assert.match((err as Error).message, /poisoned event/);
        return true;
      });
      await publisher.send([input("p1")]);
      assert.deepEqual(seen, [1, 2]);
      assert.deepEqual(emu.events.map((e) => e.id), ["p1"]);
      emu.setFault(undefined);
      await publisher.send([input("poison")]);
      assert.equal(emu.events.length, 2);
    }));

  test("reset clears events, requests, scripts and the fault", () =>
    withEmulator({}, async (emu) => {
      const events = emu.events;
      await post(emu, JSON.stringify([rawEvent("z1")]));
      emu.script({ status: 503 });
      emu.setFault(() => ({ status: 500 }));
      emu.reset();
      assert.equal(emu.events.length, 0);
      assert.equal(emu.requests.length, 0);
      assert.equal((await post(emu, JSON.stringify([rawEvent("z2")]))).status, 200);
      assert.equal(events, emu.events, "the same array instance is kept");
      assert.deepEqual(events.map((e) => e.id), ["z2"]);
    }));
});

describe("waiting and output", () => {
  test("waitForEvents resolves on arrival and rejects after its timeout", () =>
    withEmulator({ key: KEY }, async (emu) => {
      const waiting = emu.waitForEvents(2);
      await client(emu).send([input("w1"), input("w2")]);
      await waiting;
      await assert.rejects(emu.waitForEvents(3, 100), /timed out after 100 ms waiting for 3 events; the emulator has 2/);
      await assert.rejects(emu.waitForRequests(2, 50), /timed out after 50 ms/);
    }));

  test("outFile gets one JSON line per accepted event", async () => {
    const dir = await mkdtemp(join(tmpdir(), "eg-emulator-"));
    try {
      const outFile = join(dir, "events.jsonl");
      await withEmulator({ key: KEY, outFile }, async (emu) => {
        const publisher = client(emu);
        await publisher.send([input("f1"), input("f2", { extensionAttributes: { auth0tenant: "acme" } })]);
        await post(emu, JSON.stringify([rawEvent("rejected", { specversion: "0.3" })]));
        await publisher.send([input("f3")]);
      });
      const lines = (await readFile(outFile, "utf8")).split("\n");
      assert.equal(lines.pop(), "", "the file ends with a newline");
      const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.deepEqual(parsed.map((e) => e.id), ["f1", "f2", "f3"]);
      assert.equal(parsed[1]?.auth0tenant, "acme");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("retainEvents: false keeps counts only (events, requests by status); waits and reset use them", () =>
    withEmulator({ key: KEY, retainEvents: false }, async (emu) => {
      const waiting = emu.waitForEvents(3);
      await client(emu).send([input("n1"), input("n2")]);
      emu.script({ status: 503 });
      await assert.rejects(client(emu).send([input("n3")]), restError(503));
      assert.equal((await post(emu, JSON.stringify([rawEvent("n3")]))).status, 200);
      await waiting;
      await eventGridError(await post(emu, "[1]"), 400);
      await fetch(emu.url, { method: "OPTIONS", headers: { "aeg-sas-key": KEY } });
      assert.equal(emu.acceptedCount, 3);
      assert.deepEqual(emu.statusCounts, { "200": 3, "503": 1, "400": 1 });
      assert.equal(emu.events.length, 0, "no event is kept");
      assert.equal(emu.requests.length, 0, "no request record (nor its headers) is kept");
      await emu.waitForRequests(5);
      await assert.rejects(emu.waitForEvents(4, 50), /the emulator has 3/);
      emu.reset();
      assert.equal(emu.acceptedCount, 0);
      assert.deepEqual(emu.statusCounts, {});
    }));

  test("acceptedCount and statusCounts are kept when events are retained too", () =>
    withEmulator({ key: KEY }, async (emu) => {
      await client(emu).send([input("k1"), input("k2")]);
      await eventGridError(await post(emu, JSON.stringify([rawEvent("bad", { specversion: "0.3" })])), 400);
      assert.equal(emu.acceptedCount, 2);
      assert.equal(emu.events.length, 2);
      assert.deepEqual(emu.statusCounts, { "200": 1, "400": 1 });
      assert.equal(emu.requests.length, 2);
    }));
});

/** Resolves with the first line a stream prints; rejects if it ends first. */
async function firstLine(stream: Readable): Promise<string> {
  let text = "";
  for await (const chunk of stream) {
    text += String(chunk);
    const end = text.indexOf("\n");
    if (end >= 0) return text.slice(0, end);
  }
  throw new Error(`stream ended before a full line: ${JSON.stringify(text)}`);
}

describe("CLI", () => {
  test("starts, prints the endpoint, accepts a publish, exits 0 on SIGTERM", { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/emulator/cli.ts", "--port", "0", "--key", KEY, "--input-schema", "CloudEventV10"], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      const line = await firstLine(child.stdout);
      const url = /EVENTGRID_ENDPOINT=(\S+)/.exec(line)?.[1];
      assert.ok(url, `no endpoint in: ${line}`);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/api\/events$/);
      assert.match(line, new RegExp(`EVENTGRID_KEY=${KEY}`));
      assert.match(line, /EVENTGRID_ALLOW_INSECURE=true/);
      const publisher = new EventGridPublisherClient(url, "CloudEvent", new AzureKeyCredential(KEY), CLIENT_OPTIONS);
      await publisher.send([input("cli1")]);
      await assert.rejects(
        new EventGridPublisherClient(url, "CloudEvent", new AzureKeyCredential("wrong"), CLIENT_OPTIONS).send([input("cli2")]),
        restError(401),
      );
      child.kill("SIGTERM");
      const [code, signal] = await exited;
      assert.equal(signal, null);
      assert.equal(code, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });

  test("--no-retain and --delay-ms: counts only, every publish answered after the delay", { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/emulator/cli.ts", "--port", "0", "--key", KEY, "--no-retain", "--delay-ms", "150"], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      const line = await firstLine(child.stdout);
      assert.match(line, /counting only, answering after 150 ms/);
      const url = /EVENTGRID_ENDPOINT=(\S+)/.exec(line)?.[1];
      assert.ok(url, `no endpoint in: ${line}`);
      const started = performance.now();
      await new EventGridPublisherClient(url, "CloudEvent", new AzureKeyCredential(KEY), CLIENT_OPTIONS).send([input("slow1")]);
      assert.ok(performance.now() - started >= 140, "answered after the delay");
      child.kill("SIGTERM");
      const [code] = await exited;
      assert.equal(code, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });

  test("--delay-ms must be a whole number of milliseconds", { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/emulator/cli.ts", "--delay-ms", "1.5"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += String(chunk);
    });
    const [code] = (await once(child, "close")) as [number | null];
    assert.equal(code, 2);
    assert.match(stderr, /--delay-ms must be an integer from 0 to 600000, got '1\.5'/);
  });

  test("invalid arguments: one line on stderr, exit 2", { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/emulator/cli.ts", "--port", "not-a-port"], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += String(chunk);
    });
    const [code] = (await once(child, "close")) as [number | null];
    assert.equal(code, 2);
    assert.match(stderr, /^eventgrid-emulator: --port must be an integer from 0 to 65535, got 'not-a-port'\n$/);
  });
});
