// Splits the events of a delivery into Event Grid requests that respect both caps:
// serialized bytes per request and events per request. Order is kept.

export interface Sized {
  /** Serialized size of this event in bytes (UTF-8). */
  bytes: number;
}

/** Bytes of a JSON array holding events of the given sizes: brackets plus separating commas. */
export function arrayBytes(sizes: number, count: number): number {
  return 2 + sizes + Math.max(0, count - 1);
}

export function splitIntoBatches<T extends Sized>(events: readonly T[], maxBytes: number, maxEvents: number): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let currentBytes = 0;
  for (const event of events) {
    const wouldBe = arrayBytes(currentBytes + event.bytes, current.length + 1);
    if (current.length > 0 && (current.length >= maxEvents || wouldBe > maxBytes)) {
      batches.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(event);
    currentBytes += event.bytes;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
