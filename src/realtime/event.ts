import type { Position } from '../sync/cursor.js';
import type { Change } from '../sync/service.js';

// One change as realtime sends it. Fan-out is the hot path (one write, thousands of subscribers),
// so an event is serialized once per wire format, on first use, and the same bytes are written to
// every connection that may read it.

export class RealtimeEvent {
  #json: string | undefined;
  #ws: Buffer | undefined;
  #sse: Buffer | undefined;

  constructor(
    readonly position: Position,
    /** The position as a signed sync cursor: what a client sends back to resume after this event. */
    readonly cursor: string,
    readonly change: Change,
  ) {}

  /** `{"type":"change","position":…,"change":…}` */
  json(): string {
    return (this.#json ??= `{"type":"change","position":${JSON.stringify(this.cursor)},"change":${JSON.stringify(this.change)}}`);
  }

  /** One WebSocket text frame's payload. */
  wsBytes(): Buffer {
    return (this.#ws ??= Buffer.from(this.json()));
  }

  /** An SSE event whose id is the position, so the browser's Last-Event-ID resumes after it. */
  sseBytes(): Buffer {
    return (this.#sse ??= Buffer.from(`id: ${this.cursor}\nevent: change\ndata: ${this.json()}\n\n`));
  }
}
