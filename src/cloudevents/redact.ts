// Per-route redaction of an Auth0 log event's `data` (the log record's `data` object) before it is
// published, dead-lettered or logged. Pure: rules are compiled once into a trie, then `apply` walks
// only the matched paths and copies only what it changes, so one record can go through several
// routes with different rules without being mutated or deep-copied.
//
// Path syntax (inside `data`): dot-separated keys, e.g. `user_name`, `details.request.ip`.
// - `*` as a whole segment matches every element of an array or every own key of an object;
//   `name[*]` is sugar for `name.*` (`name[*][*]` for `name.*.*`).
// - A literal segment matches an object key only; array elements are reached through `*` alone
//   (there is no index syntax: positions in Auth0 arrays carry no stable meaning).
// - Keys that contain a dot cannot be addressed (the dot always separates segments); no Auth0
//   field name has one. Segments must be non-empty, without `[`/`]` other than the `[*]` suffix,
//   without `*` other than a whole `*`, and without leading/trailing whitespace (a typo, surely).
//
// Actions:
// - drop: delete the key; an array element reached through `*` is removed (later elements shift).
// - mask: replace the value, whatever its type, with `replacement` (default "[redacted]").
// - hash: replace the value with the lowercase hex HMAC-SHA256 of it under the hash key: strings
//   as their UTF-8 text, anything else as its JSON.stringify (so 5 and "5" hash alike, and an
//   object's hash depends on its key order). The same value always gives the same hash, so
//   events can still be correlated without exposing the value.
// null: drop still removes the key; mask and hash leave null as null (there is nothing to hide,
// and "[redacted]" or a hash would suggest a value existed). Absent keys stay absent.
//
// Overlapping rules (two specs, a preset plus a rule, `*` plus a literal key) are combined so that
// combining never weakens redaction and the order of specs does not matter:
// - on the same value the strongest action wins: drop > mask > hash (two masks: the first listed);
// - an action on a value applies to the value as found in the input; rules deeper inside it are moot.

import { createHmac, createSecretKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { z } from "zod";

export type RedactionAction = "drop" | "mask" | "hash";
export interface RedactionRule {
  path: string;
  action: RedactionAction;
  /** Only with action "mask"; default DEFAULT_MASK_REPLACEMENT. */
  replacement?: string;
}
export type RedactionSpec = RedactionRule | { preset: string };

export interface Redactor {
  /** The redacted copy of `data`; `data` itself when no rule matched. Never mutates `data`. */
  apply(data: Record<string, unknown>): Record<string, unknown>;
  /** Some rule hashes, so a hash key is in use. */
  readonly hashes: boolean;
  /** No rules at all: callers may skip `apply`. */
  readonly empty: boolean;
}

export interface CompileOptions {
  presets: Readonly<Record<string, readonly RedactionRule[]>>;
  /** HMAC key for `hash` rules; required (non-empty) when any rule hashes. */
  hashKey?: string | Buffer;
}

/** Bad path syntax, unknown preset, hash without key, unreadable preset file. Never names a key. */
export class RedactionError extends Error {
  override readonly name = "RedactionError";
}

export const DEFAULT_MASK_REPLACEMENT = "[redacted]";
export const REDACTION_ACTIONS = ["drop", "mask", "hash"] as const satisfies readonly RedactionAction[];

/** Preset names: lowercase words joined by "-" (they appear in config files and messages). */
const PRESET_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

// --- paths --------------------------------------------------------------------------------------

const WILDCARD = "*";
const ARRAY_SUGAR = "[*]";

/** The segments of a path, or a message saying what is wrong with it. */
function parsePath(path: string): { segments: string[] } | { problem: string } {
  if (path === "") return { problem: "is empty" };
  const segments: string[] = [];
  const parts = path.split(".");
  for (let i = 0; i < parts.length; i++) {
    let part = parts[i] ?? "";
    let wildcards = 0;
    while (part.endsWith(ARRAY_SUGAR)) {
      part = part.slice(0, -ARRAY_SUGAR.length);
      wildcards++;
    }
    const where = `segment ${i + 1}`;
    if (part === "") return { problem: `has an empty ${where} (use "a.b", "a.*" or "a[*]")` };
    if (part.includes("[") || part.includes("]")) {
      return { problem: `has brackets in ${where}: only a trailing "[*]" is allowed (no array indexes)` };
    }
    if (part !== WILDCARD && part.includes(WILDCARD)) {
      return { problem: `has "*" inside ${where}: a wildcard must be a whole segment` };
    }
    if (part.trim() !== part) return { problem: `has leading or trailing whitespace in ${where}` };
    segments.push(part);
    for (let w = 0; w < wildcards; w++) segments.push(WILDCARD);
  }
  return { segments };
}

function describePath(path: string): string {
  // Paths are configuration, not data, but keep messages one line and bounded.
  return JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);
}

// --- schemas ------------------------------------------------------------------------------------

const pathSchema = z.string({ error: 'path must be a string, e.g. "user_name" or "details.prompts.*.user_name"' }).superRefine((path, ctx) => {
  const parsed = parsePath(path);
  if ("problem" in parsed) ctx.addIssue({ code: "custom", message: `redaction path ${describePath(path)} ${parsed.problem}` });
});

const ruleSchema = z
  .strictObject({
    path: pathSchema,
    action: z.enum(REDACTION_ACTIONS, { error: 'action must be one of "drop", "mask", "hash"' }),
    replacement: z.string({ error: "replacement must be a string" }).optional(),
  })
  .superRefine((rule, ctx) => {
    if (rule.replacement !== undefined && rule.action !== "mask") {
      ctx.addIssue({ code: "custom", path: ["replacement"], message: 'replacement is only allowed with action "mask"' });
    }
  });

const PRESET_NAME_MESSAGE = 'preset names are lowercase words joined by "-", e.g. "personal"';
const presetNameSchema = z.string({ error: "preset must be a string" }).regex(PRESET_NAME, { error: PRESET_NAME_MESSAGE });

const presetRefSchema = z.strictObject({ preset: presetNameSchema });

/**
 * One entry of a route's `redact` list: a rule `{path, action, replacement?}` or `{preset}`.
 * Dispatches on the `preset` key instead of using z.union, so a mistake gets the message of the
 * shape the entry was meant to have rather than "Invalid input".
 */
export const redactionSpecSchema: z.ZodType<RedactionSpec> = z.unknown().transform((input, ctx): RedactionSpec => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    ctx.addIssue({ code: "custom", message: 'a redaction entry must be an object: {"path", "action"} or {"preset"}' });
    return z.NEVER;
  }
  const schema: z.ZodType<RedactionSpec> = Object.hasOwn(input, "preset") ? presetRefSchema : ruleSchema;
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  for (const issue of result.error.issues) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
  return z.NEVER;
});

/** config/redaction-presets.json. `description`s are for people; the loader drops them. */
const presetsFileSchema = z.strictObject({
  description: z.string().optional(),
  sources: z.array(z.string()).optional(),
  presets: z.record(
    presetNameSchema,
    z.strictObject({
      description: z.string().min(1, { error: "each preset needs a description" }),
      rules: z.array(ruleSchema).min(1, { error: "a preset needs at least one rule" }),
    }),
  ),
});

/** Reads and validates a presets file (config/redaction-presets.json): name -> rules. */
export function loadRedactionPresets(path: string): Record<string, RedactionRule[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    const reason = error instanceof SyntaxError ? "not valid JSON" : ((error as NodeJS.ErrnoException).code ?? "unreadable");
    throw new RedactionError(`redaction presets ${JSON.stringify(path)}: ${reason}`, { cause: error });
  }
  const problem = (at: readonly PropertyKey[], message: string) => {
    const where = at.length > 0 ? `${at.map(String).join(".")}: ` : "";
    return new RedactionError(`redaction presets ${JSON.stringify(path)}: ${where}${message}`);
  };
  // Names first, on the raw JSON: zod's record would silently skip an own "__proto__" key.
  const raw = typeof parsed === "object" && parsed !== null ? (parsed as { presets?: unknown }).presets : undefined;
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    for (const name of Object.keys(raw)) if (!PRESET_NAME.test(name)) throw problem(["presets", name], PRESET_NAME_MESSAGE);
  }
  const result = presetsFileSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    // A bad record key nests the key schema's message under a generic "Invalid key in record".
    const nested = issue?.code === "invalid_key" ? issue.issues[0]?.message : undefined;
    throw problem(issue?.path ?? [], nested ?? issue?.message ?? "invalid");
  }
  // Null prototype: a lookup by an unknown name can never reach Object.prototype.
  const presets = Object.create(null) as Record<string, RedactionRule[]>;
  for (const [name, preset] of Object.entries(result.data.presets)) presets[name] = preset.rules;
  return presets;
}

// --- compilation --------------------------------------------------------------------------------

type Terminal =
  | { kind: "drop"; order: number }
  | { kind: "mask"; order: number; replacement: string }
  | { kind: "hash"; order: number };

/** Trie node. After determinize(), `children.get(k) ?? wildcard` is the whole effect on key k. */
interface Node {
  terminal?: Terminal;
  children: Map<string, Node>;
  wildcard?: Node;
  /** children as an array, for the no-wildcard loop. */
  entries: [string, Node][];
}

const STRENGTH = { hash: 1, mask: 2, drop: 3 } as const;

function stronger(a: Terminal | undefined, b: Terminal | undefined): Terminal | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  if (STRENGTH[a.kind] !== STRENGTH[b.kind]) return STRENGTH[a.kind] > STRENGTH[b.kind] ? a : b;
  return a.order <= b.order ? a : b;
}

function newNode(): Node {
  return { children: new Map(), entries: [] };
}

function insert(root: Node, segments: readonly string[], terminal: Terminal): void {
  let node = root;
  for (const segment of segments) {
    let next: Node | undefined;
    if (segment === WILDCARD) {
      next = node.wildcard ??= newNode();
    } else {
      next = node.children.get(segment);
      if (next === undefined) node.children.set(segment, (next = newNode()));
    }
    node = next;
  }
  node.terminal = stronger(node.terminal, terminal);
}

function finish(node: Node): Node {
  node.entries = [...node.children];
  return node;
}

/** Folds each wildcard into its literal siblings, so apply() never has to combine nodes. */
function determinize(node: Node): Node {
  if (node.terminal) return finish({ terminal: node.terminal, children: new Map(), entries: [] });
  const wildcard = node.wildcard && determinize(node.wildcard);
  const out: Node = { children: new Map(), entries: [] };
  if (wildcard) out.wildcard = wildcard;
  for (const [key, child] of node.children) out.children.set(key, merge(determinize(child), wildcard));
  return finish(out);
}

/** Both rule sets applied to the same value (both nodes already determinized). */
function merge(a: Node, b: Node | undefined): Node {
  if (b === undefined) return a;
  if (a.terminal || b.terminal) {
    // An action replaces the value as found; deeper rules of the other side are moot.
    const terminal = a.terminal && b.terminal ? stronger(a.terminal, b.terminal) : (a.terminal ?? b.terminal);
    return finish({ terminal, children: new Map(), entries: [] });
  }
  const out: Node = { children: new Map(), entries: [] };
  const wildcard = a.wildcard && b.wildcard ? merge(a.wildcard, b.wildcard) : (a.wildcard ?? b.wildcard);
  if (wildcard) out.wildcard = wildcard;
  for (const key of new Set([...a.children.keys(), ...b.children.keys()])) {
    const fromA = a.children.get(key) ?? a.wildcard;
    const fromB = b.children.get(key) ?? b.wildcard;
    out.children.set(key, fromA ? merge(fromA, fromB) : (fromB as Node));
  }
  return finish(out);
}

function validRule(rule: RedactionRule, where: string): string[] {
  if (typeof rule !== "object" || rule === null) throw new RedactionError(`${where}: not a rule object`);
  const { path, action, replacement } = rule;
  if (typeof path !== "string") throw new RedactionError(`${where}: path must be a string`);
  const parsed = parsePath(path);
  if ("problem" in parsed) throw new RedactionError(`${where}: redaction path ${describePath(path)} ${parsed.problem}`);
  if (!(REDACTION_ACTIONS as readonly unknown[]).includes(action)) {
    throw new RedactionError(`${where}: action must be one of "drop", "mask", "hash"`);
  }
  if (replacement !== undefined && (action !== "mask" || typeof replacement !== "string")) {
    throw new RedactionError(`${where}: replacement must be a string and is only allowed with action "mask"`);
  }
  return parsed.segments;
}

/**
 * Compiles route redaction specs (rules and preset references) into a Redactor. Throws
 * RedactionError on a bad path, an unknown preset, or a hash rule without a non-empty hashKey.
 */
export function compileRedaction(specs: readonly RedactionSpec[], options: CompileOptions): Redactor {
  const root = newNode();
  let count = 0;
  let hashes = false;
  const add = (rule: RedactionRule, where: string) => {
    const segments = validRule(rule, where);
    const order = count++;
    const terminal: Terminal =
      rule.action === "mask"
        ? { kind: "mask", order, replacement: rule.replacement ?? DEFAULT_MASK_REPLACEMENT }
        : { kind: rule.action, order };
    if (rule.action === "hash") hashes = true;
    insert(root, segments, terminal);
  };
  specs.forEach((spec, i) => {
    const where = `redaction entry ${i + 1}`;
    if (typeof spec === "object" && spec !== null && "preset" in spec) {
      const name = spec.preset;
      // Own properties only: a preset named "constructor" must not find Object.prototype's.
      const rules = typeof name === "string" && Object.hasOwn(options.presets, name) ? options.presets[name] : undefined;
      if (rules === undefined) {
        const known = Object.keys(options.presets).map((n) => JSON.stringify(n)).join(", ") || "none";
        throw new RedactionError(`${where}: unknown redaction preset ${JSON.stringify(String(name))} (known: ${known})`);
      }
      rules.forEach((rule, j) => add(rule, `${where} (preset ${JSON.stringify(name)}, rule ${j + 1})`));
    } else {
      add(spec, where);
    }
  });

  let key: KeyObject | undefined;
  if (hashes) {
    const raw = options.hashKey;
    const bytes = typeof raw === "string" ? Buffer.from(raw, "utf8") : raw;
    if (bytes === undefined || bytes.length === 0) {
      throw new RedactionError("a redaction rule hashes, but no hash key is set (set REDACTION_HASH_KEY or REDACTION_HASH_KEY_FILE)");
    }
    key = createSecretKey(bytes);
  }

  if (count === 0) return { apply: (data) => data, hashes: false, empty: true };
  const compiled = determinize(root);
  const hmacKey = key;
  const hash = (value: unknown): string => {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return createHmac("sha256", hmacKey as KeyObject).update(text, "utf8").digest("hex");
  };
  return {
    apply: (data) => redactObject(data, compiled, hash) as Record<string, unknown>,
    hashes,
    empty: false,
  };
}

// --- application --------------------------------------------------------------------------------

/** Marks a value to remove (returned by a drop). */
const DROP: unique symbol = Symbol("drop");
type Hash = (value: unknown) => string;

function redactValue(value: unknown, node: Node, hash: Hash): unknown {
  const terminal = node.terminal;
  if (terminal) {
    if (terminal.kind === "drop") return DROP;
    if (value === null || value === undefined) return value;
    return terminal.kind === "mask" ? terminal.replacement : hash(value);
  }
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return node.wildcard ? redactArray(value, node.wildcard, hash) : value;
  return redactObject(value as Record<string, unknown>, node, hash);
}

function redactArray(array: readonly unknown[], node: Node, hash: Hash): readonly unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < array.length; i++) {
    const value = array[i];
    const next = redactValue(value, node, hash);
    if (out === undefined) {
      if (next === value) continue;
      out = array.slice(0, i); // first change: copy what came before
    }
    if (next !== DROP) out.push(next);
  }
  return out ?? array;
}

function redactObject(object: Record<string, unknown>, node: Node, hash: Hash): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  const visit = (key: string, child: Node) => {
    // Reached only for own keys, so object[key] is data even for "__proto__" or "constructor".
    const value = object[key];
    const next = redactValue(value, child, hash);
    if (next === value) return;
    out ??= copyObject(object);
    if (next === DROP) delete out[key];
    else setOwn(out, key, next);
  };
  if (node.wildcard) {
    for (const key of Object.keys(object)) visit(key, node.children.get(key) ?? node.wildcard);
  } else {
    for (const [key, child] of node.entries) if (Object.hasOwn(object, key)) visit(key, child);
  }
  return out ?? object;
}

/** Shallow copy with own-property semantics: an own "__proto__" key stays a data property. */
function copyObject(object: Record<string, unknown>): Record<string, unknown> {
  // Spread defines properties (never calls the __proto__ setter); a null-prototype input keeps one.
  if (Object.getPrototypeOf(object) === null) return Object.assign(Object.create(null) as Record<string, unknown>, object);
  return { ...object };
}

// Assignment alone would do (the copy already owns `key`, so [[Set]] updates that data property),
// but defineProperty keeps "__proto__" safe even if that invariant is ever broken.
function setOwn(object: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  else object[key] = value;
}
