// deploy/: the Kubernetes manifests, the Prometheus Operator objects, the Grafana dashboard and the
// Dockerfile, checked against the bridge itself rather than against copies of its numbers: ports
// and paths come from config/default.json through the config loader and from ADMIN_PATHS, settings
// from SETTINGS, metric names from a running bridge's registry.
//
// The kustomizations are rendered by a small renderer below (resources, components, patches that
// merge maps or delete objects, namespace, images: exactly what deploy/ uses, and it refuses
// anything else), so the checks run without kubectl; when kubectl is installed, one test also
// renders every entry point with `kubectl kustomize` and requires the same objects.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as k8s from "kubernetes-models";
import { parseAllDocuments, stringify } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import { SETTINGS, type Config } from "../../src/config/settings.js";
import { ADMIN_PATHS } from "../../src/observability/admin.js";
import { startStack } from "../helpers/harness.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const DEPLOY = join(ROOT, "deploy");
const K8S = join(DEPLOY, "kubernetes");
const DASHBOARD = join(DEPLOY, "grafana/auth0-eventgrid-bridge.json");
const DEFAULTS_PATH = join(ROOT, "config/default.json");
const PACKAGE = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string; main: string; license: string; scripts: Record<string, string> };

/** Variables in the container's environment that are Node's, not the bridge's. */
const RUNTIME_VARIABLES = ["NODE_OPTIONS"];
const PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1";
const KUSTOMIZE_KINDS = new Set(["kustomize.config.k8s.io/v1beta1/Kustomization", "kustomize.config.k8s.io/v1alpha1/Component"]);

// --- YAML and the Kubernetes models ----------------------------------------------------------------

// Manifests are untyped JSON trees.
type Obj = Record<string, any>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);
const rel = (path: string) => relative(ROOT, path).split("\\").join("/");

function walkFiles(dir: string, accept: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walkFiles(path, accept));
    else if (accept(entry.name)) out.push(path);
  }
  return out.sort();
}

const yamlFiles = () => walkFiles(DEPLOY, (name) => /\.ya?ml$/.test(name));

/** The documents of a YAML file (empty ones dropped); fails on any parse error or warning. */
function readDocs(path: string, version: "1.1" | "1.2" = "1.2"): Obj[] {
  const docs: Obj[] = [];
  for (const doc of parseAllDocuments(readFileSync(path, "utf8"), { version })) {
    assert.deepEqual([...doc.errors, ...doc.warnings].map((e) => e.message), [], `${rel(path)} does not parse as YAML ${version}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    assert.ok(isObj(value), `${rel(path)}: a document is not a mapping`);
    docs.push(value);
  }
  return docs;
}

type ModelClass = { new (data: object): { validate(): void }; apiVersion: string; kind: string };

/** Every model kubernetes-models has, by "apiVersion/kind". */
const MODELS: ReadonlyMap<string, ModelClass> = (() => {
  const found = new Map<string, ModelClass>();
  const seen = new Set<unknown>();
  const walk = (ns: unknown) => {
    if (!isObj(ns) || seen.has(ns)) return;
    seen.add(ns);
    for (const value of Object.values(ns)) {
      if (typeof value === "function") {
        const model = value as unknown as ModelClass;
        if (typeof model.apiVersion === "string" && typeof model.kind === "string") found.set(`${model.apiVersion}/${model.kind}`, model);
      } else walk(value);
    }
  };
  walk(k8s);
  return found;
})();

const gvk = (doc: Obj) => `${String(doc.apiVersion)}/${String(doc.kind)}`;
const idOf = (doc: Obj) => `${String(doc.kind)}/${String(doc.metadata?.name)}`;

/**
 * Validates one complete object: a Kubernetes kind through its kubernetes-models schema, the two
 * Prometheus Operator kinds by hand. Returns false for a kind it does not know.
 */
function validateObject(doc: Obj, where: string): boolean {
  assert.equal(typeof doc.apiVersion, "string", `${where}: apiVersion`);
  assert.equal(typeof doc.kind, "string", `${where}: kind`);
  assert.equal(typeof doc.metadata?.name, "string", `${where}: metadata.name`);
  const model = MODELS.get(gvk(doc));
  if (model) {
    // Alpha and beta APIs of the built-in groups have been removed from current clusters.
    assert.doesNotMatch(String(doc.apiVersion), /\/v\d+(alpha|beta)\d*$/, `${where}: ${gvk(doc)} is a pre-release API version`);
    try {
      new model(doc).validate();
    } catch (error) {
      assert.fail(`${where}: ${idOf(doc)} does not validate as ${gvk(doc)}: ${(error as Error).message}`);
    }
    return true;
  }
  if (gvk(doc) === `${PROMETHEUS_OPERATOR}/ServiceMonitor`) {
    assert.ok(isObj(doc.spec?.selector) && Object.keys(doc.spec.selector).length > 0, `${where}: ServiceMonitor spec.selector`);
    assert.ok(Array.isArray(doc.spec.endpoints) && doc.spec.endpoints.length > 0, `${where}: ServiceMonitor spec.endpoints`);
    for (const endpoint of doc.spec.endpoints as Obj[]) assert.equal(typeof endpoint.port, "string", `${where}: ServiceMonitor endpoints[].port names a Service port`);
    return true;
  }
  if (gvk(doc) === `${PROMETHEUS_OPERATOR}/PrometheusRule`) {
    assert.ok(Array.isArray(doc.spec?.groups) && doc.spec.groups.length > 0, `${where}: PrometheusRule spec.groups`);
    for (const group of doc.spec.groups as Obj[]) {
      assert.equal(typeof group.name, "string", `${where}: group name`);
      assert.ok(Array.isArray(group.rules) && group.rules.length > 0, `${where}: group ${group.name} has rules`);
      for (const rule of group.rules as Obj[]) {
        assert.ok(typeof rule.alert === "string" && /^[A-Za-z][A-Za-z0-9_]*$/.test(rule.alert), `${where}: rule without a valid alert name`);
        assert.ok(typeof rule.expr === "string" && rule.expr.trim() !== "", `${where}: ${rule.alert} expr`);
        assert.ok(["critical", "warning", "info"].includes(rule.labels?.severity), `${where}: ${rule.alert} labels.severity`);
        if (rule.for !== undefined) assert.match(String(rule.for), /^\d+[smh]$/, `${where}: ${rule.alert} for`);
      }
    }
    return true;
  }
  return false;
}

// --- a kustomize renderer for what deploy/ uses --------------------------------------------------------

interface Kustomization {
  apiVersion?: string;
  kind?: string;
  resources?: string[];
  components?: string[];
  patches?: { path?: string; patch?: string; target?: unknown }[];
  namespace?: string;
  images?: { name: string; newName?: string; newTag?: string }[];
  labels?: { pairs: Record<string, string>; includeSelectors?: boolean; includeTemplates?: boolean }[];
}

const RENDERER_FIELDS = new Set(["apiVersion", "kind", "resources", "components", "patches", "namespace", "images", "labels"]);
const CLUSTER_SCOPED = new Set(["Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "PersistentVolume", "CustomResourceDefinition", "IngressClass"]);

function readKustomization(dir: string): Kustomization {
  const docs = readDocs(join(dir, "kustomization.yaml"));
  assert.equal(docs.length, 1, `${rel(dir)}/kustomization.yaml holds one document`);
  return docs[0] as Kustomization;
}

const isDir = (path: string) => existsSync(path) && statSync(path).isDirectory();

/** Strategic merge patch, maps only: null deletes a key; lists are refused (kustomize merges them by key). */
function mergeMaps(target: Obj, patch: Obj, where: string): void {
  for (const [key, value] of Object.entries(patch)) {
    if (key === "$patch") continue;
    if (value === null) delete target[key];
    else if (isObj(value) && isObj(target[key])) mergeMaps(target[key] as Obj, value, `${where}.${key}`);
    else if (Array.isArray(value)) assert.fail(`${where}.${key}: list patches are not supported by the test's renderer; extend it or use a map`);
    else target[key] = clone(value);
  }
}

function setImages(doc: Obj, images: NonNullable<Kustomization["images"]>): void {
  const podSpec = doc.spec?.template?.spec as Obj | undefined;
  if (!podSpec) return;
  for (const container of [...((podSpec.containers as Obj[] | undefined) ?? []), ...((podSpec.initContainers as Obj[] | undefined) ?? [])]) {
    const [name, tag] = String(container.image).split(":") as [string, string | undefined];
    const image = images.find((i) => i.name === name);
    if (image) container.image = `${image.newName ?? name}:${image.newTag ?? tag ?? "latest"}`;
  }
}

/** Renders a kustomization (or a component, onto `inherited`) the way `kubectl kustomize` does. */
function render(dir: string, kustomization: Kustomization = readKustomization(dir), inherited: Obj[] = []): Obj[] {
  const unsupported = Object.keys(kustomization).filter((k) => !RENDERER_FIELDS.has(k));
  assert.deepEqual(unsupported, [], `${rel(dir)}: kustomization fields the test's renderer does not implement`);
  let docs = inherited;
  for (const resource of kustomization.resources ?? []) {
    const path = resolve(dir, resource);
    docs.push(...(isDir(path) ? render(path) : readDocs(path).map(clone)));
  }
  for (const component of kustomization.components ?? []) {
    const path = resolve(dir, component);
    const k = readKustomization(path);
    assert.equal(k.kind, "Component", `${rel(path)} is a kustomize Component`);
    docs = render(path, k, docs);
  }
  for (const entry of kustomization.patches ?? []) {
    assert.equal(entry.target, undefined, `${rel(dir)}: patches with a target are not supported by the test's renderer`);
    const patches = entry.path ? readDocs(resolve(dir, entry.path)) : readDocsFromString(entry.patch ?? "");
    for (const patch of patches) {
      const index = docs.findIndex((d) => d.kind === patch.kind && d.apiVersion === patch.apiVersion && d.metadata?.name === patch.metadata?.name);
      assert.ok(index >= 0, `${rel(dir)}: patch ${entry.path ?? "(inline)"} targets ${gvk(patch)} ${patch.metadata?.name}, which is not there`);
      if (patch.$patch === "delete") docs.splice(index, 1);
      else mergeMaps(docs[index] as Obj, patch, `${rel(dir)} ${entry.path ?? ""}`);
    }
  }
  if (kustomization.namespace) {
    for (const doc of docs) if (!CLUSTER_SCOPED.has(String(doc.kind))) (doc.metadata ??= {}).namespace = kustomization.namespace;
  }
  for (const doc of docs) setImages(doc, kustomization.images ?? []);
  for (const { pairs, includeSelectors, includeTemplates } of kustomization.labels ?? []) {
    assert.ok(!includeSelectors && !includeTemplates, `${rel(dir)}: labels with includeSelectors/includeTemplates are not supported by the test's renderer`);
    for (const doc of docs) Object.assign(((doc.metadata ??= {}).labels ??= {}), pairs);
  }
  return docs;
}

function readDocsFromString(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as unknown)
    .filter(isObj);
}

/** An entry point: a directory `kubectl apply -k` can be given, or a component put on the base. */
interface Entry {
  name: string;
  dir: string;
  kustomization?: Kustomization;
}

function kustomizationDirs(): string[] {
  return walkFiles(K8S, (name) => name === "kustomization.yaml").map(dirname);
}

function entries(): Entry[] {
  const list: Entry[] = [];
  for (const dir of kustomizationDirs()) {
    const k = readKustomization(dir);
    const name = rel(dir);
    if (k.kind === "Component") {
      // Checked the way a user includes it: from an overlay next to the others, on the base.
      list.push({
        name: `base + ${name}`,
        dir: join(K8S, "overlays", `__with-${basename(dir)}`),
        kustomization: { resources: ["../../base"], components: [posix.join("../..", relative(K8S, dir).split("\\").join("/"))] },
      });
    } else list.push({ name, dir });
  }
  return list;
}

const renderEntry = (entry: Entry) => (entry.kustomization ? render(entry.dir, clone(entry.kustomization)) : render(entry.dir));

// --- reading a rendered workload ----------------------------------------------------------------------

interface Workload {
  entry: Entry;
  docs: Obj[];
  workload: Obj;
  pod: Obj;
  container: Obj;
  /** The environment the container starts with (ConfigMaps through envFrom, then env). */
  env: Record<string, string>;
  configMapKeys: string[];
}

function find(docs: Obj[], kind: string, name?: string): Obj[] {
  return docs.filter((d) => d.kind === kind && (name === undefined || d.metadata?.name === name));
}

function one(docs: Obj[], kind: string, name?: string): Obj {
  const found = find(docs, kind, name);
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0] as Obj;
}

function workloadOf(entry: Entry, docs: Obj[]): Workload | undefined {
  const workloads = docs.filter((d) => d.kind === "Deployment" || d.kind === "StatefulSet");
  if (workloads.length === 0) return undefined;
  assert.equal(workloads.length, 1, `${entry.name}: one workload`);
  const workload = workloads[0] as Obj;
  const pod = workload.spec.template.spec as Obj;
  const containers = pod.containers as Obj[];
  assert.equal(containers.length, 1, `${entry.name}: one container`);
  const container = containers[0] as Obj;
  const env: Record<string, string> = {};
  const configMapKeys: string[] = [];
  for (const source of (container.envFrom as Obj[] | undefined) ?? []) {
    assert.equal(source.secretRef, undefined, `${entry.name}: secrets come as files, not through envFrom`);
    assert.equal(source.prefix, undefined, `${entry.name}: no envFrom prefix`);
    const data = (one(docs, "ConfigMap", source.configMapRef?.name).data ?? {}) as Record<string, unknown>;
    for (const [key, value] of Object.entries(data)) {
      assert.equal(typeof value, "string", `${entry.name}: ConfigMap value of ${key}`);
      env[key] = value as string;
      configMapKeys.push(key);
    }
  }
  for (const variable of (container.env as Obj[] | undefined) ?? []) {
    assert.equal(variable.valueFrom?.secretKeyRef, undefined, `${entry.name}: ${variable.name} comes from a secretKeyRef; mount secrets as files`);
    assert.equal(typeof variable.value, "string", `${entry.name}: env ${variable.name} has a literal value`);
    env[variable.name as string] = variable.value as string;
  }
  return { entry, docs, workload, pod, container, env, configMapKeys };
}

/** Resolves a port given by name or number against the container's ports. */
function containerPort(w: Workload, port: unknown): number {
  if (typeof port === "number") return port;
  const found = ((w.container.ports as Obj[] | undefined) ?? []).find((p) => p.name === port);
  assert.ok(found, `${w.entry.name}: the container has no port named ${String(port)}`);
  return found.containerPort as number;
}

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** The mounts of the container whose volume comes from a Secret. */
function secretMounts(w: Workload): Obj[] {
  const volumes = (w.pod.volumes as Obj[] | undefined) ?? [];
  return ((w.container.volumeMounts as Obj[] | undefined) ?? []).filter((m) => {
    const volume = volumes.find((v) => v.name === m.name);
    return volume?.secret !== undefined || ((volume?.projected?.sources as Obj[] | undefined) ?? []).some((s) => s.secret !== undefined);
  });
}

const inside = (path: string, dir: string) => posix.relative(dir, path) !== "" && !posix.relative(dir, path).startsWith("..") && !posix.isAbsolute(posix.relative(dir, path));

let secretDir: string;

/** Loads the rendered environment through the bridge's own loader, with stand-in secret files. */
function effectiveConfig(w: Workload): { config: Config; warnings: string[] } {
  const env: Record<string, string> = { ...w.env };
  for (const [name, value] of Object.entries(env)) {
    if (!name.endsWith("_FILE")) continue;
    const file = join(secretDir, basename(value));
    writeFileSync(file, `stand-in-${basename(value)}-0123456789abcdef\n`);
    env[name] = file;
  }
  return loadConfig({ env, defaultsPath: DEFAULTS_PATH });
}

function quantity(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|k|M|G)?$/.exec(value);
  assert.ok(m, `not a quantity: ${value}`);
  const factor: Record<string, number> = { m: 0.001, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 };
  return Number(m[1]) * (m[2] ? (factor[m[2]] as number) : 1);
}

// --- PromQL ------------------------------------------------------------------------------------------------

/** Metric names in a PromQL expression: the bridge's and Node's by prefix, and anything used as `name{`. */
function metricNames(expr: string): string[] {
  const names = new Set<string>();
  for (const m of expr.matchAll(/(?<![A-Za-z0-9_:$])((?:auth0_bridge|process|nodejs)_[a-z0-9_]+)/g)) names.add(m[1] as string);
  for (const m of expr.matchAll(/(?<![A-Za-z0-9_:$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{/g)) names.add(m[1] as string);
  return [...names];
}

/** Brackets balance and label matchers are well formed: a cheap guard against broken expressions. */
function assertPromqlShape(expr: string, where: string): void {
  const stack: string[] = [];
  const pairs: Record<string, string> = { ")": "(", "]": "[", "}": "{" };
  let quoted = false;
  for (const ch of expr) {
    if (ch === '"') quoted = !quoted;
    if (quoted) continue;
    if ("([{".includes(ch)) stack.push(ch);
    else if (ch in pairs) assert.equal(stack.pop(), pairs[ch], `${where}: unbalanced ${ch} in ${expr}`);
  }
  assert.equal(quoted, false, `${where}: unterminated string in ${expr}`);
  assert.deepEqual(stack, [], `${where}: unclosed brackets in ${expr}`);
  for (const m of expr.matchAll(/\{([^}]*)\}/g)) {
    for (const matcher of (m[1] as string).split(",").map((s) => s.trim()).filter(Boolean)) {
      assert.match(matcher, /^[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"[^"]*"$/, `${where}: label matcher ${matcher}`);
    }
  }
}

// --- the tests ----------------------------------------------------------------------------------------------

let defaults: Config;
let rendered: Map<Entry, Obj[]>;
let workloads: Workload[];

before(() => {
  secretDir = mkdtempSync(join(tmpdir(), "deploy-test-"));
  // The bridge's defaults, as the brief says: through the loader, in test mode.
  defaults = loadConfig({ env: { NODE_ENV: "test" }, defaultsPath: DEFAULTS_PATH }).config;
  rendered = new Map(entries().map((e) => [e, renderEntry(e)]));
  workloads = [...rendered].map(([e, docs]) => workloadOf(e, docs)).filter((w): w is Workload => w !== undefined);
});
after(() => rmSync(secretDir, { recursive: true, force: true }));

describe("manifests are valid", () => {
  it("every YAML document under deploy/ parses, reads the same in YAML 1.1 and 1.2, and validates against its schema", () => {
    const files = yamlFiles();
    const patchFiles = new Set<string>();
    for (const dir of kustomizationDirs()) for (const p of readKustomization(dir).patches ?? []) if (p.path) patchFiles.add(resolve(dir, p.path));
    const unknown: string[] = [];
    const kinds = new Set<string>();
    for (const file of files) {
      const docs = readDocs(file);
      assert.ok(docs.length > 0, `${rel(file)} holds no document`);
      // Kubernetes reads YAML 1.1 (0440 is octal, yes/no/on/off are booleans there): no scalar may depend on it.
      assert.deepEqual(readDocs(file, "1.1"), docs, `${rel(file)} reads differently as YAML 1.1 (quote the value)`);
      docs.forEach((doc, i) => {
        const where = `${rel(file)}#${i}`;
        if (basename(file) === "kustomization.yaml") {
          assert.ok(KUSTOMIZE_KINDS.has(gvk(doc)), `${where}: a kustomization is a Kustomization or Component (${gvk(doc)})`);
          return;
        }
        if (patchFiles.has(file)) {
          // A patch is a partial object: it is validated as part of the rendered result below.
          assert.ok(typeof doc.kind === "string" && typeof doc.metadata?.name === "string", `${where}: patch names its target`);
          return;
        }
        if (validateObject(doc, where)) kinds.add(String(doc.kind));
        else unknown.push(`${where}: ${gvk(doc)}`);
      });
    }
    assert.deepEqual(unknown, [], "kinds neither kubernetes-models nor this test knows");
    for (const kind of ["Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "StatefulSet", "ServiceMonitor", "PrometheusRule"]) {
      assert.ok(kinds.has(kind), `no ${kind} was found and validated under deploy/`);
    }
  });

  it("every rendered entry point (base, overlays, monitoring, base + each component) validates", () => {
    assert.ok(rendered.size >= 5, `expected at least 5 entry points, found ${[...rendered.keys()].map((e) => e.name).join(", ")}`);
    for (const [entry, docs] of rendered) {
      assert.ok(docs.length > 0, `${entry.name} renders nothing`);
      const ids = docs.map((d) => `${gvk(d)}/${d.metadata?.namespace ?? ""}/${d.metadata?.name}`);
      assert.equal(new Set(ids).size, ids.length, `${entry.name}: duplicate objects`);
      docs.forEach((doc, i) => assert.ok(validateObject(doc, `${entry.name}#${i}`), `${entry.name}: unknown kind ${gvk(doc)}`));
      for (const doc of docs) assert.ok(CLUSTER_SCOPED.has(doc.kind) || doc.metadata?.namespace, `${entry.name}: ${idOf(doc)} has no namespace`);
    }
  });
});

describe("kustomize layout", () => {
  it("every kustomization's resources, components and patches exist, and every manifest beside it is used", () => {
    for (const dir of kustomizationDirs()) {
      const k = readKustomization(dir);
      const used = new Set<string>([join(dir, "kustomization.yaml")]);
      for (const resource of k.resources ?? []) {
        const path = resolve(dir, resource);
        assert.ok(existsSync(path), `${rel(dir)}: resource ${resource} does not exist`);
        if (isDir(path)) assert.ok(existsSync(join(path, "kustomization.yaml")), `${rel(dir)}: ${resource} has no kustomization.yaml`);
        used.add(path);
      }
      for (const component of k.components ?? []) {
        const path = resolve(dir, component);
        assert.ok(existsSync(join(path, "kustomization.yaml")), `${rel(dir)}: component ${component} has no kustomization.yaml`);
        assert.equal(readKustomization(path).kind, "Component", `${rel(dir)}: ${component} is not a Component`);
      }
      for (const patch of k.patches ?? []) {
        if (patch.path === undefined) continue;
        const path = resolve(dir, patch.path);
        assert.ok(existsSync(path), `${rel(dir)}: patch ${patch.path} does not exist`);
        used.add(path);
      }
      const here = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).map((n) => join(dir, n));
      assert.deepEqual(here.filter((f) => !used.has(f)).map(rel), [], `${rel(dir)}: manifests its kustomization does not list`);
    }
  });

  it("`kubectl apply -k deploy/kubernetes` applies the base and nothing that needs the Prometheus Operator", () => {
    const root = [...rendered].find(([e]) => e.dir === K8S && !e.kustomization)?.[1];
    const base = [...rendered].find(([e]) => e.dir === join(K8S, "base"))?.[1];
    assert.ok(root && base, "deploy/kubernetes and deploy/kubernetes/base are entry points");
    assert.deepEqual(root, base);
    assert.deepEqual(root.filter((d) => String(d.apiVersion).startsWith("monitoring.coreos.com/")).map(idOf), []);
    const monitoring = [...rendered].find(([e]) => e.dir === join(K8S, "monitoring"))?.[1];
    assert.ok(monitoring, "deploy/kubernetes/monitoring is an entry point");
    assert.deepEqual(monitoring.map((d) => d.kind).sort(), ["PrometheusRule", "ServiceMonitor"]);
  });

  // kubectl is not on every machine; where it is, it cross-checks the test's own renderer.
  // (Registered only when present, so no run reports a skipped test.)
  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  if (kubectl.status === 0) it("`kubectl kustomize` renders every entry point to the same objects as the test's renderer", () => {
    const copy = mkdtempSync(join(tmpdir(), "deploy-kustomize-"));
    try {
      // A copy, so that the components' check overlays can be written without touching deploy/.
      cpSync(K8S, join(copy, "kubernetes"), { recursive: true });
      for (const [entry, docs] of rendered) {
        const dir = join(copy, "kubernetes", relative(K8S, entry.dir));
        if (entry.kustomization) {
          mkdirSync(dir, { recursive: true });
          writeFileSync(join(dir, "kustomization.yaml"), stringify(entry.kustomization));
        }
        const result = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
        assert.equal(result.status, 0, `kubectl kustomize ${entry.name}: ${result.stderr}`);
        const theirs = readDocsFromString(result.stdout);
        const key = (d: Obj) => `${gvk(d)}/${d.metadata?.namespace ?? ""}/${d.metadata?.name}`;
        const byKey = (list: Obj[]) => Object.fromEntries(list.map((d) => [key(d), d]));
        assert.deepEqual(byKey(theirs), byKey(docs), `${entry.name}: kubectl kustomize and the test's renderer disagree`);
      }
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

describe("manifests match what the bridge serves", () => {
  it("container ports are the config defaults' PORT (http) and ADMIN_PORT (admin), and the environment keeps them", () => {
    assert.ok(workloads.length >= 4, `expected a workload in at least 4 entry points, found ${workloads.length}`);
    for (const w of workloads) {
      const ports = ((w.container.ports as Obj[]) ?? []).map((p) => [p.name, p.containerPort, p.protocol ?? "TCP"]);
      assert.deepEqual(ports, [["http", defaults.PORT, "TCP"], ["admin", defaults.ADMIN_PORT, "TCP"]], w.entry.name);
      const { config } = effectiveConfig(w);
      assert.equal(config.PORT, defaults.PORT, `${w.entry.name}: the environment changes PORT`);
      assert.equal(config.ADMIN_PORT, defaults.ADMIN_PORT, `${w.entry.name}: the environment changes ADMIN_PORT`);
      assert.equal(config.HOST, "0.0.0.0", `${w.entry.name}: the listeners must bind all interfaces in a pod`);
    }
  });

  it("probes use ADMIN_PATHS on the admin port: startup and liveness the liveness path, readiness the readiness path", () => {
    for (const w of workloads) {
      const probe = (name: string) => {
        const p = w.container[name] as Obj | undefined;
        assert.ok(p?.httpGet, `${w.entry.name}: ${name} is an httpGet probe`);
        assert.equal(containerPort(w, p.httpGet.port), defaults.ADMIN_PORT, `${w.entry.name}: ${name} port`);
        assert.equal(p.httpGet.scheme ?? "HTTP", "HTTP", `${w.entry.name}: ${name} scheme`);
        return p.httpGet.path as string;
      };
      assert.equal(probe("startupProbe"), ADMIN_PATHS.liveness, `${w.entry.name}: startupProbe path`);
      assert.equal(probe("livenessProbe"), ADMIN_PATHS.liveness, `${w.entry.name}: livenessProbe path`);
      assert.equal(probe("readinessProbe"), ADMIN_PATHS.readiness, `${w.entry.name}: readinessProbe path`);
    }
  });

  it("Services, Ingress and NetworkPolicy reach the ports and path the bridge listens on", () => {
    for (const w of workloads) {
      const podLabels = w.workload.spec.template.metadata.labels as Record<string, string>;
      assert.ok(matches(w.workload.spec.selector.matchLabels, podLabels), `${w.entry.name}: workload selector matches its pods`);
      const services = find(w.docs, "Service");
      for (const service of services) assert.ok(matches(service.spec.selector, podLabels), `${w.entry.name}: ${idOf(service)} selects the pods`);
      const targets = (service: Obj) => (service.spec.ports as Obj[]).map((p) => containerPort(w, p.targetPort));
      const ingestion = one(w.docs, "Service", "auth0-eventgrid-bridge");
      const metrics = one(w.docs, "Service", "auth0-eventgrid-bridge-metrics");
      assert.deepEqual(targets(ingestion), [defaults.PORT], `${w.entry.name}: the ingestion Service exposes the ingestion port only`);
      assert.deepEqual(targets(metrics), [defaults.ADMIN_PORT], `${w.entry.name}: the metrics Service exposes the admin port only`);
      assert.equal((ingestion.spec.ports as Obj[])[0]?.port, 80, `${w.entry.name}: the ingestion Service listens on 80`);

      const { config } = effectiveConfig(w);
      const ingress = one(w.docs, "Ingress");
      assert.ok((ingress.spec.tls as Obj[] | undefined)?.length, `${w.entry.name}: the Ingress terminates TLS (Auth0 posts to HTTPS only)`);
      const paths = (ingress.spec.rules as Obj[]).flatMap((r) => r.http.paths as Obj[]);
      assert.deepEqual(paths.map((p) => [p.path, p.pathType]), [[config.INGEST_PATH, "Exact"]], `${w.entry.name}: the Ingress exposes INGEST_PATH only`);
      for (const p of paths) {
        assert.equal(p.backend.service.name, ingestion.metadata.name, `${w.entry.name}: Ingress backend`);
        const port = (ingestion.spec.ports as Obj[]).find((sp) => sp.name === p.backend.service.port.name || sp.port === p.backend.service.port.number);
        assert.ok(port, `${w.entry.name}: the Ingress backend port is a port of the ingestion Service`);
        assert.equal(containerPort(w, port.targetPort), config.PORT, `${w.entry.name}: the Ingress reaches PORT`);
      }
      const bodySize = ingress.metadata.annotations?.["nginx.ingress.kubernetes.io/proxy-body-size"] as string | undefined;
      assert.ok(bodySize, `${w.entry.name}: the Ingress sets proxy-body-size (ingress-nginx's default is 1m)`);
      const bytes = quantity(bodySize.replace(/^(\d+)([kmg])$/i, (_, n: string, u: string) => `${n}${{ k: "Ki", m: "Mi", g: "Gi" }[u.toLowerCase()]}`));
      assert.ok(bytes >= config.MAX_BODY_BYTES, `${w.entry.name}: proxy-body-size ${bodySize} is below MAX_BODY_BYTES ${config.MAX_BODY_BYTES}`);

      const policy = one(w.docs, "NetworkPolicy");
      assert.ok(matches(policy.spec.podSelector.matchLabels, podLabels), `${w.entry.name}: the NetworkPolicy selects the pods`);
      assert.deepEqual([...policy.spec.policyTypes].sort(), ["Egress", "Ingress"]);
      const allowed = (policy.spec.ingress as Obj[]).map((rule) => ({
        from: (rule.from as Obj[]).map((f) => f.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] as string),
        ports: (rule.ports as Obj[]).map((p) => containerPort(w, p.port)),
      }));
      assert.deepEqual(allowed, [
        { from: ["ingress-nginx"], ports: [config.PORT] },
        { from: ["monitoring"], ports: [config.ADMIN_PORT] },
      ], `${w.entry.name}: ingestion only from the ingress controller, admin only from monitoring`);
      const egress = (policy.spec.egress as Obj[]).flatMap((rule) => (rule.ports as Obj[]).map((p) => `${p.protocol}/${p.port}`)).sort();
      assert.deepEqual(egress, ["TCP/443", "TCP/53", "UDP/53"], `${w.entry.name}: egress only DNS and HTTPS`);
      for (const rule of policy.spec.egress as Obj[]) assert.equal(rule.to, undefined, `${w.entry.name}: egress rules are port-only`);

      const pdb = one(w.docs, "PodDisruptionBudget");
      assert.ok(matches(pdb.spec.selector.matchLabels, podLabels), `${w.entry.name}: the PDB selects the pods`);
      assert.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < w.workload.spec.replicas, `${w.entry.name}: minAvailable lets a drain evict one pod`);
      for (const hpa of find(w.docs, "HorizontalPodAutoscaler")) {
        assert.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name], [w.workload.kind, w.workload.metadata.name], `${w.entry.name}: HPA target`);
        assert.ok(hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas, `${w.entry.name}: HPA bounds`);
        const cpu = (hpa.spec.metrics as Obj[]).find((m) => m.resource?.name === "cpu");
        assert.equal(cpu?.resource.target.averageUtilization, 70, `${w.entry.name}: HPA CPU target`);
        assert.ok(w.container.resources?.requests?.cpu, `${w.entry.name}: a CPU request for the HPA to measure against`);
      }
    }
  });

  it("the ServiceMonitor scrapes ADMIN_PATHS.metrics on the metrics Service's admin port, and the alerts select its job", () => {
    const monitoring = [...rendered].find(([e]) => e.dir === join(K8S, "monitoring"))?.[1] ?? [];
    const base = [...rendered].find(([e]) => e.dir === join(K8S, "base"))?.[1] ?? [];
    const w = workloads.find((x) => x.entry.dir === join(K8S, "base"));
    assert.ok(w, "the base has a workload");
    const monitor = one(monitoring, "ServiceMonitor");
    const selected = find(base, "Service").filter((s) => matches(monitor.spec.selector.matchLabels, s.metadata.labels));
    assert.deepEqual(selected.map((s) => s.metadata.name), ["auth0-eventgrid-bridge-metrics"], "the ServiceMonitor selects the metrics Service only");
    const service = selected[0] as Obj;
    assert.equal(monitor.metadata.namespace, service.metadata.namespace, "the ServiceMonitor lives beside the Service it selects");
    for (const endpoint of monitor.spec.endpoints as Obj[]) {
      assert.equal(endpoint.path ?? "/metrics", ADMIN_PATHS.metrics);
      const port = (service.spec.ports as Obj[]).find((p) => p.name === endpoint.port);
      assert.ok(port, `the metrics Service has a port named ${endpoint.port}`);
      assert.equal(containerPort(w, port.targetPort), defaults.ADMIN_PORT);
    }
    const job = service.metadata.labels[monitor.spec.jobLabel] as string;
    assert.ok(job, "jobLabel names a label of the metrics Service");
    for (const rule of one(monitoring, "PrometheusRule").spec.groups.flatMap((g: Obj) => g.rules) as Obj[]) {
      const jobs = [...String(rule.expr).matchAll(/job="([^"]*)"/g)].map((m) => m[1]);
      assert.ok(jobs.length > 0 && jobs.every((j) => j === job), `${rule.alert}: selects job="${job}"`);
    }
  });
});

describe("settings and secrets", () => {
  const knownNames = () => {
    const names = new Set<string>();
    for (const s of SETTINGS) {
      if (s.secret) names.add(`${s.name}_FILE`);
      else names.add(s.name);
    }
    return names;
  };

  it("every variable the ConfigMap and the container set is a bridge setting (secrets only as <NAME>_FILE)", () => {
    const known = knownNames();
    const secrets = SETTINGS.filter((s) => s.secret).map((s) => s.name);
    for (const w of workloads) {
      assert.ok(w.configMapKeys.length > 0, `${w.entry.name}: settings come from a ConfigMap`);
      const unknown = Object.keys(w.env).filter((name) => !known.has(name) && !(RUNTIME_VARIABLES.includes(name) && !w.configMapKeys.includes(name)));
      assert.deepEqual(unknown, [], `${w.entry.name}: variables the bridge does not know`);
      assert.deepEqual(Object.keys(w.env).filter((n) => secrets.includes(n)), [], `${w.entry.name}: a secret's value in the environment`);
      assert.equal(w.env.NODE_ENV, "production", `${w.entry.name}: NODE_ENV`);
    }
  });

  it("every *_FILE points at a key of a mounted Secret, and README's `kubectl create secret` lines create those keys", () => {
    const readme = readFileSync(join(K8S, "README.md"), "utf8");
    const documentedKeys = new Set([...readme.matchAll(/--from-(?:literal|file)=([a-z0-9.-]+)=/g)].map((m) => m[1]));
    for (const w of workloads) {
      const mounts = secretMounts(w);
      assert.ok(mounts.length > 0, `${w.entry.name}: a Secret is mounted`);
      for (const mount of mounts) assert.equal(mount.readOnly, true, `${w.entry.name}: secret mount ${mount.mountPath} is read-only`);
      const files = Object.entries(w.env).filter(([name]) => name.endsWith("_FILE"));
      assert.ok(files.some(([name]) => name === "AUTH0_STREAM_TOKEN_FILE"), `${w.entry.name}: AUTH0_STREAM_TOKEN_FILE is set`);
      for (const [name, path] of files) {
        const mount = mounts.find((m) => inside(path, m.mountPath as string));
        assert.ok(mount, `${w.entry.name}: ${name}=${path} is not inside a mounted Secret`);
        const key = posix.relative(mount.mountPath as string, path);
        const volume = (w.pod.volumes as Obj[]).find((v) => v.name === mount.name) as Obj;
        const items = volume.secret?.items as Obj[] | undefined;
        if (items) assert.ok(items.some((i) => i.path === key), `${w.entry.name}: ${name}: the Secret volume does not project ${key}`);
        assert.ok(documentedKeys.has(key), `${w.entry.name}: ${name}: deploy/kubernetes/README.md never creates the Secret key ${key}`);
      }
    }
  });

  it("every entry point's environment loads through the bridge's config loader in production mode", () => {
    for (const w of workloads) {
      const { config, warnings } = effectiveConfig(w);
      assert.deepEqual(warnings, [], `${w.entry.name}: loader warnings`);
      assert.equal(config.NODE_ENV, "production");
      assert.ok(config.AUTH0_STREAM_TOKEN, `${w.entry.name}: a stream token`);
      assert.match(String(config.EVENTGRID_ENDPOINT), /^https:\/\//, `${w.entry.name}: EVENTGRID_ENDPOINT`);
    }
    const byDir = (dir: string) => workloads.find((w) => w.entry.dir === join(K8S, dir) && !w.entry.kustomization);
    const partner = byDir("overlays/partner-topic");
    const custom = byDir("overlays/custom-topic");
    assert.ok(partner && custom, "overlays/partner-topic and overlays/custom-topic exist");
    const partnerConfig = effectiveConfig(partner).config;
    assert.ok(partnerConfig.EVENTGRID_CHANNEL, "the partner-topic overlay names a channel");
    assert.equal(partnerConfig.EVENTGRID_KEY, undefined, "the partner-topic overlay publishes with Microsoft Entra ID");
    assert.equal(partnerConfig.EVENTGRID_SAS_TOKEN, undefined);
    const account = one(partner.docs, "ServiceAccount", partner.pod.serviceAccountName);
    assert.match(String(account.metadata.annotations?.["azure.workload.identity/client-id"]), /^[0-9a-f-]{36}$/, "workload identity client ID");
    assert.equal(partner.workload.spec.template.metadata.labels["azure.workload.identity/use"], "true");
    const customConfig = effectiveConfig(custom).config;
    assert.equal(customConfig.EVENTGRID_CHANNEL, undefined, "the custom-topic overlay has no channel");
    assert.ok(customConfig.EVENTGRID_KEY, "the custom-topic overlay publishes with an access key");
    assert.notEqual(customConfig.EVENTGRID_ENDPOINT, effectiveConfig(workloads.find((w) => w.entry.dir === join(K8S, "base")) as Workload).config.EVENTGRID_ENDPOINT);
  });

  it("DEAD_LETTER_DIR is the mount of the dead-letter volume, and the other writable paths are volumes too", () => {
    for (const w of workloads) {
      const dir = w.env.DEAD_LETTER_DIR;
      assert.ok(dir && posix.isAbsolute(dir), `${w.entry.name}: DEAD_LETTER_DIR is an absolute path`);
      const mount = ((w.container.volumeMounts as Obj[]) ?? []).find((m) => m.mountPath === dir);
      assert.ok(mount, `${w.entry.name}: nothing is mounted at DEAD_LETTER_DIR ${dir}`);
      assert.notEqual(mount.readOnly, true, `${w.entry.name}: the dead-letter volume is writable`);
      const volume = ((w.pod.volumes as Obj[]) ?? []).find((v) => v.name === mount.name);
      const claim = ((w.workload.spec.volumeClaimTemplates as Obj[] | undefined) ?? []).find((c) => c.metadata.name === mount.name);
      assert.ok(volume?.emptyDir !== undefined || volume?.persistentVolumeClaim !== undefined || claim !== undefined, `${w.entry.name}: the dead-letter volume is an emptyDir or a PersistentVolumeClaim`);
      if (w.workload.kind === "StatefulSet") assert.ok(claim && !volume, `${w.entry.name}: the StatefulSet keeps dead letters on its claim, not an emptyDir`);
      // With ON_EXHAUSTED=dead-letter the store holds the only copy of an outage's events (Auth0 got a 200).
      const persistent = claim !== undefined || volume?.persistentVolumeClaim !== undefined;
      assert.ok(effectiveConfig(w).config.ON_EXHAUSTED !== "dead-letter" || persistent, `${w.entry.name}: ON_EXHAUSTED=dead-letter on an emptyDir loses events when a pod is deleted`);
      const tmp = ((w.container.volumeMounts as Obj[]) ?? []).find((m) => m.mountPath === "/tmp");
      assert.ok(tmp && ((w.pod.volumes as Obj[]) ?? []).find((v) => v.name === tmp.name)?.emptyDir !== undefined, `${w.entry.name}: /tmp is an emptyDir`);
    }
  });
});

describe("pod hardening and lifecycle", () => {
  it("runs as the image's non-root user with a read-only root filesystem and no privileges", () => {
    const uid = Number(dockerUser().split(":")[0]);
    for (const w of workloads) {
      const pod = w.pod.securityContext as Obj;
      const c = w.container.securityContext as Obj;
      assert.equal(pod.runAsNonRoot, true, w.entry.name);
      assert.equal(pod.runAsUser, uid, `${w.entry.name}: runAsUser is the Dockerfile's USER`);
      assert.equal(pod.seccompProfile?.type, "RuntimeDefault", w.entry.name);
      assert.equal(c.readOnlyRootFilesystem, true, w.entry.name);
      assert.equal(c.allowPrivilegeEscalation, false, w.entry.name);
      assert.notEqual(c.privileged, true, w.entry.name);
      assert.deepEqual(c.capabilities?.drop, ["ALL"], w.entry.name);
      assert.equal(c.capabilities?.add, undefined, w.entry.name);
      assert.equal(w.pod.hostNetwork ?? false, false, w.entry.name);
      assert.deepEqual(((w.pod.volumes as Obj[]) ?? []).filter((v) => v.hostPath).map((v) => v.name), [], `${w.entry.name}: hostPath volumes`);
      assert.equal(w.pod.automountServiceAccountToken, false, `${w.entry.name}: the bridge does not call the Kubernetes API`);
    }
  });

  it("terminationGracePeriodSeconds outlasts the preStop sleep plus SHUTDOWN_TIMEOUT_MS", () => {
    for (const w of workloads) {
      const { config } = effectiveConfig(w);
      const command = (w.container.lifecycle?.preStop?.exec?.command as string[] | undefined) ?? [];
      const preStopMs = command[0] === "sleep" ? Number(command[1]) * 1000 : 0;
      const graceMs = Number(w.pod.terminationGracePeriodSeconds) * 1000;
      assert.ok(graceMs > preStopMs + config.SHUTDOWN_TIMEOUT_MS, `${w.entry.name}: ${graceMs} ms grace <= ${preStopMs} ms preStop + ${config.SHUTDOWN_TIMEOUT_MS} ms SHUTDOWN_TIMEOUT_MS`);
    }
  });

  it("has resource requests and limits, two replicas and rollouts that never drop below them", () => {
    for (const w of workloads) {
      const { requests, limits } = w.container.resources as { requests: Record<string, string>; limits: Record<string, string> };
      for (const r of ["cpu", "memory"]) {
        assert.ok(requests?.[r] && limits?.[r], `${w.entry.name}: ${r} request and limit`);
        assert.ok(quantity(requests[r] as string) <= quantity(limits[r] as string), `${w.entry.name}: ${r} request <= limit`);
      }
      // The flags the benchmark measured (it reads them from the Dockerfile): the image's default.
      assert.equal(w.env.NODE_OPTIONS, imageNodeOptions(), `${w.entry.name}: NODE_OPTIONS as in the Dockerfile`);
      const heap = /--max-old-space-size=(\d+)/.exec(w.env.NODE_OPTIONS ?? "");
      if (heap) assert.ok(Number(heap[1]) * 1024 ** 2 < quantity(limits.memory as string), `${w.entry.name}: V8 heap cap below the memory limit`);
      assert.ok(w.workload.spec.replicas >= 2, `${w.entry.name}: at least two replicas`);
      if (w.workload.kind === "Deployment") {
        assert.deepEqual(w.workload.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } }, w.entry.name);
      }
    }
  });

  it("the StatefulSet of components/persistent-dead-letter runs the base Deployment's pod, but for the dead-letter volume", () => {
    const deployment = workloads.find((w) => w.entry.dir === join(K8S, "base"))?.workload;
    const statefulSets = workloads.filter((w) => w.workload.kind === "StatefulSet");
    assert.ok(deployment && statefulSets.length > 0, "the base Deployment and a StatefulSet");
    for (const w of statefulSets) {
      const expected: Obj = clone(deployment.spec.template as Obj);
      expected.spec.volumes = (expected.spec.volumes as Obj[]).filter((v) => v.name !== "dead-letter");
      assert.deepEqual(w.workload.spec.template, expected, `${w.entry.name}: the pod templates have drifted apart`);
      assert.deepEqual(find(w.docs, "HorizontalPodAutoscaler"), [], `${w.entry.name}: no HPA (scale-down would strand dead letters)`);
    }
  });

  it("the image tag is the package.json version", () => {
    for (const w of workloads) assert.equal(String(w.container.image).split(":")[1], PACKAGE.version, w.entry.name);
  });
});

describe("alerts and dashboard", () => {
  let registryNames: Set<string>;
  before(async () => {
    const stack = await startStack();
    try {
      registryNames = new Set<string>();
      for (const metric of await stack.bridge.metrics.registry.getMetricsAsJSON()) {
        registryNames.add(metric.name);
        if (String(metric.type) === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) registryNames.add(`${metric.name}${suffix}`);
        if (String(metric.type) === "summary") for (const suffix of ["_sum", "_count"]) registryNames.add(`${metric.name}${suffix}`);
      }
    } finally {
      await stack.close();
    }
  });

  const rules = () => {
    const monitoring = render(join(K8S, "monitoring"));
    return one(monitoring, "PrometheusRule").spec.groups.flatMap((g: Obj) => g.rules) as Obj[];
  };
  const dashboard = () => JSON.parse(readFileSync(DASHBOARD, "utf8")) as Obj;
  const allPanels = (panels: Obj[]): Obj[] => panels.flatMap((p) => [p, ...allPanels((p.panels as Obj[] | undefined) ?? [])]);

  it("every metric the alert expressions name exists in a running bridge (or is `up`)", () => {
    assert.ok(registryNames.has("auth0_bridge_events_received_total") && registryNames.has("auth0_bridge_publish_duration_seconds_bucket"));
    const list = rules();
    assert.ok(list.length >= 8, "alerts");
    const missing: string[] = [];
    for (const rule of list) {
      assertPromqlShape(rule.expr, rule.alert);
      for (const name of metricNames(rule.expr)) if (name !== "up" && !registryNames.has(name)) missing.push(`${rule.alert}: ${name}`);
    }
    assert.deepEqual(missing, []);
  });

  it("every alert has a summary, a description, a runbook hint and a runbook section in deploy/kubernetes/README.md", () => {
    const readme = readFileSync(join(K8S, "README.md"), "utf8");
    const list = rules();
    assert.equal(new Set(list.map((r) => r.alert)).size, list.length, "alert names are unique");
    for (const rule of list) {
      for (const key of ["summary", "description", "runbook"]) assert.ok(String(rule.annotations?.[key] ?? "").trim(), `${rule.alert}: annotation ${key}`);
      assert.match(readme, new RegExp(`^#+ ${rule.alert}$`, "m"), `${rule.alert}: no runbook heading in deploy/kubernetes/README.md`);
      assert.ok(String(rule.annotations.runbook).includes(`#${rule.alert.toLowerCase()}`), `${rule.alert}: the runbook hint links its README section`);
    }
    const byName = new Map(list.map((r) => [r.alert as string, r]));
    // The alerts the issue asks for, by what they watch.
    for (const [metric, alert] of [
      ["auth0_bridge_events_failed_total", "Auth0BridgeDeliveriesFailing"],
      ["auth0_bridge_last_publish_success_timestamp_seconds", "Auth0BridgeNoSuccessfulPublish"],
      ["auth0_bridge_dead_letter_records", "Auth0BridgeDeadLetterGrowing"],
      ["auth0_bridge_events_dead_lettered_total", "Auth0BridgeEventsDeadLettered"],
      ["auth0_bridge_publish_requests_total", "Auth0BridgeHighRetryRatio"],
      ["auth0_bridge_circuit_breaker_state", "Auth0BridgeCircuitBreakerOpen"],
      ["auth0_bridge_ready", "Auth0BridgeNotReady"],
      ["up", "Auth0BridgeTargetDown"],
    ] as const) {
      assert.ok(metricNames(String(byName.get(alert)?.expr ?? "")).includes(metric), `${alert} watches ${metric}`);
    }
  });

  it("every metric the dashboard's panels and variables query exists in a running bridge", () => {
    const d = dashboard();
    const exprs: [string, string][] = [];
    for (const panel of allPanels(d.panels as Obj[])) for (const t of (panel.targets as Obj[] | undefined) ?? []) exprs.push([`panel ${panel.id} "${panel.title}"`, String(t.expr)]);
    for (const v of (d.templating.list as Obj[]).filter((x) => x.type === "query")) exprs.push([`variable ${v.name}`, String(v.query?.query ?? v.query)]);
    assert.ok(exprs.length >= 20, "dashboard queries");
    const missing: string[] = [];
    const used = new Set<string>();
    for (const [where, expr] of exprs) {
      assertPromqlShape(expr.replace(/\$__rate_interval|\$\{?\w+\}?/g, "x"), where);
      for (const name of metricNames(expr)) {
        used.add(name);
        if (!registryNames.has(name)) missing.push(`${where}: ${name}`);
      }
    }
    assert.deepEqual(missing, []);
    // The panels the issue asks for.
    for (const name of [
      "auth0_bridge_events_received_total", "auth0_bridge_events_published_total", "auth0_bridge_events_failed_total", "auth0_bridge_events_rejected_total",
      "auth0_bridge_events_dead_lettered_total", "auth0_bridge_publish_requests_total", "auth0_bridge_publish_duration_seconds_bucket",
      "auth0_bridge_batch_size_events_bucket", "auth0_bridge_dead_letter_records", "auth0_bridge_circuit_breaker_state", "auth0_bridge_ready",
      "auth0_bridge_ingest_requests_total", "process_resident_memory_bytes", "process_cpu_seconds_total",
    ]) assert.ok(used.has(name), `no dashboard panel shows ${name}`);
    for (const q of ["0.5", "0.9", "0.99"]) {
      for (const histogram of ["auth0_bridge_publish_duration_seconds_bucket", "auth0_bridge_batch_size_events_bucket"]) {
        assert.ok(exprs.some(([, e]) => e.includes(`histogram_quantile(${q},`) && e.includes(histogram)), `no ${q} quantile of ${histogram}`);
      }
    }
  });

  it("the dashboard is importable: prometheus datasource variable, job/namespace/pod variables, unique ids, panels on the grid", () => {
    const d = dashboard();
    assert.equal(typeof d.uid, "string");
    assert.ok(d.schemaVersion >= 36 && d.schemaVersion <= 41, `schemaVersion ${d.schemaVersion}`);
    const variables = d.templating.list as Obj[];
    const ds = variables.find((v) => v.name === "datasource");
    assert.deepEqual([ds?.type, ds?.query], ["datasource", "prometheus"]);
    for (const name of ["job", "namespace", "pod"]) assert.equal(variables.find((v) => v.name === name)?.type, "query", `variable ${name}`);
    const defined = new Set(variables.map((v) => v.name as string));
    const panels = allPanels(d.panels as Obj[]);
    const ids = panels.map((p) => p.id as number);
    assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
    for (const panel of panels) {
      const { x, y, w, h } = panel.gridPos as Record<string, number>;
      assert.ok([x, y, w, h].every((n) => Number.isInteger(n) && (n as number) >= 0) && (x as number) + (w as number) <= 24, `panel ${panel.id}: gridPos`);
      if (panel.type === "row") continue;
      assert.equal(panel.datasource?.uid, "${datasource}", `panel ${panel.id}: datasource`);
      assert.ok(((panel.targets as Obj[] | undefined) ?? []).length > 0, `panel ${panel.id}: targets`);
      for (const t of panel.targets as Obj[]) {
        assert.equal(t.datasource?.uid, "${datasource}", `panel ${panel.id}: target datasource`);
        for (const m of String(t.expr).matchAll(/\$\{?(\w+)\}?/g)) {
          assert.ok(m[1] === "__rate_interval" || m[1] === "__interval" || defined.has(m[1] as string), `panel ${panel.id}: undefined variable $${m[1]}`);
        }
        for (const name of ["job", "namespace", "pod"]) assert.ok(String(t.expr).includes(`${name}=~"$${name}"`), `panel ${panel.id}: not filtered by $${name}`);
      }
    }
  });
});

describe("Dockerfile", () => {
  function instructions(): { stage: string; op: string; args: string }[] {
    const text = readFileSync(join(ROOT, "Dockerfile"), "utf8").replace(/\\\r?\n/g, " ");
    const out: { stage: string; op: string; args: string }[] = [];
    let stage = "";
    for (const line of text.split(/\r?\n/)) {
      const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
      if (!m || line.trim().startsWith("#")) continue;
      const op = (m[1] as string).toUpperCase();
      const args = (m[2] as string).replace(/\s+#.*$/, "").trim();
      if (op === "FROM") stage = /\bAS\s+(\S+)/i.exec(args)?.[1] ?? args;
      out.push({ stage, op, args });
    }
    return out;
  }
  const runtime = () => {
    const all = instructions();
    const last = all.filter((i) => i.op === "FROM").at(-1)?.stage;
    return all.filter((i) => i.stage === last);
  };

  it("the runtime stage runs as a non-root numeric USER that the pods' runAsUser matches", () => {
    const user = dockerUser();
    assert.match(user, /^\d+(:\d+)?$/, "USER is numeric (uid[:gid]) so that runAsNonRoot can verify it");
    assert.notEqual(Number(user.split(":")[0]), 0, "USER is not root");
    assert.ok(runtime().findIndex((i) => i.op === "USER") < runtime().findIndex((i) => i.op === "CMD"), "USER precedes CMD");
  });

  it("exposes the default PORT and ADMIN_PORT, and its HEALTHCHECK calls ADMIN_PATHS.liveness on ADMIN_PORT", () => {
    const exposed = runtime().filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/)).map((p) => Number(p.split("/")[0]));
    assert.deepEqual(exposed.sort(), [defaults.PORT, defaults.ADMIN_PORT].sort());
    const healthcheck = runtime().find((i) => i.op === "HEALTHCHECK")?.args ?? "";
    assert.ok(healthcheck.includes(`'${ADMIN_PATHS.liveness}'`), `HEALTHCHECK does not call ${ADMIN_PATHS.liveness}: ${healthcheck}`);
    assert.ok(healthcheck.includes("process.env.ADMIN_PORT") && healthcheck.includes(`||${defaults.ADMIN_PORT}`), "HEALTHCHECK uses ADMIN_PORT, defaulting to the config default");
  });

  it("builds with package.json's scripts and starts package.json's main", () => {
    const all = instructions();
    const runs = (stage: string) => all.filter((i) => i.stage === stage && i.op === "RUN").map((i) => i.args);
    const build = all.find((i) => i.op === "FROM")?.stage as string;
    assert.ok(runs(build).some((r) => /\bnpm ci\b/.test(r) && !r.includes("--omit=dev")), "the build stage installs dev dependencies with npm ci");
    const buildScripts = runs(build).flatMap((r) => [...r.matchAll(/npm run (\S+)/g)].map((m) => m[1] as string));
    assert.ok(buildScripts.includes("build"), "the build stage runs `npm run build`");
    for (const script of buildScripts) assert.ok(PACKAGE.scripts[script], `package.json has no script ${script}`);
    const rt = runtime();
    assert.ok(rt.some((i) => i.op === "RUN" && /\bnpm ci\b.*--omit=dev/.test(i.args)), "the runtime stage installs production dependencies only");
    const cmd = JSON.parse(rt.find((i) => i.op === "CMD")?.args ?? "[]") as string[];
    assert.deepEqual(cmd, ["node", PACKAGE.main], "CMD runs package.json's main");
    const outDir = (JSON.parse(readFileSync(join(ROOT, "tsconfig.build.json"), "utf8")) as { compilerOptions: { outDir: string } }).compilerOptions.outDir;
    assert.ok(PACKAGE.main.startsWith(`${outDir}/`), "package.json main is in the build's outDir");
    const copies = rt.filter((i) => i.op === "COPY").map((i) => i.args);
    assert.ok(copies.some((c) => c.includes(`--from=${build}`) && c.includes(`/${outDir}`)), "the runtime stage copies the build output");
    // What the bridge reads at run time beside its code: package.json (version) and the type-code table.
    const topDir = defaults.EVENT_TYPES_FILE.split("/")[0] as string;
    assert.ok(copies.some((c) => c.split(/\s+/)[0] === topDir), `the runtime stage copies ${topDir}/ (EVENT_TYPES_FILE)`);
    assert.ok(copies.some((c) => c.split(/\s+/).includes("package.json")), "the runtime stage copies package.json");
  });

  it("pins a Node 24 bookworm-slim base image and labels the image (OCI) with package.json's version and license", () => {
    const all = instructions();
    const image = /NODE_IMAGE=(\S+)/.exec(all.find((i) => i.op === "ARG" && i.args.startsWith("NODE_IMAGE="))?.args ?? "")?.[1];
    assert.match(String(image), /^node:24\.\d+\.\d+-bookworm-slim$/);
    for (const from of all.filter((i) => i.op === "FROM")) assert.match(from.args, /^\$\{NODE_IMAGE\}\s/, "every stage uses the pinned image");
    const rt = runtime();
    const labels = rt.filter((i) => i.op === "LABEL").map((i) => i.args).join(" ");
    for (const key of ["title", "description", "licenses", "source", "version", "revision"]) assert.ok(labels.includes(`org.opencontainers.image.${key}=`), `label ${key}`);
    assert.ok(labels.includes(`org.opencontainers.image.licenses="${PACKAGE.license}"`), "license label");
    assert.equal(rt.find((i) => i.op === "ARG" && i.args.startsWith("VERSION="))?.args, `VERSION=${PACKAGE.version}`, "ARG VERSION defaults to package.json's version");
  });

  it(".dockerignore keeps local state out of the context but not what the Dockerfile copies", () => {
    const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8").split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
    for (const name of ["node_modules", "dist", "data", ".git", ".env"]) assert.ok(patterns.includes(name), `.dockerignore lacks ${name}`);
    const ignored = (path: string) => {
      let result = false;
      for (const p of patterns) {
        const negate = p.startsWith("!");
        const glob = new RegExp(`^${(negate ? p.slice(1) : p).replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}(/.*)?$`);
        if (glob.test(path)) result = !negate;
      }
      return result;
    };
    const sources = instructions()
      .filter((i) => i.op === "COPY" && !i.args.startsWith("--from"))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    assert.ok(sources.length >= 4);
    assert.deepEqual(sources.filter(ignored), [], "the Dockerfile copies files .dockerignore leaves out");
  });
});

/** The NODE_OPTIONS the image sets (bench/run.mjs runs the bridge with them too). */
function imageNodeOptions(): string | undefined {
  return /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(readFileSync(join(ROOT, "Dockerfile"), "utf8"))?.[1];
}

/** The USER of the Dockerfile's last stage. */
function dockerUser(): string {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const lastStage = text.slice(text.lastIndexOf("\nFROM "));
  const users = [...lastStage.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1] as string);
  assert.ok(users.length > 0, "the runtime stage sets USER");
  return users.at(-1) as string;
}
