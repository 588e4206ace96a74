// The floor the bridge is compared with: the simplest correct Auth0 -> Event Grid relay on bare
// node:http. Per request: check the token, read the body, parse JSON Lines, wrap each record in a
// CloudEvent by hand, POST the batch(es) to Event Grid over a keep-alive agent, and answer 200
// once Event Grid said 200 to all of them, 503 (Retry-After) otherwise. No retries, batching
// across requests, dead-letter store, dedupe, metrics, back-pressure or logging.
//
//   PORT=0 AUTH0_STREAM_TOKEN=t EVENTGRID_ENDPOINT=http://127.0.0.1:4000/api/events EVENTGRID_KEY=k \
//     node bench/baseline-relay.mjs        # prints "baseline relay listening on <port>"
import http from "node:http";
import https from "node:https";

const token = process.env.AUTH0_STREAM_TOKEN ?? "";
const endpoint = new URL(process.env.EVENTGRID_ENDPOINT ?? "http://127.0.0.1:4000/api/events");
endpoint.searchParams.set("api-version", "2018-01-01");
const key = process.env.EVENTGRID_KEY ?? "";
const maxBodyBytes = 5 * 1024 * 1024;
const maxBatchBytes = 1024 * 1024; // Event Grid's limit per request
const transport = endpoint.protocol === "https:" ? https : http;
const agent = new transport.Agent({ keepAlive: true, maxSockets: 256 });

function toCloudEvent(record) {
  const data = record.data;
  const time = new Date(data.date);
  return {
    specversion: "1.0",
    id: String(record.log_id ?? data.log_id),
    type: `com.auth0.log.${data.type}`,
    source: `urn:auth0:${data.hostname ?? data.tenant_name ?? "unknown"}`,
    time: Number.isNaN(time.getTime()) ? new Date().toISOString() : time.toISOString(),
    datacontenttype: "application/json",
    data,
    auth0code: data.type,
  };
}

function publish(body) {
  return new Promise((resolve) => {
    const req = transport.request(endpoint, {
      method: "POST",
      agent,
      headers: {
        "aeg-sas-key": key,
        "content-type": "application/cloudevents-batch+json; charset=utf-8",
        "content-length": Buffer.byteLength(body),
      },
    }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode === 200));
      res.on("error", () => resolve(false));
    });
    req.on("error", () => resolve(false));
    req.end(body);
  });
}

function answer(res, status, body, extra = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...extra });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const auth = req.headers.authorization ?? "";
  if (req.method !== "POST") return answer(res, 405, { error: "method_not_allowed" }, { allow: "POST" });
  if (!token || (auth !== token && auth !== `Bearer ${token}`)) return answer(res, 401, { error: "unauthorized" }, { connection: "close" });
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > maxBodyBytes) {
      answer(res, 413, { error: "body_too_large" }, { connection: "close" });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", async () => {
    if (size > maxBodyBytes) return;
    let events;
    try {
      events = Buffer.concat(chunks, size).toString("utf8").split("\n").filter((l) => l.trim() !== "").map((l) => toCloudEvent(JSON.parse(l)));
    } catch (error) {
      return answer(res, 400, { error: "invalid_body", message: error.message });
    }
    // Batches of at most 1 MB (Auth0 sends at most 100 events, so usually one).
    const bodies = [];
    let parts = [];
    let bytes = 2;
    for (const event of events) {
      const json = JSON.stringify(event);
      const b = Buffer.byteLength(json) + 1;
      if (parts.length > 0 && bytes + b > maxBatchBytes) {
        bodies.push(`[${parts.join(",")}]`);
        parts = [];
        bytes = 2;
      }
      parts.push(json);
      bytes += b;
    }
    if (parts.length > 0) bodies.push(`[${parts.join(",")}]`);
    const ok = (await Promise.all(bodies.map(publish))).every(Boolean);
    if (ok) answer(res, 200, { received: events.length, published: events.length });
    else answer(res, 503, { error: "delivery_failed" }, { "retry-after": "30" });
  });
});
server.keepAliveTimeout = 65_000;

server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  process.stdout.write(`baseline relay listening on ${server.address().port}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", () => {
  stop();
  server.closeAllConnections();
});
process.on("SIGINT", () => process.exit(0));
