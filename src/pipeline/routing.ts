// Per-code and per-category routing rules from configuration: which events are dropped
// (filtered on purpose) and which get a CloudEvent type other than the default.
import type { EventTypeInfo } from "../auth0/registry.js";

export interface RoutingConfig {
  FILTER_DROP_CODES: readonly string[];
  FILTER_DROP_CATEGORIES: readonly string[];
  FILTER_ONLY_CATEGORIES: readonly string[];
  TYPE_OVERRIDES: Readonly<Record<string, string>>;
}

export class RoutingRules {
  private readonly dropCodes: ReadonlySet<string>;
  private readonly dropCategories: ReadonlySet<string>;
  private readonly onlyCategories: ReadonlySet<string>;
  private readonly overrides: ReadonlyMap<string, string>;

  constructor(config: RoutingConfig) {
    this.dropCodes = new Set(config.FILTER_DROP_CODES);
    this.dropCategories = new Set(config.FILTER_DROP_CATEGORIES);
    this.onlyCategories = new Set(config.FILTER_ONLY_CATEGORIES);
    this.overrides = new Map(Object.entries(config.TYPE_OVERRIDES));
  }

  /** True when configuration says this event is not forwarded. */
  drops(info: EventTypeInfo): boolean {
    if (this.dropCodes.has(info.code) || this.dropCategories.has(info.apiFilter)) return true;
    return this.onlyCategories.size > 0 && !this.onlyCategories.has(info.apiFilter);
  }

  /** A configured CloudEvent type: a rule for the code wins over one for its category. */
  typeOverride = (info: EventTypeInfo): string | undefined => this.overrides.get(info.code) ?? this.overrides.get(info.apiFilter);
}
