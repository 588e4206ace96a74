// Loads the configuration at start-up, in layers: config/default.json, then the optional
// CONFIG_FILE (JSON or YAML), then the environment, then `<NAME>_FILE` for secrets (mounted
// Kubernetes secrets). Every problem is a ConfigError with a one-line message that names the
// setting and never shows a secret, because it is printed as-is to stderr before exit.
import { readFileSync } from "node:fs";
import { dirname, extname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { DEV_STREAM_TOKEN, SETTINGS, secretValues, type Config, type SettingSpec } from "./settings.js";
import { buildTopology, TOPOLOGY_KEYS, TopologyError, type Topology } from "./topology.js";

export { DEV_STREAM_TOKEN, secretValues };
export type { Config };

const REDACTED = "<redacted>";
const MIN_TOKEN_LENGTH = 16;
const TRUE_WORDS = new Set(["true", "1", "yes"]);
const FALSE_WORDS = new Set(["false", "0", "no"]);
const SPEC_BY_NAME: ReadonlyMap<string, SettingSpec> = new Map(SETTINGS.map((s) => [s.name, s]));

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The setting (or `<NAME>_FILE` variable, or unknown config file key) at fault; undefined for a broken defaults file. */
  readonly setting: string | undefined;

  constructor(message: string, setting?: string) {
    // One line, always: the message is printed as the whole start-up failure.
    const line = message.replace(/\s*[\r\n]+\s*/g, " ");
    super(line);
    // Callers that pass only a message still get the first setting it mentions.
    this.setting = setting ?? line.match(/[A-Z][A-Z0-9_]+/g)?.find((word) => SPEC_BY_NAME.has(word));
  }
}

export interface LoadOptions {
  /** The environment (process.env in production; a plain object in tests). Never read from anywhere else. */
  env: Record<string, string | undefined>;
  /** config/default.json; see packagedDefaultsPath(). */
  defaultsPath: string;
}

export interface LoadedConfig {
  config: Config;
  /** Streams, destinations and routes: from CONFIG_FILE's sections, else from the settings. */
  topology: Topology;
  /** Problems that do not stop start-up; logged once the logger exists. */
  warnings: string[];
}

/** config/default.json of this package, located from this module (works from src/ and dist/). */
export function packagedDefaultsPath(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../config/default.json");
}

/** A value for one setting, before coercion, and where it came from (for error messages). */
interface Candidate {
  value: unknown;
  /** Environment variables and secret files are strings to coerce; file values are native. */
  fromString: boolean;
  source: string;
}

export function loadConfig(opts: LoadOptions): LoadedConfig {
  const { env } = opts;
  const warnings: string[] = [];

  const defaults = readSettingsFile(opts.defaultsPath, undefined, warnings);
  checkKeys(defaults, `the defaults file ${JSON.stringify(opts.defaultsPath)}`, true);

  const configFile = envValue(env, "CONFIG_FILE");
  const fileValues = configFile === undefined ? {} : readSettingsFile(configFile, "CONFIG_FILE", warnings);
  // streams, destinations and routes are structured sections, not settings.
  const sections: Record<string, unknown> = {};
  for (const key of TOPOLOGY_KEYS) {
    if (key in fileValues) {
      if (fileValues[key] !== null) sections[key] = fileValues[key];
      delete fileValues[key];
    }
  }
  checkKeys(fileValues, `CONFIG_FILE ${JSON.stringify(configFile)}`, false);

  const values: Record<string, unknown> = {};
  for (const spec of SETTINGS) {
    const candidate =
      fromEnvironment(spec, env, warnings) ??
      fromFile(spec, fileValues, `CONFIG_FILE ${configFile ?? ""}`) ??
      fromFile(spec, defaults, `defaults ${opts.defaultsPath}`);
    if (candidate === undefined) {
      if (spec.presence === "default") {
        // A packaging bug, not a user error; caught here so Config's types stay true.
        throw new ConfigError(`Setting ${spec.name} has no value: the defaults file ${JSON.stringify(opts.defaultsPath)} lacks its default`, spec.name);
      }
      values[spec.name] = undefined;
      continue;
    }
    values[spec.name] = validate(spec, candidate);
  }
  const config = values as Config;
  applyCrossFieldRules(config, warnings, { streams: sections.streams !== undefined, destinations: sections.destinations !== undefined });
  let topology: Topology;
  try {
    topology = buildTopology(config, sections);
  } catch (error) {
    if (error instanceof TopologyError) throw new ConfigError(error.message, "CONFIG_FILE");
    throw error;
  }
  return { config, topology, warnings };
}

// --- layers -----------------------------------------------------------------------------------------

/** Kubernetes renders unset optional values as "", so an empty variable counts as unset. */
function envValue(env: Record<string, string | undefined>, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}

function fromEnvironment(spec: SettingSpec, env: Record<string, string | undefined>, warnings: string[]): Candidate | undefined {
  const direct = envValue(env, spec.name);
  if (!spec.secret) return direct === undefined ? undefined : { value: direct, fromString: true, source: "environment" };

  const fileVar = `${spec.name}_FILE`;
  const path = envValue(env, fileVar);
  if (direct !== undefined && path !== undefined) {
    throw new ConfigError(`Invalid setting ${spec.name}: set either ${spec.name} or ${fileVar}, not both`, spec.name);
  }
  if (direct !== undefined) return { value: direct, fromString: true, source: "environment" };
  if (path === undefined) return undefined;

  // Editors and `echo` add one trailing newline; more than one is kept (and then refused).
  const content = readText(path, fileVar).replace(/\r?\n$/, "");
  if (content === "") {
    warnings.push(`${fileVar} (${JSON.stringify(path)}) is empty: ${spec.name} counts as unset`);
    return undefined;
  }
  return { value: content, fromString: true, source: `${fileVar} ${path}` };
}

function fromFile(spec: SettingSpec, values: Record<string, unknown>, source: string): Candidate | undefined {
  const value = values[spec.name];
  // `KEY:` with nothing after it in YAML is null; like an empty env variable, it means "unset".
  if (value === undefined || value === null || value === "") return undefined;
  return { value, fromString: false, source };
}

function readText(path: string, setting: string | undefined): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    // The OS error code only: the message of some errors could quote file content.
    const code = (error as NodeJS.ErrnoException).code ?? "unknown error";
    if (setting === undefined) throw new ConfigError(`Cannot read the defaults file ${JSON.stringify(path)} (${code})`);
    throw new ConfigError(`Invalid setting ${setting}: cannot read ${JSON.stringify(path)} (${code})`, setting);
  }
}

/** Reads a JSON or YAML settings file (by extension; otherwise JSON, then YAML) into a plain object. */
function readSettingsFile(path: string, setting: string | undefined, warnings: string[]): Record<string, unknown> {
  const text = readText(path, setting).replace(/^\uFEFF/, "");
  const fail: (problem: string) => never = (problem) => {
    if (setting === undefined) throw new ConfigError(`Invalid defaults file ${JSON.stringify(path)}: ${problem}`);
    throw new ConfigError(`Invalid setting ${setting}: ${JSON.stringify(path)} ${problem}`, setting);
  };
  const ext = extname(path).toLowerCase();
  let parsed: unknown;
  if (ext === ".json") {
    const result = parseJson(text);
    if (!result.ok) fail(`is not valid JSON${result.where}`);
    parsed = result.value;
  } else {
    const json = ext === ".yaml" || ext === ".yml" ? undefined : parseJson(text);
    if (json?.ok) parsed = json.value;
    else {
      const result = parseYaml(text);
      if (!result.ok) fail(`is not valid ${json === undefined ? "YAML" : "JSON or YAML"}${result.where}`);
      parsed = result.value;
      for (const warning of result.warnings) warnings.push(`${setting ?? "defaults file"} ${JSON.stringify(path)}: ${warning}`);
    }
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== "object" || Array.isArray(parsed)) {
    fail(`must hold an object of settings, got ${Array.isArray(parsed) ? "an array" : `a ${typeof parsed}`}`);
  }
  return parsed as Record<string, unknown>;
}

type Parsed = { ok: true; value: unknown; warnings: string[] } | { ok: false; where: string };

// Parser messages quote the offending text, which may be a secret: report only where it is.
function parseJson(text: string): Parsed {
  try {
    return { ok: true, value: JSON.parse(text) as unknown, warnings: [] };
  } catch (error) {
    const message = error instanceof Error ? error.message : "";
    const lineCol = /line (\d+) column (\d+)/.exec(message);
    if (lineCol) return { ok: false, where: ` (at line ${lineCol[1]}, column ${lineCol[2]})` };
    const position = /position (\d+)/.exec(message);
    if (!position) return { ok: false, where: "" };
    const before = text.slice(0, Number(position[1])).split("\n");
    return { ok: false, where: ` (at line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1})` };
  }
}

function parseYaml(text: string): Parsed {
  const doc = parseDocument(text);
  const at = (e: { code: string; linePos?: [{ line: number; col: number }, ...unknown[]] | undefined }) =>
    `${e.code}${e.linePos ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : ""}`;
  const error = doc.errors[0];
  if (error) return { ok: false, where: ` (${at(error)})` };
  try {
    return { ok: true, value: doc.toJS(), warnings: doc.warnings.map((w) => `YAML warning ${at(w)}`) };
  } catch {
    // toJS() throws on alias bombs ("excessive alias count").
    return { ok: false, where: " (too many aliases)" };
  }
}

/** Unknown keys are refused, so a typo in a config file cannot silently leave a default in force. */
function checkKeys(values: Record<string, unknown>, where: string, isDefaults: boolean): void {
  for (const key of Object.keys(values)) {
    const shownKey = /^[A-Za-z0-9_.-]+$/.test(key) ? key : JSON.stringify(key);
    const spec = SPEC_BY_NAME.get(key);
    if (spec === undefined) {
      throw new ConfigError(`Unknown setting ${shownKey} in ${where}${suggestion(key)}`, key);
    }
    if (spec.envOnly) throw new ConfigError(`Invalid setting ${key} in ${where}: it can only be set in the environment`, key);
    if (isDefaults && spec.secret) throw new ConfigError(`Invalid setting ${key} in ${where}: secrets have no default`, key);
  }
}

function suggestion(key: string): string {
  const base = key.replace(/_FILE$/, "");
  if (base !== key && SPEC_BY_NAME.get(base)?.secret) return ` (${key} is read from the environment only; set ${base} in the file instead)`;
  const upper = key.toUpperCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of SPEC_BY_NAME.keys()) {
    const d = distance(upper, name);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best === undefined ? "" : ` (did you mean ${best}?)`;
}

/** Levenshtein distance; names are short, so the plain O(n·m) table is fine. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

// --- coercion and validation ----------------------------------------------------------------------

type Coerced = { ok: true; value: unknown } | { ok: false; detail: string | undefined };

function coerce(spec: SettingSpec, candidate: Candidate): Coerced {
  const raw = candidate.value;
  if (typeof raw !== "string" || spec.secret) return { ok: true, value: raw };
  switch (spec.kind) {
    case "string":
    case "enum":
      return { ok: true, value: raw.trim() };
    case "integer": {
      const text = raw.trim();
      return /^[+-]?\d+$/.test(text) ? { ok: true, value: Number(text) } : { ok: false, detail: undefined };
    }
    case "boolean": {
      const word = raw.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return { ok: true, value: true };
      if (FALSE_WORDS.has(word)) return { ok: true, value: false };
      return { ok: false, detail: undefined };
    }
    case "list":
      // A config file has real arrays; a comma string there is refused by the schema.
      if (!candidate.fromString) return { ok: true, value: raw };
      return { ok: true, value: raw.split(",").map((item) => item.trim()).filter((item) => item !== "") };
    case "map":
      return candidate.fromString ? parseMap(raw) : { ok: true, value: raw };
  }
}

/** TYPE_OVERRIDES from the environment: a JSON object, or `key=value,key=value`. */
function parseMap(raw: string): Coerced {
  const text = raw.trim();
  if (text.startsWith("{")) {
    try {
      return { ok: true, value: JSON.parse(text) as unknown };
    } catch {
      return { ok: false, detail: "not valid JSON" };
    }
  }
  const entries = new Map<string, string>();
  for (const pair of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const eq = pair.indexOf("=");
    if (eq < 0) return { ok: false, detail: `${JSON.stringify(pair)} has no "="` };
    const key = pair.slice(0, eq).trim();
    if (entries.has(key)) return { ok: false, detail: `duplicate key ${JSON.stringify(key)}` };
    entries.set(key, pair.slice(eq + 1).trim());
  }
  return { ok: true, value: Object.fromEntries(entries) };
}

function validate(spec: SettingSpec, candidate: Candidate): unknown {
  const coerced = coerce(spec, candidate);
  let detail = coerced.ok ? undefined : coerced.detail;
  if (coerced.ok) {
    const result = spec.schema.safeParse(coerced.value);
    if (result.success) return result.data;
    const path = result.error.issues[0]?.path ?? [];
    if (path.length > 0 && !spec.secret) {
      const step = path[0];
      detail = typeof step === "number" ? `item ${step + 1}` : `at ${JSON.stringify(String(step))}`;
    }
  }
  const notes = [detail, `from ${candidate.source}`].filter((n) => n !== undefined).join("; ");
  throw new ConfigError(`Invalid setting ${spec.name}: expected ${spec.expected}, got ${display(spec, candidate.value)} (${notes})`, spec.name);
}

/** How a rejected value appears in a message: secrets never, long values cut, URL credentials hidden. */
function display(spec: SettingSpec, value: unknown): string {
  if (spec.secret) return REDACTED;
  let text = JSON.stringify(value) ?? String(value);
  text = text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/?#@"]*@/gi, `$1${REDACTED}@`);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

// --- rules across settings ------------------------------------------------------------------------

function applyCrossFieldRules(config: Config, warnings: string[], declared: { streams: boolean; destinations: boolean }): void {
  const production = config.NODE_ENV === "production";
  const token = config.AUTH0_STREAM_TOKEN;

  if (production) {
    if (token === undefined && !declared.streams) {
      throw new ConfigError(
        "AUTH0_STREAM_TOKEN is required in production: set AUTH0_STREAM_TOKEN or AUTH0_STREAM_TOKEN_FILE to the Authorization Token of the Auth0 log stream",
        "AUTH0_STREAM_TOKEN",
      );
    }
    for (const name of ["AUTH0_STREAM_TOKEN", "AUTH0_STREAM_TOKEN_PREVIOUS"] as const) {
      if (config[name] === DEV_STREAM_TOKEN) {
        throw new ConfigError(`Invalid setting ${name}: the development token is refused in production`, name);
      }
    }
    if (config.EVENTGRID_ENDPOINT === undefined && !declared.destinations) {
      throw new ConfigError("EVENTGRID_ENDPOINT is required in production: set it to the Event Grid topic or partner namespace endpoint", "EVENTGRID_ENDPOINT");
    }
    if (config.EVENTGRID_ALLOW_INSECURE) {
      throw new ConfigError("Invalid setting EVENTGRID_ALLOW_INSECURE: must not be true in production", "EVENTGRID_ALLOW_INSECURE");
    }
  }

  // With streams declared, INGEST_PATH itself is served only when AUTH0_STREAM_TOKEN is set.
  if (token === undefined && !declared.streams) {
    config.AUTH0_STREAM_TOKEN = DEV_STREAM_TOKEN;
    warnings.push(`AUTH0_STREAM_TOKEN is not set: accepting the development token '${DEV_STREAM_TOKEN}'. Never run like this in production.`);
  } else if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    warnings.push(`AUTH0_STREAM_TOKEN is shorter than ${MIN_TOKEN_LENGTH} characters: use a long random token (e.g. openssl rand -hex 32)`);
  }
  const previous = config.AUTH0_STREAM_TOKEN_PREVIOUS;
  if (previous !== undefined && previous.length < MIN_TOKEN_LENGTH) {
    warnings.push(`AUTH0_STREAM_TOKEN_PREVIOUS is shorter than ${MIN_TOKEN_LENGTH} characters: use a long random token`);
  }
  if (previous !== undefined && previous === config.AUTH0_STREAM_TOKEN) {
    warnings.push("AUTH0_STREAM_TOKEN_PREVIOUS is the same as AUTH0_STREAM_TOKEN: unset it once a rotation is finished");
  }
  applyTargetRules(config, warnings, declared);
}

function applyTargetRules(config: Config, warnings: string[], declared: { destinations: boolean }): void {
  if (declared.destinations) {
    for (const name of ["EVENTGRID_ENDPOINT", "EVENTGRID_KEY", "EVENTGRID_SAS_TOKEN", "EVENTGRID_CHANNEL"] as const) {
      if (config[name] !== undefined) warnings.push(`${name} is set but CONFIG_FILE declares destinations: ${name} is unused`);
    }
  }

  const endpoint = config.EVENTGRID_ENDPOINT;
  if (endpoint !== undefined) {
    const url = new URL(endpoint); // the schema already checked that it parses
    if (url.protocol === "http:" && !config.EVENTGRID_ALLOW_INSECURE) {
      throw new ConfigError(
        `Invalid setting EVENTGRID_ENDPOINT: expected an https:// URL, got ${display(SPEC_BY_NAME.get("EVENTGRID_ENDPOINT")!, endpoint)} (set EVENTGRID_ALLOW_INSECURE=true only for a local emulator)`,
        "EVENTGRID_ENDPOINT",
      );
    }
    if (!url.pathname.replace(/\/+$/, "").endsWith("/api/events")) {
      warnings.push(
        `EVENTGRID_ENDPOINT path ${JSON.stringify(url.pathname)} does not end with "/api/events", as Event Grid topic and partner namespace endpoints do`,
      );
    }
  } else {
    for (const name of ["EVENTGRID_KEY", "EVENTGRID_SAS_TOKEN", "EVENTGRID_CHANNEL"] as const) {
      if (config[name] !== undefined) warnings.push(`${name} is set but EVENTGRID_ENDPOINT is not: ${name} is unused`);
    }
  }

  if (config.EVENTGRID_KEY !== undefined && config.EVENTGRID_SAS_TOKEN !== undefined) {
    throw new ConfigError(
      "Invalid settings EVENTGRID_KEY and EVENTGRID_SAS_TOKEN: set at most one of them (neither means Microsoft Entra ID)",
      "EVENTGRID_KEY",
    );
  }

  if (config.PORT !== 0 && config.PORT === config.ADMIN_PORT) {
    throw new ConfigError(`Invalid setting ADMIN_PORT: must differ from PORT (both are ${config.PORT})`, "ADMIN_PORT");
  }

  if (config.RETRY_MAX_DELAY_MS < config.RETRY_BASE_DELAY_MS) {
    throw new ConfigError(
      `Invalid setting RETRY_MAX_DELAY_MS: must be at least RETRY_BASE_DELAY_MS (${config.RETRY_BASE_DELAY_MS}), got ${config.RETRY_MAX_DELAY_MS}`,
      "RETRY_MAX_DELAY_MS",
    );
  }
}

// --- documentation --------------------------------------------------------------------------------

/** The README's settings table (Markdown), generated from SETTINGS and the defaults file. */
export function describeSettings(opts: { defaultsPath?: string } = {}): string {
  const defaults = readSettingsFile(opts.defaultsPath ?? packagedDefaultsPath(), undefined, []);
  const cell = (text: string) => text.replace(/\|/g, "\\|");
  const rows = SETTINGS.map((spec) => {
    const value = defaults[spec.name];
    const form = value === undefined || value === null ? undefined : envForm(value);
    const shownDefault = form === undefined ? "—" : form === "" ? "(empty)" : `\`${form}\``;
    let description = spec.description;
    if (spec.example !== undefined) description += ` Example: \`${spec.example}\`.`;
    if (spec.secret) description += ` *(secret; also \`${spec.name}_FILE\`)*`;
    return `| \`${spec.name}\` | ${cell(shownDefault)} | ${cell(description)} |`;
  });
  return ["| Setting | Default | Description |", "|---|---|---|", ...rows].join("\n");
}

/** A default written the way it would be set in the environment. */
function envForm(value: unknown): string {
  if (Array.isArray(value)) return value.join(",");
  if (typeof value === "object" && value !== null) return Object.entries(value).map(([k, v]) => `${k}=${String(v)}`).join(",");
  return String(value);
}
