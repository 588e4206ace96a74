// Rate limiting for the webhook sink: the rate a target allowed in its handshake and the pauses it
// asks for must hold across all of a publisher's POSTs, however many deliveries run at once. Kept
// apart from the publisher because it is pure timing: no network, and an injectable clock and sleep.

const WINDOW_MS = 60_000;

/**
 * The request rate the target allowed (WebHook-Allowed-Rate) and any pause it asked for
 * (Retry-After), shared by every POST of a publisher. A sliding one-minute window: a POST goes out
 * only while fewer than `limit` went out in the last 60 s. Callers queue in order, so concurrent
 * deliveries cannot overtake each other or the limit.
 */
export class RateGate {
  private limit: number | undefined;
  /** Send times within the window, oldest first (only kept while there is a limit). */
  private readonly sent: number[] = [];
  private pausedUntil = 0;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly now: () => number,
    private readonly sleep: (ms: number) => Promise<void>,
  ) {}

  setLimit(limit: number | undefined): void {
    this.limit = limit;
  }

  pauseUntil(time: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, time);
  }

  /** Resolves when one more request may go out, and counts it. */
  take(): Promise<void> {
    const turn = this.tail.then(() => this.wait());
    this.tail = turn.catch(() => undefined);
    return turn;
  }

  private async wait(): Promise<void> {
    for (;;) {
      const now = this.now();
      while (this.sent.length > 0 && this.sent[0]! <= now - WINDOW_MS) this.sent.shift();
      let until = this.pausedUntil;
      const limit = this.limit;
      if (limit !== undefined && this.sent.length >= limit) until = Math.max(until, this.sent[this.sent.length - limit]! + WINDOW_MS);
      if (until <= now) {
        if (limit !== undefined) {
          this.sent.push(now);
          if (this.sent.length > limit) this.sent.splice(0, this.sent.length - limit);
        }
        return;
      }
      await this.sleep(until - now);
    }
  }
}
