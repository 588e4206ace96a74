#!/usr/bin/env node
// Benchmark harness (`npm run bench`; not part of `npm test`). See BENCHMARKS.md.
//
// Processes: this driver runs the Event Grid emulator in-process (so it can switch it from down
// to up mid-run with setFault, and count what it accepted without keeping it), starts the system
// under test as a separate process (the bridge: `node dist/main.js`; or the floor,
// bench/baseline-relay.mjs), and drives load from a third process (bench/loadgen.mjs, undici).
// It samples the system under test's CPU time (/proc/<pid>/stat) and memory (/proc/<pid>/status),
// and prints a table of medians over --runs runs, bridge and baseline side by side.
//
//   npm run bench                          # every scenario, bridge and baseline, 3 runs (~10.5 min)
//   npm run bench -- --scenario 2 --runs 1 --duration 5
//   npm run bench -- --smoke               # ~10 s check of scenarios 1 and 2 (one rate), exit 1 if broken
//   npm run bench -- --profile             # scenario 1 once with `node --cpu-prof`, then the top functions
//                                          # (--profile --scenario 2@2000: that point instead)
// Flags: --runs N (3)  --scenario N[,N] (all)  --duration S (per point: S1 12, S2 4, S3 8)
//        --warmup S (3)  --down S (S4's outage, 30)
//        (--scenario also takes one point of scenario 2: 2@500, 2@2000, 2@5000, 2@max)
//        --target bridge|baseline|both (both)  --env NAME=VALUE (bridge setting; repeatable)
//        --node-arg ARG (extra node option for the bridge, e.g. --trace-gc; repeatable)
//        --node-defaults (run the bridge without the image's NODE_OPTIONS heap settings)
//        --concurrency N (senders of the closed-loop points, instead of each scenario's own)
//        --timeline (print events/s and the slowest answer per second of each point)
//        --json FILE (write all results)  --raw (with --json: every request's times and status)
//        --keep (keep the temp dir: the bridge's log and dead-letter store)
//        --no-build  --profile-dir DIR  --quiet-wait S (60; 0 in --smoke: wait for other processes'
//        CPU use to drop under 0.3 cores before each measurement)
import { execFileSync, execSync, fork, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, openSync, closeSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BENCH = join(ROOT, "bench");
const TOKEN = "bench-stream-token-0123456789abcdef";
const KEY = "bench-eventgrid-key";
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- arguments

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    scenario: { type: "string" },
    duration: { type: "string" },
    warmup: { type: "string", default: "3" },
    down: { type: "string", default: "30" },
    target: { type: "string", default: "both" },
    env: { type: "string", multiple: true, default: [] },
    "node-arg": { type: "string", multiple: true, default: [] },
    "node-defaults": { type: "boolean", default: false },
    concurrency: { type: "string" },
    json: { type: "string" },
    keep: { type: "boolean", default: false },
    smoke: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    "profile-dir": { type: "string" },
    "no-build": { type: "boolean", default: false },
    "quiet-wait": { type: "string" },
    raw: { type: "boolean", default: false },
    timeline: { type: "boolean", default: false },
  },
  strict: true,
});

const smoke = args.smoke;
// The bridge runs with the image's NODE_OPTIONS (its heap settings), as it is deployed;
// --node-defaults runs it with Node's own defaults instead. The baseline always runs with defaults.
const IMAGE_NODE_ARGS = args["node-defaults"] ? [] : (/^ENV NODE_OPTIONS="([^"]*)"$/m.exec(readFileSync(join(ROOT, "Dockerfile"), "utf8"))?.[1] ?? "").split(/\s+/).filter(Boolean);
const runs = smoke ? 1 : positiveInt("--runs", args.runs);
// Measured seconds per point: --duration, else each point's own (S1 is long enough to include the
// bridge's dedupe window filling up, which changes its throughput; see BENCHMARKS.md).
const durationOverride = smoke ? 1.5 : args.duration !== undefined ? positiveNumber("--duration", args.duration) : undefined;
const durationOf = (point) => durationOverride ?? point.durationS;
const warmupS = smoke ? 0.5 : nonNegativeNumber("--warmup", args.warmup);
const downS = positiveNumber("--down", args.down);
// Before each measurement, wait up to this long for other processes to leave the CPUs alone.
const quietWaitS = args["quiet-wait"] !== undefined ? nonNegativeNumber("--quiet-wait", args["quiet-wait"]) : smoke ? 0 : 60;
const targets = args.target === "both" ? ["bridge", "baseline"] : [args.target];
if (!targets.every((t) => t === "bridge" || t === "baseline")) fail(`--target must be bridge, baseline or both, got '${args.target}'`);
const bridgeEnv = Object.fromEntries(args.env.map((kv) => {
  const i = kv.indexOf("=");
  if (i <= 0) fail(`--env takes NAME=VALUE, got '${kv}'`);
  return [kv.slice(0, i), kv.slice(i + 1)];
}));

function fail(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}
function positiveInt(flag, v) {
  if (!/^\d+$/.test(v) || Number(v) < 1) fail(`${flag} must be a positive integer, got '${v}'`);
  return Number(v);
}
function positiveNumber(flag, v) {
  const n = Number(v);
  if (!(n > 0)) fail(`${flag} must be a positive number, got '${v}'`);
  return n;
}
function nonNegativeNumber(flag, v) {
  const n = Number(v);
  if (!(n >= 0)) fail(`${flag} must be a number >= 0, got '${v}'`);
  return n;
}

// ---------------------------------------------------------------- scenarios

// One "point" = one measurement (one load shape against one system under test).
const SCENARIOS = {
  1: [{ id: "1", label: "S1 100-event requests, max throughput (16 senders)", mode: "closed", concurrency: 16, eventsPerRequest: 100, durationS: 12 }],
  2: [
    { id: "2@500", label: "S2 1 event/request, 500 req/s", mode: "rate", rate: 500, eventsPerRequest: 1, durationS: 4 },
    { id: "2@2000", label: "S2 1 event/request, 2,000 req/s", mode: "rate", rate: 2000, eventsPerRequest: 1, durationS: 4 },
    { id: "2@5000", label: "S2 1 event/request, 5,000 req/s", mode: "rate", rate: 5000, eventsPerRequest: 1, durationS: 4 },
    { id: "2@max", label: "S2 1 event/request, max throughput (64 senders)", mode: "closed", concurrency: 64, eventsPerRequest: 1, durationS: 4 },
  ],
  3: [{ id: "3", label: "S3 Event Grid answers after 50 ms; 100-event requests, 16 senders", mode: "closed", concurrency: 16, eventsPerRequest: 100, egDelayMs: 50, durationS: 8 }],
  4: [{ id: "4", label: `S4 Event Grid down (503) ${downS} s; 500 senders, 100-event requests`, mode: "closed", concurrency: 500, eventsPerRequest: 100, outage: true }],
};

let selected;
if (smoke) selected = [{ ...SCENARIOS[1][0] }, { ...SCENARIOS[2][0] }];
else if (args.profile && !args.scenario) selected = [SCENARIOS[1][0]];
else {
  // A scenario number, or one point of scenario 2 (2@500, 2@2000, 2@5000, 2@max).
  const wanted = args.scenario ? args.scenario.split(",").map((s) => s.trim()) : ["1", "2", "3", "4"];
  const all = Object.values(SCENARIOS).flat();
  selected = wanted.flatMap((w) => SCENARIOS[w] ?? all.filter((pt) => pt.id === w));
  for (const w of wanted) if (!SCENARIOS[w] && !all.some((pt) => pt.id === w)) fail(`--scenario takes 1, 2, 3, 4 or a point (${all.map((pt) => pt.id).join(", ")}), comma-separated; got '${w}'`);
}
if (args.concurrency !== undefined) {
  const c = positiveInt("--concurrency", args.concurrency);
  selected = selected.map((pt) => (pt.mode === "closed" ? { ...pt, concurrency: c, label: `${pt.label.replace(/\(\d+ senders\)|\d+ senders/, `${c} senders`)}` } : pt));
}

// S4: senders pause 0.5-1.5 s after a non-2xx answer and redeliver the same body (Auth0 keeps
// failed batches and redelivers them; its real back-off is longer). Retry-After is recorded, not honoured.
const OUTAGE = { healthyS: 5, measureHealthyFromS: 2, maxUpS: 45, recoveredFraction: 0.9, pauseOnErrorMs: [500, 1500] };

// ---------------------------------------------------------------- helpers

/** n distinct free ports: all listeners are open at once, so the OS cannot hand out one twice. */
async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => resolve(s));
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const CLK_TCK = (() => {
  try {
    return Number(execSync("getconf CLK_TCK", { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) of a process, from /proc/<pid>/stat. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusySeconds() {
  try {
    const [, user, nice, system, , , irq, softirq, steal] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/).map(Number);
    return (user + nice + system + irq + softirq + steal) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** Cores used by processes other than this driver (and `ownPids`) over `seconds`. */
async function otherLoad(seconds, ownPids) {
  const own = () => {
    const u = process.cpuUsage();
    return ownPids.reduce((n, pid) => n + cpuSeconds(pid), 0) + (u.user + u.system) / 1e6;
  };
  const m0 = machineBusySeconds();
  const o0 = own();
  await sleep(seconds * 1000);
  return (machineBusySeconds() - m0 - (own() - o0)) / seconds;
}

/** Waits (up to maxS) until other processes use less than `cores` (readings over 0.5 s, then 2 s); returns the last reading. */
async function waitQuiet(maxS, cores = 0.3) {
  const until = Date.now() + maxS * 1000;
  let load = await otherLoad(0.5, []);
  let noted = false;
  while (load >= cores && Date.now() < until) {
    if (!noted) process.stderr.write(`bench: other processes use ${load.toFixed(2)} cores; waiting up to ${maxS} s for the machine to be quiet\n`);
    noted = true;
    load = await otherLoad(2, []);
  }
  return load;
}

/** { rss, hwm } in MB from /proc/<pid>/status. */
function memory(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function sumCounts(counts) {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

async function waitFor(check, timeoutMs, what) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function buildIfNeeded() {
  const main = join(ROOT, "dist", "main.js");
  const stale = !existsSync(main) || newestMtime(join(ROOT, "src")) > statSync(main).mtimeMs ||
    statSync(join(ROOT, "package.json")).mtimeMs > statSync(main).mtimeMs;
  if (args["no-build"] || !stale) return;
  process.stderr.write("bench: dist/ is missing or older than src/: npm run build\n");
  execSync("npm run build", { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
}

// ---------------------------------------------------------------- systems under test

async function startTarget(kind, emulatorUrl, work, { cpuProfDir } = {}) {
  const [port, adminPort] = await freePorts(2);
  const logPath = join(work, `${kind}-${port}.log`);
  const logFd = openSync(logPath, "w");
  let child;
  if (kind === "bridge") {
    const deadLetterDir = join(work, `dead-letter-${port}`);
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: "development", // production refuses an http:// Event Grid endpoint
      HOST: "127.0.0.1",
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      AUTH0_STREAM_TOKEN: TOKEN,
      EVENTGRID_ENDPOINT: emulatorUrl,
      EVENTGRID_KEY: KEY,
      EVENTGRID_ALLOW_INSECURE: "true",
      LOG_LEVEL: "warn",
      DEAD_LETTER_DIR: deadLetterDir,
      ...bridgeEnv,
    };
    const nodeArgs = [...IMAGE_NODE_ARGS, ...args["node-arg"], ...(cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`] : [])];
    child = spawn(process.execPath, [...nodeArgs, join(ROOT, "dist", "main.js")], { cwd: work, env, stdio: ["ignore", logFd, "pipe"] });
  } else {
    const env = { PATH: process.env.PATH, HOST: "127.0.0.1", PORT: String(port), AUTH0_STREAM_TOKEN: TOKEN, EVENTGRID_ENDPOINT: emulatorUrl, EVENTGRID_KEY: KEY };
    child = spawn(process.execPath, [join(BENCH, "baseline-relay.mjs")], { cwd: work, env, stdio: ["ignore", logFd, "pipe"] });
  }
  closeSync(logFd);
  let stderr = "";
  child.stderr.on("data", (c) => (stderr += c));
  const exited = once(child, "exit");
  let dead = false;
  exited.then(() => (dead = true));
  try {
    if (kind === "bridge") {
      await waitFor(async () => {
        if (dead) throw new Error(`the bridge exited during start-up: ${stderr.trim() || readFileSync(logPath, "utf8").slice(-2000)}`);
        try {
          return (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200;
        } catch {
          return false;
        }
      }, 30_000, "the bridge to be ready");
    } else {
      await waitFor(() => {
        if (dead) throw new Error(`the baseline relay exited during start-up: ${stderr.trim()}`);
        return readFileSync(logPath, "utf8").includes("listening on");
      }, 10_000, "the baseline relay to listen");
    }
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    kind,
    pid: child.pid,
    url: `http://127.0.0.1:${port}/api/logs`,
    adminUrl: kind === "bridge" ? `http://127.0.0.1:${adminPort}` : undefined,
    logPath,
    stderr: () => stderr,
    async stop() {
      if (!dead) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 25_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

function startLoad(config) {
  const child = fork(join(BENCH, "loadgen.mjs"), [], { serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let onResult;
  const result = new Promise((resolve, reject) => {
    onResult = { resolve, reject };
  });
  let started;
  const ready = new Promise((resolve, reject) => {
    started = { resolve, reject };
  });
  const progress = [];
  child.on("message", (msg) => {
    if (msg.type === "progress") progress.push([msg.t, msg.acked]);
    else if (msg.type === "started") started.resolve(msg);
    else if (msg.type === "result") onResult.resolve(msg);
    else if (msg.type === "error") {
      const err = new Error(`load generator failed: ${msg.message}`);
      started.reject(err);
      onResult.reject(err);
    }
  });
  child.on("exit", (code) => {
    const err = new Error(`load generator exited with code ${code}`);
    started.reject(err);
    onResult.reject(err);
  });
  child.send({ cmd: "start", config });
  return {
    pid: child.pid,
    ready,
    /** [[epoch ms, events acknowledged so far], ...], every 250 ms. */
    progress,
    /** Events acknowledged by time t (interpolated from the progress reports). */
    ackedAt(t) {
      let last = [0, 0];
      for (const p of progress) {
        if (p[0] > t) return last[1];
        last = p;
      }
      return last[1];
    },
    async stop() {
      child.send({ cmd: "stop" });
      return result;
    },
  };
}

// ---------------------------------------------------------------- one measurement

let idCounter = 0;
function idPrefix() {
  // 10 digits, distinct per load generator in this run (the bridge's dedupe must never match).
  return String(1_000_000_000 + ((Date.now() % 100_000) * 1000 + ++idCounter) % 8_999_999_999).slice(0, 10);
}

function snapshot(target, emulator, loadPid) {
  return {
    t: now(),
    machine: machineBusySeconds(),
    cpu: cpuSeconds(target.pid),
    loadCpu: cpuSeconds(loadPid),
    driverCpu: process.cpuUsage(),
    egAccepted: emulator.acceptedCount,
    egRequests: sumCounts(emulator.statusCounts),
    egStatus: { ...emulator.statusCounts },
  };
}

function windowStats(data, from, to, { rateMode }) {
  let events = 0;
  const statuses = {};
  const latencies = [];
  const lags = [];
  let retryAfterMissing = 0;
  let nonOk = 0;
  for (let i = 0; i < data.end.length; i++) {
    const end = data.end[i];
    const ok = data.status[i] >= 200 && data.status[i] < 300;
    if (end >= from && end < to && ok) events += data.events[i];
    const begin = rateMode ? data.due[i] : data.start[i];
    if (begin >= from && begin < to) {
      if (rateMode) lags.push(data.start[i] - data.due[i]);
      const s = String(data.status[i]);
      statuses[s] = (statuses[s] ?? 0) + 1;
      if (data.status[i] !== 0) latencies.push(end - begin);
      if (!ok) {
        nonOk++;
        if (data.status[i] !== 0 && !data.retryAfter[i]) retryAfterMissing++;
      }
    }
  }
  latencies.sort((a, b) => a - b);
  lags.sort((a, b) => a - b);
  return {
    // Open loop: how late the generator itself sent requests (its own stalls count as latency).
    sendLagP99: percentile(lags, 99),
    sendLagMax: lags.length ? lags[lags.length - 1] : NaN,
    events,
    requests: latencies.length,
    statuses,
    nonOk,
    retryAfterMissing,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.length ? latencies[latencies.length - 1] : NaN,
    within1s: latencies.length ? latencies.filter((l) => l <= 1000).length / latencies.length : NaN,
  };
}

async function measure(emulatorModule, point, kind, work, opts = {}) {
  const emulator = await emulatorModule.startEmulator({ key: KEY, retainEvents: false });
  if (point.egDelayMs) emulator.setFault(() => ({ status: 200, delayMs: point.egDelayMs }));
  let target;
  let load;
  try {
    target = await startTarget(kind, emulator.url, work, opts);
    const config = {
      url: target.url,
      token: TOKEN,
      mode: point.mode,
      rate: point.rate,
      concurrency: point.concurrency,
      eventsPerRequest: point.eventsPerRequest,
      idPrefix: idPrefix(),
      redeliver: Boolean(point.outage),
      pauseOnErrorMs: point.outage ? OUTAGE.pauseOnErrorMs : undefined,
      drainMs: point.outage ? 20_000 : 10_000,
      rampMs: point.mode === "rate" ? warmupS * 1000 : 0,
    };
    load = startLoad(config);
    const started = await load.ready;
    const result = point.outage
      ? await outageRun(emulator, target, load)
      : await steadyRun(emulator, target, load, point);
    result.meanEventBytes = started.meanEventBytes;
    if (args.raw) result.raw = lastRaw;
    result.logBytes = statSync(target.logPath).size;
    result.stderr = target.stderr().slice(-500);
    return result;
  } finally {
    await target?.stop();
    await emulator.close();
  }
}

async function steadyRun(emulator, target, load, point) {
  await sleep(warmupS * 1000);
  const a = snapshot(target, emulator, load.pid);
  await sleep(durationOf(point) * 1000);
  const b = snapshot(target, emulator, load.pid);
  const mem = memory(target.pid);
  const res = await load.stop();
  lastRaw = rawOf(res.data);
  const seconds = (b.t - a.t) / 1000;
  const w = windowStats(res.data, a.t, b.t, { rateMode: point.mode === "rate" });
  const egEvents = b.egAccepted - a.egAccepted;
  const driverCpu = process.cpuUsage(a.driverCpu);
  const ownCpu = (b.cpu - a.cpu) + (b.loadCpu - a.loadCpu) + (driverCpu.user + driverCpu.system) / 1e6;
  // Per 250 ms (from the start of the load, warm-up included): requests begun, slowest answer.
  const timeline = [];
  const origin = res.data.due.length ? Math.min(res.data.due[0], res.data.start[0]) : a.t;
  for (let i = 0; i < res.data.end.length; i++) {
    const begin = point.mode === "rate" ? res.data.due[i] : res.data.start[i];
    const slot = Math.floor((begin - origin) / 250);
    timeline[slot] ??= [slot * 250, 0, 0, 0];
    timeline[slot][1]++;
    if (res.data.status[i] !== 0) timeline[slot][2] = Math.max(timeline[slot][2], Math.round(res.data.end[i] - begin));
    // Events acknowledged (2xx), by the slot their answer arrived in.
    if (res.data.status[i] >= 200 && res.data.status[i] < 300) {
      const done = Math.floor((res.data.end[i] - origin) / 250);
      timeline[done] ??= [done * 250, 0, 0, 0];
      timeline[done][3] += res.data.events[i];
    }
  }
  return {
    seconds,
    // Cores used by other processes on the machine during the window (not this benchmark's).
    otherLoad: (b.machine - a.machine - ownCpu) / seconds,
    windowStartMs: Math.round(a.t - origin),
    timeline: timeline.filter(Boolean),
    eventsPerSecond: w.events / seconds,
    requestsPerSecond: w.requests / seconds,
    p50: w.p50,
    p99: w.p99,
    max: w.max,
    statuses: w.statuses,
    nonOk: w.nonOk,
    egRequestsPer1k: egEvents > 0 ? ((b.egRequests - a.egRequests) / egEvents) * 1000 : NaN,
    egEventsPerSecond: egEvents / seconds,
    egStatus: diffCounts(b.egStatus, a.egStatus),
    cpuPer10k: w.events > 0 ? ((b.cpu - a.cpu) / w.events) * 10_000 : NaN,
    cpuUtilisation: (b.cpu - a.cpu) / seconds,
    loadCpuUtilisation: (b.loadCpu - a.loadCpu) / seconds,
    emulatorCpuUtilisation: (driverCpu.user + driverCpu.system) / 1e6 / seconds,
    peakRssMb: mem.hwm,
    rssEndMb: mem.rss,
    skipped: res.skipped,
    unanswered: res.unanswered,
    transportErrors: res.transportErrors,
    lastError: res.lastError,
    sendLagP99: w.sendLagP99,
    sendLagMax: w.sendLagMax,
  };
}

let lastRaw;
/** Per-request arrays for --raw (times in ms relative to the first request). */
function rawOf(data) {
  const origin = data.start.length ? data.start[0] : 0;
  const rel = (a) => Array.from(a, (x) => Math.round((x - origin) * 10) / 10);
  return { origin, due: rel(data.due), start: rel(data.start), end: rel(data.end), status: Array.from(data.status), events: Array.from(data.events), retryAfter: Array.from(data.retryAfter) };
}

function diffCounts(b, a) {
  const out = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d) out[k] = d;
  }
  return out;
}

// S4: healthy, then Event Grid answers 503 to everything for --down seconds, then healthy again
// until throughput is back (or OUTAGE.maxUpS). RSS is sampled every 100 ms.
async function outageRun(emulator, target, load) {
  let peakRss = 0;
  const rssTimeline = [];
  const t0 = now();
  const firstSnapshot = snapshot(target, emulator, load.pid);
  const sampler = setInterval(() => {
    const m = memory(target.pid);
    if (m.rss > peakRss) peakRss = m.rss;
    rssTimeline.push([Math.round(now() - t0), Math.round(m.rss)]);
  }, 100);
  try {
    await sleep(OUTAGE.measureHealthyFromS * 1000);
    const h0 = snapshot(target, emulator, load.pid);
    await sleep((OUTAGE.healthyS - OUTAGE.measureHealthyFromS) * 1000);
    const h1 = snapshot(target, emulator, load.pid);
    // Reference for "full throughput": events acknowledged per second while healthy.
    const healthyAckRate = (load.ackedAt(h1.t) - load.ackedAt(h0.t)) / ((h1.t - h0.t) / 1000);
    emulator.setFault(() => ({ status: 503 }));
    const downAt = now();
    await sleep(downS * 1000);
    const d1 = snapshot(target, emulator, load.pid);
    emulator.setFault(undefined);
    const upAt = now();
    // Watch the acknowledged events in 250 ms steps; stop 3 s after a second ran at >= 90% of the
    // healthy rate (the exact point is computed below from every answer), or after maxUpS.
    while (now() - upAt < OUTAGE.maxUpS * 1000) {
      await sleep(250);
      const t = now();
      if (t - upAt >= 1000 && load.ackedAt(t) - load.ackedAt(t - 1000) >= OUTAGE.recoveredFraction * healthyAckRate) {
        await sleep(3000);
        break;
      }
    }
    const end = snapshot(target, emulator, load.pid);
    const start = firstSnapshot;
    const driverCpu = process.cpuUsage(start.driverCpu);
    const otherLoadAll = (end.machine - start.machine - ((end.cpu - start.cpu) + (end.loadCpu - start.loadCpu) + (driverCpu.user + driverCpu.system) / 1e6)) / ((end.t - start.t) / 1000);
    const mem = memory(target.pid);
    const res = await load.stop();
    const data = res.data;
    lastRaw = rawOf(data);
    lastRaw.marks = { t0, h0: h0.t, h1: h1.t, downAt, upAt, end: end.t };

    const healthy = windowStats(data, h0.t, h1.t, { rateMode: false });
    const healthyRate = healthy.events / ((h1.t - h0.t) / 1000);
    const down = windowStats(data, downAt, upAt, { rateMode: false });
    const all = windowStats(data, t0, now() + 1, { rateMode: false });
    // Recovery: first 1 s window after upAt (sliding in 50 ms steps) whose acknowledged events reach 90% of the healthy rate.
    let recoverySeconds = NaN;
    let firstOkAfterUp = NaN;
    const okEnds = [];
    for (let i = 0; i < data.end.length; i++) {
      if (data.status[i] >= 200 && data.status[i] < 300 && data.end[i] >= upAt) okEnds.push([data.end[i], data.events[i]]);
    }
    okEnds.sort((x, y) => x[0] - y[0]);
    if (okEnds.length) firstOkAfterUp = (okEnds[0][0] - upAt) / 1000;
    for (let s = upAt; s < end.t - 1000; s += 50) {
      let ev = 0;
      for (const [e, n] of okEnds) if (e >= s && e < s + 1000) ev += n;
      if (ev >= OUTAGE.recoveredFraction * healthyRate) {
        recoverySeconds = (s - upAt) / 1000;
        break;
      }
    }
    return {
      otherLoad: otherLoadAll,
      healthyEventsPerSecond: healthyRate,
      healthyP50: healthy.p50,
      healthyP99: healthy.p99,
      healthyMax: healthy.max,
      healthyStatuses: healthy.statuses,
      downRequests: down.requests,
      downStatuses: down.statuses,
      downP50: down.p50,
      downP99: down.p99,
      downMax: down.max,
      downWithin1s: down.within1s,
      downRetryAfterMissing: down.retryAfterMissing,
      allMax: all.max,
      allWithin1s: all.within1s,
      allRetryAfterMissing: all.retryAfterMissing,
      unanswered: res.unanswered,
      transportErrors: res.transportErrors,
      lastError: res.lastError,
      egRequestsDuringOutage: d1.egRequests - h1.egRequests,
      cpuDuringOutage: d1.cpu - h1.cpu,
      firstOkAfterUpSeconds: firstOkAfterUp,
      recoverySeconds,
      upObservedSeconds: (end.t - upAt) / 1000,
      peakRssMb: Math.max(mem.hwm, peakRss),
      sampledPeakRssMb: peakRss,
      rssTimeline,
      p50: all.p50,
      p99: all.p99,
      max: all.max,
      eventsPerSecond: healthyRate,
      cpuPer10k: NaN,
      egRequestsPer1k: NaN,
    };
  } finally {
    clearInterval(sampler);
  }
}

// ---------------------------------------------------------------- report

const fmt = {
  int: (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "–"),
  ms: (x) => (Number.isFinite(x) ? (x >= 100 ? Math.round(x).toString() : x.toFixed(1)) : "–"),
  n1: (x) => (Number.isFinite(x) ? x.toFixed(1) : "–"),
  n2: (x) => (Number.isFinite(x) ? x.toFixed(2) : "–"),
  n3: (x) => (Number.isFinite(x) ? x.toFixed(3) : "–"),
  pct: (x) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "–"),
};

function summarize(results) {
  // results: [{point, kind, run, r}] -> per point & kind, medians of each numeric field.
  const out = new Map();
  for (const { point, kind, r } of results) {
    const key = `${point.id}|${kind}`;
    if (!out.has(key)) out.set(key, { point, kind, runs: [] });
    out.get(key).runs.push(r);
  }
  for (const entry of out.values()) {
    const med = {};
    for (const k of Object.keys(entry.runs[0])) {
      if (typeof entry.runs[0][k] === "number") med[k] = median(entry.runs.map((r) => r[k]));
    }
    entry.median = med;
    entry.range = (k) => {
      const v = entry.runs.map((r) => r[k]).filter(Number.isFinite);
      return v.length ? [Math.min(...v), Math.max(...v)] : [NaN, NaN];
    };
  }
  return out;
}

function machineInfo() {
  const cpuModel = (() => {
    try {
      return /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpus()[0]?.model;
    } catch {
      return cpus()[0]?.model;
    }
  })();
  let nproc = cpus().length;
  try {
    nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim());
  } catch {}
  // What was measured: the commit, and whether src/ differed from it when dist/ was built.
  let git = "unknown";
  try {
    const quiet = { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] };
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], quiet).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src"], quiet).trim().split("\n").filter(Boolean).length;
    git = dirty ? `${head} + ${dirty} uncommitted file(s) in src/` : head;
  } catch {}
  return { nproc, cpuModel, memoryGb: +(totalmem() / 2 ** 30).toFixed(1), node: process.version, date: new Date().toISOString(), git };
}

function printReport(summary, info, command) {
  const lines = [];
  const p = (s = "") => lines.push(s);
  p(`Machine: ${info.nproc} CPUs (${info.cpuModel}), ${info.memoryGb} GB; Node ${info.node}; ${info.date}; code ${info.git}`);
  p(`Command: ${command}`);
  p(`Bridge node options: ${IMAGE_NODE_ARGS.length ? `${IMAGE_NODE_ARGS.join(" ")} (the image's NODE_OPTIONS)` : "Node's defaults (--node-defaults)"}${args["node-arg"].length ? ` + ${args["node-arg"].join(" ")}` : ""}`);
  p(`Medians of ${runs} run(s) (range of events/s in brackets); per point ${warmupS} s warm-up (fixed rates ramp up during it), then ${durationOverride !== undefined ? `${durationOverride} s` : "S1 12 s, S2 4 s each, S3 8 s"} measured; S4: 5 s healthy, ${downS} s down, then up until recovered (max ${OUTAGE.maxUpS} s). The load generator, the bridge (or baseline) and the emulator share the machine's ${cpus().length} CPUs.`);
  p();
  p("| Scenario | System | events/s | bridge / baseline | p50 ms | p99 ms | max ms | EG req / 1k events | CPU s / 10k events | SUT cores | peak RSS MB | non-2xx | other load, cores |");
  p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  const points = [...new Map([...summary.values()].map((e) => [e.point.id, e.point])).values()];
  for (const point of points) {
    if (point.outage) continue;
    const base = summary.get(`${point.id}|baseline`);
    for (const kind of targets) {
      const e = summary.get(`${point.id}|${kind}`);
      if (!e) continue;
      const m = e.median;
      const ratio = kind === "bridge" && base ? m.eventsPerSecond / base.median.eventsPerSecond : NaN;
      const [lo, hi] = e.range("eventsPerSecond");
      const spread = e.runs.length > 1 ? ` (${fmt.int(lo)}–${fmt.int(hi)})` : "";
      p(`| ${point.label} | ${kind} | ${fmt.int(m.eventsPerSecond)}${spread} | ${kind === "bridge" ? fmt.n2(ratio) : ""} | ${fmt.ms(m.p50)} | ${fmt.ms(m.p99)} | ${fmt.ms(m.max)} | ${fmt.n1(m.egRequestsPer1k)} | ${fmt.n3(m.cpuPer10k)} | ${fmt.n2(m.cpuUtilisation)} | ${fmt.int(m.peakRssMb)} | ${fmt.int(m.nonOk)} | ${fmt.n2(m.otherLoad)} |`);
    }
  }
  const outagePoints = points.filter((pt) => pt.outage);
  for (const point of outagePoints) {
    p();
    p(`${point.label}: medians of ${runs} run(s)`);
    p();
    p("| System | healthy: events/s, answer p50 / p99 / max ms | peak RSS MB | outage: answer p50 / p99 / max ms | outage: answered ≤ 1 s | whole run: answered ≤ 1 s | no answer within 60 s | non-2xx without Retry-After | EG requests during outage | first 200 after EG up, s | ≥ 90% throughput after EG up, s | other load, cores |");
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const kind of targets) {
      const e = summary.get(`${point.id}|${kind}`);
      if (!e) continue;
      const m = e.median;
      p(`| ${kind} | ${fmt.int(m.healthyEventsPerSecond)}, ${fmt.ms(m.healthyP50)} / ${fmt.ms(m.healthyP99)} / ${fmt.ms(m.healthyMax)} | ${fmt.int(m.peakRssMb)} | ${fmt.ms(m.downP50)} / ${fmt.ms(m.downP99)} / ${fmt.ms(m.downMax)} | ${fmt.pct(m.downWithin1s)} | ${fmt.pct(m.allWithin1s)} | ${fmt.int(m.transportErrors)} | ${fmt.int(m.downRetryAfterMissing)} | ${fmt.int(m.egRequestsDuringOutage)} | ${fmt.n1(m.firstOkAfterUpSeconds)} | ${fmt.n1(m.recoverySeconds)} | ${fmt.n2(m.otherLoad)} |`);
    }
    for (const kind of targets) {
      const e = summary.get(`${point.id}|${kind}`);
      if (!e) continue;
      p();
      p(`${kind} per run: ` + e.runs.map((r, i) => `#${i + 1}: RSS ${fmt.int(r.peakRssMb)} MB, outage statuses ${JSON.stringify(r.downStatuses)}, max answer ${fmt.ms(r.downMax)} ms, recovered ${fmt.n1(r.recoverySeconds)} s`).join("; "));
    }
  }
  const targetsText = smoke ? [] : evaluateTargets(summary);
  if (smoke) {
    p();
    p("(--smoke: too short for the targets; they are not evaluated)");
  } else if (targetsText.length) {
    p();
    p("Targets:");
    for (const t of targetsText) p(`- ${t}`);
  }
  return lines.join("\n");
}

function evaluateTargets(summary) {
  const out = [];
  const mark = (ok) => (ok ? "MET" : "MISSED");
  const s1 = summary.get("1|bridge");
  const s1b = summary.get("1|baseline");
  if (s1) {
    const eps = s1.median.eventsPerSecond;
    out.push(`S1 >= 20,000 events/s: ${fmt.int(eps)} -> ${mark(eps >= 20_000)}${eps < 20_000 ? ` (short by ${fmt.pct(1 - eps / 20_000)})` : ""}`);
    if (s1b) {
      const ratio = eps / s1b.median.eventsPerSecond;
      out.push(`S1 >= 0.6x baseline (aim 0.8x): ${fmt.n2(ratio)}x -> ${mark(ratio >= 0.6)}${ratio >= 0.8 ? " (aim met)" : ""}`);
    }
  }
  const s2 = summary.get("2@2000|bridge");
  if (s2) {
    out.push(`S2 @2,000 req/s p99 < 25 ms: ${fmt.ms(s2.median.p99)} ms -> ${mark(s2.median.p99 < 25)}`);
    out.push(`S2 @2,000 req/s Event Grid requests per 1,000 events < 100: ${fmt.n1(s2.median.egRequestsPer1k)} -> ${mark(s2.median.egRequestsPer1k < 100)}`);
  }
  const s4 = summary.get("4|bridge");
  if (s4) {
    const m = s4.median;
    const worstRss = Math.max(...s4.runs.map((r) => r.peakRssMb));
    out.push(`S4 peak RSS < 200 MB: median ${fmt.int(m.peakRssMb)} MB, worst ${fmt.int(worstRss)} MB -> ${mark(worstRss < 200)}`);
    const worstWithin = Math.min(...s4.runs.map((r) => r.downWithin1s));
    const missingRa = Math.max(...s4.runs.map((r) => r.allRetryAfterMissing));
    const noAnswer = Math.max(...s4.runs.map((r) => r.transportErrors + r.unanswered));
    out.push(`S4 every request answered within 1 s with 503/429 + Retry-After: during the outage worst run ${fmt.pct(worstWithin)} within 1 s (max ${fmt.ms(Math.max(...s4.runs.map((r) => r.downMax)))} ms); ${missingRa} non-2xx without Retry-After; worst run ${noAnswer} request(s) without an answer (60 s client timeout, any phase) -> ${mark(worstWithin === 1 && missingRa === 0 && noAnswer === 0)}`);
    const worstRec = Math.max(...s4.runs.map((r) => (Number.isFinite(r.recoverySeconds) ? r.recoverySeconds : Infinity)));
    out.push(`S4 full throughput within 5 s after Event Grid recovers: median ${fmt.n1(m.recoverySeconds)} s, worst ${fmt.n1(worstRec)} s -> ${mark(worstRec <= 5)}`);
  }
  return out;
}

// ---------------------------------------------------------------- main

async function main() {
  buildIfNeeded();
  const emulatorModule = await import(pathToFileURL(join(ROOT, "dist", "emulator", "emulator.js")).href);
  const work = mkdtempSync(join(tmpdir(), "auth0-bridge-bench-"));
  const info = machineInfo();
  const command = `npm run bench${process.argv.length > 2 ? " -- " + process.argv.slice(2).join(" ") : ""}`;
  const started = Date.now();
  const results = [];
  try {
    if (args.profile) {
      const dir = args["profile-dir"] ?? join(work, "profile");
      mkdirSync(dir, { recursive: true });
      process.stderr.write(`bench: profiling the bridge under ${selected[0].label}${selected[0].outage ? "" : ` (${warmupS} + ${durationOf(selected[0])} s)`}\n`);
      const r = await measure(emulatorModule, selected[0], "bridge", work, { cpuProfDir: dir });
      process.stderr.write(`bench: ${fmt.int(r.eventsPerSecond)} events/s while profiling; profile in ${dir}\n`);
      const file = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).map((f) => join(dir, f)).sort((x, y) => statSync(y).mtimeMs - statSync(x).mtimeMs)[0];
      if (!file) throw new Error(`no .cpuprofile was written to ${dir}`);
      execFileSync(process.execPath, [join(BENCH, "profile-summary.mjs"), file], { stdio: "inherit" });
      return;
    }
    for (let run = 0; run < runs; run++) {
      for (const point of selected) {
        // Alternate the order so drift (thermal, noisy neighbours) does not favour one side.
        const order = run % 2 === 0 ? targets : [...targets].reverse();
        for (const kind of order) {
          if (quietWaitS > 0) await waitQuiet(quietWaitS);
          const t = Date.now();
          const r = await measure(emulatorModule, point, kind, work);
          results.push({ point, kind, run, r });
          const summaryLine = point.outage
            ? `other load ${fmt.n2(r.otherLoad)} cores, healthy ${fmt.int(r.healthyEventsPerSecond)} ev/s, peak RSS ${fmt.int(r.peakRssMb)} MB, outage answers max ${fmt.ms(r.downMax)} ms (${fmt.pct(r.downWithin1s)} <= 1 s) ${JSON.stringify(r.downStatuses)}, recovered in ${fmt.n1(r.recoverySeconds)} s`
            : `${fmt.int(r.eventsPerSecond)} ev/s, p50 ${fmt.ms(r.p50)} p99 ${fmt.ms(r.p99)} max ${fmt.ms(r.max)} ms, EG req/1k ${fmt.n1(r.egRequestsPer1k)}, CPU ${fmt.n3(r.cpuPer10k)} s/10k (bridge ${fmt.n2(r.cpuUtilisation)} / loadgen ${fmt.n2(r.loadCpuUtilisation)} / emulator ${fmt.n2(r.emulatorCpuUtilisation)} cores), RSS ${fmt.int(r.peakRssMb)} MB, other load ${fmt.n2(r.otherLoad)} cores, statuses ${JSON.stringify(r.statuses)}${point.mode === "rate" ? `, send lag p99/max ${fmt.ms(r.sendLagP99)}/${fmt.ms(r.sendLagMax)} ms` : ""}${r.skipped ? `, skipped ${r.skipped}` : ""}${r.transportErrors ? `, transport errors ${r.transportErrors} (${r.lastError})` : ""}`;
          process.stderr.write(`bench: run ${run + 1}/${runs} ${point.id} ${kind}: ${summaryLine} [${((Date.now() - t) / 1000).toFixed(0)} s]\n`);
          if (args.timeline && r.timeline) {
            // Per second since the load started: acknowledged events, slowest answer (ms).
            const perSecond = [];
            for (const [at, , maxMs, events] of r.timeline) {
              const sec = Math.floor(at / 1000);
              perSecond[sec] ??= [0, 0];
              perSecond[sec][0] += events;
              perSecond[sec][1] = Math.max(perSecond[sec][1], maxMs);
            }
            process.stderr.write(`bench:   per second (events acknowledged / slowest answer ms; measured from ${(r.windowStartMs / 1000).toFixed(1)} s): ${perSecond.map((x, i) => `${i}s ${fmt.int(x?.[0] ?? 0)}/${x?.[1] ?? 0}`).join("  ")}\n`);
          }
        }
      }
    }
    const summary = summarize(results);
    const report = printReport(summary, info, command);
    process.stdout.write(`\n${report}\n\nTotal time ${((Date.now() - started) / 1000).toFixed(0)} s.\n`);
    if (args.json) {
      writeFileSync(args.json, JSON.stringify({ info, command, runs, durationOverride, warmupS, downS, bridgeEnv, results: results.map(({ point, kind, run, r }) => ({ point: point.id, kind, run, ...r })) }, null, 1));
      process.stderr.write(`bench: raw results in ${relative(process.cwd(), args.json)}\n`);
    }
    if (smoke) {
      // No performance thresholds: only that every system answered 2xx and events reached Event Grid.
      const broken = results.filter(({ r }) => !(r.eventsPerSecond > 0) || r.nonOk > 0 || r.transportErrors > 0 || !(r.egEventsPerSecond > 0));
      if (broken.length) {
        process.stderr.write(`bench --smoke: FAILED: ${broken.map(({ point, kind, r }) => `${point.id}/${kind} (events/s ${r.eventsPerSecond}, statuses ${JSON.stringify(r.statuses)}, ${r.lastError || ""}) ${r.stderr}`).join("; ")}\n`);
        process.exitCode = 1;
      } else process.stderr.write("bench --smoke: ok\n");
    }
  } finally {
    if (args.keep) process.stderr.write(`bench: kept ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error) => {
  process.stderr.write(`bench: ${error?.stack ?? error}\n`);
  process.exit(1);
});
