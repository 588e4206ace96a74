import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { decodeBody, locateSyntaxError, type DecodeLimits } from "../../src/auth0/decode.js";
import { BodyParseError } from "../../src/auth0/record.js";
import type { AcceptedItem, Auth0LogRecord, DecodedBody, DecodedItem, RejectedItem } from "../../src/auth0/record.js";

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), "utf8");
const SAMPLE_JSONL = fixture("format-json-lines.jsonl");
const SAMPLE_ARRAY = fixture("format-json-array.json");
const SAMPLE_OBJECT = fixture("format-json-object.json");
const SAMPLE_RECORDS = JSON.parse(SAMPLE_ARRAY) as Auth0LogRecord[];
const SAMPLE_LINES = SAMPLE_JSONL.split("\n").filter((line) => line !== "");

const GOOD = '{"log_id":"1","data":{"type":"s"}}';
// Put into rejected records and bad lines to prove that details never echo the body.
const SECRET = "s3cr3t-VALUE";

function records(decoded: DecodedBody): Auth0LogRecord[] {
  return decoded.items.map((item, i) => {
    assert.ok(item.ok, `item ${i} should be accepted, got ${JSON.stringify(item)}`);
    return item.record;
  });
}

function rejectedItem(item: DecodedItem | undefined): RejectedItem {
  assert.ok(item && !item.ok, `expected a rejected item, got ${JSON.stringify(item)}`);
  return item;
}

function acceptedItem(item: DecodedItem | undefined): AcceptedItem {
  assert.ok(item?.ok, `expected an accepted item, got ${JSON.stringify(item)}`);
  return item;
}

/** Decodes a single-record body and returns its one item. */
function only(body: string, limits?: DecodeLimits): DecodedItem {
  const { items } = decodeBody(body, limits);
  assert.equal(items.length, 1);
  return items[0] as DecodedItem;
}

function parseError(body: string, limits?: DecodeLimits): BodyParseError {
  try {
    decodeBody(body, limits);
  } catch (error) {
    assert.ok(error instanceof BodyParseError, `expected BodyParseError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a BodyParseError");
}

/** `{"data":{"type":"s","x":[[...]]}}` with the given total depth (the record itself is depth 1). */
function nestedRecord(depth: number): string {
  const arrays = depth - 2;
  return `{"data":{"type":"s","x":${"[".repeat(arrays)}${"]".repeat(arrays)}}}`;
}

describe("decodeBody: formats", () => {
  test("the three shipped sample formats decode to the same records", () => {
    const lines = decodeBody(SAMPLE_JSONL);
    const array = decodeBody(SAMPLE_ARRAY);
    const object = decodeBody(SAMPLE_OBJECT);
    assert.equal(lines.format, "jsonl");
    assert.equal(array.format, "array");
    assert.equal(object.format, "object");
    assert.equal(lines.items.length, 10);
    assert.deepEqual(records(lines), SAMPLE_RECORDS);
    assert.deepEqual(records(array), SAMPLE_RECORDS);
    assert.deepEqual(records(object), [SAMPLE_RECORDS[0]]);
    assert.deepEqual(lines.items.map((item) => item.index), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(array.items.map((item) => item.index), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The 56-digit ids survive as exact strings.
    assert.equal(records(lines)[0]?.log_id, "90020211104001515271334544008635532534914988032684720226");
  });

  test('{"logs":[...]} is the JSON Object format, compact or pretty-printed', () => {
    const compact = decodeBody(`{"logs":${SAMPLE_ARRAY}}`);
    assert.equal(compact.format, "logs");
    assert.deepEqual(records(compact), SAMPLE_RECORDS);
    const pretty = decodeBody(JSON.stringify({ logs: SAMPLE_RECORDS }, null, 2));
    assert.equal(pretty.format, "logs");
    assert.deepEqual(records(pretty), SAMPLE_RECORDS);
    assert.deepEqual(decodeBody('{"logs":[]}'), { format: "logs", items: [] });
  });

  test("a pretty-printed single object is the object format", () => {
    const decoded = decodeBody(JSON.stringify(SAMPLE_RECORDS[0], null, 2) + "\n");
    assert.equal(decoded.format, "object");
    assert.deepEqual(records(decoded), [SAMPLE_RECORDS[0]]);
  });

  test("an object whose logs is not an array is one record, not the logs wrapper", () => {
    const decoded = decodeBody('{"logs":{"data":{"type":"s"}}}');
    assert.equal(decoded.format, "object");
    assert.equal(rejectedItem(decoded.items[0]).reason, "missing_data");
  });

  test("an empty array is a valid, empty batch", () => {
    assert.deepEqual(decodeBody("[]"), { format: "array", items: [] });
    assert.deepEqual(decodeBody(" \n[ ]\n"), { format: "array", items: [] });
  });

  test("CRLF line endings are tolerated and not kept in raw", () => {
    const body = SAMPLE_LINES.join("\r\n") + "\r\n";
    const decoded = decodeBody(body);
    assert.equal(decoded.format, "jsonl");
    assert.deepEqual(records(decoded), SAMPLE_RECORDS);

    const withBad = decodeBody(`${GOOD}\r\n{"data":\r\n${GOOD}\r\n`);
    const bad = rejectedItem(withBad.items[1]);
    assert.equal(bad.raw, '{"data":');
    assert.equal(bad.index, 1);
  });

  test("blank lines are skipped but still counted in indexes", () => {
    const body = `\n\n${GOOD}\n\n  \t\n${GOOD}\r\n\n`;
    const decoded = decodeBody(body);
    assert.equal(decoded.format, "jsonl");
    assert.deepEqual(decoded.items.map((item) => item.index), [2, 5]);
  });

  test("a UTF-8 BOM is ignored in every format", () => {
    assert.deepEqual(records(decodeBody("\uFEFF" + SAMPLE_JSONL)), SAMPLE_RECORDS);
    assert.deepEqual(records(decodeBody("\uFEFF" + SAMPLE_ARRAY)), SAMPLE_RECORDS);
    assert.deepEqual(records(decodeBody("\uFEFF" + SAMPLE_OBJECT)), [SAMPLE_RECORDS[0]]);
    assert.equal(decodeBody("\uFEFF" + SAMPLE_JSONL).format, "jsonl");
  });

  test("a trailing newline makes no difference", () => {
    assert.deepEqual(decodeBody(SAMPLE_LINES.join("\n")), decodeBody(SAMPLE_LINES.join("\n") + "\n"));
    assert.deepEqual(decodeBody(SAMPLE_ARRAY + "\n"), decodeBody(SAMPLE_ARRAY));
  });

  test("leading whitespace before any format is ignored", () => {
    assert.equal(decodeBody(" \t\r\n" + SAMPLE_ARRAY).format, "array");
    assert.equal(decodeBody("\n  " + SAMPLE_OBJECT).format, "object");
    const lines = decodeBody("\n\n" + SAMPLE_JSONL);
    assert.equal(lines.format, "jsonl");
    assert.equal(lines.items[0]?.index, 2, "indexes still count the leading blank lines");
  });

  test("a one-line JSON Lines body is reported as the object format (same record)", () => {
    // Documented behaviour: one JSON object, with or without a newline, cannot be told apart.
    const line = SAMPLE_LINES[0] as string;
    for (const body of [line, line + "\n", line + "\r\n", "\n" + line + "\n\n"]) {
      const decoded = decodeBody(body);
      assert.equal(decoded.format, "object");
      assert.deepEqual(decoded, decodeBody(SAMPLE_OBJECT));
    }
  });

  test("accepted records pass through untouched, with unknown fields", () => {
    const body = '{"log_id":"a","extra":[1,{"b":null}],"data":{"type":"fn","n":1.5e300,"s":"\\u00e9\\ud83d\\ude00","nested":{"x":[true,false]}}}';
    assert.deepEqual(acceptedItem(only(body)).record, JSON.parse(body));
  });
});

describe("decodeBody: malformed bodies", () => {
  test("one bad JSON Lines line is rejected with its 1-based line; the others are accepted", () => {
    const bad = `{"log_id":"2","data":{"type":"s","password":"${SECRET}"`;
    const body = [SAMPLE_LINES[0], bad, SAMPLE_LINES[1], "", SAMPLE_LINES[2]].join("\n") + "\n";
    const decoded = decodeBody(body);
    assert.equal(decoded.format, "jsonl");
    assert.deepEqual(decoded.items.map((item) => [item.index, item.ok]), [[0, true], [1, false], [2, true], [4, true]]);
    const rejected = rejectedItem(decoded.items[1]);
    assert.equal(rejected.reason, "malformed_json");
    // The wording is V8's (minus any quoted input); the line and column are ours.
    assert.match(rejected.detail, new RegExp(`^line 2: [A-Z][^"]+ at column ${bad.length + 1}$`));
    assert.equal(rejected.raw, bad, "raw keeps the whole line for the dead-letter store");
    assert.ok(!rejected.detail.includes(SECRET));
    assert.deepEqual(acceptedItem(decoded.items[3]).record, SAMPLE_RECORDS[2]);
  });

  test("malformed-line details name the column, even for V8's position-less errors", () => {
    const body = `${GOOD}\n{"log_id":"x","data":{"type":"s"},}\n{"data":{"type":"s","ok":tru}}\n{"a":"${SECRET}" x}`;
    const details = decodeBody(body).items.slice(1).map((item) => rejectedItem(item).detail);
    assert.equal(details.length, 3);
    assert.match(details[0] as string, /^line 2: [A-Z][^"]+ at column 35$/);
    assert.equal(details[1], "line 3: Unexpected token '}' at column 29");
    assert.match(details[2] as string, new RegExp(`^line 4: [A-Z][^"]+ at column ${SECRET.length + 9}$`));
    assert.ok(details.every((detail) => !detail.includes(SECRET)));
  });

  test("a body where every line is malformed is not JSON at all: BodyParseError naming line 1", () => {
    const error = parseError("{nope\n{also not\n{\n");
    assert.match(error.message, /^line 1: /);
    assert.deepEqual(error.location, { line: 1 });
    // The first bad line, counted from the top of the body.
    assert.match(parseError("\n{nope\n{x").message, /^line 2: /);
  });

  test("a truncated single object is a BodyParseError, not a rejected record", () => {
    const error = parseError('{"log_id":"1","data":{');
    assert.match(error.message, /^line 1: [A-Z][^"]+ at column 23$/);
    assert.deepEqual(error.location, { line: 1 });
  });

  test("a broken pretty-printed object is a BodyParseError", () => {
    const error = parseError('{\n  "log_id": "1",\n  "data": {"type": "s"\n}\n');
    assert.match(error.message, /^line 1: /);
  });

  test("a truncated array is a BodyParseError with the position", () => {
    const body = SAMPLE_ARRAY.slice(0, 5000);
    const error = parseError(body);
    assert.deepEqual(error.location, { line: 1, position: 5000 });
    assert.match(error.message, /^invalid JSON array at line 1, column 5001 \(position 5000\): [A-Z][^"]+$/);
    assert.equal(parseError('[{"data":{"type":"s"}},').message, "invalid JSON array at line 1, column 24 (position 23): Unexpected end of JSON input");
  });

  test("array syntax errors name line, column and position, without the body text", () => {
    const error = parseError(`[\n  {"token":"${SECRET}"} x\n]`);
    assert.match(error.message, new RegExp(`^invalid JSON array at line 2, column ${SECRET.length + 16} \\(position ${SECRET.length + 17}\\): `));
    assert.ok(!error.message.includes(SECRET));
    // V8 words a trailing comma as an unexpected token with no position; it is located anyway.
    const trailingComma = parseError('[{"data":{"type":"s"}},\n]');
    assert.deepEqual(trailingComma.location, { line: 2, position: 24 });
    assert.equal(trailingComma.message, "invalid JSON array at line 2, column 1 (position 24): Unexpected token ']'");
  });

  test("positions are counted after the BOM", () => {
    assert.deepEqual(parseError("\uFEFF[1,]").location, { line: 1, position: 3 });
  });

  test("plain text and other non-JSON bodies are a BodyParseError naming line 1", () => {
    for (const body of ["hello world", "<xml/>", '"just a string"', "123", "null", "\u00A0{}", "key=value&x=1"]) {
      const error = parseError(body);
      assert.match(error.message, /^line 1: Unexpected token .* at column 1; expected a JSON array/);
      assert.deepEqual(error.location, { line: 1, position: 0 });
    }
    assert.match(parseError("\n\n  oops").message, /^line 3: Unexpected token 'o' at column 3/);
  });

  test("an empty or whitespace-only body is a BodyParseError", () => {
    for (const body of ["", " ", "\n\n", "\r\n\t ", "\uFEFF", "\uFEFF \n"]) {
      assert.equal(parseError(body).message, "empty body");
    }
  });
});

describe("decodeBody: record validation", () => {
  test("not_an_object: null, array, number, string, boolean", () => {
    const decoded = decodeBody(`[null,[1],42,"${SECRET}",true]`);
    assert.equal(decoded.format, "array");
    const got = decoded.items.map((item) => rejectedItem(item));
    assert.deepEqual(got.map((r) => r.reason), Array(5).fill("not_an_object"));
    assert.deepEqual(got.map((r) => r.detail), [
      "record must be an object, got null",
      "record must be an object, got array",
      "record must be an object, got number",
      "record must be an object, got string",
      "record must be an object, got boolean",
    ]);
    assert.deepEqual(got.map((r) => r.raw), [null, [1], 42, SECRET, true], "raw is the parsed value in array formats");
    assert.deepEqual(got.map((r) => r.index), [0, 1, 2, 3, 4]);
  });

  test("not_an_object in JSON Lines keeps the line text as raw", () => {
    const decoded = decodeBody(`${GOOD}\n[1,2]\n"x"`);
    const [, array, text] = decoded.items;
    assert.deepEqual([rejectedItem(array).reason, rejectedItem(array).raw, rejectedItem(array).detail], ["not_an_object", "[1,2]", "line 2: record must be an object, got array"]);
    assert.equal(rejectedItem(text).reason, "not_an_object");
  });

  test("missing_data", () => {
    const item = rejectedItem(only(`{"log_id":"1","type":"s","secret":"${SECRET}"}`));
    assert.equal(item.reason, "missing_data");
    assert.equal(item.detail, "data is missing");
  });

  test("invalid_data: data of the wrong type", () => {
    for (const [data, kind] of [["[]", "array"], [`"${SECRET}"`, "string"], ["null", "null"], ["7", "number"]] as const) {
      const item = rejectedItem(only(`{"log_id":"1","data":${data}}`));
      assert.equal(item.reason, "invalid_data");
      assert.equal(item.detail, `data must be an object, got ${kind}`);
    }
  });

  test("missing_type", () => {
    const item = rejectedItem(only('{"log_id":"1","data":{"description":"x"}}'));
    assert.equal(item.reason, "missing_type");
    assert.equal(item.detail, "data.type is missing");
  });

  test("invalid_type: not a non-empty string", () => {
    for (const [type, kind] of [['""', "empty string"], ["3", "number"], ["null", "null"], ['{"a":1}', "object"], ['["s"]', "array"]] as const) {
      const item = rejectedItem(only(`{"log_id":"1","data":{"type":${type}}}`));
      assert.equal(item.reason, "invalid_type");
      assert.equal(item.detail, `data.type must be a non-empty string, got ${kind}`);
    }
  });

  test("invalid_log_id: a numeric log_id (it has lost precision) and other non-strings", () => {
    const numeric = rejectedItem(only('{"log_id":90020211104001515271334544008635532534914988032684720226,"data":{"type":"s"}}'));
    assert.equal(numeric.reason, "invalid_log_id");
    assert.equal(numeric.detail, "log_id must be a string, got number");
    assert.ok(!numeric.detail.includes("9002"));
    for (const [logId, kind] of [['{"id":"1"}', "object"], ["true", "boolean"], ['["1"]', "array"]] as const) {
      const item = rejectedItem(only(`{"log_id":${logId},"data":{"type":"s"}}`));
      assert.equal(item.reason, "invalid_log_id");
      assert.equal(item.detail, `log_id must be a string, got ${kind}`);
    }
  });

  test("invalid_log_id: data.log_id present but not a string", () => {
    for (const [logId, kind] of [["123", "number"], ["null", "null"], ['["1"]', "array"], ["false", "boolean"]] as const) {
      const item = rejectedItem(only(`{"log_id":"1","data":{"type":"s","log_id":${logId}}}`));
      assert.equal(item.reason, "invalid_log_id");
      assert.equal(item.detail, `data.log_id must be a string, got ${kind}`);
    }
  });

  test("log_id may be absent, and data.log_id may be any string", () => {
    assert.ok(only('{"data":{"type":"s"}}').ok);
    assert.ok(only('{"data":{"type":"s","log_id":"9002"}}').ok);
    assert.ok(only('{"data":{"type":"s","log_id":""}}').ok);
    // Auth0's dashboard test payload carries an empty envelope log_id; null is treated the same.
    assert.ok(only('{"log_id":"","data":{"type":"s"}}').ok);
    assert.ok(only('{"log_id":null,"data":{"type":"s"}}').ok);
  });

  test("details of rejected JSON Lines records name the line", () => {
    const decoded = decodeBody(`${GOOD}\n\n{"data":{"type":1}}`);
    const item = rejectedItem(decoded.items[1]);
    assert.equal(item.index, 2);
    assert.equal(item.detail, "line 3: data.type must be a non-empty string, got number");
    assert.equal(item.raw, '{"data":{"type":1}}');
  });

  test("too_deep: maxDepth counts the record as depth 1 and is inclusive", () => {
    assert.ok(only(nestedRecord(64)).ok, "depth 64 passes the default limit");
    const item = rejectedItem(only(nestedRecord(65)));
    assert.equal(item.reason, "too_deep");
    assert.equal(item.detail, "record is nested deeper than 64 levels");
    assert.equal(item.raw, undefined, "a too-deep value is not kept as raw outside JSON Lines");
    assert.ok(only('{"data":{"type":"s"}}', { maxDepth: 2 }).ok);
    assert.equal(rejectedItem(only('{"data":{"type":"s","o":{}}}', { maxDepth: 2 })).reason, "too_deep");
    assert.ok(only('{"data":{"type":"s","o":{},"a":[1,"x"]}}', { maxDepth: 3 }).ok, "empty containers and scalars add no level beyond their own");
  });

  test("too_deep is checked first, whatever the shape of the value", () => {
    const item = rejectedItem(decodeBody(`[${"[".repeat(70)}${"]".repeat(70)}]`).items[0]);
    assert.equal(item.reason, "too_deep");
  });

  test("10,000 levels of nesting are rejected, never a crash, in every format", () => {
    const deep = "[".repeat(10_000) + "]".repeat(10_000);
    const asArray = decodeBody(deep);
    assert.equal(asArray.format, "array");
    assert.equal(rejectedItem(asArray.items[0]).reason, "too_deep");

    const asObject = only(`{"data":{"type":"s","x":${deep}}}`);
    assert.equal(rejectedItem(asObject).reason, "too_deep");

    const line = `{"data":{"type":"s","x":${"{\"a\":".repeat(10_000)}1${"}".repeat(10_000)}}}`;
    const asLines = decodeBody(`${GOOD}\n${line}\n${GOOD}`);
    assert.equal(asLines.format, "jsonl");
    const rejected = rejectedItem(asLines.items[1]);
    assert.deepEqual([rejected.reason, rejected.detail, rejected.raw === line], ["too_deep", "line 2: record is nested deeper than 64 levels", true]);
    assert.ok(asLines.items[0]?.ok && asLines.items[2]?.ok);
  });

  test("a million levels, complete or truncated, still end in an answer", () => {
    const million = 1_000_000;
    assert.equal(rejectedItem(decodeBody("[".repeat(million) + "]".repeat(million)).items[0]).reason, "too_deep");
    assert.deepEqual(parseError("[".repeat(million)).location, { line: 1, position: million });
    assert.match(parseError("{".repeat(million)).message, /^line 1: Expected property name or '}' at column 2/);
  });

  test("__proto__ keys are plain data: kept, and nothing is polluted", () => {
    const body = '{"log_id":"1","data":{"type":"s","__proto__":{"polluted":true}}}';
    for (const decoded of [decodeBody(body), decodeBody(`[${body}]`), decodeBody(`${body}\n${body}`)]) {
      const { data } = acceptedItem(decoded.items[0]).record;
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.equal((data as Record<string, unknown>).polluted, undefined);
      assert.ok(Object.hasOwn(data, "__proto__"));
      assert.deepEqual(Object.getOwnPropertyDescriptor(data, "__proto__")?.value, { polluted: true });
      assert.equal(Object.getPrototypeOf(data), Object.prototype);
      assert.deepEqual(Object.keys(data), ["type", "__proto__"]);
    }
  });

  test("constructor, prototype and top-level __proto__ keys are accepted unchanged", () => {
    const body = '{"__proto__":{"x":1},"constructor":{"prototype":{"y":2}},"log_id":"1","data":{"type":"s","constructor":"c","prototype":null}}';
    const { record } = acceptedItem(only(body));
    assert.deepEqual(Object.keys(record), ["__proto__", "constructor", "log_id", "data"]);
    assert.equal(record.data.constructor, "c");
    assert.equal(JSON.stringify(record), body, "nothing was added, dropped or reordered");
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });
});

describe("decodeBody: limits", () => {
  test("more records than maxRecords is a BodyParseError in every format", () => {
    const three = [GOOD, GOOD, GOOD];
    assert.match(parseError(three.join("\n"), { maxRecords: 2 }).message, /^too many records/);
    assert.deepEqual(parseError(three.join("\n"), { maxRecords: 2 }).location, { line: 3 });
    assert.match(parseError(`[${three.join(",")}]`, { maxRecords: 2 }).message, /^too many records: 3 \(limit 2\)/);
    assert.match(parseError(`{"logs":[${three.join(",")}]}`, { maxRecords: 2 }).message, /^too many records/);
    // Exactly the limit is fine, and blank lines do not count.
    assert.equal(decodeBody(`\n${three.join("\n\n")}\n\n\n`, { maxRecords: 3 }).items.length, 3);
    assert.equal(decodeBody(`[${three.join(",")}]`, { maxRecords: 3 }).items.length, 3);
  });

  test("the default maxRecords is 100,000", () => {
    const body = `[${Array(100_001).fill("0").join(",")}]`;
    assert.match(parseError(body).message, /^too many records: 100001 \(limit 100000\)/);
    assert.equal(decodeBody(`[${Array(100_000).fill("0").join(",")}]`).items.length, 100_000);
  });

  test("a nonsensical limit is a programming error (RangeError), not a body error", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => decodeBody(GOOD, { maxRecords: bad }), RangeError);
      assert.throws(() => decodeBody(GOOD, { maxDepth: bad }), RangeError);
    }
    assert.ok(only(nestedRecord(500), { maxDepth: Number.POSITIVE_INFINITY }).ok);
  });
});

// ---------------------------------------------------------------------------------------------
// Property-based tests

const logIdArb = fc.oneof(
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 20 }),
  fc.stringMatching(/^9[0-9]{55}$/),
);
const keyArb = fc.oneof(
  fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "logs"),
  fc.string({ unit: "binary", maxLength: 8 }),
);
const entriesArb = (maxLength: number, maxDepth: number) =>
  fc.array(fc.tuple(keyArb, fc.jsonValue({ maxDepth, stringUnit: "binary" })), { maxLength });

// Object.fromEntries defines "__proto__" as an own property, as JSON.parse does.
const dataArb = fc
  .record({ type: fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }), logId: fc.option(logIdArb, { nil: undefined }), extra: entriesArb(6, 5) })
  .map(({ type, logId, extra }) =>
    Object.fromEntries([...extra.filter(([k]) => k !== "type" && k !== "log_id"), ["type", type], ...(logId === undefined ? [] : [["log_id", logId]])]),
  );
// A top-level "logs" key is left out: {"logs":[...]} is the wrapper of the JSON Object format.
const recordArb = fc
  .record({ logId: fc.option(logIdArb, { nil: undefined }), data: dataArb, extra: entriesArb(3, 3) })
  .map(({ logId, data, extra }) =>
    Object.fromEntries([...extra.filter(([k]) => k !== "data" && k !== "log_id" && k !== "logs"), ...(logId === undefined ? [] : [["log_id", logId]]), ["data", data]]),
  );

function isValidJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe("decodeBody: properties", () => {
  test("valid records survive every encoding, in order, all accepted", () => {
    const optionsArb = fc.record({ crlf: fc.boolean(), trailingNewline: fc.boolean(), bom: fc.boolean(), pretty: fc.boolean() });
    fc.assert(
      fc.property(fc.array(recordArb, { maxLength: 8 }), optionsArb, (recs, { crlf, trailingNewline, bom, pretty }) => {
        // What JSON.parse makes of each record: normalises -0 and null-prototype objects.
        const expected = recs.map((r) => JSON.parse(JSON.stringify(r)) as unknown);
        const bomText = bom ? "\uFEFF" : "";
        const stringify = (value: unknown) => (pretty ? JSON.stringify(value, null, 2) : JSON.stringify(value));
        const bodies: Array<[string, string]> = [
          [`[]`, bomText + stringify(recs)],
          ["logs", bomText + stringify({ logs: recs })],
        ];
        if (recs.length > 0) {
          const eol = crlf ? "\r\n" : "\n";
          const lines = recs.map((r) => JSON.stringify(r)).join(eol) + (trailingNewline ? eol : "");
          bodies.push([recs.length === 1 ? "object" : "jsonl", bomText + lines]);
        }
        if (recs.length === 1) bodies.push(["object", bomText + stringify(recs[0])]);
        for (const [format, body] of bodies) {
          const decoded = decodeBody(body);
          assert.equal(decoded.format, format === "[]" ? "array" : format);
          assert.deepEqual(records(decoded), expected);
          if (decoded.format !== "jsonl") assert.deepEqual(decoded.items.map((item) => item.index), recs.map((_, i) => i));
        }
      }),
      { numRuns: 150 },
    );
  });

  test("JSON Lines: good lines are accepted and bad ones rejected, each at its own line", () => {
    const badLineArb = fc.oneof(
      recordArb.map((r) => JSON.stringify(r).slice(0, -1)),
      fc.string({ unit: "binary", maxLength: 20 }).map((s) => `{"x":${s.replace(/[\r\n]/g, "")} oops`),
    ).filter((line) => !isValidJson(line));
    const lineArb = fc.oneof(
      { weight: 3, arbitrary: recordArb.map((r) => ({ good: r as unknown, text: JSON.stringify(r) })) },
      { weight: 2, arbitrary: badLineArb.map((text) => ({ good: undefined, text })) },
      { weight: 1, arbitrary: fc.constantFrom("", " ", "\t", "\r").map((text) => ({ good: null, text })) },
    );
    fc.assert(
      fc.property(fc.array(lineArb, { minLength: 1, maxLength: 10 }), (lines) => {
        const body = lines.map((l) => l.text).join("\n");
        const content = lines.flatMap((l, index) => (l.good === null ? [] : [{ ...l, index }]));
        const goodOnes = content.filter((l) => l.good !== undefined);
        if (content.length === 0) {
          assert.equal(parseError(body).message, "empty body");
          return;
        }
        if (goodOnes.length === 0) {
          const first = content[0] as { index: number };
          assert.equal(parseError(body).location.line, first.index + 1);
          return;
        }
        const decoded = decodeBody(body);
        assert.equal(decoded.format, content.length === 1 ? "object" : "jsonl");
        assert.equal(decoded.items.length, content.length);
        content.forEach((line, i) => {
          const item = decoded.items[i] as DecodedItem;
          if (decoded.format === "jsonl") assert.equal(item.index, line.index);
          if (line.good !== undefined) {
            assert.deepEqual(acceptedItem(item).record, JSON.parse(line.text));
          } else {
            const rejected = rejectedItem(item);
            assert.equal(rejected.reason, "malformed_json");
            assert.ok(rejected.detail.startsWith(`line ${line.index + 1}: `), rejected.detail);
            assert.equal(rejected.raw, line.text);
          }
        });
      }),
      { numRuns: 150 },
    );
  });

  test("any string either decodes or throws BodyParseError, never anything else", () => {
    const token = fc.constantFrom("{", "}", "[", "]", '"', ":", ",", " ", "\n", "\r\n", "\uFEFF", "1", "-", "null", '"data"', '"type"', '"log_id"', '"logs"', '"__proto__"', "\\", "x");
    const soup = fc.array(token, { maxLength: 40 }).map((parts) => parts.join(""));
    const mutated = fc
      .tuple(fc.array(recordArb, { minLength: 1, maxLength: 3 }), fc.constantFrom("jsonl", "array", "logs"), fc.nat(), fc.string({ unit: "binary", maxLength: 4 }), fc.nat(3))
      .map(([recs, kind, at, insert, cut]) => {
        const body = kind === "jsonl" ? recs.map((r) => JSON.stringify(r)).join("\n") : JSON.stringify(kind === "logs" ? { logs: recs } : recs);
        const i = at % (body.length + 1);
        return body.slice(0, i) + insert + body.slice(i + cut);
      });
    const input = fc.oneof(fc.string({ unit: "binary" }), soup, mutated);
    fc.assert(
      fc.property(input, (text) => {
        let decoded: DecodedBody;
        try {
          decoded = decodeBody(text);
        } catch (error) {
          assert.ok(error instanceof BodyParseError, `threw ${String(error)}`);
          assert.ok(error.message.length > 0 && error.message.length < 200);
          return;
        }
        assert.ok(["jsonl", "array", "object", "logs"].includes(decoded.format));
        let last = -1;
        for (const item of decoded.items) {
          assert.ok(item.index > last, "indexes strictly increase");
          last = item.index;
          if (item.ok) assert.ok(typeof item.record.data.type === "string" && item.record.data.type.length > 0);
          else assert.ok(item.detail.length > 0 && item.detail.length < 200);
        }
      }),
      { numRuns: 500 },
    );
  });

  test("locateSyntaxError agrees with V8 wherever V8 reports a position or a token", () => {
    const token = fc.constantFrom("{", "}", "[", "]", '"', ":", ",", " ", "\n", "1", "0", "-", ".", "e", "+", "\\", "u", "t", "true", "false", "null", "nul", '"k"', "\u0001", "12.5e-3", "x", "\\u00");
    const soup = fc.array(token, { maxLength: 30 }).map((parts) => parts.join(""));
    const mutatedJson = fc
      .tuple(fc.json(), fc.nat(), fc.string({ maxLength: 3 }), fc.nat(2))
      .map(([json, at, insert, cut]) => {
        const i = at % (json.length + 1);
        return json.slice(0, i) + insert + json.slice(i + cut);
      });
    fc.assert(
      fc.property(fc.oneof(soup, mutatedJson), (text) => {
        let message: string | undefined;
        try {
          JSON.parse(text);
        } catch (error) {
          message = (error as SyntaxError).message;
        }
        const located = locateSyntaxError(text);
        if (message === undefined) return assert.equal(located, undefined);
        const position = /at position (\d+)/.exec(message);
        if (position) return assert.equal(located, Number(position[1]), message);
        if (message.startsWith("Unexpected end of JSON input")) return assert.equal(located, text.length);
        const unexpected = /^Unexpected token '([\s\S])'/.exec(message);
        assert.ok(unexpected, `unknown V8 message: ${message}`);
        assert.equal(located === undefined ? undefined : text[located], unexpected[1], message);
      }),
      { numRuns: 2000 },
    );
  });
});
