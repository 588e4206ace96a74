// An event ready to send whose JSON text moves into the request body it is first written to.
// The body is kept while its request may be retried anyway; keeping every event's string as well
// made each one outlive the young generation, so the garbage collector copied and promoted them
// all (S1: about a tenth of the bridge's CPU). Read back from the body only when needed again: a
// refused batch split in halves, a dead letter.
import type { OutgoingEvent } from "./delivery.js";

export class EncodedEvent implements OutgoingEvent {
  private text: string | undefined;
  private body: Buffer | undefined;
  private start = 0;

  constructor(
    readonly id: string,
    readonly code: string,
    json: string,
    /** UTF-8 bytes of `json` (computed when not given). */
    readonly bytes: number = Buffer.byteLength(json),
  ) {
    this.text = json;
  }

  get json(): string {
    return this.text ?? this.body!.toString("utf8", this.start, this.start + this.bytes);
  }

  /** The event's `bytes` bytes were written to `body` at `start`: read them from there from now on. */
  writtenTo(body: Buffer, start: number): void {
    this.body = body;
    this.start = start;
    this.text = undefined;
  }
}
