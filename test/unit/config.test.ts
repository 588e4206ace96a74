import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, DEV_STREAM_TOKEN, describeSettings, loadConfig, packagedDefaultsPath, secretValues } from "../../src/config/load.js";
import { SETTINGS, type Config } from "../../src/config/settings.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const DEFAULTS_PATH = join(ROOT, "config/default.json");
const DEV_WARNING = "AUTH0_STREAM_TOKEN is not set: accepting the development token 'dev-stream-token'. Never run like this in production.";
const PROD_TOKEN = "prod-token-0123456789abcdef";
const ENDPOINT = "https://my-topic.westeurope-1.eventgrid.azure.net/api/events";
const PRODUCTION = { NODE_ENV: "production", AUTH0_STREAM_TOKEN: PROD_TOKEN, EVENTGRID_ENDPOINT: ENDPOINT };

type Env = Record<string, string | undefined>;

let dir: string;
let fileCount = 0;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "config-test-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a file with a unique name (keeping the given extension) and returns its path. */
function file(name: string, content: string): string {
  const path = join(dir, `${++fileCount}-${name}`);
  writeFileSync(path, content);
  return path;
}

const load = (env: Env) => loadConfig({ env, defaultsPath: DEFAULTS_PATH });

/** Asserts a ConfigError that names `setting` in one line, and returns it. */
function configError(fn: () => unknown, setting: string | undefined): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.setting, setting, error.message);
    if (setting !== undefined) assert.ok(error.message.includes(setting), `message does not name ${setting}: ${error.message}`);
    assert.doesNotMatch(error.message, /[\r\n]/);
    return error;
  }
  assert.fail(`expected a ConfigError naming ${setting}`);
}

function readDefaults(): Record<string, unknown> {
  return JSON.parse(readFileSync(DEFAULTS_PATH, "utf8")) as Record<string, unknown>;
}

describe("schema and defaults file", () => {
  it("config/default.json holds exactly the settings that have a default", () => {
    const withDefault = SETTINGS.filter((s) => s.presence === "default").map((s) => s.name);
    assert.deepEqual(Object.keys(readDefaults()).sort(), [...withDefault].sort());
  });

  it("every default passes its setting's schema", () => {
    const defaults = readDefaults();
    for (const spec of SETTINGS.filter((s) => s.presence === "default")) {
      assert.ok(spec.schema.safeParse(defaults[spec.name]).success, `${spec.name}: ${JSON.stringify(defaults[spec.name])}`);
    }
  });

  it("names are unique upper-case identifiers; secrets have no default; descriptions are one sentence", () => {
    const names = SETTINGS.map((s) => s.name);
    assert.equal(new Set(names).size, names.length);
    for (const spec of SETTINGS) {
      assert.match(spec.name, /^[A-Z][A-Z0-9_]*$/);
      assert.match(spec.description, /^[A-Z`].*\.$/, spec.name);
      assert.doesNotMatch(spec.description, /\n/);
      assert.ok(spec.expected.length > 0);
      if (spec.secret) assert.notEqual(spec.presence, "default", `${spec.name} is secret`);
    }
    assert.deepEqual(
      SETTINGS.filter((s) => s.secret).map((s) => s.name),
      ["AUTH0_STREAM_TOKEN", "AUTH0_STREAM_TOKEN_PREVIOUS", "EVENTGRID_KEY", "EVENTGRID_SAS_TOKEN", "REDACTION_HASH_KEY"],
    );
  });

  it("packagedDefaultsPath() is config/default.json of this package", () => {
    assert.equal(packagedDefaultsPath(), DEFAULTS_PATH);
  });
});

describe("loadConfig: defaults", () => {
  it("an empty environment gives the defaults, the development token and a loud warning", () => {
    const { config, warnings } = load({});
    const expected: Record<string, unknown> = {};
    for (const spec of SETTINGS) expected[spec.name] = undefined;
    Object.assign(expected, readDefaults(), { AUTH0_STREAM_TOKEN: DEV_STREAM_TOKEN });
    assert.deepEqual(config, expected);
    assert.deepEqual(Object.keys(config).sort(), SETTINGS.map((s) => s.name).sort());
    assert.deepEqual(warnings, [DEV_WARNING]);
    assert.equal(DEV_STREAM_TOKEN, "dev-stream-token");
  });

  it("the Config type matches the settings (compile-time check)", () => {
    const { config } = load({});
    const port: number = config.PORT;
    const insecure: boolean = config.EVENTGRID_ALLOW_INSECURE;
    const codes: string[] = config.FILTER_DROP_CODES;
    const overrides: Record<string, string> = config.TYPE_OVERRIDES;
    const token: string | undefined = config.AUTH0_STREAM_TOKEN;
    const endpoint: string | undefined = config.EVENTGRID_ENDPOINT;
    const mode: "production" | "development" | "test" = config.NODE_ENV;
    const level: "error" | "warn" | "info" | "debug" = config.LOG_LEVEL;
    // @ts-expect-error optional settings may be undefined
    const channel: string = config.EVENTGRID_CHANNEL;
    assert.deepEqual([port, insecure, codes, overrides, token, endpoint, mode, level, channel], [8080, false, [], {}, DEV_STREAM_TOKEN, undefined, "development", "info", undefined]);
  });

  it("never reads process.env, only the env it is given", () => {
    const saved = process.env.PORT;
    process.env.PORT = "1234";
    try {
      assert.equal(load({}).config.PORT, 8080);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });

  it("empty environment variables count as unset", () => {
    const { config, warnings } = load({ PORT: "", CONFIG_FILE: "", AUTH0_STREAM_TOKEN: "", AUTH0_STREAM_TOKEN_FILE: "", EVENTGRID_KEY_FILE: "", FILTER_DROP_CODES: "" });
    assert.equal(config.PORT, 8080);
    assert.equal(config.AUTH0_STREAM_TOKEN, DEV_STREAM_TOKEN);
    assert.equal(config.EVENTGRID_KEY, undefined);
    assert.deepEqual(config.FILTER_DROP_CODES, []);
    assert.deepEqual(warnings, [DEV_WARNING]);
  });

  it("a broken defaults file is a ConfigError too", () => {
    const missing = configError(() => loadConfig({ env: {}, defaultsPath: join(dir, "nope.json") }), undefined);
    assert.match(missing.message, /defaults file .*nope\.json.*ENOENT/);
    const defaults = readDefaults();
    const withSecret = file("default.json", JSON.stringify({ ...defaults, EVENTGRID_KEY: "k" }));
    configError(() => loadConfig({ env: {}, defaultsPath: withSecret }), "EVENTGRID_KEY");
    const { PORT: _port, ...withoutPort } = defaults;
    const lacking = configError(() => loadConfig({ env: {}, defaultsPath: file("default.json", JSON.stringify(withoutPort)) }), "PORT");
    assert.match(lacking.message, /lacks its default/);
  });
});

describe("loadConfig: layers", () => {
  const fileSettings = {
    PORT: 1111,
    LOG_LEVEL: "debug",
    FILTER_DROP_CODES: ["f", "s"],
    TYPE_OVERRIDES: { f: "com.example.failed" },
    EVENTGRID_ALLOW_INSECURE: true,
    AUTH0_STREAM_TOKEN: "token-from-config-file",
  };
  const yaml = [
    "# a comment",
    "PORT: 1111",
    "LOG_LEVEL: debug",
    "FILTER_DROP_CODES:",
    "  - f",
    "  - s",
    "TYPE_OVERRIDES:",
    "  f: com.example.failed",
    "EVENTGRID_ALLOW_INSECURE: true",
    "AUTH0_STREAM_TOKEN: token-from-config-file",
    "EVENTGRID_CHANNEL:", // null: unset
    "",
  ].join("\n");

  const variants: [string, () => string][] = [
    ["JSON (.json)", () => file("config.json", JSON.stringify(fileSettings))],
    ["YAML (.yaml)", () => file("config.yaml", yaml)],
    ["YAML (.yml)", () => file("config.yml", yaml)],
    ["JSON without extension", () => file("config", JSON.stringify(fileSettings))],
    ["YAML without extension", () => file("config", yaml)],
    ["JSON with a byte order mark", () => file("config.json", `\uFEFF${JSON.stringify(fileSettings)}`)],
  ];
  for (const [name, write] of variants) {
    it(`env overrides CONFIG_FILE overrides defaults: ${name}`, () => {
      const { config, warnings } = load({ CONFIG_FILE: write(), PORT: "2222", LOG_FORMAT: "pretty" });
      assert.equal(config.PORT, 2222); // env over file
      assert.equal(config.LOG_LEVEL, "debug"); // file over default
      assert.equal(config.LOG_FORMAT, "pretty"); // env over default
      assert.equal(config.HOST, "0.0.0.0"); // default
      assert.deepEqual(config.FILTER_DROP_CODES, ["f", "s"]);
      assert.deepEqual(config.TYPE_OVERRIDES, { f: "com.example.failed" });
      assert.equal(config.EVENTGRID_ALLOW_INSECURE, true);
      assert.equal(config.AUTH0_STREAM_TOKEN, "token-from-config-file");
      assert.equal(config.EVENTGRID_CHANNEL, undefined);
      assert.ok(config.CONFIG_FILE?.includes("config"));
      assert.deepEqual(warnings, []);
    });
  }

  it("an empty env variable does not override the file; an empty file is no settings", () => {
    const path = file("config.yaml", "PORT: 1111\n");
    assert.equal(load({ CONFIG_FILE: path, PORT: "" }).config.PORT, 1111);
    assert.equal(load({ CONFIG_FILE: file("empty.yaml", "") }).config.PORT, 8080);
  });

  it("a secret from <NAME>_FILE overrides the config file", () => {
    const configFile = file("config.json", JSON.stringify({ EVENTGRID_KEY: "key-from-config-file" }));
    const keyFile = file("key", "key-from-secret-file\n");
    assert.equal(load({ CONFIG_FILE: configFile, EVENTGRID_KEY_FILE: keyFile }).config.EVENTGRID_KEY, "key-from-secret-file");
  });
});

describe("loadConfig: coercion", () => {
  it("integers from strings, trimmed", () => {
    const { config } = load({ PORT: " 8081 ", ADMIN_PORT: "0", MAX_BODY_BYTES: "1024", PUBLISH_RETRIES: "0", RETRY_BASE_DELAY_MS: "0" });
    assert.deepEqual([config.PORT, config.ADMIN_PORT, config.MAX_BODY_BYTES, config.PUBLISH_RETRIES, config.RETRY_BASE_DELAY_MS], [8081, 0, 1024, 0, 0]);
  });

  it("booleans: true/false/1/0/yes/no in any case", () => {
    for (const word of ["true", "TRUE", "1", "yes", "Yes", " true "]) {
      assert.equal(load({ EVENTGRID_ALLOW_INSECURE: word }).config.EVENTGRID_ALLOW_INSECURE, true, word);
    }
    for (const word of ["false", "False", "0", "no", "NO"]) {
      assert.equal(load({ EVENTGRID_ALLOW_INSECURE: word }).config.EVENTGRID_ALLOW_INSECURE, false, word);
    }
  });

  it("lists: comma-separated, trimmed, empty items skipped", () => {
    const { config } = load({ FILTER_DROP_CODES: " f , s,,fsa, ", FILTER_DROP_CATEGORIES: "management.success", FILTER_ONLY_CATEGORIES: "," });
    assert.deepEqual(config.FILTER_DROP_CODES, ["f", "s", "fsa"]);
    assert.deepEqual(config.FILTER_DROP_CATEGORIES, ["management.success"]);
    assert.deepEqual(config.FILTER_ONLY_CATEGORIES, []);
  });

  it("maps: a JSON object or key=value pairs", () => {
    assert.deepEqual(load({ TYPE_OVERRIDES: '{"f": "com.example.failed", "auth.login.success": "com.example.login"}' }).config.TYPE_OVERRIDES, {
      f: "com.example.failed",
      "auth.login.success": "com.example.login",
    });
    assert.deepEqual(load({ TYPE_OVERRIDES: " f = com.example.failed , auth.login.success=com.example.login," }).config.TYPE_OVERRIDES, {
      f: "com.example.failed",
      "auth.login.success": "com.example.login",
    });
    assert.deepEqual(load({ TYPE_OVERRIDES: "{}" }).config.TYPE_OVERRIDES, {});
  });

  it("enums and strings are trimmed; secrets are not altered", () => {
    const { config } = load({ LOG_LEVEL: " warn ", HOST: " 127.0.0.1 ", AUTH0_STREAM_TOKEN: "Tok=with,odd;chars-0123456789" });
    assert.equal(config.LOG_LEVEL, "warn");
    assert.equal(config.HOST, "127.0.0.1");
    assert.equal(config.AUTH0_STREAM_TOKEN, "Tok=with,odd;chars-0123456789");
  });

  it("config file: native values, and quoted integers/booleans", () => {
    const path = file("config.yaml", 'PORT: "8082"\nEVENTGRID_ALLOW_INSECURE: "yes"\nFILTER_ONLY_CATEGORIES: [auth.login.fail]\nTYPE_OVERRIDES: {}\n');
    const { config } = load({ CONFIG_FILE: path });
    assert.equal(config.PORT, 8082);
    assert.equal(config.EVENTGRID_ALLOW_INSECURE, true);
    assert.deepEqual(config.FILTER_ONLY_CATEGORIES, ["auth.login.fail"]);
  });

  it("config file: lists and maps must be native, not comma strings", () => {
    configError(() => load({ CONFIG_FILE: file("c.yaml", "FILTER_DROP_CODES: f,s\n") }), "FILTER_DROP_CODES");
    configError(() => load({ CONFIG_FILE: file("c.yaml", "TYPE_OVERRIDES: f=x\n") }), "TYPE_OVERRIDES");
    configError(() => load({ CONFIG_FILE: file("c.json", '{"PORT": 80.5}') }), "PORT");
    configError(() => load({ CONFIG_FILE: file("c.json", '{"HOST": 127}') }), "HOST");
  });

  it("port 0 (ephemeral) is allowed for both listeners", () => {
    const { config } = load({ PORT: "0", ADMIN_PORT: "0" });
    assert.equal(config.PORT, 0);
    assert.equal(config.ADMIN_PORT, 0);
  });

  it("an http:// endpoint is allowed with EVENTGRID_ALLOW_INSECURE", () => {
    const { config } = load({ EVENTGRID_ENDPOINT: "http://127.0.0.1:4000/api/events", EVENTGRID_ALLOW_INSECURE: "true" });
    assert.equal(config.EVENTGRID_ENDPOINT, "http://127.0.0.1:4000/api/events");
  });
});

describe("loadConfig: every error is one line that names the setting", () => {
  // Carried by every case below: a secret that no message may ever show.
  const SENTINEL = "sentinel-secret-value-4f1d2c";
  const cases: [string, () => Env, string][] = [
    ["PORT not a number", () => ({ PORT: "abc" }), "PORT"],
    ["PORT too large", () => ({ PORT: "70000" }), "PORT"],
    ["PORT not an integer", () => ({ PORT: "80.5" }), "PORT"],
    ["ADMIN_PORT negative", () => ({ ADMIN_PORT: "-1" }), "ADMIN_PORT"],
    ["ADMIN_PORT equals PORT", () => ({ PORT: "8080", ADMIN_PORT: "8080" }), "ADMIN_PORT"],
    ["NODE_ENV unknown", () => ({ NODE_ENV: "prod" }), "NODE_ENV"],
    ["LOG_LEVEL unknown", () => ({ LOG_LEVEL: "verbose" }), "LOG_LEVEL"],
    ["LOG_FORMAT unknown", () => ({ LOG_FORMAT: "text" }), "LOG_FORMAT"],
    ["HOST blank", () => ({ HOST: "   " }), "HOST"],
    ["INGEST_PATH without /", () => ({ INGEST_PATH: "api/logs" }), "INGEST_PATH"],
    ["INGEST_PATH with query", () => ({ INGEST_PATH: "/api/logs?x=1" }), "INGEST_PATH"],
    ["MAX_BODY_BYTES zero", () => ({ MAX_BODY_BYTES: "0" }), "MAX_BODY_BYTES"],
    ["CLOUDEVENTS_TYPE_PREFIX ends with a dot", () => ({ CLOUDEVENTS_TYPE_PREFIX: "com.auth0." }), "CLOUDEVENTS_TYPE_PREFIX"],
    ["CLOUDEVENTS_SOURCE with a space", () => ({ CLOUDEVENTS_SOURCE: "my tenant" }), "CLOUDEVENTS_SOURCE"],
    ["EVENTGRID_ALLOW_INSECURE not a boolean", () => ({ EVENTGRID_ALLOW_INSECURE: "maybe" }), "EVENTGRID_ALLOW_INSECURE"],
    ["MAX_BATCH_BYTES over 1 MiB", () => ({ MAX_BATCH_BYTES: "1048577" }), "MAX_BATCH_BYTES"],
    ["MAX_BATCH_EVENTS over 5000", () => ({ MAX_BATCH_EVENTS: "5001" }), "MAX_BATCH_EVENTS"],
    ["PUBLISH_RETRIES over 10", () => ({ PUBLISH_RETRIES: "11" }), "PUBLISH_RETRIES"],
    ["PUBLISH_TIMEOUT_MS zero", () => ({ PUBLISH_TIMEOUT_MS: "0" }), "PUBLISH_TIMEOUT_MS"],
    ["RETRY_BASE_DELAY_MS negative", () => ({ RETRY_BASE_DELAY_MS: "-5" }), "RETRY_BASE_DELAY_MS"],
    ["RETRY_MAX_DELAY_MS below the base", () => ({ RETRY_BASE_DELAY_MS: "1000", RETRY_MAX_DELAY_MS: "999" }), "RETRY_MAX_DELAY_MS"],
    ["RETRY_AFTER_MAX_MS not a number", () => ({ RETRY_AFTER_MAX_MS: "x" }), "RETRY_AFTER_MAX_MS"],
    ["RESPONSE_RETRY_AFTER_SECONDS in exponent form", () => ({ RESPONSE_RETRY_AFTER_SECONDS: "1e3" }), "RESPONSE_RETRY_AFTER_SECONDS"],
    ["STARTUP_CHECK_INTERVAL_MS zero", () => ({ STARTUP_CHECK_INTERVAL_MS: "0" }), "STARTUP_CHECK_INTERVAL_MS"],
    ["SHUTDOWN_TIMEOUT_MS not a number", () => ({ SHUTDOWN_TIMEOUT_MS: "20s" }), "SHUTDOWN_TIMEOUT_MS"],
    ["EVENT_TYPES_FILE blank", () => ({ EVENT_TYPES_FILE: " " }), "EVENT_TYPES_FILE"],
    ["FILTER_DROP_CODES item with a space", () => ({ FILTER_DROP_CODES: "f, s p" }), "FILTER_DROP_CODES"],
    ["FILTER_ONLY_CATEGORIES item with a space", () => ({ FILTER_ONLY_CATEGORIES: "auth login" }), "FILTER_ONLY_CATEGORIES"],
    ["TYPE_OVERRIDES pair without =", () => ({ TYPE_OVERRIDES: "f" }), "TYPE_OVERRIDES"],
    ["TYPE_OVERRIDES empty value", () => ({ TYPE_OVERRIDES: "f=" }), "TYPE_OVERRIDES"],
    ["TYPE_OVERRIDES empty key", () => ({ TYPE_OVERRIDES: "=x" }), "TYPE_OVERRIDES"],
    ["TYPE_OVERRIDES duplicate key", () => ({ TYPE_OVERRIDES: "f=a,f=b" }), "TYPE_OVERRIDES"],
    ["TYPE_OVERRIDES non-string JSON value", () => ({ TYPE_OVERRIDES: '{"f": 1}' }), "TYPE_OVERRIDES"],
    ["TYPE_OVERRIDES JSON array", () => ({ TYPE_OVERRIDES: "[]" }), "TYPE_OVERRIDES"],
    ["TYPE_OVERRIDES broken JSON", () => ({ TYPE_OVERRIDES: '{"f": ' }), "TYPE_OVERRIDES"],
    ["EVENTGRID_ENDPOINT not a URL", () => ({ EVENTGRID_ENDPOINT: "my-topic/api/events" }), "EVENTGRID_ENDPOINT"],
    ["EVENTGRID_ENDPOINT with credentials", () => ({ EVENTGRID_ENDPOINT: "https://user:pass@example.com/api/events" }), "EVENTGRID_ENDPOINT"],
    ["EVENTGRID_ENDPOINT not http(s)", () => ({ EVENTGRID_ENDPOINT: "ftp://example.com/api/events" }), "EVENTGRID_ENDPOINT"],
    ["EVENTGRID_ENDPOINT http:// without EVENTGRID_ALLOW_INSECURE", () => ({ EVENTGRID_ENDPOINT: "http://localhost:4000/api/events" }), "EVENTGRID_ENDPOINT"],
    ["EVENTGRID_CHANNEL with a space", () => ({ EVENTGRID_CHANNEL: "my channel" }), "EVENTGRID_CHANNEL"],
    ["EVENTGRID_KEY and EVENTGRID_SAS_TOKEN", () => ({ EVENTGRID_KEY: "key-0123456789", EVENTGRID_SAS_TOKEN: "sas-0123456789" }), "EVENTGRID_KEY"],
    ["AUTH0_STREAM_TOKEN with trailing space", () => ({ AUTH0_STREAM_TOKEN: "token-0123456789 " }), "AUTH0_STREAM_TOKEN"],
    ["AUTH0_STREAM_TOKEN and AUTH0_STREAM_TOKEN_FILE", () => ({ AUTH0_STREAM_TOKEN: "a", AUTH0_STREAM_TOKEN_FILE: file("t", "b") }), "AUTH0_STREAM_TOKEN"],
    ["EVENTGRID_KEY_FILE missing", () => ({ EVENTGRID_KEY_FILE: join(dir, "missing-key") }), "EVENTGRID_KEY_FILE"],
    ["EVENTGRID_SAS_TOKEN_FILE is a directory", () => ({ EVENTGRID_SAS_TOKEN_FILE: dir }), "EVENTGRID_SAS_TOKEN_FILE"],
    ["CONFIG_FILE missing", () => ({ CONFIG_FILE: join(dir, "missing.yaml") }), "CONFIG_FILE"],
    ["CONFIG_FILE invalid JSON", () => ({ CONFIG_FILE: file("c.json", '{"PORT": 1,}') }), "CONFIG_FILE"],
    ["CONFIG_FILE invalid YAML", () => ({ CONFIG_FILE: file("c.yaml", "PORT: 1\nPORT: 2\n") }), "CONFIG_FILE"],
    ["CONFIG_FILE neither JSON nor YAML", () => ({ CONFIG_FILE: file("c.conf", "a: b: c\n") }), "CONFIG_FILE"],
    ["CONFIG_FILE holding a list", () => ({ CONFIG_FILE: file("c.yaml", "- PORT\n") }), "CONFIG_FILE"],
    ["CONFIG_FILE holding a scalar", () => ({ CONFIG_FILE: file("c.json", "42") }), "CONFIG_FILE"],
    ["unknown key in CONFIG_FILE", () => ({ CONFIG_FILE: file("c.yaml", "PROT: 8080\n") }), "PROT"],
    ["CONFIG_FILE naming itself", () => ({ CONFIG_FILE: file("c.yaml", "CONFIG_FILE: other.yaml\n") }), "CONFIG_FILE"],
    ["a *_FILE key in CONFIG_FILE", () => ({ CONFIG_FILE: file("c.yaml", "EVENTGRID_KEY_FILE: /run/key\n") }), "EVENTGRID_KEY_FILE"],
    ["bad value in CONFIG_FILE", () => ({ CONFIG_FILE: file("c.yaml", "PORT: abc\n") }), "PORT"],
    ["production without AUTH0_STREAM_TOKEN", () => ({ ...PRODUCTION, AUTH0_STREAM_TOKEN: undefined }), "AUTH0_STREAM_TOKEN"],
    ["production with the development token", () => ({ ...PRODUCTION, AUTH0_STREAM_TOKEN: DEV_STREAM_TOKEN }), "AUTH0_STREAM_TOKEN"],
    ["production without EVENTGRID_ENDPOINT", () => ({ ...PRODUCTION, EVENTGRID_ENDPOINT: "" }), "EVENTGRID_ENDPOINT"],
    ["production with EVENTGRID_ALLOW_INSECURE", () => ({ ...PRODUCTION, EVENTGRID_ALLOW_INSECURE: "true" }), "EVENTGRID_ALLOW_INSECURE"],
    ["production with an http:// endpoint", () => ({ ...PRODUCTION, EVENTGRID_ENDPOINT: "http://x.example/api/events" }), "EVENTGRID_ENDPOINT"],
  ];
  for (const [name, env, setting] of cases) {
    it(name, () => {
      const error = configError(() => load({ AUTH0_STREAM_TOKEN_PREVIOUS: SENTINEL, ...env() }), setting);
      assert.ok(!error.message.includes(SENTINEL), error.message);
    });
  }

  it("value errors say what was expected and what was given", () => {
    const error = configError(() => load({ PORT: "abc" }), "PORT");
    assert.equal(error.message, 'Invalid setting PORT: expected an integer between 0 and 65535, got "abc" (from environment)');
    const fromFile = configError(() => load({ CONFIG_FILE: file("c.yaml", "PORT: abc\n") }), "PORT");
    assert.match(fromFile.message, /got "abc" \(from CONFIG_FILE .*c\.yaml\)$/);
    assert.match(configError(() => load({ TYPE_OVERRIDES: "f=a,f=b" }), "TYPE_OVERRIDES").message, /duplicate key "f"/);
    assert.match(configError(() => load({ EVENTGRID_KEY_FILE: join(dir, "missing-key") }), "EVENTGRID_KEY_FILE").message, /ENOENT/);
    assert.match(configError(() => load({ EVENTGRID_KEY_FILE: dir }), "EVENTGRID_KEY_FILE").message, /EISDIR/);
  });

  it("an unknown key in CONFIG_FILE suggests the closest setting", () => {
    assert.match(configError(() => load({ CONFIG_FILE: file("c.yaml", "LOG_LEVLE: debug\n") }), "LOG_LEVLE").message, /did you mean LOG_LEVEL\?/);
    assert.match(configError(() => load({ CONFIG_FILE: file("c.yaml", "port: 1\n") }), "port").message, /did you mean PORT\?/);
    assert.doesNotMatch(configError(() => load({ CONFIG_FILE: file("c.yaml", "SOMETHING_ELSE: 1\n") }), "SOMETHING_ELSE").message, /did you mean/);
  });

  it("ConfigError built from a message alone still names its setting and stays on one line", () => {
    const error = new ConfigError("EVENTGRID_ENDPOINT is required\n  to start the bridge");
    assert.equal(error.setting, "EVENTGRID_ENDPOINT");
    assert.equal(error.message, "EVENTGRID_ENDPOINT is required to start the bridge");
    assert.equal(new ConfigError("AUTH0_STREAM_TOKEN_PREVIOUS is odd").setting, "AUTH0_STREAM_TOKEN_PREVIOUS");
    assert.equal(error.name, "ConfigError");
    assert.ok(error instanceof Error);
  });
});

describe("loadConfig: secrets never appear in errors", () => {
  const secret = "leaky-secret-7c9e1b";
  for (const spec of SETTINGS.filter((s) => s.secret)) {
    it(`${spec.name}: an invalid value is <redacted>`, () => {
      for (const bad of [` ${secret}`, `${secret}\t`, `${secret}\u0001x`]) {
        const error = configError(() => load({ [spec.name]: bad }), spec.name);
        assert.ok(!error.message.includes(secret), error.message);
        assert.match(error.message, /<redacted>/);
      }
      const fromFile = configError(() => load({ [`${spec.name}_FILE`]: file("secret", `${secret}\n\n`) }), spec.name);
      assert.ok(!fromFile.message.includes(secret), fromFile.message);
      const fromConfig = configError(() => load({ CONFIG_FILE: file("c.yaml", `${spec.name}: 98765432109876\n`) }), spec.name);
      assert.ok(!fromConfig.message.includes("98765432109876"), fromConfig.message);
    });
  }

  it("EVENTGRID_KEY with EVENTGRID_SAS_TOKEN: neither value is shown, from env or files", () => {
    const error = configError(() => load({ EVENTGRID_KEY: "key-value-aaaa1111", EVENTGRID_SAS_TOKEN: "sas-value-bbbb2222" }), "EVENTGRID_KEY");
    assert.ok(!error.message.includes("key-value-aaaa1111") && !error.message.includes("sas-value-bbbb2222"), error.message);
    assert.match(error.message, /EVENTGRID_SAS_TOKEN/);
    const viaFiles = configError(
      () => load({ EVENTGRID_KEY_FILE: file("key", "key-value-aaaa1111\n"), EVENTGRID_SAS_TOKEN_FILE: file("sas", "sas-value-bbbb2222\n") }),
      "EVENTGRID_KEY",
    );
    assert.ok(!viaFiles.message.includes("key-value-aaaa1111") && !viaFiles.message.includes("sas-value-bbbb2222"), viaFiles.message);
  });

  it("NAME with NAME_FILE: neither value is shown", () => {
    const error = configError(() => load({ EVENTGRID_KEY: "key-value-cccc3333", EVENTGRID_KEY_FILE: file("key", "key-value-dddd4444") }), "EVENTGRID_KEY");
    assert.match(error.message, /EVENTGRID_KEY_FILE/);
    assert.ok(!error.message.includes("cccc3333") && !error.message.includes("dddd4444"), error.message);
  });

  it("a typo'd key in CONFIG_FILE does not show its value", () => {
    const error = configError(() => load({ CONFIG_FILE: file("c.yaml", "EVENTGRID_KY: typo-secret-eeee5555\n") }), "EVENTGRID_KY");
    assert.match(error.message, /did you mean EVENTGRID_KEY\?/);
    assert.ok(!error.message.includes("eeee5555"), error.message);
  });

  it("a CONFIG_FILE that does not parse does not quote its content", () => {
    for (const name of ["c.json", "c.yaml", "c"]) {
      const error = configError(() => load({ CONFIG_FILE: file(name, '{"EVENTGRID_KEY": parse-secret-ffff6666}\n  bad: [') }), "CONFIG_FILE");
      assert.ok(!error.message.includes("ffff6666"), error.message);
    }
  });

  it("credentials in EVENTGRID_ENDPOINT are hidden", () => {
    const error = configError(() => load({ EVENTGRID_ENDPOINT: "http://user:url-secret-9999@localhost/api/events" }), "EVENTGRID_ENDPOINT");
    assert.ok(!error.message.includes("url-secret-9999"), error.message);
  });
});

describe("loadConfig: <NAME>_FILE secrets", () => {
  const cases: [string, string][] = [
    ["no trailing newline", "secret-from-file-0001"],
    ["a trailing \\n", "secret-from-file-0001\n"],
    ["a trailing \\r\\n", "secret-from-file-0001\r\n"],
  ];
  for (const [name, content] of cases) {
    it(`reads the file with ${name}`, () => {
      for (const spec of SETTINGS.filter((s) => s.secret)) {
        const { config } = load({ [`${spec.name}_FILE`]: file("secret", content) });
        assert.equal(config[spec.name as keyof Config], "secret-from-file-0001", spec.name);
      }
    });
  }

  it("strips only one trailing newline", () => {
    configError(() => load({ AUTH0_STREAM_TOKEN_FILE: file("secret", "secret-from-file-0001\n\n") }), "AUTH0_STREAM_TOKEN");
  });

  it("an empty file counts as unset, with a warning", () => {
    const path = file("empty-secret", "\n");
    const { config, warnings } = load({ AUTH0_STREAM_TOKEN_FILE: path });
    assert.equal(config.AUTH0_STREAM_TOKEN, DEV_STREAM_TOKEN);
    assert.ok(warnings.some((w) => w.includes("AUTH0_STREAM_TOKEN_FILE") && w.includes("empty")), warnings.join(" / "));
    configError(() => load({ ...PRODUCTION, AUTH0_STREAM_TOKEN: undefined, AUTH0_STREAM_TOKEN_FILE: path }), "AUTH0_STREAM_TOKEN");
  });

  it("the secret file path may contain anything; non-secret settings have no _FILE form", () => {
    const nested = join(dir, "mounted", "..data");
    mkdirSync(nested, { recursive: true });
    writeFileSync(join(nested, "token"), "secret-from-file-0002\n");
    assert.equal(load({ AUTH0_STREAM_TOKEN_FILE: join(nested, "token") }).config.AUTH0_STREAM_TOKEN, "secret-from-file-0002");
    assert.equal(load({ PORT_FILE: join(nested, "token") }).config.PORT, 8080);
  });
});

describe("loadConfig: production and warnings", () => {
  it("a complete production configuration loads without warnings", () => {
    const { config, warnings } = load({ ...PRODUCTION, EVENTGRID_KEY_FILE: file("key", "key-0123456789abcdef\n") });
    assert.equal(config.NODE_ENV, "production");
    assert.equal(config.AUTH0_STREAM_TOKEN, PROD_TOKEN);
    assert.equal(config.EVENTGRID_KEY, "key-0123456789abcdef");
    assert.deepEqual(warnings, []);
  });

  it("production: the token may come from AUTH0_STREAM_TOKEN_FILE; Entra ID needs no key", () => {
    const { config } = load({ ...PRODUCTION, AUTH0_STREAM_TOKEN: undefined, AUTH0_STREAM_TOKEN_FILE: file("token", `${PROD_TOKEN}\n`) });
    assert.equal(config.AUTH0_STREAM_TOKEN, PROD_TOKEN);
    assert.equal(config.EVENTGRID_KEY, undefined);
    assert.equal(config.EVENTGRID_SAS_TOKEN, undefined);
  });

  it("production rule messages", () => {
    const noToken = configError(() => load({ ...PRODUCTION, AUTH0_STREAM_TOKEN: undefined }), "AUTH0_STREAM_TOKEN");
    assert.match(noToken.message, /^AUTH0_STREAM_TOKEN is required in production/);
    const previous = configError(() => load({ ...PRODUCTION, AUTH0_STREAM_TOKEN_PREVIOUS: DEV_STREAM_TOKEN }), "AUTH0_STREAM_TOKEN_PREVIOUS");
    assert.match(previous.message, /development token/);
    assert.match(configError(() => load({ ...PRODUCTION, EVENTGRID_ENDPOINT: undefined }), "EVENTGRID_ENDPOINT").message, /required in production/);
  });

  it("the development token is used outside production only when no token is set", () => {
    for (const mode of ["development", "test"]) {
      const { config, warnings } = load({ NODE_ENV: mode });
      assert.equal(config.AUTH0_STREAM_TOKEN, DEV_STREAM_TOKEN);
      assert.ok(warnings.includes(DEV_WARNING));
    }
    const { config, warnings } = load({ AUTH0_STREAM_TOKEN: "a-long-enough-token-123" });
    assert.equal(config.AUTH0_STREAM_TOKEN, "a-long-enough-token-123");
    assert.deepEqual(warnings, []);
  });

  it("short tokens are accepted with a warning", () => {
    const { config, warnings } = load({ AUTH0_STREAM_TOKEN: "x", AUTH0_STREAM_TOKEN_PREVIOUS: "qz7w" });
    assert.equal(config.AUTH0_STREAM_TOKEN, "x");
    assert.equal(warnings.length, 2);
    assert.ok(warnings[0]?.startsWith("AUTH0_STREAM_TOKEN is shorter than 16"));
    assert.ok(warnings[1]?.startsWith("AUTH0_STREAM_TOKEN_PREVIOUS is shorter than 16"));
    assert.ok(!warnings.join(" ").includes("qz7w"), "warnings must not show the token");
  });

  it("an endpoint path other than /api/events is accepted with a warning", () => {
    assert.deepEqual(load({ AUTH0_STREAM_TOKEN: PROD_TOKEN, EVENTGRID_ENDPOINT: ENDPOINT }).warnings, []);
    assert.deepEqual(load({ AUTH0_STREAM_TOKEN: PROD_TOKEN, EVENTGRID_ENDPOINT: `${ENDPOINT}/` }).warnings, []);
    const { config, warnings } = load({ AUTH0_STREAM_TOKEN: PROD_TOKEN, EVENTGRID_ENDPOINT: "https://my-topic.westeurope-1.eventgrid.azure.net/" });
    assert.equal(config.EVENTGRID_ENDPOINT, "https://my-topic.westeurope-1.eventgrid.azure.net/");
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? "", /EVENTGRID_ENDPOINT .*\/api\/events/);
  });

  it("Event Grid credentials without an endpoint are reported as unused", () => {
    const { warnings } = load({ AUTH0_STREAM_TOKEN: PROD_TOKEN, EVENTGRID_KEY: "key-0123456789" });
    assert.deepEqual(warnings, ["EVENTGRID_KEY is set but EVENTGRID_ENDPOINT is not: EVENTGRID_KEY is unused"]);
  });
});

describe("secretValues", () => {
  it("returns the non-empty secrets of a config", () => {
    const { config } = load({ AUTH0_STREAM_TOKEN: PROD_TOKEN, AUTH0_STREAM_TOKEN_PREVIOUS: "previous-token-0123456", EVENTGRID_SAS_TOKEN: "sas-0123456789" });
    assert.deepEqual(secretValues(config).sort(), [PROD_TOKEN, "previous-token-0123456", "sas-0123456789"].sort());
    assert.deepEqual(secretValues(load({}).config), [DEV_STREAM_TOKEN]);
    assert.deepEqual(secretValues({ ...config, EVENTGRID_SAS_TOKEN: "" }).sort(), [PROD_TOKEN, "previous-token-0123456"].sort());
  });
});

describe("describeSettings", () => {
  it("renders a Markdown table with one row per setting", () => {
    const table = describeSettings();
    const lines = table.split("\n");
    assert.equal(lines[0], "| Setting | Default | Description |");
    assert.equal(lines.length, SETTINGS.length + 2);
    for (const spec of SETTINGS) {
      const row = lines.find((line) => line.startsWith(`| \`${spec.name}\` |`));
      assert.ok(row, `no row for ${spec.name}`);
      assert.equal(row.includes(`\`${spec.name}_FILE\``), spec.secret, spec.name);
      assert.equal(row.includes("secret"), spec.secret, spec.name);
    }
    assert.ok(table.includes("| `PORT` | `8080` |"));
    assert.ok(table.includes("| `EVENTGRID_KEY` | — |"));
    assert.ok(table.includes("| `FILTER_DROP_CODES` | (empty) |"));
  });

  it("uses the given defaults file", () => {
    const path = file("default.json", JSON.stringify({ ...readDefaults(), PORT: 1234, FILTER_DROP_CODES: ["f", "s"] }));
    const table = describeSettings({ defaultsPath: path });
    assert.ok(table.includes("| `PORT` | `1234` |"));
    assert.ok(table.includes("| `FILTER_DROP_CODES` | `f,s` |"));
  });

  it("render-docs.ts prints it", () => {
    const result = spawnSync(process.execPath, ["--import", "tsx", "src/config/render-docs.ts"], { cwd: ROOT, encoding: "utf8" });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, `${describeSettings()}\n`);
  });
});
