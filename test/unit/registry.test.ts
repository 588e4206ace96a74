import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { EventTypeRegistry, loadRegistry } from "../../src/auth0/registry.js";

// Repo root is two levels up from test/unit.
const TSV_PATH = fileURLToPath(new URL("../../config/auth0-log-event-types.tsv", import.meta.url));
const HEADER = "code\tname\tdescription\tcategory\tapi_filter\tstatus";

describe("shipped registry (config/auth0-log-event-types.tsv)", async () => {
  const registry = await loadRegistry(TSV_PATH);

  it("has all 197 codes, in table order", () => {
    assert.equal(registry.size, 197);
    const codes = registry.codes();
    assert.equal(codes.length, 197);
    assert.equal(new Set(codes).size, 197);
    assert.equal(codes[0], "acls_summary");
  });

  it("maps the well-known codes to their API filter", () => {
    assert.equal(registry.lookup("f").apiFilter, "auth.login.fail");
    assert.equal(registry.lookup("s").apiFilter, "auth.login.success");
    assert.equal(registry.lookup("sapi").apiFilter, "management.success");
    assert.deepEqual(registry.lookup("f"), {
      code: "f",
      name: "Failed Login",
      description: "Generic login failure; used only when the cause is not a wrong password (fp) or unknown user (fu).",
      category: "Login - Failure",
      apiFilter: "auth.login.fail",
      known: true,
    });
  });

  it("puts rows without an api_filter under 'other', with an empty category", () => {
    const info = registry.lookup("too_many_records");
    assert.equal(info.known, true);
    assert.equal(info.apiFilter, "other");
    assert.equal(info.category, "");
  });

  it("answers unknown codes with apiFilter 'unknown' and known false", () => {
    assert.deepEqual(registry.lookup("no_such_code"), {
      code: "no_such_code",
      name: "no_such_code",
      description: "",
      category: "",
      apiFilter: "unknown",
      known: false,
    });
    // Map-backed: inherited Object properties are not codes.
    for (const code of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
      assert.equal(registry.lookup(code).known, false, code);
    }
  });

  it("does not remember unknown codes", () => {
    const a = registry.lookup("brand_new_code");
    const b = registry.lookup("brand_new_code");
    assert.notEqual(a, b);
    assert.deepEqual(a, b);
    assert.equal(registry.size, 197);
    assert.equal(registry.codes().includes("brand_new_code"), false);
  });

  it("hands out frozen entries for known codes", () => {
    const info = registry.lookup("s");
    assert.equal(Object.isFrozen(info), true);
    assert.equal(registry.lookup("s"), info);
  });

  it("lists the 20 distinct API filter names", () => {
    assert.deepEqual(registry.categories(), [
      "actions",
      "auth.login.fail",
      "auth.login.notification",
      "auth.login.success",
      "auth.logout.fail",
      "auth.logout.success",
      "auth.signup.fail",
      "auth.signup.success",
      "auth.silent_auth.fail",
      "auth.silent_auth.success",
      "auth.token_exchange.fail",
      "auth.token_exchange.success",
      "management.fail",
      "management.success",
      "other",
      "scim.event",
      "system.notification",
      "user.fail",
      "user.notification",
      "user.success",
    ]);
  });
});

describe("EventTypeRegistry.fromTsv", () => {
  const row = (code: string, apiFilter = "auth.login.fail") =>
    `${code}\tName ${code}\tDescription of ${code}\tLogin - Failure\t${apiFilter}\tcurrent`;

  it("parses a minimal table", () => {
    const registry = EventTypeRegistry.fromTsv(`${HEADER}\n${row("f")}\n${row("x", "")}\n`);
    assert.equal(registry.size, 2);
    assert.equal(registry.lookup("f").name, "Name f");
    assert.equal(registry.lookup("x").apiFilter, "other");
    assert.deepEqual(registry.categories(), ["auth.login.fail", "other"]);
  });

  it("accepts a BOM, CRLF line ends and blank lines", () => {
    const registry = EventTypeRegistry.fromTsv(`\uFEFF${HEADER}\r\n${row("f")}\r\n\r\n${row("fp")}\r\n`);
    assert.deepEqual(registry.codes(), ["f", "fp"]);
    assert.equal(registry.lookup("fp").known, true);
  });

  it("rejects a wrong header, naming line 1", () => {
    assert.throws(() => EventTypeRegistry.fromTsv(`code\tname\tdescription\n${row("f")}`), /line 1\b/);
    assert.throws(
      () => EventTypeRegistry.fromTsv(`${HEADER.replace("api_filter", "filter")}\n${row("f")}`),
      /line 1\b/,
    );
    assert.throws(() => EventTypeRegistry.fromTsv(""), /line 1\b/);
  });

  it("rejects a short row, naming its line", () => {
    const text = `${HEADER}\n${row("f")}\nfp\tFailed Login (Incorrect Password)\tWrong password\n`;
    assert.throws(() => EventTypeRegistry.fromTsv(text), /line 3: expected 6 tab-separated columns, found 3/);
  });

  it("rejects a row with an extra column, naming its line", () => {
    assert.throws(() => EventTypeRegistry.fromTsv(`${HEADER}\n${row("f")}\textra`), /line 2: .*found 7/);
  });

  it("rejects a duplicate code, naming both lines", () => {
    const text = `${HEADER}\n${row("f")}\n${row("s")}\n${row("f")}\n`;
    assert.throws(() => EventTypeRegistry.fromTsv(text), /line 4: duplicate code "f" \(first on line 2\)/);
  });

  it("rejects an empty code", () => {
    assert.throws(() => EventTypeRegistry.fromTsv(`${HEADER}\n${row("")}`), /line 2: code is empty/);
    assert.throws(() => EventTypeRegistry.fromTsv(`${HEADER}\n${row(" f")}`), /line 2: code is empty or has surrounding spaces/);
  });
});

describe("EventTypeRegistry constructor", () => {
  it("rejects duplicate codes", () => {
    const info = { code: "f", name: "Failed Login", description: "", category: "", apiFilter: "auth.login.fail", known: true };
    assert.throws(() => new EventTypeRegistry([info, { ...info }]), /duplicate code "f"/);
  });

  it("keeps its own copies of the entries", () => {
    const info = { code: "f", name: "Failed Login", description: "", category: "", apiFilter: "auth.login.fail", known: true };
    const registry = new EventTypeRegistry([info]);
    info.apiFilter = "changed";
    assert.equal(registry.lookup("f").apiFilter, "auth.login.fail");
  });
});

describe("loadRegistry", () => {
  it("names the file and the line when the table is malformed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "registry-test-"));
    try {
      const path = join(dir, "types.tsv");
      await writeFile(path, `${HEADER}\nf\tFailed Login\n`);
      await assert.rejects(loadRegistry(path), (err: Error) => {
        assert.ok(err.message.includes(path), err.message);
        assert.match(err.message, /line 2/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("rejects when the file is missing", async () => {
    await assert.rejects(loadRegistry(join(tmpdir(), "does-not-exist", "types.tsv")), { code: "ENOENT" });
  });
});
