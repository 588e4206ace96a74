// Auth0-like request bodies for the benchmark, built from the records in test/fixtures/:
// the 10 real `s` records of format-json-lines.jsonl, the 21 golden inputs (10 real, 11
// synthetic) and the 197 one-per-code examples of auth0-examples.jsonl (synthetic, compact).
//
// The synthetic examples are smaller than what a tenant really sends (empty `details`, a short
// user agent, only the required fields), so: a record whose `details` is empty borrows the
// `details` of one of the real records (round robin), a short user agent is replaced by a real
// one, and the optional fields its code's Auth0 schema defines (auth0_client, security_context,
// references, organization, audience, scope, ...) are filled with realistic values when absent.
// Real records are weighted 3x, so the mix leans to logins, like a real stream. Every event gets a fresh,
// unique 56-digit log_id (top level and data.log_id), so the bridge's dedupe never hides work.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomInt } from "node:crypto";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures");
const PLACEHOLDER = "@@LOG_ID@@";
// Realistic values for optional fields of Auth0's log schemas (filled only where the schema has them).
const OPTIONAL_FIELDS = {
  hostname: "example-tenant.eu.auth0.com",
  auth0_client: { name: "auth0-spa-js", version: "2.1.3", env: { "auth0.js": "9.24.1" } },
  security_context: { ja3: "771e6d1a1d3b4c1f9e0a2b6f8d4c3e21", ja4: "t13d1516h2_8daaf6152771_e5627efa2ab1" },
  references: { correlation_id: "c8e7f0a2-5b1d-4e3a-9f6c-2d7b8a9e0f13", trace_id: "4bf92f3577b34da6a3ce929d0e0e4736" },
  organization_id: "org_8Qb3uV0pZk2XyT7m",
  organization_name: "acme-corp",
  audience: "https://api.example.com/",
  scope: "openid profile email offline_access",
  client_ip: "198.51.100.23",
  is_mobile: false,
};
const REAL_WEIGHT = 3;

function readJsonLines(path) {
  return readFileSync(path, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
}

function isEmptyObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0;
}

/** The record pool: { records: object[], real: number, codes: Set<string> }. Deterministic order. */
export function loadRecords() {
  const real = [...readJsonLines(join(FIXTURES, "format-json-lines.jsonl"))];
  const synthetic = [];
  const golden = JSON.parse(readFileSync(join(FIXTURES, "golden", "index.json"), "utf8"));
  for (const entry of golden) {
    const record = JSON.parse(readFileSync(join(FIXTURES, "golden", `${entry.category}.input.json`), "utf8"));
    (entry.origin === "elastic" ? real : synthetic).push(record);
  }
  synthetic.push(...readJsonLines(join(FIXTURES, "auth0-examples.jsonl")));
  // Real payloads to lend: non-empty details, full user agents.
  const details = real.map((r) => r.data.details).filter((d) => d && typeof d === "object" && !isEmptyObject(d));
  const agents = real.map((r) => r.data.user_agent).filter((ua) => typeof ua === "string" && ua.length > 60);
  let d = 0;
  let a = 0;
  const schemas = JSON.parse(readFileSync(join(FIXTURES, "auth0-log-schemas", "schemas.json"), "utf8"));
  const enriched = synthetic.map((r) => {
    const data = { ...r.data };
    const defined = schemas[data.type]?.properties ?? {};
    for (const [name, value] of Object.entries(OPTIONAL_FIELDS)) if (name in defined && !(name in data)) data[name] = value;
    if (isEmptyObject(data.details) && details.length > 0) data.details = details[d++ % details.length];
    if (typeof data.user_agent === "string" && data.user_agent.length < 60 && agents.length > 0) data.user_agent = agents[a++ % agents.length];
    return { ...r, data };
  });
  const records = [];
  for (const r of real) for (let i = 0; i < REAL_WEIGHT; i++) records.push(r);
  records.push(...enriched);
  return { records, real: real.length, synthetic: synthetic.length, codes: new Set(records.map((r) => r.data.type)) };
}

/** Splits a record's JSON around its log_id(s) so a body is a string join, not a JSON.stringify. */
function template(record) {
  const copy = { ...record, log_id: PLACEHOLDER, data: { ...record.data } };
  if ("log_id" in copy.data) copy.data.log_id = PLACEHOLDER;
  return JSON.stringify(copy).split(`"${PLACEHOLDER}"`);
}

/**
 * A body factory. `prefix` (digits) keeps ids of different generator processes apart.
 * makeBody(n) returns { body, events, bytes } for n JSON Lines records with unique log_ids.
 */
export function createWorkload({ prefix = String(randomInt(1e9, 1e10 - 1)), shuffleSeed = 1 } = {}) {
  const { records, codes } = loadRecords();
  // Deterministic shuffle (xorshift) so consecutive events mix codes the same way every run.
  let s = shuffleSeed >>> 0 || 1;
  const rnd = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 4294967296);
  const order = records.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const templates = order.map((i) => template(records[i]));
  const head = `900${prefix}`.slice(0, 24);
  let counter = 0;
  let next = 0;
  const bytesOfTemplates = templates.map((parts) => parts.reduce((n, p) => n + Buffer.byteLength(p), 0) + (parts.length - 1) * 58);
  const meanEventBytes = bytesOfTemplates.reduce((x, y) => x + y, 0) / bytesOfTemplates.length;
  return {
    meanEventBytes,
    codes: codes.size,
    poolSize: templates.length,
    makeBody(n) {
      let body = "";
      for (let k = 0; k < n; k++) {
        const parts = templates[next];
        next = next + 1 === templates.length ? 0 : next + 1;
        const id = `"${head}${String(counter++).padStart(32, "0")}"`;
        let line = parts[0];
        for (let p = 1; p < parts.length; p++) line += id + parts[p];
        body += k === 0 ? line : "\n" + line;
      }
      return body;
    },
  };
}

// `node bench/workload.mjs` prints what the mix looks like.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const w = createWorkload({ prefix: "1234567890" });
  const body = w.makeBody(100);
  const lines = body.split("\n");
  const ids = new Set(lines.map((l) => JSON.parse(l).log_id));
  console.log(`pool ${w.poolSize} records, ${w.codes} codes, mean ${Math.round(w.meanEventBytes)} bytes/event; ` +
    `a 100-event body: ${Buffer.byteLength(body)} bytes, ${ids.size} unique ids, ${new Set(lines.map((l) => JSON.parse(l).data.type)).size} codes`);
}
