#!/usr/bin/env node
// Summarises a V8 .cpuprofile (from `node --cpu-prof`): the top functions by self time, and self
// time by package (node_modules package, the bridge's own dist/<dir>, node: internals, V8).
//   node bench/profile-summary.mjs <file.cpuprofile> [--top 25]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" } } });
if (positionals.length !== 1) {
  process.stderr.write("usage: node bench/profile-summary.mjs <file.cpuprofile> [--top N]\n");
  process.exit(2);
}
const top = Number(values.top) || 25;
const profile = JSON.parse(readFileSync(positionals[0], "utf8"));

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map();
const { samples, timeDeltas } = profile;
for (let i = 0; i < samples.length; i++) {
  // timeDeltas[i] is the time since the previous sample; the interval after sample i is
  // attributed to it (the last sample gets the mean interval).
  const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : (profile.endTime - profile.startTime) / samples.length;
  selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
}

function packageOf(url, name) {
  if (!url) return name.startsWith("(") ? name : "(V8 / native)";
  if (url.startsWith("node:")) {
    const parts = url.slice(5).split("/");
    return "node:" + (parts[0] === "internal" && parts.length > 2 ? `internal/${parts[1]}` : parts[0]);
  }
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const dist = url.indexOf("/dist/");
  if (dist >= 0) {
    const rest = url.slice(dist + "/dist/".length).split("/");
    return `bridge: dist/${rest.length > 1 ? rest[0] + "/" : rest[0]}`;
  }
  return url.replace(/^file:\/\//, "");
}

const fns = new Map();
const pkgs = new Map();
let total = 0;
let idle = 0;
for (const [id, us] of selfUs) {
  const node = byId.get(id);
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || "(anonymous)";
  total += us;
  if (name === "(idle)") idle += us;
  const short = url ? url.replace(/^file:\/\/.*\/node_modules\//, "").replace(/^file:\/\/.*\/dist\//, "dist/") : "";
  const key = `${name}  ${short}${url ? `:${lineNumber + 1}` : ""}`;
  const pkg = packageOf(url, name);
  const f = fns.get(key) ?? { us: 0, pkg };
  f.us += us;
  fns.set(key, f);
  pkgs.set(pkg, (pkgs.get(pkg) ?? 0) + us);
}

const busy = total - idle;
const ms = (us) => (us / 1000).toFixed(0).padStart(7);
const pct = (us) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
console.log(`Profile ${positionals[0]}: ${(total / 1e6).toFixed(2)} s sampled, ${(idle / 1e6).toFixed(2)} s idle, ${(busy / 1e6).toFixed(2)} s busy (percentages are of busy time)`);
console.log(`\nTop ${top} functions by self time:`);
console.log(`${"ms".padStart(7)}  ${"busy".padStart(6)}  function  location  [package]`);
for (const [key, f] of [...fns].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1].us - a[1].us).slice(0, top)) {
  console.log(`${ms(f.us)}  ${pct(f.us)}  ${key}  [${f.pkg}]`);
}
console.log(`\nSelf time by package:`);
for (const [pkg, us] of [...pkgs].filter(([p]) => p !== "(idle)").sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${ms(us)}  ${pct(us)}  ${pkg}`);
}
