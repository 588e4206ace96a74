// A cap on a webhook publisher's POSTs in flight: without it the per-event modes (structured,
// binary) would open one connection per event of a delivery at once.

/** Caps requests in flight; waiters are served in order. */
export class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async acquire(): Promise<() => void> {
    if (this.active < this.size) this.active++;
    // A releasing holder hands its slot over directly, so `active` stays counted.
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }
}
