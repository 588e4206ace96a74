// `auth0-bridge replay`, run as a real child process against the emulator.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { startEmulator } from "../../src/emulator/emulator.js";
import { parseReplayArgs, UsageError } from "../../src/replay.js";
import { KEY, ROOT, record, startStack } from "../helpers/harness.js";

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", NODE_ENV: "test", LOG_LEVEL: "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, stdout, stderr }));
  });
}

test("replay republishes dead-lettered events once, honours --dry-run and --reason, and fails loudly", async () => {
  // 1. A bridge whose Event Grid is down, configured to dead-letter exhausted events.
  const stack = await startStack({ env: { ON_EXHAUSTED: "dead-letter", PUBLISH_RETRIES: "0" } });
  stack.emulator.setFault(() => ({ status: 503 }));
  const sent = [record("rp-1", "s"), record("rp-2", "f"), record("rp-3", "fp")];
  const res = await stack.post([...sent.map((r) => JSON.stringify(r)), "{not json"].join("\n"));
  assert.equal(res.status, 200);
  assert.equal(res.json.dead_lettered, 4);
  assert.equal(await stack.bridge.deadLetters.recount(), 4);

  // 2. Event Grid is back (a fresh emulator stands in for it).
  const target = await startEmulator({ key: KEY });
  const env = { DEAD_LETTER_DIR: stack.deadLetterDir, EVENTGRID_ENDPOINT: target.url, EVENTGRID_KEY: KEY, EVENTGRID_ALLOW_INSECURE: "true", PUBLISH_RETRIES: "0" };
  try {
    const dry = await runCli(["replay", "--dry-run"], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would replay 3 event\(s\)/);
    assert.match(dry.stdout, /1 without a CloudEvent/);
    assert.equal(target.events.length, 0, "a dry run publishes nothing");

    const none = await runCli(["replay", "--reason", "rejected_by_eventgrid"], env);
    assert.equal(none.code, 0);
    assert.match(none.stdout, /replayed 0 event/);

    // Event Grid still failing: exit 1, nothing marked as replayed.
    target.setFault(() => ({ status: 500 }));
    const failing = await runCli(["replay"], env);
    assert.equal(failing.code, 1);
    assert.match(failing.stdout, /failed 3/);
    assert.match(failing.stderr, /delivery failed/);
    target.setFault(undefined);

    const real = await runCli(["replay", "--reason", "exhausted", "--since", "2000-01-01T00:00:00Z"], env);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /replayed 3 event\(s\)/);
    assert.deepEqual(target.events.map((e) => e.id), ["rp-1", "rp-2", "rp-3"]);
    assert.deepEqual(target.events.map((e) => e.type), ["com.auth0.log.s", "com.auth0.log.f", "com.auth0.log.fp"]);
    assert.equal(target.events[0]!.auth0code, "s");
    assert.deepEqual(target.events[1]!.data, sent[1]!.data, "the data goes out unchanged");

    const again = await runCli(["replay"], env);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /replayed 0 event\(s\).*skipped 3 already replayed/);
    assert.equal(target.events.length, 3, "a second run publishes nothing again");

    const future = await runCli(["replay", "--dry-run", "--since", "2999-01-01T00:00:00Z"], env);
    assert.match(future.stdout, /would replay 0/);

    assert.equal(await stack.bridge.deadLetters.recount(), 1, "only the unparseable line is still waiting");
    assert.equal((await runCli(["replay", "--reason", "bogus"], env)).code, 2);
  } finally {
    await target.close();
    await stack.close();
  }
});

test("replay argument parsing", () => {
  assert.deepEqual(parseReplayArgs([]), { dryRun: false });
  assert.equal(parseReplayArgs(["--reason", "exhausted"]).reason, "exhausted");
  assert.equal(parseReplayArgs(["--since", "2026-11-01T00:00:00Z"]).since?.toISOString(), "2026-11-01T00:00:00.000Z");
  assert.throws(() => parseReplayArgs(["--since", "yesterday"]), UsageError);
  assert.throws(() => parseReplayArgs(["--reason", "nope"]), UsageError);
  assert.throws(() => parseReplayArgs(["--unknown"]), UsageError);
});
