// A bounded memory of recently settled event ids (published or dead-lettered). Auth0 redelivers
// a whole request when any part of it failed; with this window the parts that already went
// through are not published twice. The oldest ids are forgotten first.
//
// A ring of slots plus a Set: O(1) per id. (Evicting through a Set's iteration order instead
// degrades badly: V8 keeps deleted entries as holes that every "oldest" lookup walks over.)

export class RecentIds {
  private readonly ids = new Set<string>();
  private readonly ring: Array<string | undefined>;
  private next = 0;

  constructor(readonly capacity: number) {
    this.ring = new Array<string | undefined>(capacity);
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  add(id: string): void {
    if (this.capacity === 0 || this.ids.has(id)) return;
    const evicted = this.ring[this.next];
    if (evicted !== undefined) this.ids.delete(evicted);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.capacity;
    this.ids.add(id);
  }

  get size(): number {
    return this.ids.size;
  }
}
