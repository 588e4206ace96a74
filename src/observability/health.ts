// The bridge's own view of its stream health, in the spirit of Auth0's stream Health page:
// a status, the last errors and a few counters. Fed by the pipeline, read by GET /health.

export type StreamStatus = "active" | "active_with_errors" | "failing";

export interface HealthError {
  time: string;
  reason: string;
  message: string;
  status?: number;
  events?: number;
}

export interface HealthSnapshot {
  status: StreamStatus;
  ready: boolean;
  readinessReason?: string;
  version: string;
  target: { endpoint: string; channel?: string; auth: string };
  counters: { received: number; published: number; filtered: number; rejected: number; failed: number };
  lastPublishSuccess: string | null;
  lastErrors: HealthError[];
  /** Live state read from the pipeline and sinks when the snapshot is taken. */
  circuitBreaker?: string;
  destinations?: Record<string, unknown>[];
  deadLetterRecords?: number;
  inflightEvents?: number;
}

export interface LiveState {
  /** The worst breaker state across destinations (open, half_open, closed). */
  circuitBreaker: string;
  destinations: Record<string, unknown>[];
  deadLetterRecords: number;
  inflightEvents: number;
}

const MAX_ERRORS = 10;
// An error older than this no longer colours the status once deliveries succeed again.
const RECENT_ERROR_MS = 15 * 60 * 1000;

export class HealthModel {
  private readonly errors: HealthError[] = [];
  private lastSuccessAt: number | null = null;
  private lastFailureAt: number | null = null;
  private isReady = false;
  private notReadyReason = "starting";
  readonly counters = { received: 0, published: 0, filtered: 0, rejected: 0, failed: 0 };

  private live: (() => LiveState) | undefined;

  constructor(
    private readonly info: { version: string; target: HealthSnapshot["target"] },
    private readonly now: () => number = Date.now,
  ) {}

  /** Wired by the composition root once the sinks exist. */
  setLiveState(live: () => LiveState): void {
    this.live = live;
  }

  recordError(error: Omit<HealthError, "time">): void {
    this.errors.unshift({ time: new Date(this.now()).toISOString(), ...error });
    if (this.errors.length > MAX_ERRORS) this.errors.length = MAX_ERRORS;
  }

  /** A delivery (one request's publish) finished; failures also go through recordError. */
  recordDelivery(ok: boolean): void {
    if (ok) this.lastSuccessAt = this.now();
    else this.lastFailureAt = this.now();
  }

  /** Readiness plus, when not ready, a reason a person can act on. */
  setReady(ready: boolean, reason = ""): void {
    this.isReady = ready;
    this.notReadyReason = ready ? "" : reason;
  }

  get ready(): boolean {
    return this.isReady;
  }

  get readinessReason(): string {
    return this.notReadyReason;
  }

  status(): StreamStatus {
    if (this.lastFailureAt !== null && (this.lastSuccessAt === null || this.lastFailureAt > this.lastSuccessAt)) return "failing";
    const latestError = this.errors[0];
    if (latestError && this.now() - Date.parse(latestError.time) < RECENT_ERROR_MS) return "active_with_errors";
    return "active";
  }

  snapshot(): HealthSnapshot {
    return {
      status: this.status(),
      ready: this.isReady,
      ...(this.isReady ? {} : { readinessReason: this.notReadyReason }),
      version: this.info.version,
      target: this.info.target,
      counters: { ...this.counters },
      lastPublishSuccess: this.lastSuccessAt === null ? null : new Date(this.lastSuccessAt).toISOString(),
      lastErrors: [...this.errors],
      ...this.live?.(),
    };
  }
}
