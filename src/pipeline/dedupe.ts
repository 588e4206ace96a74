// A bounded memory of recently settled event ids (published or dead-lettered). Auth0 redelivers
// a whole request when any part of it failed; with this window the parts that already went
// through are not published twice. Oldest ids are forgotten first.

export class RecentIds {
  private readonly ids = new Set<string>();

  constructor(readonly capacity: number) {}

  has(id: string): boolean {
    return this.capacity > 0 && this.ids.has(id);
  }

  add(id: string): void {
    if (this.capacity === 0) return;
    // Re-adding refreshes the id's place in the insertion order.
    if (this.ids.delete(id) || this.ids.size < this.capacity) {
      this.ids.add(id);
      return;
    }
    const oldest = this.ids.values().next();
    if (!oldest.done) this.ids.delete(oldest.value);
    this.ids.add(id);
  }

  get size(): number {
    return this.ids.size;
  }
}
