// A simulated Auth0 log stream for load tests: a seeded PRNG, request bodies in every format Auth0
// sends, and a sender that posts them through concurrent workers and redelivers every request
// that did not get a 2xx (as Auth0 does) after a short backoff, until it gets one.
import { setTimeout as delay } from "node:timers/promises";
import { jsonLines, record } from "./harness.js";

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed from `name` in the environment (decimal or 0x hex), else a fresh random one. */
export function seedFrom(name: string): number {
  const given = process.env[name];
  if (given !== undefined && given.trim() !== "") {
    const value = Number(given.trim());
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new Error(`${name} must be an integer from 0 to 4294967295, got '${given}'`);
    return value;
  }
  return Math.floor(Math.random() * 0x100000000);
}

/** Picks exactly `count` distinct items, driven by `rng`. */
export function pick<T>(items: readonly T[], count: number, rng: () => number): Set<T> {
  const pool = [...items];
  const out = new Set<T>();
  while (out.size < count && pool.length > 0) {
    const i = Math.floor(rng() * pool.length);
    out.add(pool[i]!);
    pool[i] = pool[pool.length - 1]!;
    pool.pop();
  }
  return out;
}

export type BodyFormat = "jsonl" | "array" | "logs" | "object";

export interface Auth0Request {
  index: number;
  format: BodyFormat;
  ids: string[];
  body: string;
}

// Success and failure logins, password failures, Management API writes, logouts, token
// exchanges, signups, silent auth failures, warnings, brute-force blocks, MFA notifications.
export const CODES = ["s", "f", "fp", "sapi", "slo", "seacft", "ss", "fsa", "w", "limit_wc", "gd_send_sms"] as const;

/**
 * `multi` requests of `perRequest` events (JSON Lines, JSON array and {"logs": [...]} in
 * rotation) followed by `singles` one-event requests sent as a single JSON object.
 * Every log_id is unique: `${prefix}-<request>-<n>`.
 */
export function buildRequests(options: { prefix: string; multi: number; perRequest: number; singles: number }): Auth0Request[] {
  const { prefix, multi, perRequest, singles } = options;
  const formats: BodyFormat[] = ["jsonl", "array", "logs"];
  const requests: Auth0Request[] = [];
  let n = 0;
  const make = (requestIndex: number, count: number) => {
    const records = [];
    for (let j = 0; j < count; j++, n++) {
      const id = `${prefix}-${String(requestIndex).padStart(4, "0")}-${String(j).padStart(3, "0")}`;
      const code = CODES[n % CODES.length]!;
      records.push(
        record(id, code, {
          ip: `203.0.113.${n % 250}`,
          user_agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
          client_name: "Chaos App",
          connection: "Username-Password-Authentication",
          description: `chaos event ${n}`,
        }),
      );
    }
    return records;
  };
  for (let i = 0; i < multi; i++) {
    const records = make(i, perRequest);
    const format = formats[i % formats.length]!;
    const body = format === "jsonl" ? jsonLines(records) : format === "array" ? JSON.stringify(records) : JSON.stringify({ logs: records });
    requests.push({ index: i, format, ids: records.map((r) => r.log_id), body });
  }
  for (let i = multi; i < multi + singles; i++) {
    const [only] = make(i, 1);
    requests.push({ index: i, format: "object", ids: [only!.log_id], body: JSON.stringify(only) });
  }
  return requests;
}

export interface Ack {
  request: Auth0Request;
  url: string;
  attempts: number;
  body: unknown;
}

export interface SenderOptions {
  token: string;
  /** Where to post; awaited before every attempt (a crash test swaps it while the bridge is down). */
  url: () => string | Promise<string>;
  concurrency: number;
  /** Attempts per request before the sender gives up (the test then fails). */
  maxAttempts: number;
  /** Called when a request got its 2xx, after the sender's own bookkeeping. */
  onAck?: (ack: Ack) => void;
}

export class Auth0Sender {
  /** Requests currently waiting for an answer. */
  inFlight = 0;
  attempts = 0;
  redeliveries = 0;
  /** Answers by HTTP status, or `conn:<code>` for connection errors. */
  readonly outcomes = new Map<string, number>();
  readonly acks: Ack[] = [];
  readonly gaveUp: { request: Auth0Request; last: string }[] = [];

  constructor(private readonly options: SenderOptions) {}

  async run(requests: readonly Auth0Request[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < requests.length) await this.deliver(requests[next++]!);
    };
    await Promise.all(Array.from({ length: this.options.concurrency }, worker));
  }

  private async deliver(request: Auth0Request): Promise<void> {
    let last = "";
    for (let attempt = 1; attempt <= this.options.maxAttempts; attempt++) {
      if (attempt > 1) {
        this.redeliveries++;
        // The sender's own backoff between redeliveries (Auth0 waits too): exponential from 5 ms
        // to 250 ms, short for the test, but long enough that 50 attempts span several seconds
        // of a saturated bridge (429) or a slow Event Grid.
        await delay(Math.min(250, 5 * 2 ** (attempt - 2)) + Math.floor(Math.random() * 5));
      }
      const url = await this.options.url();
      this.attempts++;
      this.inFlight++;
      let status: number | undefined;
      let body: unknown;
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { authorization: this.options.token, "content-type": "application/json" },
          body: request.body,
        });
        const text = await res.text();
        status = res.status;
        last = String(res.status);
        if (res.ok) body = text ? (JSON.parse(text) as unknown) : undefined;
      } catch (error) {
        const cause = (error as { cause?: { code?: string } }).cause;
        last = `conn:${cause?.code ?? (error as Error).name}`;
      } finally {
        this.inFlight--;
      }
      this.outcomes.set(last, (this.outcomes.get(last) ?? 0) + 1);
      if (status !== undefined && status >= 200 && status < 300) {
        const ack = { request, url, attempts: attempt, body };
        this.acks.push(ack);
        this.options.onAck?.(ack);
        return;
      }
    }
    this.gaveUp.push({ request, last });
  }
}

/** Counts of a list of keys, sorted by key, as a plain object (for printing). */
export function tally(keys: Iterable<string | number>): Record<string, number> {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(String(k), (counts.get(String(k)) ?? 0) + 1);
  return Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)));
}
