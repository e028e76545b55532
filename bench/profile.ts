import { readFileSync } from 'node:fs';

// Summarises a V8 .cpuprofile (node --cpu-prof): self time by component and the hottest functions,
// counting only samples inside a [from, to] window of CLOCK_MONOTONIC microseconds (the clock both
// V8's profile timestamps and process.hrtime use on Linux), so start-up and shutdown are left out.

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  windowMs: number;
  sampledMs: number;
  /** Share of sampled time per component, largest first. */
  components: { name: string; ms: number; share: number }[];
  top: { fn: string; where: string; ms: number; share: number }[];
}

const IO_CALLS = new Set(['writev', 'writeBuffer', 'writeUtf8String', 'writeLatin1String', 'writeString', 'fstat', 'read', 'open', 'close', 'fsync', 'fdatasync', 'ftruncate', 'lstat', 'stat', 'readFileUtf8', 'pread', 'pwrite']);

function byUrl(url: string): string {
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (mod === '@electric-sql/pglite') return 'PGlite: JS glue (protocol, parsing)';
  if (mod && ['fastify', 'find-my-way', 'avvio', 'light-my-request', 'fast-json-stringify', '@fastify/ajv-compiler', 'fast-querystring', 'fast-uri', 'ajv', 'secure-json-parse', 'fast-decode-uri-component', 'toad-cache', 'process-warning', 'rfdc', 'abstract-logging', '@fastify/error', 'json-schema-ref-resolver'].includes(mod)) return 'Fastify (routing, validation, serialisation)';
  if (mod?.startsWith('@fastify/')) return 'Fastify (routing, validation, serialisation)';
  if (mod?.startsWith('@pinojs/') || mod === 'pino' || mod === 'pino-std-serializers' || mod === 'sonic-boom' || mod === 'fast-redact' || mod === 'thread-stream') return 'logging (pino)';
  if (mod === 'prom-client' || mod === 'tdigest' || mod === 'bintrees') return 'metrics (prom-client)';
  if (mod === 'jose') return 'JWT (jose)';
  if (mod === 'pg' || mod === 'pg-protocol' || mod === 'pg-pool' || mod === 'pg-types' || mod === 'postgres-date' || mod === 'pg-connection-string' || mod === 'postgres-array' || mod === 'pgpass') return 'pg driver';
  if (mod === 'uuid') return 'ids (uuid)';
  if (mod === 'tsx' || mod === 'esbuild' || mod === 'get-tsconfig') return 'tsx loader';
  if (mod) return `other: ${mod}`;
  if (url.includes('/src/')) return 'Levee code (src/)';
  if (url.startsWith('node:')) return 'Node core (http, net, streams, timers)';
  return 'other';
}

/**
 * The component a sample belongs to. Native functions (no URL: JSON.parse, writev, fstat…) count
 * for the nearest JavaScript caller's component, except system calls, which get their own rows
 * (socket writes on loopback also pay for the receiver's TCP processing).
 */
function component(node: ProfileNode, parentOf: Map<number, ProfileNode>): string {
  const { functionName: fn, url } = node.callFrame;
  if (fn === '(garbage collector)') return 'garbage collection';
  if (fn === '(idle)') return 'idle (waiting for I/O)';
  if (fn === '(program)') return 'V8/native (unattributed)';
  if (url.startsWith('wasm://') || fn.startsWith('wasm-function')) return 'PGlite: PostgreSQL in WASM';
  if (url !== '') return byUrl(url);
  let up = parentOf.get(node.id);
  for (let i = 0; up && up.callFrame.url === '' && i < 50; i++) up = parentOf.get(up.id);
  const callerUrl = up?.callFrame.url ?? '';
  if (IO_CALLS.has(fn)) {
    if (/^node:(fs|internal\/fs)/.test(callerUrl)) return 'kernel: file I/O (data directory)';
    return 'kernel: socket writes (loopback TCP)';
  }
  if (fn === 'randomFillSync' || fn === 'randomBytes') return `${byUrl(callerUrl)}`;
  return callerUrl ? byUrl(callerUrl) : 'V8/native (unattributed)';
}

export function summariseProfile(path: string, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, ProfileNode>();
  for (const n of p.nodes) for (const c of n.children ?? []) parentOf.set(c, n);
  const self = new Map<number, number>();
  let t = p.startTime;
  let sampled = 0;
  let from = window?.fromUs ?? -Infinity;
  let to = window?.toUs ?? Infinity;
  // If the window does not overlap the profile (clocks differ), fall back to the whole profile.
  if (window && (window.toUs < p.startTime || window.fromUs > p.endTime)) {
    from = -Infinity;
    to = Infinity;
  }
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    t += dt;
    if (t < from || t > to) continue;
    // A sample's time is the gap until the next sample.
    const next = p.timeDeltas[i + 1] ?? 0;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + next);
    sampled += next;
  }
  const comps = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const c = component(n, parentOf);
    comps.set(c, (comps.get(c) ?? 0) + us);
    const where = url ? `${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/src\//, 'src/')}:${lineNumber + 1}` : '';
    const key = `${functionName}@${where}`;
    const f = fns.get(key) ?? { fn: functionName || '(anonymous)', where, us: 0 };
    f.us += us;
    fns.set(key, f);
  }
  const total = sampled || 1;
  return {
    windowMs: Number.isFinite(from) && Number.isFinite(to) ? (to - from) / 1000 : (p.endTime - p.startTime) / 1000,
    sampledMs: sampled / 1000,
    components: [...comps].map(([name, us]) => ({ name, ms: us / 1000, share: us / total })).sort((a, b) => b.ms - a.ms),
    top: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, 12).map((f) => ({ fn: f.fn, where: f.where, ms: f.us / 1000, share: f.us / total })),
  };
}
