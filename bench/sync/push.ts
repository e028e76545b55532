import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { noteData, pushBatch } from './pull.js';
import type { RawDb } from './server.js';
import { monoMs, summarise, type Summary } from './stats.js';

// Part 2: latency of one offline push batch (100 mutations, one transaction in Levee), creates and
// then updates of those documents with their baseVersion — against the ceiling: the same 100
// INSERTs (UPDATEs) in one transaction through a raw client on the same engine.

/** Owner-only, like `notes`, but apart from the pull's backlog. */
export const PUSH_COLLECTION = 'drafts';

export interface PushVariant {
  op: 'create' | 'update';
  size: number;
  /** Set for the variant whose batches are this many ms apart (the others are back to back). */
  spacedMs?: number;
  /** Round-trip ms of each measured Levee batch (after the warm-up). */
  levee: Summary;
  /** ms of each raw transaction (BEGIN, `size` statements, COMMIT). */
  raw: Summary;
  /** raw p50 ÷ Levee p50: the share of the ceiling's speed Levee reaches. */
  ratio: number;
  /** ms per mutation at the Levee p50. */
  msPerMutation: number;
}

/** A batch of `size` creates (fresh document ids) or of updates of `docs` with their version. */
function mutations(op: 'create' | 'update', tag: string, docs: { id: string; version: number }[], base: number) {
  return docs.map((d, k) =>
    op === 'create'
      ? { id: `${tag}-${base + k}`, collection: PUSH_COLLECTION, op, docId: d.id, data: noteData(base + k) }
      : { id: `${tag}-${base + k}`, collection: PUSH_COLLECTION, op, docId: d.id, baseVersion: d.version, data: { done: true, priority: 9 } },
  );
}

async function rawBatch(raw: RawDb, op: 'create' | 'update', ownerId: string, docs: { id: string; version: number }[], base: number): Promise<number> {
  const a = monoMs();
  await raw.query('BEGIN');
  try {
    for (let k = 0; k < docs.length; k++) {
      const d = docs[k]!;
      if (op === 'create') {
        await raw.query("INSERT INTO documents (collection, id, owner_id, data) VALUES ($4, $1, $2, $3)", [d.id, ownerId, JSON.stringify(noteData(base + k)), PUSH_COLLECTION]);
      } else {
        const r = await raw.query("UPDATE documents SET data = data || $3::jsonb, version = version + 1, updated_at = now() WHERE collection = $4 AND id = $1 AND version = $2", [d.id, d.version, JSON.stringify({ done: true, priority: 9 }), PUSH_COLLECTION]);
        if (r.rowCount !== 1) throw new Error(`raw update of ${d.id} at version ${d.version} changed ${r.rowCount} rows`);
      }
    }
    await raw.query('COMMIT');
  } catch (e) {
    await raw.query('ROLLBACK').catch(() => {});
    throw e;
  }
  return monoMs() - a;
}

export interface PushPlan {
  size: number;
  warmup: number;
  batches: number;
  /**
   * A last pass of creates with this many ms between batches (0: none): what a batch costs when
   * the work a write sets off in the server (the realtime tailer's reads) is over before the next.
   */
  spacedMs: number;
}

const fresh = (n: number) => Array.from({ length: n }, () => ({ id: randomUUID(), version: 1 }));

/**
 * Levee's batches, timed one after the other. `rawDb`, when given, runs a raw transaction after
 * each Levee batch (interleaved, so both see the same machine); otherwise the ceiling is measured
 * later with `measureRawPush`. Returns Levee's times per op and the documents written, for later.
 */
export async function measureLeveePush(url: string, token: string, userId: string, p: PushPlan, rawDb?: RawDb) {
  const out = { create: [] as number[], update: [] as number[], spaced: [] as number[], rawCreate: [] as number[], rawUpdate: [] as number[] };
  const total = p.warmup + p.batches;
  const leveeDocs: { id: string; version: number }[][] = [];
  const rawDocs: { id: string; version: number }[][] = [];
  for (const op of ['create', 'update'] as const) {
    for (let b = 0; b < total; b++) {
      if (op === 'create') {
        leveeDocs.push(fresh(p.size));
        rawDocs.push(fresh(p.size));
      }
      const docs = leveeDocs[b]!;
      const a = monoMs();
      const res = await pushBatch(url, token, mutations(op, `bench-${op}`, docs, b * p.size));
      const ms = monoMs() - a;
      if (op === 'update') res.results.forEach((r, k) => (docs[k]!.version = r.version!));
      if (b >= p.warmup) out[op].push(ms);
      if (rawDb) {
        const rawMs = await rawBatch(rawDb, op, userId, rawDocs[b]!, b * p.size);
        if (op === 'update') rawDocs[b]!.forEach((d) => d.version++);
        if (b >= p.warmup) out[op === 'create' ? 'rawCreate' : 'rawUpdate'].push(rawMs);
      }
    }
  }
  if (p.spacedMs > 0) {
    for (let b = 0; b < p.batches; b++) {
      await sleep(p.spacedMs);
      const a = monoMs();
      await pushBatch(url, token, mutations('create', 'bench-spaced', fresh(p.size), b * p.size));
      out.spaced.push(monoMs() - a);
    }
  }
  return out;
}

/** The ceiling on its own (embedded: after Levee stopped), the same plan. */
export async function measureRawPush(rawDb: RawDb, userId: string, p: PushPlan) {
  const out = { rawCreate: [] as number[], rawUpdate: [] as number[] };
  const total = p.warmup + p.batches;
  const docs = Array.from({ length: total }, () => fresh(p.size));
  for (const op of ['create', 'update'] as const) {
    for (let b = 0; b < total; b++) {
      const ms = await rawBatch(rawDb, op, userId, docs[b]!, b * p.size);
      if (op === 'update') docs[b]!.forEach((d) => d.version++);
      if (b >= p.warmup) out[op === 'create' ? 'rawCreate' : 'rawUpdate'].push(ms);
    }
  }
  return out;
}

export function pushVariant(op: 'create' | 'update', size: number, levee: number[], raw: number[], spacedMs?: number): PushVariant {
  const l = summarise(levee);
  const r = summarise(raw);
  return { op, size, ...(spacedMs ? { spacedMs } : {}), levee: l, raw: r, ratio: r.p50 / l.p50, msPerMutation: l.p50 / size };
}
