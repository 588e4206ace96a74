// Test harness: a real bridge (startBridge) in-process against a real emulator, both on
// loopback with ephemeral ports; log lines are captured so tests can assert on them.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { Writable } from "node:stream";
import { resolve, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { loadConfig, type LoadedConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/settings.js";
import { startEmulator, type Emulator, type EmulatorOptions } from "../../src/emulator/emulator.js";
import { startBridge, type Bridge } from "../../src/main.js";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const fixture = (name: string) => resolve(ROOT, "test/fixtures", name);

export const TOKEN = "test-stream-token-0123456789";
export const KEY = "test-eventgrid-key-ABCDEFGHIJ";

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export class LogCapture extends Writable {
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) this.raw.push(line);
    done();
  }
  get lines(): LogLine[] {
    return this.raw.map((l) => JSON.parse(l) as LogLine);
  }
  find(message: string): LogLine[] {
    return this.lines.filter((l) => l.msg === message);
  }
}

export function testConfig(overrides: Record<string, string | undefined> = {}): Config {
  return testLoaded(overrides).config;
}

/** The whole loaded configuration (settings and topology), as the bridge's main() gets it. */
export function testLoaded(overrides: Record<string, string | undefined> = {}): LoadedConfig {
  return loadConfig({
    env: {
      NODE_ENV: "test",
      HOST: "127.0.0.1",
      PORT: "0",
      ADMIN_PORT: "0",
      AUTH0_STREAM_TOKEN: TOKEN,
      EVENTGRID_KEY: KEY,
      EVENTGRID_ALLOW_INSECURE: "true",
      EVENTGRID_ENDPOINT: "http://127.0.0.1:9/api/events",
      LOG_LEVEL: "debug",
      RETRY_BASE_DELAY_MS: "5",
      RETRY_MAX_DELAY_MS: "20",
      RETRY_AFTER_MAX_MS: "2000",
      PUBLISH_TIMEOUT_MS: "2000",
      STARTUP_CHECK_INTERVAL_MS: "50",
      SHUTDOWN_TIMEOUT_MS: "5000",
      ...overrides,
    },
    defaultsPath: resolve(ROOT, "config/default.json"),
  });
}

export interface Running {
  deadLetterDir: string;
  emulator: Emulator;
  bridge: Bridge;
  logs: LogCapture;
  post(body: string | Buffer, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; json: any }>;
  close(): Promise<void>;
}

/** Starts an emulator and a bridge pointed at it; waits until the bridge is ready. */
export async function startStack(
  options: { env?: Record<string, string | undefined>; emulator?: EmulatorOptions; waitReady?: boolean; sleep?: (ms: number) => Promise<void> } = {},
): Promise<Running> {
  const emulator = await startEmulator({ key: KEY, ...options.emulator });
  const logs = new LogCapture();
  const deadLetterDir = options.env?.DEAD_LETTER_DIR ?? mkdtempSync(join(tmpdir(), "bridge-dlq-"));
  const bridge = await startBridge({
    config: testConfig({ EVENTGRID_ENDPOINT: emulator.url, DEAD_LETTER_DIR: deadLetterDir, ...options.env }),
    logStream: logs,
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });
  if (options.waitReady !== false) await bridge.whenReady;
  return {
    deadLetterDir,
    emulator,
    bridge,
    logs,
    async post(body, headers = {}) {
      const response = await fetch(bridge.ingestUrl, {
        method: "POST",
        headers: { authorization: TOKEN, "content-type": "application/json", ...headers },
        body,
      });
      const text = await response.text();
      return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : undefined };
    },
    async close() {
      await bridge.stop();
      await emulator.close();
    },
  };
}

export function record(logId: string, type = "s", extra: Record<string, unknown> = {}) {
  return {
    log_id: logId,
    data: {
      date: "2026-11-01T10:00:00.000Z",
      type,
      hostname: "tenant.eu.auth0.com",
      client_id: "client-1",
      user_id: `auth0|user-${logId}`,
      log_id: logId,
      ...extra,
    },
  };
}

export const jsonLines = (records: unknown[]) => records.map((r) => JSON.stringify(r)).join("\n") + "\n";
export const gzip = (text: string) => gzipSync(Buffer.from(text, "utf8"));

/** Reads a Prometheus text exposition and returns the value of one series (0 when absent). */
export async function metricValue(adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? "";
    if (want.every((w) => labelText.includes(w))) total += Number(m[3]);
  }
  return total;
}
