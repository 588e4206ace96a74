// Circuit breaker in front of Event Grid. After a run of consecutive failed attempts it stops
// calling Event Grid for a cool-down (requests are answered 503 at once instead of waiting out
// timeouts and retries), then lets a single probe through (half-open): success closes it,
// failure opens it again.

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerOptions {
  failureThreshold: number;
  cooldownMs: number;
  now?: () => number;
  onStateChange?: (state: BreakerState, previous: BreakerState) => void;
}

export class CircuitBreaker {
  private current: BreakerState = "closed";
  private failures = 0;
  private openedAt = 0;
  private probeInFlight = false;
  private readonly now: () => number;

  constructor(private readonly options: BreakerOptions) {
    this.now = options.now ?? Date.now;
  }

  get state(): BreakerState {
    return this.current;
  }

  /** Milliseconds until an open breaker lets a probe through (0 when not open). */
  get retryInMs(): number {
    return this.current === "open" ? Math.max(0, this.openedAt + this.options.cooldownMs - this.now()) : 0;
  }

  /**
   * May an attempt go to Event Grid now? When it returns "probe", the caller's attempt is the
   * half-open probe and must be reported with onSuccess/onFailure.
   */
  acquire(): "allow" | "probe" | "reject" {
    if (this.current === "closed") return "allow";
    if (this.current === "open") {
      if (this.now() - this.openedAt < this.options.cooldownMs) return "reject";
      this.transition("half_open");
    }
    if (this.probeInFlight) return "reject";
    this.probeInFlight = true;
    return "probe";
  }

  /** Event Grid answered (2xx, or a 400/413 about the events themselves): the target works. */
  onSuccess(): void {
    this.failures = 0;
    this.probeInFlight = false;
    if (this.current !== "closed") this.transition("closed");
  }

  /** A failure that says the target is unhealthy (5xx, 429, timeout, network, auth). */
  onFailure(): void {
    this.probeInFlight = false;
    this.failures++;
    if (this.current === "half_open" || (this.current === "closed" && this.failures >= this.options.failureThreshold)) {
      this.openedAt = this.now();
      this.transition("open");
    }
  }

  private transition(next: BreakerState): void {
    const previous = this.current;
    this.current = next;
    this.options.onStateChange?.(next, previous);
  }
}
