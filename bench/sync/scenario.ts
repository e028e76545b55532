import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { summariseProfile, type ProfileSummary } from '../profile.js';
import { cpuSecondsOf, cpuSecondsOfCommand, waitForQuiet, type Child } from '../support.js';
import { runFanOut, type FanOutOptions, type FanOutResult } from './fanout.js';
import { drainLevee, drainRaw, pullVariant, retried, seedBacklog, type Drain, type PullResult } from './pull.js';
import { measureLeveePush, measureRawPush, pushVariant, type PushPlan, type PushVariant } from './push.js';
import { median } from './stats.js';
import { log, prepareStorage, signIn, startApi, type EngineName, type RawDb } from './server.js';

// One engine's run of the sync benchmark: storage, then the API process for parts 1 (pull) and 2
// (push) with their ceilings, then a fresh API process for part 3 (realtime fan-out and memory per
// idle connection), so that its memory baseline is not blurred by the garbage of parts 1 and 2.

export interface RunOptions {
  backlog: number;
  seedBatch: number;
  pullLimits: number[];
  pullRepeats: number;
  push: PushPlan;
  redisUrl: string;
  serverEnv: Record<string, string>;
  quietWait: number;
  fanOut: FanOutOptions | undefined;
  /** A directory for V8 CPU profiles of the API processes (BENCH_SYNC_PROFILE=1); undefined: none. */
  profileDir?: string | undefined;
}

export interface LoadNote {
  what: string;
  busyCores: number;
  quiet: boolean;
}

export interface EngineResult {
  engine: EngineName;
  description: string;
  pull?: PullResult & {
    /** Levee process and PostgreSQL CPU over the measured Levee drains, µs per change. */
    leveeCpuUsPerChange: Record<number, number>;
    postgresCpuUsPerChange: Record<number, number>;
  };
  push?: { variants: PushVariant[]; plan: PushPlan; ceilingInterleaved: boolean };
  /** With BENCH_SYNC_PROFILE=1: the API process's CPU over the pull drains and over the push batches. */
  profiles?: { pull?: ProfileSummary; push?: ProfileSummary; file: string };
  fanOut?: FanOutResult;
  /** Requests refused with 429/503 and retried after their Retry-After, per part (figures include the waits). */
  retries: Record<string, { count: number; waitedMs: number; reasons: Record<string, number> }>;
  /** Parts that failed, with the error (the others still ran). */
  errors: { part: string; error: string }[];
  machineLoad: LoadNote[];
  seconds: number;
}

async function quiet(o: RunOptions, notes: LoadNote[], what: string) {
  if (o.quietWait <= 0) return;
  const q = await waitForQuiet(o.quietWait);
  notes.push({ what, busyCores: q.busyCores, quiet: q.quiet });
  if (!q.quiet) log(`note: the machine is busy (${q.busyCores.toFixed(2)} cores used by other processes) — ${what} runs anyway`);
}

export async function runEngine(engine: EngineName, o: RunOptions, cleanups: (() => Promise<void>)[]): Promise<EngineResult> {
  const t0 = performance.now();
  const ownCleanups: (() => Promise<void>)[] = [];
  const children: Child[] = [];
  const stopChildren = async () => {
    for (const c of children.splice(0).reverse()) await c.stop();
  };
  cleanups.push(async () => {
    await stopChildren();
    for (const c of ownCleanups.splice(0).reverse()) await c();
  });
  const result: EngineResult = {
    engine,
    description: engine === 'embedded' ? 'levee start --roles api on PGlite (in-process database)' : 'levee start --roles api on PostgreSQL, Redis for rate limits and the realtime signal',
    retries: {},
    errors: [],
    machineLoad: [],
    seconds: 0,
  };
  // Retries counted per part: a snapshot of the running totals before the part, the difference after.
  let mark = { count: 0, waitedMs: 0, reasons: {} as Record<string, number> };
  const startPart = () => (mark = { count: retried.count, waitedMs: retried.waitedMs, reasons: { ...retried.reasons } });
  const endPart = (part: string) => {
    if (retried.count === mark.count) return;
    const reasons: Record<string, number> = {};
    for (const [k, v] of Object.entries(retried.reasons)) if (v > (mark.reasons[k] ?? 0)) reasons[k] = v - (mark.reasons[k] ?? 0);
    result.retries[part] = { count: retried.count - mark.count, waitedMs: retried.waitedMs - mark.waitedMs, reasons };
    log(`${engine}: ${part}: ${retried.count - mark.count} requests refused and retried after their Retry-After: ${JSON.stringify(reasons)}`);
  };
  const fail = (part: string, e: unknown) => {
    log(`${engine}: ${part} failed: ${String((e as Error)?.stack ?? e)}`);
    result.errors.push({ part, error: String((e as Error)?.stack ?? e) });
  };
  let raw: RawDb | undefined;
  try {
    log(`${engine}: preparing storage…`);
    const storage = await prepareStorage(engine, o, ownCleanups);
    const api = await startApi(storage, `levee api (${engine})`, o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`] : []);
    const monoUs = () => Number(process.hrtime.bigint() / 1000n);
    const windows: { pull?: [number, number]; push?: [number, number] } = {};
    children.push(api);
    const user = await signIn(api.url);
    if (engine === 'postgres') raw = await storage.raw();

    // ---- part 1: pull ----------------------------------------------------------------------------
    let rawPull: Drain[][] = o.pullLimits.map(() => []);
    let pullOk = false;
    const leveePull: Drain[][] = o.pullLimits.map(() => []);
    const cpu = o.pullLimits.map(() => ({ levee: 0, postgres: 0, changes: 0 }));
    let seededInfo: PullResult['seeded'] | undefined;
    try {
      log(`${engine}: seeding a backlog of ${o.backlog.toLocaleString('en-US')} changes through POST /v1/sync/push (${o.seedBatch} creates a batch)…`);
      startPart();
      const { docIds: _ids, ...seeded } = await seedBacklog(api.url, user.token, 'notes', o.backlog, o.seedBatch);
      endPart('seed');
      seededInfo = seeded;
      log(`${engine}: seeded in ${seeded.seconds.toFixed(1)} s (median ${Math.round(seeded.batchMs)} ms per ${o.seedBatch}-create batch)`);
      await quiet(o, result.machineLoad, `${engine} pull`);
      startPart();
      const w0 = monoUs();
      // Warm-up: one drain of each kind (JIT, plans, caches); then the repeats, interleaved.
      for (const limit of o.pullLimits) {
        await drainLevee(api.url, user.token, 'notes', limit, o.backlog);
        if (raw) await drainRaw(raw, 'notes', limit, o.backlog);
      }
      for (let rep = 0; rep < o.pullRepeats; rep++) {
        for (const [k, limit] of o.pullLimits.entries()) {
          const before = { levee: cpuSecondsOf(api.pid), postgres: cpuSecondsOfCommand('postgres') };
          const d = await drainLevee(api.url, user.token, 'notes', limit, o.backlog);
          cpu[k]!.levee += cpuSecondsOf(api.pid) - before.levee;
          cpu[k]!.postgres += cpuSecondsOfCommand('postgres') - before.postgres;
          cpu[k]!.changes += d.changes;
          leveePull[k]!.push(d);
          if (raw) rawPull[k]!.push(await drainRaw(raw, 'notes', limit, o.backlog));
        }
      }
      pullOk = true;
      windows.pull = [w0, monoUs()];
      endPart('pull');
      log(`${engine}: pull ${o.pullLimits.map((l, k) => `limit ${l}: ${Math.round(median(leveePull[k]!.map((d) => d.rate)))} changes/s${raw ? ` (raw ${Math.round(median(rawPull[k]!.map((d) => d.rate)))})` : ''}`).join(', ')}`);
    } catch (e) {
      fail('pull', e);
    }

    // ---- part 2: push ----------------------------------------------------------------------------
    let pushTimes: Awaited<ReturnType<typeof measureLeveePush>> | undefined;
    try {
      await quiet(o, result.machineLoad, `${engine} push`);
      log(`${engine}: push: ${o.push.warmup} + ${o.push.batches} batches of ${o.push.size} creates, then as many of updates${raw ? ', each followed by the raw transaction' : ''}…`);
      startPart();
      const w0 = monoUs();
      pushTimes = await measureLeveePush(api.url, user.token, user.userId, o.push, raw);
      windows.push = [w0, monoUs()];
      endPart('push');
    } catch (e) {
      fail('push', e);
    }
    await stopChildren();
    if (o.profileDir) {
      // Written when the process exits; the windows keep start-up, seeding and shutdown out.
      const file = readdirSync(o.profileDir).filter((f) => f.includes(`.${api.pid}.0.`) && f.endsWith('.cpuprofile')).sort().at(-1);
      if (file) {
        const path = join(o.profileDir, file);
        const of = (w: [number, number] | undefined) => (w ? summariseProfile(path, { fromUs: w[0], toUs: w[1] }) : undefined);
        result.profiles = { file: path, ...(windows.pull ? { pull: of(windows.pull) } : {}), ...(windows.push ? { push: of(windows.push) } : {}) };
      }
    }

    // Embedded: PGlite is one process's; the ceilings run now that Levee has let go of it.
    if (engine === 'embedded') {
      let local: RawDb | undefined;
      try {
        local = await storage.raw();
        if (pullOk) {
          rawPull = o.pullLimits.map(() => []);
          for (const limit of o.pullLimits) await drainRaw(local, 'notes', limit, o.backlog);
          for (let rep = 0; rep < o.pullRepeats; rep++) for (const [k, limit] of o.pullLimits.entries()) rawPull[k]!.push(await drainRaw(local, 'notes', limit, o.backlog));
        }
        if (pushTimes) Object.assign(pushTimes, await measureRawPush(local, user.userId, o.push));
      } catch (e) {
        fail('embedded ceilings', e);
      } finally {
        await local?.close().catch(() => {});
      }
    }
    if (pullOk && seededInfo) {
      result.pull = {
        collection: 'notes',
        seeded: seededInfo,
        variants: o.pullLimits.map((limit, k) => pullVariant(limit, leveePull[k]!, rawPull[k]!)),
        leveeCpuUsPerChange: Object.fromEntries(o.pullLimits.map((l, k) => [l, (cpu[k]!.levee / cpu[k]!.changes) * 1e6])),
        postgresCpuUsPerChange: Object.fromEntries(o.pullLimits.map((l, k) => [l, engine === 'postgres' ? (cpu[k]!.postgres / cpu[k]!.changes) * 1e6 : NaN])),
      };
    }
    if (pushTimes) {
      result.push = {
        plan: o.push,
        ceilingInterleaved: engine === 'postgres',
        variants: [
          pushVariant('create', o.push.size, pushTimes.create, pushTimes.rawCreate),
          pushVariant('update', o.push.size, pushTimes.update, pushTimes.rawUpdate),
          ...(pushTimes.spaced.length ? [pushVariant('create', o.push.size, pushTimes.spaced, pushTimes.rawCreate, o.push.spacedMs)] : []),
        ],
      };
      for (const v of result.push.variants) log(`${engine}: push ${v.size} ${v.op}s${v.spacedMs ? ` ${v.spacedMs} ms apart` : ''}: p50 ${v.levee.p50.toFixed(1)} ms, p99 ${v.levee.p99.toFixed(1)} ms; raw p50 ${v.raw.p50.toFixed(1)} ms`);
    }

    // ---- part 3: realtime fan-out -------------------------------------------------------------------
    if (o.fanOut) {
      try {
        await sleep(500);
        await quiet(o, result.machineLoad, `${engine} fan-out`);
        result.fanOut = await runFanOut(storage, engine, o.fanOut, children);
      } catch (e) {
        fail('fan-out', e);
      } finally {
        await stopChildren();
      }
    }
  } catch (e) {
    fail('setup', e);
  } finally {
    await raw?.close().catch(() => {});
    await stopChildren();
    for (const c of ownCleanups.splice(0).reverse()) await c().catch((e: unknown) => console.error(`${engine}: cleanup failed:`, e));
  }
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}
