import type { Logger } from 'pino';
import { SEQ_MAX, type Position } from '../sync/cursor.js';
import type { ChangePage } from '../sync/store.js';
import { RealtimeEvent } from './event.js';
import { positionAfter, toChange } from '../sync/service.js';

// The tailer: one reader of the change log per API process, whatever the number of subscribers.
// It follows the log from the head it finds at start, in position order, and hands every change to
// the hub. It reads on a poke (a write somewhere) and on an idle poll, which covers a lost poke.
// Reads are strictly one at a time: a poke during a read just asks for another read after it.
//
// A poke can arrive before the write is visible: an Idempotency-Key write commits after its route
// returns, and an older transaction still running holds the horizon (see migrations/0003_sync.sql)
// below a change already committed. So after a poke the log is read again a few times shortly after.

const PAGE = 1000;
const RETRY_AFTER_POKE_MS = [10, 30, 60];

export interface TailerOptions {
  /** Up to `limit` changes after `from`, every collection, no owner filter (changeLog.pull). */
  read(from: Position, limit: number): Promise<ChangePage>;
  encode(p: Position): string;
  /** Changes in position order, never twice. */
  emit(events: RealtimeEvent[]): void;
  pollMs: number;
  logger: Logger;
  /** Seconds from a change's write to the tailer reading it. */
  onLag?: (seconds: number) => void;
}

export interface Tailer {
  /** Reads the head: changes from then on are emitted. */
  start(): Promise<void>;
  /** Where the tailer is: every change at or before it has been emitted. */
  position(): Position;
  /** Something was written: read soon. */
  poke(): void;
  stop(): Promise<void>;
}

export function createTailer(opts: TailerOptions): Tailer {
  const log = opts.logger.child({ component: 'realtime-tailer' });
  let pos: Position = { tx: 0, seq: 0 };
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let pollTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;

  async function readUntilCaughtUp(): Promise<void> {
    for (;;) {
      const page = await opts.read(pos, PAGE);
      const full = page.rows.length === PAGE;
      if (page.rows.length > 0) {
        const now = Date.now();
        const events = page.rows.map((r) => {
          const p = { tx: r.tx, seq: r.seq };
          return new RealtimeEvent(p, opts.encode(p), toChange(r));
        });
        opts.onLag?.(Math.max(0, now - page.rows.at(-1)!.changed_at.getTime()) / 1000);
        pos = positionAfter(page, pos, full);
        opts.emit(events);
      } else {
        pos = positionAfter(page, pos, false);
      }
      if (!full || stopped) return;
    }
  }

  function wake(): void {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await readUntilCaughtUp();
          failures = 0;
        } catch (err) {
          // The database is down or slow: the poll timer tries again; no change is lost, the
          // position only moves after a successful read.
          if (failures++ % 30 === 0) log.warn({ err: (err as Error).message }, 'realtime: reading the change log failed');
        }
      } while (again && !stopped);
      running = undefined;
      armPoll();
    })();
  }

  function armPoll(): void {
    clearTimeout(pollTimer);
    if (!stopped) pollTimer = setTimeout(wake, opts.pollMs).unref();
  }

  /** Re-reads at 10, 40 and 100 ms after the last poke (each new poke restarts the series). */
  function armRetries(i = 0): void {
    clearTimeout(retryTimer);
    if (stopped || i >= RETRY_AFTER_POKE_MS.length) return;
    retryTimer = setTimeout(() => {
      wake();
      armRetries(i + 1);
    }, RETRY_AFTER_POKE_MS[i]).unref();
  }

  return {
    async start() {
      // Nothing is after the largest position: the page is empty and carries the horizon.
      const head = await opts.read({ tx: Number.MAX_SAFE_INTEGER, seq: SEQ_MAX }, 1);
      pos = { tx: head.horizon - 1, seq: SEQ_MAX };
      armPoll();
    },
    position: () => pos,
    poke() {
      wake();
      armRetries();
    },
    async stop() {
      stopped = true;
      clearTimeout(pollTimer);
      clearTimeout(retryTimer);
      await running;
    },
  };
}
