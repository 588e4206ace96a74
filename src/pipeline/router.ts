// Routes: which destinations an event goes to, keyed by its type code, its category (API filter
// name) and the stream (tenant) it came in on, with the CloudEvent type and the redaction each
// route asks for. Routes are tried in order; for each destination the first route that sends
// the event there decides its type and redaction. An event no route matches goes nowhere.
import type { EventTypeInfo } from "../auth0/registry.js";
import { compileRedaction, redactionSpecSchema, RedactionError, type RedactionRule, type RedactionSpec, type Redactor } from "../cloudevents/redact.js";
import type { RouteSpec, Selector } from "../config/topology.js";

/** One route's share of an event: the destinations it sends it to, and how the event is shaped. */
export interface RouteTarget {
  route: string;
  destinations: readonly string[];
  /** The CloudEvent type this route sets, if any (else the global TYPE_OVERRIDES, else the default). */
  type?: string;
  /** Undefined when the route redacts nothing. */
  redactor?: Redactor;
}

export interface RouterOptions {
  presets: Readonly<Record<string, readonly RedactionRule[]>>;
  hashKey?: string;
}

export class RouteError extends Error {}

interface CompiledRoute {
  spec: RouteSpec;
  redactor?: Redactor;
}

// Unknown codes come from the sender: bound the plan cache however many distinct ones arrive.
const MAX_CACHED_PLANS = 10_000;

const selects = (selector: Selector | undefined, stream: string, info: EventTypeInfo, emptyMeans: boolean): boolean => {
  if (selector === undefined) return emptyMeans;
  const { codes, categories, streams } = selector;
  const kindGiven = (codes?.length ?? 0) + (categories?.length ?? 0) > 0;
  const kind = kindGiven ? (codes?.includes(info.code) ?? false) || (categories?.includes(info.apiFilter) ?? false) : emptyMeans;
  if (streams === undefined || streams.length === 0) return kind;
  return emptyMeans ? kind && streams.includes(stream) : kind || streams.includes(stream);
};

export class Router {
  private readonly routes: CompiledRoute[];
  private readonly plans = new Map<string, readonly RouteTarget[]>();
  /** Every rule of every route: for records that are kept before any route is known (invalid records). */
  readonly anyRouteRedactor: Redactor | undefined;

  constructor(routes: readonly RouteSpec[], options: RouterOptions) {
    const all: RedactionSpec[] = [];
    this.routes = routes.map((spec, index) => {
      if (!spec.redact || spec.redact.length === 0) return { spec };
      const rules = spec.redact.map((rule, i) => {
        const parsed = redactionSpecSchema.safeParse(rule);
        if (!parsed.success) throw new RouteError(`CONFIG_FILE routes[${index}] (${spec.name}).redact[${i}]: ${parsed.error.issues[0]?.message ?? "invalid rule"}`);
        return parsed.data;
      });
      all.push(...rules);
      return { spec, redactor: this.compile(rules, options, `routes[${index}] (${spec.name})`) };
    });
    this.anyRouteRedactor = all.length > 0 ? this.compile(all, options, "routes") : undefined;
  }

  private compile(rules: RedactionSpec[], options: RouterOptions, where: string): Redactor {
    try {
      return compileRedaction(rules, { presets: options.presets, ...(options.hashKey ? { hashKey: options.hashKey } : {}) });
    } catch (error) {
      if (error instanceof RedactionError) {
        throw new RouteError(`CONFIG_FILE ${where}.redact: ${error.message}`);
      }
      throw error;
    }
  }

  /** Where an event of this type, from this stream, goes; empty when no route matches. */
  plan(stream: string, info: EventTypeInfo): readonly RouteTarget[] {
    const key = `${stream}\n${info.code}`;
    let plan = this.plans.get(key);
    if (plan === undefined) {
      plan = this.computePlan(stream, info);
      if (this.plans.size >= MAX_CACHED_PLANS) this.plans.clear();
      this.plans.set(key, plan);
    }
    return plan;
  }

  private computePlan(stream: string, info: EventTypeInfo): readonly RouteTarget[] {
    const claimed = new Set<string>();
    const targets: RouteTarget[] = [];
    for (const { spec, redactor } of this.routes) {
      if (!selects(spec.match, stream, info, true) || selects(spec.exclude, stream, info, false)) continue;
      const destinations = spec.to.filter((d) => !claimed.has(d));
      if (destinations.length === 0) continue;
      for (const d of destinations) claimed.add(d);
      targets.push({
        route: spec.name,
        destinations,
        ...(spec.type !== undefined ? { type: spec.type } : {}),
        ...(redactor && !redactor.empty ? { redactor } : {}),
      });
    }
    return targets;
  }

  /** Codes and categories routes name that the registry does not know: likely typos. */
  unknownNames(knows: { code(code: string): boolean; category(category: string): boolean }): string[] {
    const problems: string[] = [];
    for (const { spec } of this.routes) {
      for (const selector of [spec.match, spec.exclude]) {
        for (const code of selector?.codes ?? []) if (!knows.code(code)) problems.push(`route ${spec.name}: type code ${JSON.stringify(code)} is not in the code table`);
        for (const category of selector?.categories ?? []) {
          if (!knows.category(category)) problems.push(`route ${spec.name}: category ${JSON.stringify(category)} is not an API filter name of the code table`);
        }
      }
    }
    return problems;
  }
}
