import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import ajvFormats from "ajv-formats";
import fc from "fast-check";
import { z } from "zod";
import {
  DEFAULT_MASK_REPLACEMENT,
  RedactionError,
  compileRedaction,
  loadRedactionPresets,
  redactionSpecSchema,
} from "../../src/cloudevents/redact.js";
import type { RedactionAction, RedactionRule, RedactionSpec } from "../../src/cloudevents/redact.js";

// Repo root is two levels up from test/unit.
const root = new URL("../../", import.meta.url);
const repoPath = (relative: string) => fileURLToPath(new URL(relative, root));

const KEY = "test-hash-key";
const noPresets = { presets: {} };
const hmac = (key: string | Buffer, text: string) => createHmac("sha256", key).update(text, "utf8").digest("hex");

/** A compiled redactor for plain rules (no presets); hashKey null = none given. */
const redactor = (rules: readonly RedactionSpec[], hashKey: string | Buffer | null = KEY) =>
  compileRedaction(rules, hashKey === null ? noPresets : { presets: {}, hashKey });

const apply = (rules: readonly RedactionSpec[], data: Record<string, unknown>) => redactor(rules).apply(data);

/** A record shaped like an Auth0 `s` log event's data, with invented values. */
function loginData(): Record<string, unknown> {
  return {
    date: "2024-06-15T12:00:00.000Z",
    type: "s",
    ip: "203.0.113.7",
    user_agent: "Chrome 126.0.0 / Linux 0.0.0",
    user_name: "ana@example.com",
    user_id: "auth0|665d1a2b3c4d5e6f7a8b9c08",
    details: {
      prompts: [
        { name: "prompt-authenticate", stats: { loginsCount: 3 } },
        { name: "login", user_id: "auth0|665d1a2b3c4d5e6f7a8b9c08", user_name: "ana@example.com" },
      ],
      stats: { loginsCount: 3 },
      request: { ip: "203.0.113.8", body: { password: "*****", email: "ana@example.com" } },
      assessments: {
        UntrustedIP: { code: "found", details: { ip: "203.0.113.9" } },
        NewDevice: { code: "no_match", details: { device: "d1" } },
      },
    },
  };
}

describe("paths", () => {
  const bad = ["", "a..b", ".a", "a.", "a[0]", "a[*", "a]", "a[]", "[*]", "a.[*]", "a*", "*a", "**", "a.b*c", " a", "a. b", "a.b "];
  for (const path of bad) {
    it(`rejects ${JSON.stringify(path)} at compile time with RedactionError`, () => {
      assert.throws(
        () => redactor([{ path, action: "mask" }]),
        (error: unknown) => error instanceof RedactionError && error.message.includes(JSON.stringify(path)),
      );
    });
  }

  it("accepts keys Auth0 uses ($event_schema, user-agent, __proto__) and the [*] sugar", () => {
    for (const path of ["$event_schema.version", "details.body.user-agent", "__proto__", "a[*]", "a[*][*].b", "*", "*.*"]) {
      assert.doesNotThrow(() => redactor([{ path, action: "drop" }]), path);
    }
  });

  it("name[*] is the same as name.*", () => {
    const data = { list: [{ x: 1, y: 2 }, { x: 3 }], obj: { k: { x: 4 } } };
    for (const action of ["drop", "mask", "hash"] as const) {
      assert.deepEqual(apply([{ path: "list[*].x", action }], data), apply([{ path: "list.*.x", action }], data));
      assert.deepEqual(apply([{ path: "obj[*].x", action }], data), apply([{ path: "obj.*.x", action }], data));
    }
    assert.deepEqual(apply([{ path: "list[*].x", action: "drop" }], data), { list: [{ y: 2 }, {}], obj: { k: { x: 4 } } });
  });
});

describe("actions", () => {
  it("drop deletes a top-level, a nested and a wildcard-matched key", () => {
    const out = apply(
      [
        { path: "ip", action: "drop" },
        { path: "details.request.ip", action: "drop" },
        { path: "details.prompts.*.user_name", action: "drop" },
      ],
      loginData(),
    );
    assert.equal(Object.hasOwn(out, "ip"), false);
    const details = out.details as { request: object; prompts: object[] };
    assert.deepEqual(details.request, { body: { password: "*****", email: "ana@example.com" } });
    assert.deepEqual(details.prompts, [
      { name: "prompt-authenticate", stats: { loginsCount: 3 } },
      { name: "login", user_id: "auth0|665d1a2b3c4d5e6f7a8b9c08" },
    ]);
    assert.equal(out.user_name, "ana@example.com");
  });

  it("drop on array elements (a trailing *) removes the elements", () => {
    assert.deepEqual(apply([{ path: "tags.*", action: "drop" }], { tags: ["a", "b"], n: 1 }), { tags: [], n: 1 });
    assert.deepEqual(apply([{ path: "m.*", action: "drop" }], { m: { a: 1, b: 2 }, n: 1 }), { m: {}, n: 1 });
  });

  it("mask replaces top-level, nested and wildcard-matched values of any type", () => {
    const data = { s: "x", n: 5, b: false, o: { deep: 1 }, a: [1, 2], nested: { list: [{ v: "p" }, { v: { q: 1 } }, { w: 1 }] } };
    const out = apply(
      [
        { path: "s", action: "mask" },
        { path: "n", action: "mask" },
        { path: "b", action: "mask" },
        { path: "o", action: "mask" },
        { path: "a", action: "mask" },
        { path: "nested.list.*.v", action: "mask", replacement: "***" },
      ],
      data,
    );
    const R = DEFAULT_MASK_REPLACEMENT;
    assert.equal(R, "[redacted]");
    assert.deepEqual(out, { s: R, n: R, b: R, o: R, a: R, nested: { list: [{ v: "***" }, { v: "***" }, { w: 1 }] } });
  });

  it("mask on array elements replaces each element", () => {
    assert.deepEqual(apply([{ path: "a.*", action: "mask", replacement: "-" }], { a: ["x", 2, null] }), { a: ["-", "-", null] });
  });

  it("hash replaces top-level, nested and wildcard-matched values with their HMAC-SHA256", () => {
    const out = apply(
      [
        { path: "user_name", action: "hash" },
        { path: "details.request.body.email", action: "hash" },
        { path: "details.prompts.*.user_name", action: "hash" },
        { path: "details.stats", action: "hash" },
      ],
      loginData(),
    );
    const expected = hmac(KEY, "ana@example.com");
    assert.match(expected, /^[0-9a-f]{64}$/);
    assert.equal(out.user_name, expected);
    const details = out.details as { request: { body: Record<string, unknown> }; prompts: Record<string, unknown>[]; stats: unknown };
    assert.equal(details.request.body.email, expected);
    assert.equal(details.prompts[1]?.user_name, expected);
    assert.equal(Object.hasOwn(details.prompts[0] ?? {}, "user_name"), false, "no key created in the element without one");
    assert.equal(details.stats, hmac(KEY, JSON.stringify({ loginsCount: 3 })));
  });

  it("a * segment matches every key of an object", () => {
    const out = apply([{ path: "details.assessments.*.details.ip", action: "mask" }], loginData());
    const assessments = (out.details as { assessments: Record<string, { details: Record<string, unknown> }> }).assessments;
    assert.equal(assessments.UntrustedIP?.details.ip, "[redacted]");
    assert.deepEqual(assessments.NewDevice?.details, { device: "d1" });
  });

  it("null: drop removes the key, mask and hash keep null", () => {
    const data = { a: null, b: null, c: null, list: [null, "x"] };
    assert.deepEqual(
      apply(
        [
          { path: "a", action: "drop" },
          { path: "b", action: "mask" },
          { path: "c", action: "hash" },
          { path: "list.*", action: "mask" },
        ],
        data,
      ),
      { b: null, c: null, list: [null, "[redacted]"] },
    );
  });

  it("missing paths are left alone: no key is created and the input itself comes back", () => {
    const data = { a: { b: 1 }, s: "text", arr: [1, { x: 1 }], nul: null };
    const rules: RedactionRule[] = [
      { path: "missing", action: "mask" },
      { path: "a.missing.deeper", action: "hash" },
      { path: "s.length", action: "mask" }, // through a primitive
      { path: "nul.x", action: "mask" }, // through null
      { path: "arr.0", action: "mask" }, // literal segments never index arrays
      { path: "arr.*.missing", action: "drop" },
      { path: "a.constructor", action: "mask" }, // inherited, not own
      { path: "toString", action: "drop" },
    ];
    const out = apply(rules, data);
    assert.equal(out, data);
    assert.deepEqual(out, { a: { b: 1 }, s: "text", arr: [1, { x: 1 }], nul: null });
  });

  it("overlapping rules: the strongest action wins whatever the order (drop > mask > hash)", () => {
    const data = { ip: "203.0.113.7", other: 1 };
    const drop: RedactionRule = { path: "ip", action: "drop" };
    const mask: RedactionRule = { path: "ip", action: "mask" };
    const hash: RedactionRule = { path: "ip", action: "hash" };
    for (const rules of [[mask, drop], [drop, mask], [hash, drop, mask]]) assert.deepEqual(apply(rules, data), { other: 1 });
    for (const rules of [[hash, mask], [mask, hash]]) assert.deepEqual(apply(rules, data), { ip: "[redacted]", other: 1 });
    // two masks: the first listed replacement
    const twoMasks = apply([{ ...mask, replacement: "first" }, { ...mask, replacement: "second" }], data);
    assert.equal(twoMasks.ip, "first");
  });

  it("a wildcard and a literal key combine; an action on a value ignores rules deeper inside it", () => {
    const data = { a: { b: { c: 1, d: 2 }, e: { c: 3 } } };
    assert.deepEqual(
      apply(
        [
          { path: "a.*", action: "mask" },
          { path: "a.b", action: "drop" },
        ],
        data,
      ),
      { a: { e: "[redacted]" } },
    );
    assert.deepEqual(
      apply(
        [
          { path: "a.*.c", action: "mask" },
          { path: "a.b.d", action: "drop" },
        ],
        data,
      ),
      { a: { b: { c: "[redacted]" }, e: { c: "[redacted]" } } },
    );
    // hash of `a` is taken over the value as found, not after `a.b.c` was dropped
    const out = apply(
      [
        { path: "a.b.c", action: "drop" },
        { path: "a", action: "hash" },
      ],
      data,
    );
    assert.equal(out.a, hmac(KEY, JSON.stringify(data.a)));
  });
});

describe("copy-on-write", () => {
  it("never mutates the input and shares untouched subtrees", () => {
    const data = loginData();
    const snapshot = structuredClone(data);
    const out = apply(
      [
        { path: "ip", action: "hash" },
        { path: "details.prompts.*.user_name", action: "mask" },
        { path: "details.request.body.email", action: "drop" },
      ],
      data,
    );
    assert.deepEqual(data, snapshot, "input unchanged");
    assert.notEqual(out, data);
    const inDetails = data.details as Record<string, unknown>;
    const outDetails = out.details as Record<string, unknown>;
    assert.notEqual(outDetails, inDetails, "changed path is copied");
    assert.equal(outDetails.stats, inDetails.stats, "untouched subtree shared");
    assert.equal(outDetails.assessments, inDetails.assessments, "untouched subtree shared");
    const inPrompts = inDetails.prompts as object[];
    const outPrompts = outDetails.prompts as object[];
    assert.notEqual(outPrompts, inPrompts);
    assert.equal(outPrompts[0], inPrompts[0], "unchanged array element shared");
    assert.notEqual(outPrompts[1], inPrompts[1]);
    const inRequest = inDetails.request as Record<string, unknown>;
    const outRequest = outDetails.request as Record<string, unknown>;
    assert.notEqual(outRequest.body, inRequest.body);
    assert.deepEqual(outRequest.body, { password: "*****" });
  });

  it("the same record through two routes with different rules gives two independent results", () => {
    const data = loginData();
    const snapshot = structuredClone(data);
    const a = apply([{ path: "user_name", action: "drop" }], data);
    const b = apply([{ path: "user_name", action: "mask" }], data);
    assert.equal(Object.hasOwn(a, "user_name"), false);
    assert.equal(b.user_name, "[redacted]");
    assert.deepEqual(data, snapshot);
  });

  it("keeps a null prototype when the input has one", () => {
    const data = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1, b: 2 });
    const out = apply([{ path: "a", action: "mask" }], data);
    assert.equal(Object.getPrototypeOf(out), null);
    assert.deepEqual({ ...out }, { a: "[redacted]", b: 2 });
  });
});

describe("__proto__, constructor and prototype keys", () => {
  const parsed = () =>
    JSON.parse('{"__proto__":{"polluted":"yes","ip":"203.0.113.7"},"constructor":{"prototype":{"x":"y"}},"a":"b"}') as Record<
      string,
      unknown
    >;

  it("an own __proto__ key survives copying as data and the prototype stays Object.prototype", () => {
    const data = parsed();
    const out = apply([{ path: "a", action: "mask" }], data);
    assert.notEqual(out, data);
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.ok(Object.hasOwn(out, "__proto__"));
    assert.deepEqual(Object.keys(out), ["__proto__", "constructor", "a"]);
    assert.equal((out as { polluted?: unknown }).polluted, undefined, "the __proto__ value did not become the prototype");
    assert.equal(JSON.stringify(out), '{"__proto__":{"polluted":"yes","ip":"203.0.113.7"},"constructor":{"prototype":{"x":"y"}},"a":"[redacted]"}');
  });

  it("is redacted when addressed, without touching Object.prototype", () => {
    const data = parsed();
    const masked = apply([{ path: "__proto__.ip", action: "mask" }], data);
    assert.equal(JSON.stringify(masked), '{"__proto__":{"polluted":"yes","ip":"[redacted]"},"constructor":{"prototype":{"x":"y"}},"a":"b"}');
    assert.equal(Object.getPrototypeOf(masked), Object.prototype);
    const replaced = apply([{ path: "__proto__", action: "hash" }], data);
    assert.ok(Object.hasOwn(replaced, "__proto__"));
    assert.equal(Object.getPrototypeOf(replaced), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(replaced, "__proto__")?.value, hmac(KEY, '{"polluted":"yes","ip":"203.0.113.7"}'));
    const dropped = apply(
      [
        { path: "__proto__", action: "drop" },
        { path: "constructor.prototype.x", action: "mask" },
      ],
      data,
    );
    assert.equal(JSON.stringify(dropped), '{"constructor":{"prototype":{"x":"[redacted]"}},"a":"b"}');
    const wildcard = apply([{ path: "*", action: "mask" }], data);
    assert.equal(JSON.stringify(wildcard), '{"__proto__":"[redacted]","constructor":"[redacted]","a":"[redacted]"}');
    assert.equal(Object.getPrototypeOf(wildcard), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(({} as Record<string, unknown>).ip, undefined);
    assert.equal(JSON.stringify(data), JSON.stringify(parsed()), "input unchanged");
  });

  it("an inherited __proto__ or constructor is never treated as data", () => {
    const data = { a: 1 };
    const out = apply(
      [
        { path: "__proto__.toString", action: "drop" },
        { path: "constructor.prototype", action: "mask" },
      ],
      data,
    );
    assert.equal(out, data);
    assert.equal(typeof Object.prototype.toString, "function");
  });
});

describe("hash", () => {
  it("is the lowercase hex HMAC-SHA256 of strings as UTF-8 and of other values as JSON", () => {
    const data = { s: "zoë@example.com", n: 42, b: true, o: { k: ["v", 1] }, a: [1, "2"] };
    const out = apply(
      (["s", "n", "b", "o", "a"] as const).map((path) => ({ path, action: "hash" as const })),
      data,
    );
    assert.deepEqual(out, {
      s: createHmac("sha256", Buffer.from(KEY)).update(Buffer.from("zoë@example.com", "utf8")).digest("hex"),
      n: hmac(KEY, "42"),
      b: hmac(KEY, "true"),
      o: hmac(KEY, '{"k":["v",1]}'),
      a: hmac(KEY, '[1,"2"]'),
    });
  });

  it("same value and key: same hash (across records and redactors); different key: different hash", () => {
    const rules: RedactionRule[] = [{ path: "ip", action: "hash" }];
    const one = redactor(rules, KEY).apply({ ip: "203.0.113.7" });
    const two = redactor(rules, KEY).apply({ ip: "203.0.113.7", other: true });
    const bufferKey = redactor(rules, Buffer.from(KEY, "utf8")).apply({ ip: "203.0.113.7" });
    const otherKey = redactor(rules, "another-key").apply({ ip: "203.0.113.7" });
    const otherValue = redactor(rules, KEY).apply({ ip: "203.0.113.8" });
    assert.equal(one.ip, two.ip);
    assert.equal(one.ip, bufferKey.ip);
    assert.notEqual(one.ip, otherKey.ip);
    assert.notEqual(one.ip, otherValue.ip);
    assert.equal(otherKey.ip, hmac("another-key", "203.0.113.7"));
  });

  it("throws without a non-empty key, also when the hash comes from a preset; the flag says a key is used", () => {
    const rules: RedactionSpec[] = [{ path: "ip", action: "hash" }];
    for (const hashKey of [null, "", Buffer.alloc(0)]) {
      assert.throws(() => redactor(rules, hashKey), RedactionError, String(hashKey));
    }
    const presets = { hashed: [{ path: "ip", action: "hash" }] } satisfies Record<string, RedactionRule[]>;
    assert.throws(() => compileRedaction([{ preset: "hashed" }], { presets }), /hash key/);
    assert.equal(compileRedaction([{ preset: "hashed" }], { presets, hashKey: KEY }).hashes, true);
    assert.equal(redactor([{ path: "ip", action: "mask" }], null).hashes, false);
    assert.equal(redactor([{ path: "ip", action: "mask" }], KEY).hashes, false);
  });

  it("the error message never holds the key", () => {
    // A key is only ever missing or empty when this error is raised; check a bad-path error with a key set too.
    const secret = "s3cr3t-key-value";
    try {
      compileRedaction([{ path: "a..b", action: "hash" }], { presets: {}, hashKey: secret });
      assert.fail("should throw");
    } catch (error) {
      assert.ok(error instanceof RedactionError);
      assert.ok(!error.message.includes(secret));
    }
  });
});

describe("compileRedaction", () => {
  it("empty is true without rules, and apply then returns the input", () => {
    const none = compileRedaction([], noPresets);
    assert.equal(none.empty, true);
    assert.equal(none.hashes, false);
    const data = { ip: "203.0.113.7" };
    assert.equal(none.apply(data), data);
    assert.equal(compileRedaction([{ preset: "p" }], { presets: { p: [] } }).empty, true);
    assert.equal(redactor([{ path: "ip", action: "mask" }]).empty, false);
  });

  it("unknown presets throw RedactionError, including names that exist on Object.prototype", () => {
    const presets = { personal: [{ path: "ip", action: "mask" }] } satisfies Record<string, RedactionRule[]>;
    for (const preset of ["nope", "constructor", "toString", "__proto__", "hasOwnProperty"]) {
      assert.throws(
        () => compileRedaction([{ preset }], { presets }),
        (error: unknown) => error instanceof RedactionError && error.message.includes(`unknown redaction preset ${JSON.stringify(preset)}`),
        preset,
      );
    }
  });

  it("validates rules given directly (not through the schema)", () => {
    const cases: unknown[] = [
      { path: "a", action: "erase" },
      { path: "a", action: "hash", replacement: "x" },
      { path: 5, action: "mask" },
      { path: "a", action: "mask", replacement: 5 },
    ];
    for (const rule of cases) assert.throws(() => redactor([rule as RedactionRule]), RedactionError, JSON.stringify(rule));
  });

  it("presets and rules combine; a preset's bad path names the preset", () => {
    const presets = { base: [{ path: "ip", action: "mask" }], broken: [{ path: "a..b", action: "drop" }] } satisfies Record<
      string,
      RedactionRule[]
    >;
    const r = compileRedaction([{ preset: "base" }, { path: "user_name", action: "drop" }], { presets });
    assert.deepEqual(r.apply({ ip: "1", user_name: "u", k: 1 }), { ip: "[redacted]", k: 1 });
    assert.throws(() => compileRedaction([{ preset: "broken" }], { presets }), /preset "broken"/);
  });
});

describe("redactionSpecSchema", () => {
  const list = z.array(redactionSpecSchema);
  const messages = (input: unknown): string[] => {
    const result = list.safeParse(input);
    assert.equal(result.success, false, JSON.stringify(input));
    return result.error?.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`) ?? [];
  };

  it("accepts rules and preset references", () => {
    const input = [{ preset: "personal" }, { path: "details.prompts[*].ip", action: "mask", replacement: "x" }, { path: "ip", action: "hash" }];
    assert.deepEqual(list.parse(input), input);
  });

  it("rejects mistakes with messages that name the problem", () => {
    assert.deepEqual(messages([{ path: "a..b", action: "mask" }]), ['0.path: redaction path "a..b" has an empty segment 2 (use "a.b", "a.*" or "a[*]")']);
    assert.deepEqual(messages([{ path: "a", action: "erase" }]), ['0.action: action must be one of "drop", "mask", "hash"']);
    assert.deepEqual(messages([{ path: "a", action: "hash", replacement: "x" }]), ['0.replacement: replacement is only allowed with action "mask"']);
    assert.deepEqual(messages([{ path: "a", action: "mask", extra: 1 }]), ['0: Unrecognized key: "extra"']);
    assert.deepEqual(messages([{ preset: "personal", path: "a" }]), ['0: Unrecognized key: "path"']);
    assert.deepEqual(messages([{ preset: "Personal Data" }]), ['0.preset: preset names are lowercase words joined by "-", e.g. "personal"']);
    assert.deepEqual(messages(["ip"]), ['0: a redaction entry must be an object: {"path", "action"} or {"preset"}']);
    assert.deepEqual(messages([{ action: "mask" }]), ['0.path: path must be a string, e.g. "user_name" or "details.prompts.*.user_name"']);
  });
});

describe("presets file", () => {
  const presetsPath = repoPath("config/redaction-presets.json");
  const presets = loadRedactionPresets(presetsPath);
  const tmp = mkdtempSync(join(tmpdir(), "redact-test-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("config/redaction-presets.json has personal (mask only, no key needed) and personal-hashed (needs a key)", () => {
    assert.deepEqual(Object.keys(presets).sort(), ["personal", "personal-hashed"]);
    const personal = presets.personal ?? [];
    assert.ok(personal.length > 0);
    assert.ok(personal.every((rule) => rule.action === "mask"));
    assert.equal(compileRedaction([{ preset: "personal" }], { presets }).hashes, false);
    assert.throws(() => compileRedaction([{ preset: "personal-hashed" }], { presets }), RedactionError);
  });

  it("personal-hashed covers exactly the paths of personal and hashes the identifying ones", () => {
    const paths = (name: string) => (presets[name] ?? []).map((rule) => rule.path);
    assert.deepEqual(paths("personal-hashed"), paths("personal"));
    assert.equal(new Set(paths("personal")).size, paths("personal").length, "no duplicate paths");
    const hashed = new Set((presets["personal-hashed"] ?? []).filter((rule) => rule.action === "hash").map((rule) => rule.path));
    for (const path of ["user_name", "email", "ip", "client_ip", "details.prompts.*.user_name", "details.request.ip", "details.body.phone_number"]) {
      assert.ok(hashed.has(path), path);
    }
    for (const path of ["user_agent", "details.body.given_name", "details.body.address"]) assert.ok(!hashed.has(path), path);
  });

  const write = (name: string, content: unknown) => {
    const file = join(tmp, name);
    writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
    return file;
  };
  const good = { presets: { p: { description: "d", rules: [{ path: "ip", action: "mask" }] } } };

  it("loads a minimal valid file", () => {
    assert.deepEqual({ ...loadRedactionPresets(write("good.json", good)) }, { p: [{ path: "ip", action: "mask" }] });
  });

  it("rejects bad files with RedactionError naming the file and the place", () => {
    const cases: [string, unknown, RegExp][] = [
      ["not-json.json", "{", /not valid JSON/],
      ["bad-path.json", { presets: { p: { description: "d", rules: [{ path: "a..b", action: "mask" }] } } }, /presets\.p\.rules\.0\.path: redaction path "a\.\.b"/],
      ["bad-name.json", { presets: { P: good.presets.p } }, /presets\.P: preset names are lowercase/],
      ["proto-name.json", `{"presets":{"__proto__":${JSON.stringify(good.presets.p)}}}`, /presets\.__proto__: preset names are lowercase/],
      ["no-description.json", { presets: { p: { rules: good.presets.p.rules } } }, /presets\.p\.description/],
      ["no-rules.json", { presets: { p: { description: "d", rules: [] } } }, /a preset needs at least one rule/],
      ["extra-key.json", { ...good, extra: 1 }, /Unrecognized key: "extra"/],
    ];
    for (const [name, content, pattern] of cases) {
      const file = write(name, content);
      assert.throws(
        () => loadRedactionPresets(file),
        (error: unknown) => error instanceof RedactionError && pattern.test(error.message) && error.message.includes(file),
        name,
      );
    }
    assert.throws(() => loadRedactionPresets(join(tmp, "missing.json")), /ENOENT/);
  });
});

// --- the personal presets on real and synthetic Auth0 records ------------------------------------

interface PersonalFixture {
  origin: "elastic" | "synthetic";
  source: string;
  /** Raw personal values the record holds; none may survive the preset. */
  personal: string[];
  record: { log_id: string; data: Record<string, unknown> };
}

const fixtures = readFileSync(repoPath("test/fixtures/redaction/personal-records.jsonl"), "utf8")
  .split("\n")
  .filter((line) => line !== "")
  .map((line) => JSON.parse(line) as PersonalFixture);

describe("personal presets on sample records", () => {
  const presets = loadRedactionPresets(repoPath("config/redaction-presets.json"));
  const personal = compileRedaction([{ preset: "personal" }], { presets });
  const personalHashed = compileRedaction([{ preset: "personal-hashed" }], { presets, hashKey: KEY });

  it("the fixtures hold real and synthetic records, and each lists personal values it really contains", () => {
    assert.ok(fixtures.filter((f) => f.origin === "elastic").length >= 5);
    assert.ok(fixtures.filter((f) => f.origin === "synthetic").length >= 10);
    for (const f of fixtures) {
      assert.ok(f.personal.length > 0, f.source);
      const text = JSON.stringify(f.record.data);
      for (const value of f.personal) assert.ok(text.includes(value), `${f.source}: ${value}`);
    }
  });

  it("the synthetic records follow Auth0's schema for their code", () => {
    const schemas = JSON.parse(readFileSync(repoPath("test/fixtures/auth0-log-schemas/schemas.json"), "utf8")) as Record<string, object>;
    const ajv = new Ajv({ strict: false, allErrors: true });
    ajvFormats.default(ajv);
    for (const f of fixtures.filter((fixture) => fixture.origin === "synthetic")) {
      const code = String(f.record.data.type);
      const schema = schemas[code];
      assert.ok(schema, `no schema for ${code}`);
      const validate = ajv.compile(schema);
      assert.ok(validate(f.record.data), `${code}: ${JSON.stringify(validate.errors)}`);
    }
  });

  for (const f of fixtures) {
    it(`${f.record.data.type} (${f.origin}): no personal value survives personal or personal-hashed`, () => {
      const data = f.record.data;
      const snapshot = structuredClone(data);
      for (const [name, r] of [
        ["personal", personal],
        ["personal-hashed", personalHashed],
      ] as const) {
        const out = r.apply(data);
        const text = JSON.stringify(out);
        for (const value of f.personal) assert.ok(!text.includes(value), `${name} left ${JSON.stringify(value)}`);
        // Only values change: the record keeps its identity and its shape.
        for (const key of ["type", "log_id", "date", "client_id", "user_id", "connection"]) assert.deepEqual(out[key], data[key], key);
        assert.deepEqual(Object.keys(out), Object.keys(data));
      }
      assert.deepEqual(data, snapshot, "input unchanged");
    });
  }

  it("personal-hashed keeps identifiers correlatable: the same email hashes alike in different records", () => {
    const byType = (type: string) => fixtures.find((f) => f.record.data.type === type && f.origin === "elastic")?.record.data;
    const fs = byType("fs");
    const sapi = byType("sapi");
    assert.ok(fs && sapi);
    const fsOut = personalHashed.apply(fs);
    const sapiOut = personalHashed.apply(sapi) as { details: { request: { body: { email: string } } } };
    assert.equal(fs.user_name, "neo@test.com");
    assert.equal(fsOut.user_name, hmac(KEY, "neo@test.com"));
    assert.equal(sapiOut.details.request.body.email, fsOut.user_name);
    assert.equal(personal.apply(fs).user_name, "[redacted]");
  });
});

// --- against a reference implementation ----------------------------------------------------------

const DROPPED = Symbol("dropped");
const RANK: Record<RedactionAction, number> = { hash: 1, mask: 2, drop: 3 };

/**
 * The semantics, written plainly: at each location (from the root down), the rules whose path
 * matches it exactly decide (strongest action, then the first listed); otherwise recurse.
 */
function reference(data: Record<string, unknown>, rules: RedactionRule[], key: string): Record<string, unknown> {
  const parsed = rules.map((rule, order) => ({ ...rule, order, segments: rule.path.replace(/\[\*\]/g, ".*").split(".") }));
  type Step = { key: string } | "index";
  const visit = (value: unknown, at: Step[]): unknown => {
    const matching = parsed
      .filter((rule) => rule.segments.length === at.length && rule.segments.every((s, i) => s === "*" || (at[i] !== "index" && (at[i] as { key: string }).key === s)))
      .sort((a, b) => RANK[b.action] - RANK[a.action] || a.order - b.order);
    const rule = matching[0];
    if (rule) {
      if (rule.action === "drop") return DROPPED;
      if (value === null || value === undefined) return value;
      if (rule.action === "mask") return rule.replacement ?? "[redacted]";
      return hmac(key, typeof value === "string" ? value : JSON.stringify(value));
    }
    if (Array.isArray(value)) return value.map((v) => visit(v, [...at, "index"])).filter((v) => v !== DROPPED);
    if (typeof value === "object" && value !== null) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(value)) {
        const v = visit((value as Record<string, unknown>)[k], [...at, { key: k }]);
        if (v !== DROPPED) Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
      }
      return out;
    }
    return value;
  };
  return visit(data, []) as Record<string, unknown>;
}

describe("against a reference implementation (fast-check)", () => {
  const keys = ["a", "b", "c", "__proto__", "constructor"] as const;
  // Documents are built as JSON text and parsed, as real input is (own __proto__ keys included).
  const { json } = fc.letrec<{ json: string }>((tie) => ({
    json: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.constantFrom("null", "1", "true", '"x"', '"y"'),
      fc.array(tie("json"), { maxLength: 3 }).map((items) => `[${items.join(",")}]`),
      fc
        .array(fc.tuple(fc.constantFrom(...keys), tie("json")), { maxLength: 4 })
        .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`),
    ),
  }));
  const document = fc
    .array(fc.tuple(fc.constantFrom(...keys), json), { maxLength: 4 })
    .map((entries) => JSON.parse(`{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`) as Record<string, unknown>);
  const rule: fc.Arbitrary<RedactionRule> = fc
    .tuple(
      fc.array(fc.constantFrom(...keys, "*"), { minLength: 1, maxLength: 3 }),
      fc.constantFrom<RedactionAction>("drop", "mask", "hash"),
      fc.option(fc.constantFrom("#1", "#2"), { nil: undefined }),
    )
    .map(([segments, action, replacement]) =>
      action === "mask" && replacement !== undefined ? { path: segments.join("."), action, replacement } : { path: segments.join("."), action },
    );

  it("apply equals the reference and leaves the input unchanged", () => {
    fc.assert(
      fc.property(document, fc.array(rule, { minLength: 1, maxLength: 4 }), (data, rules) => {
        const before = JSON.stringify(data);
        const out = compileRedaction(rules, { presets: {}, hashKey: KEY }).apply(data);
        assert.equal(JSON.stringify(data), before);
        assert.equal(JSON.stringify(out), JSON.stringify(reference(data, rules, KEY)));
        assert.equal(Object.getPrototypeOf(out), Object.prototype);
      }),
      { numRuns: 500 },
    );
  });
});
