// The dead-letter store: append-only JSON Lines files where every event the bridge could not
// deliver (and every record it could not read) is kept, fsync'ed before the request that carried
// it is answered. Replay never rewrites these files: it appends the ids it republished to a
// ledger (replayed.jsonl), so a running bridge and a replay never race on the same bytes.
import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, type FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export type DeadLetterReason =
  | "invalid_record"
  | "unparseable_body"
  | "event_too_large"
  | "rejected_by_eventgrid"
  | "rejected_by_destination"
  | "destination_gone"
  | "exhausted";

export interface DeadLetterEntry {
  reason: DeadLetterReason;
  /** Finer cause: the decoder's rejection reason, Event Grid's error code, ... */
  detail?: string;
  log_id?: string;
  code?: string;
  /** The destination the event was for (absent for records that never reached a route). */
  destination?: string;
  /** The original Auth0 record, when it could be parsed (after the route's redaction). */
  record?: unknown;
  /** The raw text, when it could not be parsed. */
  raw?: string;
  /** The CloudEvent as it would have been sent (structured JSON), when one was built. */
  event?: Record<string, unknown>;
  status?: number;
  attempts?: number;
  error?: string;
  first_attempt?: string;
  last_attempt?: string;
}

export interface StoredDeadLetter extends DeadLetterEntry {
  dlq_id: string;
  time: string;
  bridge_version: string;
}

const FILE_PREFIX = "dlq-";
const LEDGER = "replayed.jsonl";

interface Pending {
  text: string;
  count: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class DeadLetterStore {
  private file: FileHandle | undefined;
  private fileBytes = 0;
  private seq = 0;
  private queue: Pending[] = [];
  private writing = false;
  private waiting = 0;

  private constructor(
    readonly dir: string,
    private readonly maxFileBytes: number,
    private readonly version: string,
    private readonly onCountChange: (waiting: number) => void,
  ) {}

  /** Creates the directory and counts what is waiting (not yet replayed). */
  static async open(options: { dir: string; maxFileBytes: number; version: string; onCountChange?: (waiting: number) => void }): Promise<DeadLetterStore> {
    await mkdir(options.dir, { recursive: true });
    const store = new DeadLetterStore(options.dir, options.maxFileBytes, options.version, options.onCountChange ?? (() => {}));
    await store.recount();
    return store;
  }

  get waitingRecords(): number {
    return this.waiting;
  }

  /** Re-reads the store (a replay run in another process may have settled records). */
  async recount(): Promise<number> {
    const replayed = await readLedger(this.dir);
    let waiting = 0;
    for await (const { record } of readDeadLetters(this.dir)) if (!replayed.has(record.dlq_id)) waiting++;
    this.waiting = waiting;
    this.onCountChange(waiting);
    return waiting;
  }

  /**
   * Appends entries and resolves once they are on disk (fdatasync). Concurrent calls share one
   * write and one sync (group commit). Rejects when the store cannot be written; the caller must
   * then not acknowledge the events.
   */
  append(entries: readonly DeadLetterEntry[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    const now = new Date().toISOString();
    const text = entries.map((entry) => serialize({ dlq_id: randomUUID(), time: now, bridge_version: this.version, ...entry })).join("");
    return new Promise((resolve, reject) => {
      this.queue.push({ text, count: entries.length, resolve, reject });
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    while (this.queue.length > 0) {
      const group = this.queue.splice(0);
      const text = group.map((p) => p.text).join("");
      const bytes = Buffer.byteLength(text);
      try {
        const file = await this.fileFor(bytes);
        await file.write(text);
        await file.datasync();
        this.fileBytes += bytes;
        const count = group.reduce((n, p) => n + p.count, 0);
        this.waiting += count;
        this.onCountChange(this.waiting);
        for (const p of group) p.resolve();
      } catch (error) {
        // A partial line may be left behind; readers skip it. Start a fresh file next time.
        await this.closeFile();
        for (const p of group) p.reject(error);
      }
    }
    this.writing = false;
  }

  private async fileFor(bytes: number): Promise<FileHandle> {
    if (this.file && this.fileBytes > 0 && this.fileBytes + bytes > this.maxFileBytes) await this.closeFile();
    if (!this.file) {
      const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
      const name = `${FILE_PREFIX}${stamp}-${hostname()}-${process.pid}-${this.seq++}.jsonl`;
      this.file = await open(join(this.dir, name), "a");
      this.fileBytes = 0;
    }
    return this.file;
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    await file?.close().catch(() => {});
  }

  async close(): Promise<void> {
    while (this.writing || this.queue.length > 0) await new Promise((r) => setImmediate(r));
    await this.closeFile();
  }
}

function serialize(record: StoredDeadLetter): string {
  try {
    return JSON.stringify(record) + "\n";
  } catch {
    // Too deeply nested to serialize: keep everything but the payload.
    const { record: _r, event: _e, raw: _raw, ...rest } = record;
    return JSON.stringify({ ...rest, error: `${rest.error ?? ""} (payload could not be serialized)`.trim() }) + "\n";
  }
}

/** Every stored record, file by file in name (time) order; broken lines are skipped. */
export async function* readDeadLetters(dir: string): AsyncGenerator<{ file: string; record: StoredDeadLetter }> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith(FILE_PREFIX) && n.endsWith(".jsonl")).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  for (const name of names) {
    const lines = createInterface({ input: createReadStream(join(dir, name), "utf8"), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line.trim()) continue;
      try {
        const record = JSON.parse(line) as StoredDeadLetter;
        if (typeof record.dlq_id === "string") yield { file: name, record };
      } catch {
        // A line cut short by a failed write (disk full, crash): nothing was acknowledged for it.
      }
    }
  }
}

export async function readLedger(dir: string): Promise<Set<string>> {
  const ids = new Set<string>();
  try {
    const lines = createInterface({ input: createReadStream(join(dir, LEDGER), "utf8"), crlfDelay: Infinity });
    for await (const line of lines) {
      try {
        const entry = JSON.parse(line) as { dlq_id?: unknown };
        if (typeof entry.dlq_id === "string") ids.add(entry.dlq_id);
      } catch {
        // partial line
      }
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  return ids;
}

/** Records ids as replayed (durably) so that later runs and the pending gauge skip them. */
export async function markReplayed(dir: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const time = new Date().toISOString();
  const file = await open(join(dir, LEDGER), "a");
  try {
    await file.write(ids.map((dlq_id) => JSON.stringify({ dlq_id, time }) + "\n").join(""));
    await file.datasync();
  } finally {
    await file.close();
  }
}
