import type { EngineReport, Report, Row } from './core.js';
import { FEED_PATH } from './workloads.js';

// The text table printed at the end of a run and docs/benchmarks.md, both from the same report.

export interface TargetCheck {
  what: string;
  target: string;
  actual: string;
  met: boolean;
}

const r0 = (n: number) => Math.round(n).toLocaleString('en-US');
const pct = (n: number) => `${Math.round(n * 100)} %`;
/** Server CPU time per successful request, in microseconds. */
const cpuPerReq = (r: Row) => (r.rps > 0 ? (r.cpu.server * 1e6) / r.rps : NaN);
const engineTitle = (e: EngineReport) => (e.engine === 'postgres' ? `PostgreSQL (${e.engineVersion.split(' on ')[0]})` : `embedded PGlite (${e.engineVersion.split(' on ')[0]}, in the server process)`);

export function targets(e: EngineReport): TargetCheck[] {
  const row = (id: string) => e.rows.find((r) => r.id === id);
  const out: TargetCheck[] = [];
  const w1 = row('W1');
  if (w1 && e.ceiling) {
    const ratio = w1.rps / e.ceiling.rps;
    out.push({ what: 'W1 feed vs ceiling', target: '≥ 60 % of the ceiling', actual: `${pct(ratio)} (${r0(w1.rps)} / ${r0(e.ceiling.rps)} req/s)`, met: ratio >= 0.6 });
    out.push({ what: 'W1 feed p99', target: '≤ 50 ms', actual: `${w1.p99} ms`, met: w1.p99 <= 50 });
  }
  const min = (id: string, label: string, floor: number) => {
    const r = row(id);
    if (r) out.push({ what: `${id} ${label}`, target: `≥ ${r0(floor)} req/s`, actual: `${r0(r.rps)} req/s`, met: r.rps >= floor });
  };
  min('W2', 'create a post', 2_500);
  min('W3', '/v1/auth/me', 8_000);
  min('W5', 'hot document', 8_000);
  out.push({ what: 'server RSS after the run', target: '≤ 250 MB', actual: `${r0(e.memory.rssMb)} MB (peak ${r0(e.memory.peakMb)} MB)`, met: e.memory.rssMb <= 250 });
  const errors = e.rows.reduce((a, r) => a + r.errors, 0) + (e.ceiling?.errors ?? 0);
  out.push({ what: 'errors (non-2xx + socket errors), all workloads', target: '0', actual: String(errors), met: errors === 0 });
  return out;
}

const allRows = (e: EngineReport) => [...(e.ceiling ? [e.ceiling] : []), ...e.rows];

export function renderTable(report: Report): string {
  const lines: string[] = [];
  for (const e of report.engines) {
    lines.push(`${engineTitle(e)} — ${report.settings.connections} connections, ${report.settings.warmup} s warm-up + ${report.settings.duration} s measured`);
    const head = ['workload', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'server CPU', 'µs CPU/req', 'postgres CPU', 'autocannon CPU', 'other CPU'];
    const body = allRows(e).map((r) => [
      `${r.id} ${r.name}${r.cpu.other > NOISY_OTHER_CORES ? ' †' : ''}`,
      r0(r.rps),
      String(r.p50),
      String(r.p99),
      String(r.errors),
      r.cpu.server.toFixed(2),
      r0(cpuPerReq(r)),
      e.engine === 'postgres' ? r.cpu.postgres.toFixed(2) : '-',
      r.cpu.generator.toFixed(2),
      r.cpu.other.toFixed(2),
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
    const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    lines.push(fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt));
    if (allRows(e).some((r) => r.cpu.other > NOISY_OTHER_CORES)) lines.push(`† other processes used more than ${NOISY_OTHER_CORES} cores during this workload: a lower bound`);
    const w1 = e.rows.find((r) => r.id === 'W1');
    if (w1 && e.ceiling) lines.push(`W1 / ceiling: ${pct(w1.rps / e.ceiling.rps)}`);
    lines.push(`server RSS after the run: ${r0(e.memory.rssMb)} MB (peak ${r0(e.memory.peakMb)} MB)`);
    if (e.engine === 'postgres') for (const t of targets(e)) lines.push(`  ${t.met ? 'MET   ' : 'MISSED'} ${t.what}: ${t.actual} (target ${t.target})`);
    lines.push('');
  }
  return lines.join('\n');
}

function mdTable(head: string[], rows: string[][], align?: string[]): string {
  const a = align ?? head.map((_, i) => (i === 0 ? ':--' : '--:'));
  return [`| ${head.join(' | ')} |`, `|${a.map((x) => ` ${x} `).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** A row measured while other processes used this much CPU is marked as noisy. */
export const NOISY_OTHER_CORES = 0.3;

function resultsTable(e: EngineReport): string {
  const noisy = allRows(e).filter((r) => r.cpu.other > NOISY_OTHER_CORES);
  const table = mdTable(
    ['workload', 'req/s', 'p50', 'p99', 'p99.9', 'errors', 'server CPU (cores)', 'server CPU per request', ...(e.engine === 'postgres' ? ['PostgreSQL CPU'] : []), 'autocannon CPU', 'other CPU'],
    allRows(e).map((r) => [
      `**${r.id}** ${r.name}${r.cpu.other > NOISY_OTHER_CORES ? ' †' : ''}`,
      r0(r.rps),
      `${r.p50} ms`,
      `${r.p99} ms`,
      `${r.p999} ms`,
      r.errors ? `${r.errors} (${Object.entries(r.statusCodes).filter(([c]) => !c.startsWith('2')).map(([c, n]) => `${n}×${c}`).join(', ')}${r.socketErrors ? `, ${r.socketErrors} socket` : ''})` : '0',
      r.cpu.server.toFixed(2),
      `${r0(cpuPerReq(r))} µs`,
      ...(e.engine === 'postgres' ? [r.cpu.postgres.toFixed(2)] : []),
      r.cpu.generator.toFixed(2),
      r.cpu.other.toFixed(2),
    ]),
  );
  return noisy.length
    ? `${table}\n\n† measured while other processes on the machine used more than ${NOISY_OTHER_CORES} cores (*other CPU*): read these figures as lower bounds.`
    : table;
}

function profileSection(e: EngineReport): string {
  if (e.profiles.length === 0) return '';
  const names = [...new Set(e.profiles.flatMap((p) => p.summary.components.filter((c) => c.share >= 0.02).map((c) => c.name)))];
  const byName = (p: EngineReport['profiles'][number], n: string) => p.summary.components.find((c) => c.name === n)?.share ?? 0;
  names.sort((a, b) => e.profiles.reduce((s, p) => s + byName(p, b), 0) - e.profiles.reduce((s, p) => s + byName(p, a), 0));
  const out = [
    `CPU profile of the server process (\`node --cpu-prof\`, a separate ${e.profiles[0] ? Math.round(e.profiles[0].summary.windowMs / 1000) : '?'} s run per workload after the measured runs; share of sampled time, components under 2 % omitted):`,
    '',
    mdTable(['component', ...e.profiles.map((p) => p.id)], names.map((n) => [n, ...e.profiles.map((p) => pct(byName(p, n)))])),
    '',
  ];
  const w1 = e.profiles.find((p) => p.id === 'W1');
  if (w1) {
    out.push('Hottest functions (self time) during W1:', '', mdTable(['function', 'where', 'share'], w1.summary.top.slice(0, 10).map((f) => [`\`${f.fn}\``, f.where ? `\`${f.where}\`` : /^anonymous\d*$/.test(f.fn) ? '(generated: Fastify response serialiser)' : '(native)', pct(f.share)]), [':--', ':--', '--:']), '');
  }
  return out.join('\n');
}

export function renderMarkdown(report: Report): string {
  const m = report.machine;
  const s = report.settings;
  const pg = report.engines.find((e) => e.engine === 'postgres');
  const pgl = report.engines.find((e) => e.engine === 'pglite');
  const parts: string[] = [];
  parts.push(`# Benchmarks

Generated by \`${report.command}\` (\`bench/core.ts\`) on ${report.date.slice(0, 10)}. Re-running the command rewrites this file
(except the *Overload* section at the end, which \`npm run bench:overload\` writes);
raw figures of every run are kept in \`bench/results/\` (not committed).

## How to run

\`\`\`sh
npm run bench                                   # full run: PostgreSQL then PGlite, about 6 minutes
BENCH_DURATION=3 BENCH_WARMUP=1 BENCH_POSTS=10000 npm run bench   # smoke run (does not touch this file)
\`\`\`

Settings (environment): \`BENCH_DURATION\` (measured seconds per workload, default 15), \`BENCH_WARMUP\` (5),
\`BENCH_CONNECTIONS\` (50), \`BENCH_USERS\` (1000), \`BENCH_POSTS\` (100000), \`BENCH_ENGINES\` (\`postgres,pglite\`),
\`BENCH_PROFILE\` (engines to CPU-profile afterwards, default \`pglite\`; \`none\`), \`BENCH_PROFILE_SECONDS\` (5),
\`BENCH_POOL_SIZE\` (Levee's default pool, 10), \`BENCH_DOCS\` (\`1\` writes this file even on a shortened run),
\`BENCH_KEEP\` (\`1\` keeps the database), \`BENCH_QUIET_WAIT\` (15), \`BENCH_TIMEOUT\` (whole run, s, 1200), \`LEVEE_TEST_POSTGRES_URL\` (admin URL, default \`postgres://postgres@127.0.0.1:5432/postgres\`).
PostgreSQL must be reachable; the bench creates a fresh database and drops it afterwards.

## What is measured

For each engine the bench migrates a fresh database and seeds **${r0(s.users)} users** (one precomputed argon2id hash)
and **${r0(s.posts)} posts** (UUIDv7 ids, \`created_at\` spread over 30 days, ~400 bytes of JSON each) directly by SQL,
then starts Levee as a **child process** (\`node bin/levee.js start --roles api\`, \`LOG_LEVEL=warn\`, collection
\`posts\` = \`{read: public, write: owner, indexes: [createdAt]}\` from \`bench/levee.bench.json\`, pool size ${s.poolSize}),
waits for \`/readyz\`, and signs in through the real API (\`POST /v1/auth/signin\`): 100 users whose access tokens
are spread over the connections (connection *i* uses user *i mod 100*) and ${Math.max(200, s.connections * 4)} more sessions for W4.
autocannon runs in the bench process (a separate event loop from the server) with **${s.connections} connections**,
**${s.warmup} s warm-up then ${s.duration} s measured** per workload, one workload at a time:

| | workload | one request |
|:--|:--|:--|
| **W1** | feed | \`GET ${FEED_PATH}\` with a bearer token |
| **W2** | create a post | \`POST /v1/collections/posts/documents\`, a ~400-byte JSON body, bearer token, no \`Idempotency-Key\` |
| **W3** | who am I | \`GET /v1/auth/me\` with a bearer token (the user and their linked sign-in providers) |
| **W4** | refresh-token rotation | \`POST /v1/auth/refresh\`. A refresh token works once (reuse revokes the session), so every request takes a never-used token from a pool of ${Math.max(200, s.connections * 4)} live sessions (autocannon \`setupRequest\`) and puts the token it gets back into the pool (\`onResponse\`); each session has at most one request in flight. A 401 here would mean the bench is wrong. |
| **W5** | one hot document | \`GET /v1/collections/posts/documents/{id}\`, the same post on every connection, bearer token |
| **C** | ceiling (PostgreSQL only) | W1's request against \`bench/ceiling-server.ts\`: a bare Fastify route (no logging, auth, validation, metrics or response schema) running the **same SQL text** Levee runs for W1 (built by Levee's own list-query code) through \`pg\` as a named prepared statement (as Levee does) with the **same pool size** |

On PostgreSQL, after each write workload (W2, W4) the bench runs \`VACUUM ANALYZE\` on the tables it wrote, so that
the autovacuum those rows would trigger does not land in the next workload's window.

Columns: **req/s** counts 2xx responses only; **p50/p99/p99.9** are autocannon's latencies (all responses, closed loop:
with ${s.connections} connections they include queueing in the server); **errors** = non-2xx responses + socket errors
(timeouts included). **CPU** columns are cores busy during the measured window (1.00 = one core), read from \`/proc\`:
the server child, all \`postgres\` processes, the autocannon process, and **other** = the rest of the machine
(other processes — a sign of noise). **Server CPU per request** = server CPU ÷ req/s. The server's RSS is \`VmRSS\`
from \`/proc/<pid>/status\` right after the last workload.

## Machine

| | |
|:--|:--|
| date | ${report.date} |
| CPU | ${m.cpu}, **${m.cores} cores** (shared by autocannon, the server and PostgreSQL) |
| memory | ${m.memoryGb} GB |
| kernel | Linux ${m.kernel} |
| Node | ${m.node} |
| PostgreSQL | ${m.postgres} (local, default configuration, loopback TCP) |
| PGlite | @electric-sql/pglite ${m.pglite}${pgl ? ` (${pgl.engineVersion.split(' on ')[0]})` : ''} |
| autocannon | ${m.autocannon} |
| Levee commit | ${m.commit} |
| load average before the run | ${report.loadBefore.join(', ')} |
`);

  if (pg) {
    const checks = targets(pg);
    const w1 = pg.rows.find((r) => r.id === 'W1');
    parts.push(`## Results: PostgreSQL

${resultsTable(pg)}

${w1 && pg.ceiling ? `**W1 reaches ${pct(w1.rps / pg.ceiling.rps)} of the ceiling** (${r0(w1.rps)} vs ${r0(pg.ceiling.rps)} req/s). ` : ''}Server RSS after the run: **${r0(pg.memory.rssMb)} MB** (peak ${r0(pg.memory.peakMb)} MB)${pg.ceilingMemory ? `; the ceiling server used ${r0(pg.ceilingMemory.rssMb)} MB` : ''}.
Seeding took ${pg.seeded.seconds.toFixed(1)} s; signing in ${Math.max(200, s.connections * 4) + 100} sessions took ${pg.signInSeconds.toFixed(1)} s (argon2id).

### Targets

${mdTable(['target', 'goal', 'measured', ''], checks.map((c) => [c.what, c.target, c.actual, c.met ? '**met**' : '**missed**']), [':--', ':--', ':--', ':--'])}
`);
  }

  if (pgl) {
    const rows = (id: string) => pgl.rows.find((r) => r.id === id);
    const w1 = rows('W1');
    const w5 = rows('W5');
    const w3 = rows('W3');
    const pw1 = pgl.profiles.find((p) => p.id === 'W1');
    const share = (p: typeof pw1, prefix: string) => (p ? p.summary.components.filter((c) => c.name.startsWith(prefix)).reduce((a, c) => a + c.share, 0) : NaN);
    parts.push(`## Results: embedded PGlite (no target)

Same data, same workloads, Levee started without \`DATABASE_URL\` on a temporary \`LEVEE_DATA_DIR\`.

${resultsTable(pgl)}

Server RSS after the run: **${r0(pgl.memory.rssMb)} MB** (peak ${r0(pgl.memory.peakMb)} MB). Seeding took ${pgl.seeded.seconds.toFixed(1)} s.

### Where the time goes

PGlite is PostgreSQL compiled to WASM running **inside the server process**, as a single session: every query runs
on the server's one JavaScript thread, one at a time, so the server process is the whole database and its throughput
is roughly 1 ÷ (CPU time per request).${w1 && w5 && w3 ? ` Per request the server spent ${r0(cpuPerReq(w5))} µs of CPU on W5 (one primary-key read),
${r0(cpuPerReq(w3))} µs on W3 (the user and their sign-in providers) and ${r0(cpuPerReq(w1))} µs on W1 (an index scan returning 21 rows of ~400 bytes).` : ''}
${pw1 ? `Each parameterised query is six calls into the WASM engine (PGlite 0.5 runs Parse, Describe, Bind, Describe,
Execute and Sync one by one, and PostgreSQL re-plans the unnamed statement every time), and every result row is
decoded from the wire protocol in JavaScript — the *JS glue* row below.
In the W1 profile, ${pct(share(pw1, 'PGlite'))} of the server's samples are inside PGlite (the WASM PostgreSQL plus its JS protocol/row parsing),
${pct(share(pw1, 'idle'))} idle, and the rest is Node, Fastify and Levee.` : ''}

${profileSection(pgl)}`);
  }

  parts.push(`## Reading these figures (noise)

- **Two cores for everything.** autocannon, the Levee process and PostgreSQL share ${m.cores} cores, so a faster
  server also gets less CPU left over; the CPU columns show who used what. When autocannon is near 1.0 core it, not
  the server, may be the limit (autocannon tops out around 20–25k req/s on one core here).
- **Other load.** The *other CPU* column is everything else on the machine during the window (other test runs,
  background services). Runs with a high value are not comparable; re-run on a quiet machine.
- **Run-to-run variation** on a quiet machine was about ±6 % in req/s between back-to-back runs of the same code
  (more in p99); compare runs, not single figures, and for W1 prefer the ratio to the ceiling, measured a minute
  earlier on the same machine and database.
- **Quiet wait.** Before each workload the bench waits up to \`BENCH_QUIET_WAIT\` seconds (default 15) for the rest
  of the machine to use less than a quarter of a core, then measures anyway and says so.
- **Closed loop.** autocannon keeps ${s.connections} requests in flight; latency percentiles therefore include queueing
  and are not the latency of an unloaded server. W2 adds rows while it runs (W1 runs before it), W4 writes a refresh
  token and touches a session per request.
`);
  return parts.join('\n');
}
