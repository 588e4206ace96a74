// The benchmark's load generator: a separate process (forked by bench/run.mjs with an IPC
// channel) that posts Auth0-like JSON Lines bodies with undici and records every request.
//
// Modes:
//   closed  `concurrency` senders, each posting its next body as soon as the previous answer
//           arrived (maximum throughput; S4's senders also pause after a non-2xx answer and then
//           redeliver the same body, like Auth0 does).
//   rate    open loop: requests are due at fixed times (`rate` per second) whether or not earlier
//           ones were answered; latency is measured from the time a request was due, so a slow
//           server cannot hide queueing (no coordinated omission). Requests that would exceed
//           `maxOutstanding` (5,000) are not sent and are counted as `skipped`. The rate ramps
//           up from 10% over `rampMs` (the warm-up).
//
// Protocol: the parent sends {cmd: "start", config}; this process answers {type: "started"},
// runs until {cmd: "stop"}, waits up to `drainMs` for answers still outstanding, then sends
// {type: "result", ...} with per-request arrays (epoch milliseconds) and exits. Meanwhile it sends
// {type: "progress", t, acked} every 250 ms (events acknowledged with a 2xx so far).
import { Client, Pool } from "undici";
import { createWorkload } from "./workload.mjs";

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Recorder {
  constructor() {
    this.n = 0;
    this.cap = 1 << 16;
    this.alloc();
  }
  alloc() {
    const grow = (Type, old) => {
      const a = new Type(this.cap);
      if (old) a.set(old.subarray(0, this.n));
      return a;
    };
    this.due = grow(Float64Array, this.due);
    this.start = grow(Float64Array, this.start);
    this.end = grow(Float64Array, this.end);
    this.status = grow(Int16Array, this.status);
    this.events = grow(Int32Array, this.events);
    this.retryAfter = grow(Uint8Array, this.retryAfter);
  }
  add(due, start, end, status, events, retryAfter) {
    if (this.n === this.cap) {
      this.cap *= 2;
      this.alloc();
    }
    const i = this.n++;
    this.due[i] = due;
    this.start[i] = start;
    this.end[i] = end;
    this.status[i] = status;
    this.events[i] = events;
    this.retryAfter[i] = retryAfter ? 1 : 0;
  }
  export() {
    const cut = (a) => a.slice(0, this.n);
    return { due: cut(this.due), start: cut(this.start), end: cut(this.end), status: cut(this.status), events: cut(this.events), retryAfter: cut(this.retryAfter) };
  }
}

async function run(config) {
  const url = new URL(config.url);
  const workload = createWorkload({ prefix: config.idPrefix, shuffleSeed: config.seed ?? 1 });
  const clientOptions = {
    pipelining: 1,
    headersTimeout: config.timeoutMs ?? 60_000,
    bodyTimeout: config.timeoutMs ?? 60_000,
    connectTimeout: 10_000,
  };
  // Closed loop: one connection per sender (like independent senders; no shared queue in the
  // generator). Open loop: a pool of `connections` (256) keep-alive connections.
  const pool = config.mode === "rate" ? new Pool(url.origin, { ...clientOptions, connections: config.connections ?? 256 }) : undefined;
  const senders = config.mode === "closed" ? Array.from({ length: config.concurrency }, () => new Client(url.origin, clientOptions)) : [];
  const headers = { authorization: config.token, "content-type": "application/x-ndjson" };
  const n = config.eventsPerRequest;
  const rec = new Recorder();
  let running = true;
  let outstanding = 0;
  let skipped = 0;
  let transportErrors = 0;
  let lastError = "";
  let maxLagMs = 0;
  let acked = 0;
  const cpu0 = process.cpuUsage();
  // Every 250 ms: events acknowledged so far (the driver watches recovery with it).
  const progress = setInterval(() => process.send({ type: "progress", t: now(), acked }), 250);

  async function send(dispatcher, body, due) {
    const start = now();
    outstanding++;
    try {
      const res = await dispatcher.request({ path: url.pathname, method: "POST", headers, body });
      await res.body.dump({ limit: 1 << 20 });
      rec.add(due, start, now(), res.statusCode, n, res.headers["retry-after"] !== undefined);
      if (res.statusCode >= 200 && res.statusCode < 300) acked += n;
      return res.statusCode;
    } catch (error) {
      transportErrors++;
      lastError = error?.code ?? error?.message ?? String(error);
      rec.add(due, start, now(), 0, n, false);
      return 0;
    } finally {
      outstanding--;
    }
  }

  const done = [];
  if (config.mode === "closed") {
    const [pauseMin, pauseMax] = config.pauseOnErrorMs ?? [0, 0];
    for (let w = 0; w < config.concurrency; w++) {
      done.push((async () => {
        let body;
        while (running) {
          body ??= workload.makeBody(n);
          const status = await send(senders[w], body, now());
          if (status >= 200 && status < 300) body = undefined;
          else {
            if (!config.redeliver) body = undefined;
            const pause = pauseMin + Math.random() * (pauseMax - pauseMin);
            if (pause > 0 && running) await sleep(pause);
          }
        }
      })());
    }
  } else {
    // The rate ramps up linearly from 10% to 100% over `rampMs` (the warm-up), so a cold
    // server (JIT, connection set-up) does not start the measured window with a backlog.
    const rate = config.rate;
    const rampMs = config.rampMs ?? 0;
    const maxOutstanding = config.maxOutstanding ?? 5_000;
    const t0 = now();
    // Requests due by time t (ms since t0): the integral of the ramped rate.
    const dueBy = (t) => {
      if (t <= 0) return 0;
      if (t < rampMs) return (rate / 1000) * (0.1 * t + (0.45 * t * t) / rampMs);
      return (rate / 1000) * (0.55 * rampMs + (t - rampMs));
    };
    // Inverse of dueBy: when the k-th request (0-based) is due.
    const dueAtOf = (k) => {
      const atRampEnd = dueBy(rampMs);
      if (k >= atRampEnd) return t0 + rampMs + ((k - atRampEnd) * 1000) / rate;
      // 0.45/R t^2 + 0.1 t - 1000 k / rate = 0
      const a = 0.45 / rampMs;
      const c = -(k * 1000) / rate;
      return t0 + (-0.1 + Math.sqrt(0.01 - 4 * a * c)) / (2 * a);
    };
    let issued = 0;
    done.push(new Promise((resolve) => {
      const tick = () => {
        if (!running) return resolve();
        const t = now();
        const due = Math.floor(dueBy(t - t0));
        if (due > issued) maxLagMs = Math.max(maxLagMs, t - dueAtOf(issued));
        while (issued < due) {
          const dueAt = dueAtOf(issued);
          issued++;
          if (outstanding >= maxOutstanding) {
            skipped++;
            continue;
          }
          void send(pool, workload.makeBody(n), dueAt);
        }
        setTimeout(tick, 1);
      };
      tick();
    }));
  }

  await new Promise((resolve) => {
    process.on("message", (msg) => {
      if (msg?.cmd === "stop") resolve();
    });
    process.send({ type: "started", meanEventBytes: workload.meanEventBytes, codes: workload.codes });
  });
  running = false;
  clearInterval(progress);
  const drainUntil = now() + (config.drainMs ?? 15_000);
  while (outstanding > 0 && now() < drainUntil) await sleep(20);
  const unanswered = outstanding;
  const cpu = process.cpuUsage(cpu0);
  const data = rec.export();
  process.send({
    type: "result",
    data,
    skipped,
    unanswered,
    transportErrors,
    lastError,
    maxLagMs,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    meanEventBytes: workload.meanEventBytes,
  }, () => {
    Promise.allSettled([pool?.destroy(), ...senders.map((c) => c.destroy())]).finally(() => process.exit(0));
  });
}

process.once("message", (msg) => {
  if (msg?.cmd !== "start") return;
  run(msg.config).catch((error) => {
    process.send?.({ type: "error", message: error?.stack ?? String(error) });
    process.exit(1);
  });
});
