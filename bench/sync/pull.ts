import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RawDb } from './server.js';
import { median, monoMs, summarise, type Summary } from './stats.js';

// Part 1: pull throughput. A backlog of changes written through the API (POST /v1/sync/push, 500
// creates a batch, one user), then drained from no cursor with GET /v1/sync/pull pages, timed —
// against the ceiling: the same documents read by a raw client on the same engine in keyset pages.

/** A note as an app would keep it: ~250 bytes of JSON. */
export function noteData(i: number): Record<string, unknown> {
  return {
    title: `Note ${i}`,
    body: `Offline note number ${i}: bought milk, called the plumber, the meeting moved to Thursday at ten.`,
    done: i % 3 === 0,
    priority: i % 5,
    tags: i % 2 ? ['home', 'errands'] : ['work'],
    due: new Date(Date.UTC(2025, 0, 1 + (i % 365))).toISOString(),
  };
}

interface PushResult {
  results: { id: string; status: string; version?: number | null; code?: string; detail?: string }[];
}

/**
 * Refusals a client is told to retry (429, 503 with Retry-After), counted by the benchmark: a real
 * app retries them, so the benchmark does too (bounded), and reports how often it had to.
 */
export const retried = { count: 0, waitedMs: 0, reasons: {} as Record<string, number> };

async function fetchRetrying(what: string, url: string, init: RequestInit): Promise<{ status: number; text: string }> {
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
    const text = await r.text();
    if ((r.status === 429 || r.status === 503) && attempt < 6) {
      const waitMs = Math.min(5, Number(r.headers.get('retry-after')) || 1) * 1000;
      const reason = `${what} ${r.status} ${/"detail":"([^"]{0,80})/.exec(text)?.[1] ?? ''}`.trim();
      retried.count++;
      retried.waitedMs += waitMs;
      retried.reasons[reason] = (retried.reasons[reason] ?? 0) + 1;
      await sleep(waitMs);
      continue;
    }
    return { status: r.status, text };
  }
}

/** POST /v1/sync/push; throws unless every mutation was applied. */
export async function pushBatch(url: string, token: string, mutations: unknown[]): Promise<PushResult> {
  const r = await fetchRetrying('push', `${url}/v1/sync/push`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ mutations }),
  });
  if (r.status !== 200) throw new Error(`POST /v1/sync/push: ${r.status} ${r.text.slice(0, 500)}`);
  const body = JSON.parse(r.text) as PushResult;
  const bad = body.results.find((x) => x.status !== 'applied');
  if (bad || body.results.length !== mutations.length) throw new Error(`POST /v1/sync/push: not applied: ${JSON.stringify(bad ?? body.results.length)}`);
  return body;
}

export interface Seeded {
  changes: number;
  batches: number;
  seconds: number;
  /** Median ms per batch while seeding, Retry-After waits left out (a side figure). */
  batchMs: number;
  docIds: string[];
}

/** `n` creates in `collection`, `batch` per push, sequentially. */
export async function seedBacklog(url: string, token: string, collection: string, n: number, batch: number): Promise<Seeded> {
  const t0 = monoMs();
  const times: number[] = [];
  const docIds: string[] = [];
  for (let i = 0; i < n; i += batch) {
    const mutations = [];
    for (let k = i; k < Math.min(n, i + batch); k++) {
      const docId = randomUUID();
      docIds.push(docId);
      mutations.push({ id: `seed-${k}`, collection, op: 'create', docId, data: noteData(k) });
    }
    const a = monoMs();
    const waited = retried.waitedMs;
    await pushBatch(url, token, mutations);
    // Without the Retry-After waits of refused attempts (counted apart).
    times.push(monoMs() - a - (retried.waitedMs - waited));
  }
  return { changes: n, batches: times.length, seconds: (monoMs() - t0) / 1000, batchMs: median(times), docIds };
}

export interface Drain {
  changes: number;
  pages: number;
  seconds: number;
  rate: number;
  /** Response bytes (JSON) over the drain. */
  bytes: number;
  pageMs: Summary;
}

/** Drains `collection` from no cursor in pages of `limit` (bounded by `maxPages`); checks each change came exactly once. */
export async function drainLevee(url: string, token: string, collection: string, limit: number, expected: number): Promise<Drain> {
  const maxPages = Math.ceil(expected / limit) + 5;
  const ids: string[] = [];
  const pageMs: number[] = [];
  let bytes = 0;
  let cursor: string | undefined;
  const t0 = monoMs();
  for (let page = 0; ; page++) {
    if (page >= maxPages) throw new Error(`pull: still hasMore after ${maxPages} pages of ${limit}`);
    const q = new URLSearchParams({ collections: collection, limit: String(limit), ...(cursor ? { cursor } : {}) });
    const a = monoMs();
    const r = await fetchRetrying('pull', `${url}/v1/sync/pull?${q}`, { headers: { authorization: `Bearer ${token}` } });
    const text = r.text;
    if (r.status !== 200) throw new Error(`GET /v1/sync/pull: ${r.status} ${text.slice(0, 500)}`);
    const body = JSON.parse(text) as { changes: { id: string }[]; cursor: string; hasMore: boolean };
    pageMs.push(monoMs() - a);
    bytes += text.length;
    for (const c of body.changes) ids.push(c.id);
    cursor = body.cursor;
    if (!body.hasMore) break;
  }
  const seconds = (monoMs() - t0) / 1000;
  if (ids.length !== expected || new Set(ids).size !== expected) throw new Error(`pull: drained ${ids.length} changes (${new Set(ids).size} distinct) instead of ${expected}`);
  return { changes: ids.length, pages: pageMs.length, seconds, rate: ids.length / seconds, bytes, pageMs: summarise(pageMs) };
}

export const RAW_PULL_SQL = 'SELECT id, data, version, owner_id, updated_at FROM documents WHERE collection = $1 AND id > $2 ORDER BY id LIMIT $3';

/** The ceiling: the same documents read by a raw client in keyset pages of `limit`. */
export async function drainRaw(raw: RawDb, collection: string, limit: number, expected: number): Promise<Drain> {
  const maxPages = Math.ceil(expected / limit) + 5;
  const pageMs: number[] = [];
  let n = 0;
  let last = '00000000-0000-0000-0000-000000000000';
  const t0 = monoMs();
  for (let page = 0; ; page++) {
    if (page >= maxPages) throw new Error(`raw pull: more than ${maxPages} pages of ${limit}`);
    const a = monoMs();
    const { rows } = await raw.query<{ id: string }>(RAW_PULL_SQL, [collection, last, limit]);
    pageMs.push(monoMs() - a);
    n += rows.length;
    if (rows.length < limit) break;
    last = rows.at(-1)!.id;
  }
  const seconds = (monoMs() - t0) / 1000;
  if (n !== expected) throw new Error(`raw pull: read ${n} documents instead of ${expected}`);
  return { changes: n, pages: pageMs.length, seconds, rate: n / seconds, bytes: NaN, pageMs: summarise(pageMs) };
}

export interface PullVariant {
  limit: number;
  levee: Drain[];
  raw: Drain[];
  /** Medians over the repeats. */
  leveeRate: number;
  rawRate: number;
  /** leveeRate ÷ rawRate. */
  ratio: number;
}

export interface PullResult {
  collection: string;
  seeded: Omit<Seeded, 'docIds'>;
  variants: PullVariant[];
}

export function pullVariant(limit: number, levee: Drain[], raw: Drain[]): PullVariant {
  const leveeRate = median(levee.map((d) => d.rate));
  const rawRate = median(raw.map((d) => d.rate));
  return { limit, levee, raw, leveeRate, rawRate, ratio: leveeRate / rawRate };
}
