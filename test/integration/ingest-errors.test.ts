// The HTTP source's last line of defence: a failure inside the bridge (a bug, thrown at once or
// later) is answered 500 with a JSON error and logged, and the server keeps answering. The
// pipeline here is a stand-in that fails on purpose: a real one has no way to be made to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tokenVerifier } from "../../src/ingest/auth.js";
import { createIngestApp, type IngestAppOptions } from "../../src/ingest/app.js";
import { createLogger } from "../../src/observability/logger.js";
import { createMetrics } from "../../src/observability/metrics.js";
import { LogCapture } from "../helpers/harness.js";

const TOKEN = "ingest-errors-token";

async function start(process: IngestAppOptions["pipeline"]["process"]) {
  const logs = new LogCapture();
  const handler = createIngestApp({
    streams: [{ name: "default", path: "/api/logs", verifyToken: tokenVerifier([TOKEN]) }],
    maxBodyBytes: 1_000_000,
    pipeline: {
      process,
      rejectBody: () => Promise.resolve({ status: 400, body: { error: "invalid_body", message: "not JSON" } }),
      admit: () => ({ resize: () => true, release: () => undefined }),
      throttled: () => ({ status: 429, retryAfterSeconds: 1, body: { error: "too_busy", message: "busy" } }),
      refusingFast: false,
      unavailable: () => ({ status: 503, retryAfterSeconds: 1, body: { error: "eventgrid_unavailable", message: "down" } }),
    },
    logger: createLogger({ level: "info", format: "json", secrets: [TOKEN], stream: logs }),
    metrics: createMetrics({ version: "0.0.0-test", defaultMetrics: false }),
  });
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/logs`;
  const post = async () => {
    const res = await fetch(url, { method: "POST", headers: { authorization: TOKEN }, body: '{"log_id":"1","data":{"type":"s"}}' });
    return { status: res.status, type: res.headers.get("content-type"), json: (await res.json()) as Record<string, unknown> };
  };
  return { logs, post, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const ok = () => Promise.resolve({ status: 200 as const, body: { received: 1, published: 1, filtered: 0, rejected: 0, duplicates: 0, dead_lettered: 0, rejections: [] } });

for (const [name, failing] of [
  ["thrown while the body is processed", () => { throw new Error("boom (sync)"); }],
  ["rejected later", () => Promise.reject(new Error("boom (async)"))],
] as const) {
  test(`a failure ${name} is answered 500 with a JSON error, logged, and the next request is served`, async () => {
    let calls = 0;
    const stack = await start(() => (++calls === 1 ? failing() : ok()) as ReturnType<typeof ok>);
    try {
      const first = await stack.post();
      assert.equal(first.status, 500);
      assert.equal(first.type, "application/json; charset=utf-8");
      assert.equal(first.json.error, "internal_error");
      const logged = stack.logs.find("ingest request failed unexpectedly");
      assert.equal(logged.length, 1);
      assert.match(String(logged[0]!.error), /boom/);
      const second = await stack.post();
      assert.equal(second.status, 200);
      assert.equal(second.json.published, 1);
    } finally {
      await stack.close();
    }
  });
}
