import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import ajvFormats from "ajv-formats";
import fc from "fast-check";
import type { Auth0LogRecord } from "../../src/auth0/record.js";
import { EventTypeRegistry } from "../../src/auth0/registry.js";
import { DEFAULT_TYPE_PREFIX, EventMapper, MappingError, eventId, mapRecord } from "../../src/cloudevents/map.js";
import type { MappingOptions } from "../../src/cloudevents/map.js";

// Repo root is two levels up from test/unit.
const root = new URL("../../", import.meta.url);
const readText = (relative: string) => readFileSync(fileURLToPath(new URL(relative, root)), "utf8");
const readJson = (relative: string): unknown => JSON.parse(readText(relative));

const tsvText = readText("config/auth0-log-event-types.tsv");
const registry = EventTypeRegistry.fromTsv(tsvText);
const defaults: MappingOptions = { typePrefix: DEFAULT_TYPE_PREFIX };

/** The table read independently of the registry: code -> api_filter ("other" when empty). */
const tableFilters = new Map(
  tsvText
    .trim()
    .split("\n")
    .slice(1)
    .map((line) => {
      const cols = line.split("\t");
      return [cols[0] ?? "", cols[4] || "other"] as const;
    }),
);

/** Auth0's per-code JSON Schemas (test/fixtures/auth0-log-schemas, Apache-2.0). */
const schemas = readJson("test/fixtures/auth0-log-schemas/schemas.json") as Record<string, object>;
const ajv = new Ajv({ strict: false, allErrors: true });
ajvFormats.default(ajv);
function assertMatchesSchema(code: string, data: unknown): void {
  const schema = schemas[code];
  assert.ok(schema, `no schema for ${code}`);
  const validate = ajv.getSchema(code) ?? (ajv.addSchema(schema, code), ajv.getSchema(code));
  assert.ok(validate);
  assert.ok(validate(data), `${code}: ${ajv.errorsText(validate.errors)}`);
}

/** The event as it goes on the wire (drops the attributes cloudevents leaves undefined). */
const wire = (event: object): Record<string, unknown> => JSON.parse(JSON.stringify(event)) as Record<string, unknown>;

function record(data: Record<string, unknown>, logId?: string): Auth0LogRecord {
  const withType = { type: "s", ...data } as Auth0LogRecord["data"];
  return logId === undefined ? { data: withType } : { log_id: logId, data: withType };
}

describe("golden: one record per API filter category", () => {
  const index = readJson("test/fixtures/golden/index.json") as {
    category: string;
    code: string;
    origin: "elastic" | "synthetic";
  }[];

  it("covers every category of the table, plus unknown", () => {
    assert.deepEqual(index.map((g) => g.category).sort(), [...registry.categories(), "unknown"].sort());
  });

  for (const golden of index) {
    it(`${golden.category} (${golden.code})`, () => {
      const input = readJson(`test/fixtures/golden/${golden.category}.input.json`) as Auth0LogRecord;
      const expected = readJson(`test/fixtures/golden/${golden.category}.expected.json`);
      assert.equal(input.data.type, golden.code);
      assert.equal(registry.lookup(golden.code).apiFilter, golden.category);

      const { event, code, info } = mapRecord(input, registry, defaults);
      assert.equal(code, golden.code);
      assert.equal(info.apiFilter, golden.category);
      assert.deepEqual(wire(event), expected);
    });
  }

  it("synthetic inputs follow Auth0's schema for their code", () => {
    let checked = 0;
    for (const golden of index.filter((g) => g.origin === "synthetic" && g.code in schemas)) {
      const input = readJson(`test/fixtures/golden/${golden.category}.input.json`) as Auth0LogRecord;
      assertMatchesSchema(golden.code, input.data);
      checked++;
    }
    assert.equal(checked, 9); // all synthetic ones except fapi (legacy) and the invented code
  });
});

describe("every code in the table maps to a valid CloudEvent", () => {
  const examples = readText("test/fixtures/auth0-examples.jsonl")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Auth0LogRecord);

  it("has one example per code, in table order", () => {
    assert.equal(examples.length, 197);
    assert.deepEqual(
      examples.map((r) => r.data.type),
      [...tableFilters.keys()],
    );
  });

  it("examples of codes with a schema follow it (166 codes)", () => {
    const withSchema = examples.filter((r) => r.data.type in schemas);
    assert.equal(withSchema.length, 166);
    for (const example of withSchema) assertMatchesSchema(example.data.type, example.data);
  });

  it("maps each example with the right type, id and extensions", () => {
    for (const example of examples) {
      const code = example.data.type;
      const { event, info, structured } = mapRecord(example, registry, defaults);
      assert.equal(info.known, true, code);
      // What the bridge sends is its own plain object: it must say exactly what the CloudEvent says.
      assert.deepEqual(JSON.parse(JSON.stringify(structured)), JSON.parse(JSON.stringify(event)), code);
      assert.equal(event.type, `com.auth0.log.${code}`);
      assert.equal(event.auth0code, code);
      assert.equal(event.auth0category, tableFilters.get(code), code);
      assert.equal(event.id, example.log_id);
      assert.equal(event.time, example.data.date);
      const host = example.data.hostname ?? example.data.tenant_name;
      assert.equal(event.source, `urn:auth0:${String(host)}`, code);
      assert.equal(event.validate(), true);
      for (const key of Object.keys(wire(event))) {
        if (key !== "data") assert.match(key, /^[a-z0-9]+$/);
      }
    }
  });
});

describe("id", () => {
  it("is the envelope log_id", () => {
    const r = record({ log_id: "900inner", _id: "900underscore" }, "900top");
    assert.equal(eventId(r), "900top");
    assert.equal(mapRecord(r, registry, defaults).event.id, "900top");
  });

  it("falls back to data.log_id, then data._id", () => {
    assert.equal(eventId(record({ log_id: "900inner", _id: "900underscore" })), "900inner");
    assert.equal(eventId(record({ log_id: "900inner" }, "")), "900inner");
    assert.equal(eventId(record({ log_id: "", _id: "900underscore" })), "900underscore");
    assert.equal(mapRecord(record({ _id: "900underscore" }), registry, defaults).event.id, "900underscore");
  });

  it("ignores ids that are not non-empty strings", () => {
    const r = { log_id: 42, data: { type: "s", log_id: null, _id: "" } } as unknown as Auth0LogRecord;
    assert.match(eventId(r), /^sha256:[0-9a-f]{64}$/);
  });

  it("is a SHA-256 of the canonical JSON (keys sorted) when there is no log id", () => {
    const r: Auth0LogRecord = {
      data: {
        type: "f",
        date: "2024-01-15T10:30:00.000Z",
        details: { b: [3, { z: 1, a: null }], a: true },
        hostname: "example-tenant.eu.auth0.com",
      },
    };
    // Pinned: computed independently with Python (json.dumps(sort_keys=True, separators=(",", ":"))).
    const expected = "sha256:17d8e2f64341574bc1d1b971dfd691cc77f0b17543df11dd1a1ad1307169fca8";
    assert.equal(eventId(r), expected);
    assert.equal(mapRecord(r, registry, defaults).event.id, expected);
  });

  it("does not depend on key order (a redelivery keeps its id)", () => {
    const a: Auth0LogRecord = { data: { type: "f", ip: "203.0.113.9", details: { x: 1, y: [{ p: 1, q: 2 }] } } };
    const b = { data: { details: { y: [{ q: 2, p: 1 }], x: 1 }, ip: "203.0.113.9", type: "f" } } as Auth0LogRecord;
    assert.equal(eventId(a), eventId(b));
  });

  it("differs for different records", () => {
    const a: Auth0LogRecord = { data: { type: "f", ip: "203.0.113.9" } };
    const b: Auth0LogRecord = { data: { type: "f", ip: "203.0.113.10" } };
    const c: Auth0LogRecord = { data: { type: "f", ip: "203.0.113.9", details: [1, 2] } };
    const d: Auth0LogRecord = { data: { type: "f", ip: "203.0.113.9", details: [2, 1] } };
    const ids = new Set([a, b, c, d].map(eventId));
    assert.equal(ids.size, 4);
  });

  it("property: shuffling keys at every level never changes the hash id", () => {
    const reversed = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(reversed);
      if (v !== null && typeof v === "object") {
        return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversed(x)]));
      }
      return v;
    };
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (fields) => {
        const r = { data: { ...fields, type: "f" } } as Auth0LogRecord;
        delete r.data.log_id;
        delete r.data._id;
        assert.equal(eventId(r), eventId(reversed(r) as Auth0LogRecord));
      }),
    );
  });
});

describe("subject", () => {
  const subjectOf = (data: Record<string, unknown>) => mapRecord(record(data, "900"), registry, defaults).event;

  it("is users/<user_id> when user_id is set", () => {
    assert.equal(subjectOf({ user_id: "auth0|abc", client_id: "cid" }).subject, "users/auth0|abc");
  });

  it("is clients/<client_id> when user_id is empty or missing", () => {
    assert.equal(subjectOf({ user_id: "", client_id: "cid" }).subject, "clients/cid");
    assert.equal(subjectOf({ client_id: "cid" }).subject, "clients/cid");
    assert.equal(subjectOf({ user_id: 7, client_id: "cid" }).subject, "clients/cid");
  });

  it("is absent when neither is a non-empty string", () => {
    for (const data of [{}, { user_id: "", client_id: "" }, { client_id: null }]) {
      const event = subjectOf(data);
      assert.equal(event.subject, undefined);
      assert.equal("subject" in wire(event), false);
    }
  });
});

describe("source and auth0tenant", () => {
  const map = (data: Record<string, unknown>, options: MappingOptions = defaults) =>
    mapRecord(record(data, "900"), registry, options).event;

  it("use data.hostname first", () => {
    const event = map({ hostname: "login.example.com", tenant_name: "example" });
    assert.equal(event.source, "urn:auth0:login.example.com");
    assert.equal(event.auth0tenant, "login.example.com");
  });

  it("fall back to data.tenant_name", () => {
    for (const hostname of [undefined, ""]) {
      const event = map({ hostname, tenant_name: "example" });
      assert.equal(event.source, "urn:auth0:example");
      assert.equal(event.auth0tenant, "example");
    }
  });

  it("source is urn:auth0:unknown and auth0tenant absent when neither is there", () => {
    const event = map({ hostname: "", tenant_name: 5 });
    assert.equal(event.source, "urn:auth0:unknown");
    assert.equal("auth0tenant" in wire(event), false);
  });

  it("CLOUDEVENTS_SOURCE (options.source) wins for every event", () => {
    const options = { ...defaults, source: "https://auth0-bridge.example.com/tenants/prod" };
    assert.equal(map({ hostname: "login.example.com" }, options).source, options.source);
    assert.equal(map({}, options).source, options.source);
    // auth0tenant still tells where the event came from.
    assert.equal(map({ hostname: "login.example.com" }, options).auth0tenant, "login.example.com");
  });

  it("an empty options.source counts as not set", () => {
    assert.equal(map({ tenant_name: "example" }, { ...defaults, source: "" }).source, "urn:auth0:example");
  });
});

describe("time", () => {
  const map = (date: unknown) => mapRecord(record({ date }, "900"), registry, defaults).event;
  const assertNow = (time: string | undefined, before: number) => {
    assert.ok(time);
    const ms = Date.parse(time);
    assert.ok(ms >= before && ms <= Date.now(), time);
  };

  it("is data.date", () => {
    assert.equal(map("2021-11-03T03:06:05.696Z").time, "2021-11-03T03:06:05.696Z");
  });

  it("is normalised to RFC 3339 UTC", () => {
    assert.equal(map("2024-01-15T11:30:00+01:00").time, "2024-01-15T10:30:00.000Z");
    assert.equal(map("2024-01-15T10:30:00Z").time, "2024-01-15T10:30:00.000Z");
  });

  it("defaults to now when data.date is absent, invalid or not a string", () => {
    const before = Date.now();
    for (const date of [undefined, "", "not a date", "2024-13-45T99:00:00Z", "+010000-01-01T00:00:00.000Z", 1705314600000, { $date: "2024-01-15T10:30:00Z" }]) {
      assertNow(map(date).time, before);
    }
  });

  it("takes only strict RFC 3339: no impossible days, no missing offset, no trailing text", () => {
    const before = Date.now();
    for (const date of ["2026-02-30T00:00:00Z", "2026-04-31T12:00:00Z", "2026-01-01T00:00:00", "2020-01-01T00:00:00Z\u0000garbage", "2020-01-01 00:00:00Z", "Nov 3 2021", "1", "2026-01-01T24:00:00Z"]) {
      assertNow(map(date).time, before);
    }
    assert.equal(map("2024-02-29T23:59:59.123456Z").time, "2024-02-29T23:59:59.123Z", "a leap day is a day");
    assert.equal(map("2024-01-15t10:30:00z").time, "2024-01-15T10:30:00.000Z", "RFC 3339 allows lower-case t and z");
  });
});

describe("CloudEvents string rules", () => {
  it("a data field with control characters is not used for an attribute; the event still maps", () => {
    const event = mapRecord(record({ user_id: "auth0|u\nx", client_id: "c\u0000", hostname: "bad\u0000host", tenant_name: "acme" }, "901"), registry, defaults).event;
    assert.equal(event.subject, undefined);
    assert.equal(event.source, "urn:auth0:acme", "the next source candidate is used");
    assert.equal((event as unknown as Record<string, unknown>).auth0tenant, "acme");
    assert.equal((event.data as Record<string, unknown>).user_id, "auth0|u\nx", "data itself is unchanged");
  });

  it("a required attribute with control characters or a lone surrogate makes the record invalid", () => {
    for (const data of [{ type: "s\u0000" }, { type: "\ud800" }, { type: "s\u0085" }]) {
      assert.throws(
        () => mapRecord({ log_id: "902", data } as Auth0LogRecord, registry, defaults),
        (e: unknown) => e instanceof MappingError && e.reason === "invalid_cloudevent",
        JSON.stringify(data),
      );
    }
    assert.throws(() => mapRecord({ log_id: "id\r\n", data: { type: "s" } } as Auth0LogRecord, registry, defaults), MappingError);
    // A paired surrogate (an emoji) is fine.
    assert.equal(mapRecord({ log_id: "903", data: { type: "s", user_id: "u\u{1F600}" } } as Auth0LogRecord, registry, defaults).event.subject, "users/u\u{1F600}");
  });
});

describe("type", () => {
  it("is <typePrefix>.<code>", () => {
    const r = record({ type: "gd_send_sms" }, "900");
    assert.equal(mapRecord(r, registry, defaults).event.type, "com.auth0.log.gd_send_sms");
    assert.equal(mapRecord(r, registry, { typePrefix: "com.example.idp" }).event.type, "com.example.idp.gd_send_sms");
    assert.equal(mapRecord(r, registry, { typePrefix: "" }).event.type, "com.auth0.log.gd_send_sms");
  });

  it("uses typeOverride when it returns a string", () => {
    const seen: string[] = [];
    const options: MappingOptions = {
      ...defaults,
      typeOverride: (info) => {
        seen.push(`${info.code}:${info.apiFilter}`);
        return info.apiFilter === "auth.login.fail" ? "com.example.security.login_failed" : undefined;
      },
    };
    assert.equal(mapRecord(record({ type: "fp" }, "1"), registry, options).event.type, "com.example.security.login_failed");
    assert.equal(mapRecord(record({ type: "s" }, "2"), registry, options).event.type, "com.auth0.log.s");
    assert.equal(mapRecord(record({ type: "zzz" }, "3"), registry, options).event.type, "com.auth0.log.zzz");
    assert.deepEqual(seen, ["fp:auth.login.fail", "s:auth.login.success", "zzz:unknown"]);
  });
});

describe("extensions", () => {
  it("carry the code and the category, 'unknown' for codes outside the table", () => {
    const known = mapRecord(record({ type: "sapi" }, "1"), registry, defaults);
    assert.equal(known.event.auth0code, "sapi");
    assert.equal(known.event.auth0category, "management.success");
    const unknown = mapRecord(record({ type: "new_code_2030" }, "2"), registry, defaults);
    assert.equal(unknown.event.auth0code, "new_code_2030");
    assert.equal(unknown.event.auth0category, "unknown");
    assert.equal(unknown.info.known, false);
  });
});

describe("data", () => {
  it("is the record's own object, unchanged and not frozen", () => {
    const r = readJson("test/fixtures/golden/management.success.input.json") as Auth0LogRecord;
    const snapshot = structuredClone(r);
    const { event } = mapRecord(r, registry, defaults);
    assert.equal(event.data, r.data);
    assert.deepEqual(r, snapshot);
    assert.equal(event.datacontenttype, "application/json");
    // cloudevents 10 freezes the event itself, shallowly.
    assert.equal(Object.isFrozen(event), true);
    assert.equal(Object.isFrozen(r.data), false);
    assert.equal(Object.isFrozen(r.data.details), false);
  });

  it("the event passes cloudevents' own validation", () => {
    const r = readJson("test/fixtures/golden/auth.login.success.input.json") as Auth0LogRecord;
    assert.equal(mapRecord(r, registry, defaults).event.validate(), true);
  });
});

describe("MappingError", () => {
  it("wraps cloudevents' validation error as invalid_cloudevent, without record content", () => {
    const r = record({ hostname: "bad host name with spaces", user_id: "auth0|secret-user" }, "900");
    assert.throws(
      () => mapRecord(r, registry, defaults),
      (err: unknown) => {
        assert.ok(err instanceof MappingError);
        assert.equal(err.name, "MappingError");
        assert.equal(err.reason, "invalid_cloudevent");
        assert.match(err.message, /\/source/);
        assert.doesNotMatch(err.message, /bad host|secret-user/);
        return true;
      },
    );
  });

  it("an override that returns an empty type is invalid_cloudevent", () => {
    assert.throws(() => mapRecord(record({}, "1"), registry, { ...defaults, typeOverride: () => "" }), {
      name: "MappingError",
      reason: "invalid_cloudevent",
    });
  });

  it("rejects records without data or data.type", () => {
    const noData = { log_id: "1", data: null } as unknown as Auth0LogRecord;
    assert.throws(() => mapRecord(noData, registry, defaults), { reason: "missing_data" });
    const noType = { log_id: "1", data: { type: "" } } as Auth0LogRecord;
    assert.throws(() => mapRecord(noType, registry, defaults), { reason: "missing_type" });
  });

  it("property: any record either maps to a valid event or throws MappingError", () => {
    fc.assert(
      fc.property(
        fc.record({
          hostname: fc.option(fc.string(), { nil: undefined }),
          tenant_name: fc.option(fc.string(), { nil: undefined }),
          user_id: fc.option(fc.oneof(fc.string(), fc.integer()), { nil: undefined }),
          client_id: fc.option(fc.oneof(fc.string(), fc.constant(null)), { nil: undefined }),
          date: fc.option(fc.oneof(fc.string(), fc.date({ noInvalidDate: true }).map((d) => d.toISOString())), { nil: undefined }),
          type: fc.oneof(fc.constantFrom(...registry.codes()), fc.string({ minLength: 1 })),
        }),
        (data) => {
          const r = { data } as Auth0LogRecord;
          try {
            const { event } = mapRecord(r, registry, defaults);
            assert.equal(event.validate(), true);
            assert.equal(event.data, r.data);
          } catch (err) {
            assert.ok(err instanceof MappingError, String(err));
            assert.equal(err.reason, "invalid_cloudevent");
          }
        },
      ),
    );
  });
});

describe("EventMapper (the pipeline's mapper) agrees with mapRecord", () => {
  const examples = readText("test/fixtures/auth0-examples.jsonl").trim().split("\n").map((line) => JSON.parse(line) as Auth0LogRecord);
  /** mapRecord's outcome as what goes on the wire, or the reason it refused the record. */
  const strict = (record: Auth0LogRecord, options: MappingOptions) => {
    try {
      return { ok: JSON.parse(JSON.stringify(mapRecord(record, registry, options).event)) as Record<string, unknown> };
    } catch (error) {
      if (error instanceof MappingError) return { reason: error.reason };
      throw error;
    }
  };
  const fast = (mapper: EventMapper, record: Auth0LogRecord) => {
    try {
      const wire = mapper.map(record);
      assert.equal(wire.id, wire.structured.id);
      return { ok: JSON.parse(JSON.stringify(wire.structured)) as Record<string, unknown> };
    } catch (error) {
      if (error instanceof MappingError) return { reason: error.reason };
      throw error;
    }
  };
  const VALID_DATES: unknown[] = ["2026-11-01T10:00:00.000Z", "2026-11-01T10:00:00+02:00"];
  // Without a usable date both stamp "now": compare everything else.
  const withoutNow = (result: { ok?: Record<string, unknown>; reason?: string }, record: Auth0LogRecord) => {
    if (!result.ok || VALID_DATES.includes((record.data as { date?: unknown }).date)) return result;
    const { time, ...rest } = result.ok;
    assert.match(String(time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    return { ok: rest };
  };

  it("on an example of every code, twice (the second time from its validation cache)", () => {
    const mapper = new EventMapper(registry, defaults);
    for (let round = 0; round < 2; round++) {
      for (const example of examples) assert.deepEqual(fast(mapper, example), strict(example, defaults), example.data.type);
    }
  });

  it("on generated records: the same event, or the same refusal, whatever the cache holds", () => {
    const mapper = new EventMapper(registry, defaults);
    // Few distinct values, so that the cache is hit with both valid and invalid neighbours.
    const text = fc.constantFrom("acme.eu.auth0.com", "bad host", "üñí.example", "tab\there", "a{b}", "", "x%zz", "ok-tenant", "\ud800", "[::1]");
    const date = fc.constantFrom("2026-11-01T10:00:00.000Z", "2026-11-01T10:00:00+02:00", "2026-02-30T00:00:00Z", "yesterday", 42, undefined);
    const record = fc.record(
      {
        log_id: fc.constantFrom("900abc", "", "id with space", "\u0001ctl", undefined),
        data: fc.record(
          {
            type: fc.constantFrom("s", "f", "sapi", "brand_new_code", "bad code", "\u0000"),
            hostname: text,
            tenant_name: text,
            user_id: fc.constantFrom("auth0|1", "", "\n", undefined),
            client_id: fc.constantFrom("c1", "", undefined),
            date,
          },
          { requiredKeys: ["type"] },
        ),
      },
      { requiredKeys: ["data"] },
    );
    fc.assert(
      fc.property(record, (r) => {
        const rec = r as unknown as Auth0LogRecord;
        assert.deepEqual(withoutNow(fast(mapper, rec), rec), withoutNow(strict(rec, defaults), rec));
      }),
      { numRuns: 2000 },
    );
  });
});
