// Messages between the sync benchmark's orchestrator (fanout.ts) and its WebSocket client
// processes (clients.ts), over the fork IPC channel.

export interface StartClients {
  type: 'start';
  /** ws://…/v1/realtime?access_token=… */
  url: string;
  count: number;
  /** Handshakes in flight at once in this process. */
  concurrency: number;
  /** Sent on open; the connection counts as ready when the `subscribed` answer arrives. */
  subscribe: Record<string, unknown>;
  /** Give up connecting after this long (the process reports what it has). */
  timeoutMs: number;
  /** Attempts per connection (refusals with Retry-After and errors). */
  maxAttempts: number;
}

/** Arm the receipt clock: the next message carrying `marker` is timed on every connection. */
export interface Arm {
  type: 'arm';
  marker: string;
}

export type ToClients = StartClients | Arm | { type: 'collect' } | { type: 'status' } | { type: 'close' };

export interface Connected {
  type: 'connected';
  pid: number;
  /** Subscribed connections (open and answered `subscribed`). */
  subscribed: number;
  failed: number;
  seconds: number;
  /** Handshakes refused, by HTTP status (the clients waited Retry-After and tried again). */
  refused: Record<string, number>;
  /** Connection errors before open, by message. */
  errors: Record<string, number>;
  /** Refusals whose Retry-After was honoured, and the seconds waited over all of them. */
  retryAfterWaits: number;
  retryAfterSeconds: number;
  /** The soft limit of open files of this process. */
  openFileLimit: number;
}

export interface Progress {
  type: 'progress';
  subscribed: number;
  inFlight: number;
  refusedTotal: number;
}

/** Every subscribed connection of this process has received the armed marker. */
export interface AllReceived {
  type: 'all';
  marker: string;
}

export interface Receipts {
  type: 'receipts';
  marker: string;
  /**
   * Per subscribed connection: the CLOCK_MONOTONIC ms (process.hrtime, one clock for every
   * process of the machine) at which the message carrying the marker was handed to this
   * process's JavaScript; 0 when it has not arrived.
   */
  times: number[];
}

export interface Status {
  type: 'status';
  open: number;
  /** Connections closed after they were subscribed, by close code. */
  closed: Record<string, number>;
  /** Messages received in total (control and change events). */
  messages: number;
}

export type FromClients = Connected | Progress | AllReceived | Receipts | Status | { type: 'armed'; marker: string } | { type: 'error'; message: string };
