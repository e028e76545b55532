import { LeveeError } from '../lib/errors.js';
import { withOwnBudget } from '../protection/deadline.js';
import type { Position } from '../sync/cursor.js';
import { toChange } from '../sync/service.js';
import type { ChangePage, PullScope } from '../sync/store.js';
import { RealtimeEvent } from './event.js';
import { positionAfter } from '../sync/service.js';

// Catch-up reads: what a resuming client missed, read from the change log page by page. After a
// restart thousands of clients resume at once, mostly from a handful of recent positions, so:
// - a bounded number of reads run at once and the rest wait in a bounded queue (past it the
//   client is told to come back later) — the API's own requests keep the database pool;
// - clients asking for the same page (same scopes, same position) share one read and its
//   serialized events — while it runs and for a second after (clients admitted a few ms apart
//   resume from the same cursor too) — so a storm of identical resumes costs a few reads, not
//   thousands. A page read a moment ago is still a correct snapshot: it ends at its own horizon,
//   and the caller reads on from there until it reaches live delivery.

export interface CatchUpPage {
  events: RealtimeEvent[];
  /** Where the next page starts; past the last event (the horizon) once caught up. */
  next: Position;
  /** More may follow. */
  full: boolean;
}

export interface CatchUpReaderOptions {
  /** sync.readPage: a page of the change log, cursor_expired past pruned tombstones. */
  readPage(scopes: PullScope[], from: Position, limit: number): Promise<ChangePage>;
  encode(p: Position): string;
  concurrency: number;
  queueMax: number;
  pageSize: number;
  /** Budget of one page read (catch-up runs outside any request's deadline). */
  budgetMs: number;
}

export const scopesKey = (scopes: PullScope[]): string =>
  scopes
    .map((s) => `${s.collection}:${s.ownerId ?? '*'}`)
    .sort()
    .join(',');

/** How long a page read stays shared after it finished, and how many are kept. */
const SHARED_MS = 1_000;
const SHARED_MAX = 256;

export function createCatchUpReader(opts: CatchUpReaderOptions) {
  let running = 0;
  const waiting: (() => void)[] = [];
  const shared = new Map<string, { page: Promise<CatchUpPage>; until: number }>();

  const release = () => {
    running--;
    const next = waiting.shift();
    if (next) {
      running++;
      next();
    }
  };

  async function readOne(scopes: PullScope[], from: Position): Promise<CatchUpPage> {
    if (running >= opts.concurrency) {
      if (waiting.length >= opts.queueMax) {
        throw new LeveeError('overloaded', 'Too many clients are catching up at once: reconnect in a few seconds and resume from your last position', { retryAfter: 2 });
      }
      await new Promise<void>((ok) => waiting.push(ok));
    } else {
      running++;
    }
    try {
      const page = await withOwnBudget(opts.budgetMs, () => opts.readPage(scopes, from, opts.pageSize));
      const full = page.rows.length === opts.pageSize;
      const events = page.rows.map((r) => {
        const p = { tx: r.tx, seq: r.seq };
        return new RealtimeEvent(p, opts.encode(p), toChange(r));
      });
      return { events, full, next: positionAfter(page, from, full) };
    } finally {
      release();
    }
  }

  return {
    /** One page after `from`, shared with every caller asking for the same page meanwhile. */
    read(scopes: PullScope[], from: Position): Promise<CatchUpPage> {
      const key = `${scopesKey(scopes)}@${from.tx}.${from.seq}`;
      const now = performance.now();
      const hit = shared.get(key);
      if (hit && hit.until > now) return hit.page;
      if (shared.size >= SHARED_MAX) {
        for (const [k, v] of shared) if (v.until <= now) shared.delete(k);
        // Still full: the oldest goes (Map keeps insertion order).
        if (shared.size >= SHARED_MAX) shared.delete(shared.keys().next().value!);
      }
      const entry = { page: readOne(scopes, from), until: Infinity };
      shared.set(key, entry);
      entry.page.then(
        () => (entry.until = performance.now() + SHARED_MS),
        () => shared.get(key) === entry && shared.delete(key), // a failed read is not shared after the fact
      );
      return entry.page;
    },
    stats: () => ({ running, waiting: waiting.length }),
  };
}

export type CatchUpReader = ReturnType<typeof createCatchUpReader>;
