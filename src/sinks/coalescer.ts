// Cross-request batching: events of concurrent requests are gathered for a short window
// (BATCH_WINDOW_MS) and published together, so many small Auth0 requests make few Event Grid
// calls. Each request still gets only its own outcome, and only once its own events are settled.
import { arrayBytes } from "./batches.js";
import type { BatchFailure, DeliveryResult, OutgoingEvent } from "./eventgrid.js";

export interface Deliverer {
  deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult>;
}

interface Waiting {
  events: readonly OutgoingEvent[];
  resolve: (result: DeliveryResult) => void;
  reject: (error: unknown) => void;
}

export class Coalescer implements Deliverer {
  private waiting: Waiting[] = [];
  private events = 0;
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: Deliverer,
    private readonly options: { windowMs: number; maxEvents: number; maxBytes: number },
  ) {}

  deliver(events: readonly OutgoingEvent[]): Promise<DeliveryResult> {
    if (events.length === 0) return Promise.resolve({ published: [], rejected: [], failed: [] });
    return new Promise((resolve, reject) => {
      this.waiting.push({ events, resolve, reject });
      this.events += events.length;
      for (const e of events) this.bytes += e.bytes;
      // A full batch goes at once; otherwise the first request of a window starts the clock.
      if (this.events >= this.options.maxEvents || arrayBytes(this.bytes, this.events) >= this.options.maxBytes) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.options.windowMs);
    });
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const group = this.waiting;
    this.waiting = [];
    this.events = 0;
    this.bytes = 0;
    if (group.length === 1) {
      const only = group[0]!;
      this.target.deliver(only.events).then(only.resolve, only.reject);
      return;
    }
    const owner = new Map<OutgoingEvent, number>();
    group.forEach((w, i) => {
      for (const e of w.events) owner.set(e, i);
    });
    this.target.deliver(group.flatMap((w) => w.events)).then(
      (result) => {
        const split: DeliveryResult[] = group.map(() => ({ published: [], rejected: [], failed: [] }));
        for (const e of result.published) split[owner.get(e)!]!.published.push(e);
        for (const r of result.rejected) split[owner.get(r.event)!]!.rejected.push(r);
        for (const failure of result.failed) {
          const parts = new Map<number, OutgoingEvent[]>();
          for (const e of failure.events) {
            const i = owner.get(e)!;
            const part = parts.get(i);
            if (part) part.push(e);
            else parts.set(i, [e]);
          }
          for (const [i, events] of parts) split[i]!.failed.push({ ...failure, events } satisfies BatchFailure);
        }
        group.forEach((w, i) => w.resolve(split[i]!));
      },
      (error: unknown) => {
        for (const w of group) w.reject(error);
      },
    );
  }
}
