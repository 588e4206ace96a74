// Auth0 log type codes -> names and categories, loaded from config/auth0-log-event-types.tsv.
// Pure: nothing is read at import time; `loadRegistry` is the only I/O and runs only when called.

import { readFile } from "node:fs/promises";

export interface EventTypeInfo {
  code: string;
  name: string;
  description: string;
  /** Dashboard / stream filter display name, e.g. "Login - Failure"; "" if Auth0 lists the code in no category. */
  category: string;
  /** Management API filter name, e.g. "auth.login.fail"; "other" for table rows without one; "unknown" for codes not in the table. */
  apiFilter: string;
  known: boolean;
}

/** The header the TSV must start with; column order is part of the file format. */
export const TSV_COLUMNS = ["code", "name", "description", "category", "api_filter", "status"] as const;

/** Auth0 files events it has not classified under `other`, so rows with no published category go there too. */
const UNCLASSIFIED_API_FILTER = "other";
const UNKNOWN_API_FILTER = "unknown";

export class EventTypeRegistry {
  readonly #byCode = new Map<string, EventTypeInfo>();

  constructor(entries: EventTypeInfo[]) {
    for (const entry of entries) {
      if (entry.code === "") throw new Error("event type registry: empty code");
      if (this.#byCode.has(entry.code)) {
        throw new Error(`event type registry: duplicate code "${entry.code}"`);
      }
      // Frozen copies: lookup() hands the same object to every caller, so nobody may change it.
      this.#byCode.set(entry.code, Object.freeze({ ...entry }));
    }
  }

  /** Parses the registry TSV. Strict, so a bad edit stops start-up instead of mislabelling events. */
  static fromTsv(text: string): EventTypeRegistry {
    // Tolerate what editors add: a UTF-8 BOM and CRLF line ends.
    const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
    const header = lines[0] ?? "";
    if (header !== TSV_COLUMNS.join("\t")) {
      throw new Error(
        `event type TSV line 1: header must be "${TSV_COLUMNS.join("<TAB>")}" (tab-separated)`,
      );
    }
    const entries: EventTypeInfo[] = [];
    const firstLine = new Map<string, number>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] ?? "";
      const lineNo = i + 1;
      if (line === "") continue;
      const fields = line.split("\t");
      if (fields.length !== TSV_COLUMNS.length) {
        throw new Error(
          `event type TSV line ${lineNo}: expected ${TSV_COLUMNS.length} tab-separated columns, found ${fields.length}`,
        );
      }
      const [code = "", name = "", description = "", category = "", apiFilter = ""] = fields;
      if (code.trim() === "" || code.trim() !== code) {
        throw new Error(`event type TSV line ${lineNo}: code is empty or has surrounding spaces`);
      }
      const seen = firstLine.get(code);
      if (seen !== undefined) {
        throw new Error(`event type TSV line ${lineNo}: duplicate code "${code}" (first on line ${seen})`);
      }
      firstLine.set(code, lineNo);
      entries.push({
        code,
        name,
        description,
        category,
        apiFilter: apiFilter === "" ? UNCLASSIFIED_API_FILTER : apiFilter,
        known: true,
      });
    }
    return new EventTypeRegistry(entries);
  }

  /**
   * Known codes return the shared frozen entry. Unknown codes get a fresh object each call: nothing is
   * cached, so a sender inventing codes cannot grow memory.
   */
  lookup(code: string): EventTypeInfo {
    return (
      this.#byCode.get(code) ?? {
        code,
        name: code,
        description: "",
        category: "",
        apiFilter: UNKNOWN_API_FILTER,
        known: false,
      }
    );
  }

  get size(): number {
    return this.#byCode.size;
  }

  /** Codes in table order. */
  codes(): string[] {
    return [...this.#byCode.keys()];
  }

  /** Distinct apiFilter values of the table, sorted ("unknown" is not one: it belongs to no row). */
  categories(): string[] {
    const distinct = new Set<string>();
    for (const info of this.#byCode.values()) distinct.add(info.apiFilter);
    return [...distinct].sort();
  }
}

/** Reads the registry TSV (e.g. config/auth0-log-event-types.tsv). */
export async function loadRegistry(path: string): Promise<EventTypeRegistry> {
  const text = await readFile(path, "utf8");
  try {
    return EventTypeRegistry.fromTsv(text);
  } catch (err) {
    // The parser knows the line, only the caller knows the file: say both.
    throw new Error(`${path}: ${(err as Error).message}`, { cause: err });
  }
}
