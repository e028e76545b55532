import { renderSvg, type PanelSpec, type Series } from './chart.js';
import type { PhaseResult, Policy, WindowStats } from './protocol.js';
import type { Capacity, ServerPhaseStats } from './scenario.js';

// What the overload benchmark concludes from the raw runs: per-level rows, generator limits,
// recovery time, targets; and how it shows them (stdout table, Markdown section, SVG chart).

export interface LevelRow {
  /** Multiple of capacity; undefined for the warm-up. */
  level: number | undefined;
  name: string;
  phase: PhaseResult;
  server: ServerPhaseStats;
  /** 2xx within the objective, per second. */
  goodput: number;
  goodputPct: number;
  /** Why the generator, not the server, may have been the limit ('' when it kept up). */
  generatorLimit: string;
}

export interface Recovery {
  /** Seconds after the drop to 1× until the 1 s windows were back in the 1× range (3 in a row); null if never. */
  seconds: number | null;
  p99Threshold: number;
  successThreshold: number;
  windows: WindowStats[];
}

export interface Ladder {
  protection: boolean;
  policy: Policy;
  rows: LevelRow[];
  recovery: Recovery | undefined;
  /** Cores the rest of the machine used just before the run (after waiting for quiet). */
  busyBefore: number;
  rssMb: number[];
  /** Every 1 s window of the run (JSON only). */
  windows: WindowStats[];
  serverExited: boolean;
  abandoned: number;
  sessionsLost: number;
  refreshUnderflow: number;
}

export interface StormRow {
  policy: Policy;
  protection: boolean;
  level: number;
  phase: PhaseResult;
  server: ServerPhaseStats;
  busyBefore: number;
  goodput: number;
  goodputPct: number;
  /** Attempts per logical request. */
  amplification: number;
  /** Logical requests that ended in a 2xx, after retries. */
  succeededPct: number;
  generatorLimit: string;
}

export interface OverloadReport {
  date: string;
  command: string;
  machine: Record<string, string | number>;
  settings: Record<string, unknown>;
  capacity: Capacity;
  ladders: Ladder[];
  storm: StormRow[];
  /** Every 1 s window of each storm run (JSON only). */
  stormWindows: { policy: Policy; protection: boolean; windows: WindowStats[] }[];
  stormServerExited: string[];
}

// ---- analysis -----------------------------------------------------------------------------------

export function generatorLimit(p: PhaseResult, objectiveMs: number): string {
  const reasons: string[] = [];
  const wanted = p.rate + p.retries / p.seconds;
  if (p.lag.p99 > objectiveMs / 10) reasons.push(`lag p99 ${fmtMs(p.lag.p99)}`);
  if (p.rate > 0 && p.sendRate < 0.95 * wanted) reasons.push(`sent ${pct(p.sendRate / wanted)} of schedule`);
  if (p.cpu > 0.9) reasons.push(`CPU ${p.cpu.toFixed(2)}`);
  else if (p.elu > 0.9) reasons.push(`event loop ${pct(p.elu)} busy on ${p.cpu.toFixed(2)} core`);
  if (p.skipped > 0) reasons.push(`${r0(p.skipped)} arrivals not sent (a client timeout behind)`);
  if (p.sentWhileSaturated > 0.01 * Math.max(1, p.all.attempts)) reasons.push(`connection pool full (up to ${p.maxInFlight} in flight)`);
  return reasons.join(', ');
}

export function levelRow(level: number | undefined, phase: PhaseResult, server: ServerPhaseStats, capacity: number, objectiveMs: number): LevelRow {
  const goodput = phase.all.good / phase.seconds;
  return { level, name: phase.name, phase, server, goodput, goodputPct: goodput / capacity, generatorLimit: generatorLimit(phase, objectiveMs) };
}

/**
 * Recovery after the load drops back to 1×: a 1 s window is "normal" when its p99 is within the
 * worst window of the 1× level (+25 %, at least +25 ms) and its success rate at least the worst 1×
 * window's (−1 pt).
 * Recovery time = start of the first of three normal windows in a row, from the drop.
 */
export function recoveryOf(windows: WindowStats[], baselinePhase: number, recoveryPhase: number): Recovery | undefined {
  const success = (w: WindowStats) => (w.attempts ? w.ok / w.attempts : 1);
  const base = windows.filter((w) => w.phase === baselinePhase).slice(2);
  const rec = windows.filter((w) => w.phase === recoveryPhase).sort((a, b) => a.t - b.t);
  if (base.length === 0 || rec.length === 0) return undefined;
  const worst = Math.max(...base.map((w) => w.p99));
  const p99Threshold = Math.max(worst * 1.25, worst + 25);
  const successThreshold = Math.min(...base.map(success)) - 0.01;
  const normal = (w: WindowStats | undefined) => w !== undefined && w.attempts > 0 && w.p99 <= p99Threshold && success(w) >= successThreshold;
  let seconds: number | null = null;
  for (let i = 0; i < rec.length; i++) {
    if (normal(rec[i]) && normal(rec[i + 1]) && normal(rec[i + 2])) {
      seconds = rec[i]!.t - rec[0]!.t;
      break;
    }
  }
  return { seconds, p99Threshold, successThreshold, windows: rec };
}

export interface Target {
  target: string;
  goal: string;
  measured: string;
  met: boolean | undefined;
}

export function targets(r: OverloadReport): Target[] {
  const on = r.ladders.find((l) => l.protection);
  if (!on) return [];
  const at = (x: number) => on.rows.find((row) => row.level === x);
  const out: Target[] = [];
  for (const [x, goal] of [
    [4, 0.9],
    [8, 0.75],
  ] as const) {
    const row = at(x);
    out.push({ target: `goodput at ${x}×`, goal: `≥ ${pct(goal)} of capacity`, measured: row ? `${pct(row.goodputPct)} (${r0(row.goodput)}/s)${row.generatorLimit ? ' — generator-limited' : ''}` : 'not run', met: row ? row.goodputPct >= goal : undefined });
  }
  const levels = on.rows.filter((row) => row.level !== undefined);
  const worst = levels.reduce<LevelRow | undefined>((w, row) => (!w || row.phase.all.latency.p99 > w.phase.all.latency.p99 ? row : w), undefined);
  if (worst) out.push({ target: 'p99 of admitted (2xx) requests, every level', goal: '≤ 250 ms', measured: `worst ${fmtMs(worst.phase.all.latency.p99)} (at ${worst.name})`, met: worst.phase.all.latency.p99 <= 250 });
  const four = at(4);
  if (four) {
    const c = four.phase.byClass.critical;
    const s = c.attempts ? c.ok / c.attempts : 0;
    out.push({ target: 'critical-class success at 4×', goal: '≥ 99 %', measured: `${pct(s, 2)} (${r0(c.ok)} / ${r0(c.attempts)})`, met: s >= 0.99 });
  }
  const one = at(1);
  if (one && on.rssMb.length) {
    const peak = Math.max(...on.rssMb);
    const ratio = peak / one.server.rssMaxMb;
    out.push({ target: 'server RSS flat over the run', goal: 'peak ≤ 1.25 × the 1× level', measured: `${r0(one.server.rssMaxMb)} MB at 1× → peak ${r0(peak)} MB (×${ratio.toFixed(2)}), last ${r0(on.rssMb.at(-1)!)} MB`, met: ratio <= 1.25 });
  }
  if (on.recovery) {
    out.push({ target: 'back to normal after the drop to 1×', goal: '≤ 5 s', measured: on.recovery.seconds === null ? `not within ${on.recovery.windows.length} s` : `${on.recovery.seconds} s`, met: on.recovery.seconds !== null && on.recovery.seconds <= 5 });
  }
  const naive = r.storm.filter((s) => s.policy === 'naive' && s.protection);
  const disc = r.storm.filter((s) => s.policy === 'disciplined' && s.protection);
  for (const d of disc) {
    const n = naive.find((x) => x.level === d.level);
    if (n) out.push({ target: `retry storm at ${d.level}×: disciplined vs naive clients`, goal: 'more goodput, ≤ 1.1 attempts per request', measured: `goodput ${pct(d.goodputPct)} vs ${pct(n.goodputPct)}; ${d.amplification.toFixed(2)} vs ${n.amplification.toFixed(2)} attempts per request`, met: d.goodput >= n.goodput && d.amplification <= 1.1 });
  }
  return out;
}

// ---- formatting ---------------------------------------------------------------------------------

export const r0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
export const pct = (x: number, digits = 0) => (Number.isFinite(x) ? `${(x * 100).toFixed(digits)} %` : '–');
export const fmtMs = (ms: number) => (!Number.isFinite(ms) ? '–' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 10 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`);
const okPct = (c: { ok: number; attempts: number }) => (c.attempts ? pct(c.ok / c.attempts, 1) : '–');
const st = (p: PhaseResult, code: string) => r0(p.all.status[code] ?? 0);
const non2xxOther = (p: PhaseResult) => Object.entries(p.all.status).filter(([k]) => !/^(2\d\d|429|503|504)$/.test(k)).reduce((s, [, v]) => s + v, 0);

const LADDER_HEAD = ['load', 'offered/s', 'sent/s', 'goodput/s', 'goodput % of capacity', 'critical ok', 'default ok', 'sheddable ok', '2xx', '503', '429', '504', 'other non-2xx', 'timeouts', 'conn. errors', 'SYN drops'];
const LADDER_HEAD_2 = ['load', 'p50', 'p99', 'p99.9', 'server RSS MB', 'server CPU', 'PG CPU', 'other CPU', 'gen. lag p99', 'gen. CPU', 'generator limit'];

const twoxx = (p: PhaseResult) => Object.entries(p.all.status).filter(([k]) => k.startsWith('2')).reduce((s, [, v]) => s + v, 0);

/** Outcomes of one level. */
function ladderCells(row: LevelRow): string[] {
  const p = row.phase;
  return [
    row.name,
    r0(p.rate),
    r0(p.sendRate),
    r0(row.goodput),
    pct(row.goodputPct),
    okPct(p.byClass.critical),
    okPct(p.byClass.default),
    okPct(p.byClass.sheddable),
    r0(twoxx(p)),
    st(p, '503'),
    st(p, '429'),
    st(p, '504'),
    r0(non2xxOther(p)),
    r0(p.all.timeouts),
    r0(p.all.errors),
    r0(row.server.listenDrops),
  ];
}

/** Latency and resources of one level. */
function ladderCells2(row: LevelRow): string[] {
  const p = row.phase;
  return [
    row.name,
    fmtMs(p.all.latency.p50),
    fmtMs(p.all.latency.p99),
    fmtMs(p.all.latency.p999),
    `${r0(row.server.rssMinMb)}–${r0(row.server.rssMaxMb)}`,
    row.server.serverCpu.toFixed(2),
    row.server.postgresCpu.toFixed(2),
    row.server.otherCpu.toFixed(2),
    fmtMs(p.lag.p99),
    p.cpu.toFixed(2),
    row.generatorLimit || '–',
  ];
}

const STORM_HEAD = ['clients', 'protection', 'load', 'offered/s', 'attempts/s', 'attempts per request', 'retries', 'refused by budget', 'goodput/s', 'goodput % of capacity', 'requests succeeded', 'critical ok', '503', 'timeouts', 'SYN drops', 'p99', 'server CPU', 'PG CPU', 'other CPU', 'gen. lag p99', 'gen. CPU', 'generator limit'];

function stormCells(s: StormRow): string[] {
  const p = s.phase;
  return [
    s.policy,
    s.protection ? 'on' : 'off',
    `${s.level}×`,
    r0(p.rate),
    r0(p.sendRate),
    s.amplification.toFixed(2),
    r0(p.retries),
    r0(p.retriesDenied),
    r0(s.goodput),
    pct(s.goodputPct),
    pct(s.succeededPct, 1),
    okPct(p.byClass.critical),
    st(p, '503'),
    r0(p.all.timeouts),
    r0(s.server.listenDrops),
    fmtMs(p.all.latency.p99),
    s.server.serverCpu.toFixed(2),
    s.server.postgresCpu.toFixed(2),
    s.server.otherCpu.toFixed(2),
    fmtMs(p.lag.p99),
    p.cpu.toFixed(2),
    s.generatorLimit || '–',
  ];
}

function textTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function mdTable(head: string[], rows: string[][], align: 'numbers' | 'text' = 'numbers'): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map((_, i) => (i === 0 || align === 'text' ? ':--' : '--:')).join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const recoveryText = (l: Ladder) =>
  !l.recovery
    ? 'not measured'
    : `${l.recovery.seconds === null ? `not back to normal within ${l.recovery.windows.length} s` : `back to normal ${l.recovery.seconds} s after the drop`} (normal = 1 s windows with p99 ≤ ${fmtMs(l.recovery.p99Threshold)} and success ≥ ${pct(l.recovery.successThreshold, 1)}, the 1× level's range)`;

export function renderText(r: OverloadReport): string {
  const out: string[] = [];
  out.push(`capacity: ${r0(r.capacity.capacity)} req/s${r.capacity.given ? ' (given by BENCH_CAPACITY)' : ''}`);
  for (const l of r.ladders) {
    out.push(`\nprotection ${l.protection ? 'ON' : 'OFF'} (client retries: ${l.policy})${l.serverExited ? ' — THE SERVER EXITED DURING THE RUN' : ''}`);
    out.push(textTable(LADDER_HEAD, l.rows.map(ladderCells)));
    out.push('');
    out.push(textTable(LADDER_HEAD_2, l.rows.map(ladderCells2)));
    out.push(`recovery: ${recoveryText(l)}; sessions lost ${l.sessionsLost}, refresh underflow ${l.refreshUnderflow}, abandoned at the end ${l.abandoned}`);
  }
  if (r.storm.length) {
    out.push('\nretry storm');
    out.push(textTable(STORM_HEAD, r.storm.map(stormCells)));
  }
  const t = targets(r);
  if (t.length) {
    out.push('\ntargets (protection on)');
    out.push(textTable(['target', 'goal', 'measured', ''], t.map((x) => [x.target, x.goal, x.measured, x.met === undefined ? '' : x.met ? 'met' : 'NOT MET'])));
  }
  return out.join('\n');
}

// ---- chart --------------------------------------------------------------------------------------

export function renderChart(r: OverloadReport): string {
  const ladderSeries = (metric: (row: LevelRow) => number): Series[] =>
    r.ladders.map((l) => ({
      label: `protection ${l.protection ? 'on' : 'off'}`,
      color: l.protection ? '#1f77b4' : '#d62728',
      points: l.rows.filter((row) => row.level !== undefined && row.name !== 'recovery 1×').map((row) => [row.level!, metric(row)] as [number, number]),
    }));
  const levels = [...new Set(r.ladders.flatMap((l) => l.rows.map((row) => row.level).filter((x): x is number => x !== undefined)))].sort((a, b) => a - b);
  const maxGood = Math.max(125, ...r.ladders.flatMap((l) => l.rows.map((row) => row.goodputPct * 100)), ...r.storm.map((s) => s.goodputPct * 100));
  const goodY = { scale: 'linear' as const, min: 0, max: Math.ceil(maxGood / 25) * 25, ticks: Array.from({ length: Math.ceil(maxGood / 25) + 1 }, (_, i) => i * 25), format: (v: number) => `${v} %` };
  const ideal: Series = { label: 'ideal: min(offered, capacity)', color: '#999', dashed: true, points: levels.map((x) => [x, Math.min(x, 1) * 100]) };
  const panels: PanelSpec[] = [
    { title: 'Goodput (2xx within 250 ms)', xLabel: 'offered load (× capacity)', yLabel: 'goodput, % of capacity', xTicks: levels, y: goodY, series: [...ladderSeries((row) => row.goodputPct * 100), ideal], refs: [{ y: 90, label: 'target at 4×: 90 %' }, { y: 75, label: 'target at 8×: 75 %' }] },
    {
      title: 'p99 latency of admitted (2xx) requests',
      xLabel: 'offered load (× capacity)',
      yLabel: 'p99, ms (log scale)',
      xTicks: levels,
      y: { scale: 'log', min: 5, max: 5000, ticks: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000], format: (v) => (v >= 1000 ? `${v / 1000} s` : `${v} ms`) },
      series: ladderSeries((row) => row.phase.all.latency.p99),
      refs: [{ y: 250, label: 'objective 250 ms' }],
    },
  ];
  if (r.storm.length) {
    const stormLevels = [...new Set(r.storm.map((s) => s.level))].sort((a, b) => a - b);
    const on = r.ladders.find((l) => l.protection);
    const series: Series[] = [];
    if (on) series.push({ label: 'no retries (protection on)', color: '#7f7f7f', dashed: true, points: on.rows.filter((row) => row.level !== undefined && stormLevels.includes(row.level) && row.name !== 'recovery 1×').map((row) => [row.level!, row.goodputPct * 100]) });
    const colors: Record<string, string> = { 'naive on': '#ff7f0e', 'disciplined on': '#2ca02c', 'naive off': '#8c564b', 'disciplined off': '#17becf' };
    for (const prot of [true, false]) {
      for (const policy of ['naive', 'disciplined'] as const) {
        const pts = r.storm.filter((s) => s.policy === policy && s.protection === prot).map((s) => [s.level, s.goodputPct * 100] as [number, number]);
        if (pts.length) series.push({ label: `${policy === 'naive' ? 'naive: retry at once ×3' : 'disciplined: jitter + 10 % budget'}${prot ? '' : ' (protection off)'}`, color: colors[`${policy} ${prot ? 'on' : 'off'}`]!, points: pts });
      }
    }
    panels.push({ title: 'Retry storm: goodput by client policy', xLabel: 'offered load (× capacity, first tries)', yLabel: 'goodput, % of capacity', xTicks: stormLevels.length > 1 ? stormLevels : [...stormLevels, stormLevels[0]! * 2], y: goodY, series, refs: [{ y: 100, label: 'capacity' }] });
  }
  return renderSvg('Levee under overload — npm run bench:overload', `${r.date.slice(0, 10)} · capacity ${r0(r.capacity.capacity)} req/s (feed 70 % / write 20 % / refresh 10 %) · real PostgreSQL · ${r.machine.cores} cores shared by generator, server and database`, panels);
}

// ---- Markdown -----------------------------------------------------------------------------------

export const DOC_BEGIN = '<!-- overload:begin (generated by npm run bench:overload; npm run bench keeps this block) -->';
export const DOC_END = '<!-- overload:end -->';

export function renderMarkdown(r: OverloadReport): string {
  const s = r.settings as Record<string, number | string | string[]>;
  const out: string[] = [];
  out.push(`${DOC_BEGIN}
## Overload (issue 3)

Generated by \`${r.command}\` (\`bench/overload/\`) on ${r.date.slice(0, 10)}; raw figures in \`bench/results/overload-*.json\`.
Chart: [overload.svg](overload.svg).

![Goodput and p99 against offered load, with and without protection; retry storm](overload.svg)

### How to run

\`\`\`sh
npm run bench:overload                                   # full run, about ${Math.round(Number(s.estimatedMinutes))} minutes; rewrites this section and docs/overload.svg
BENCH_SECONDS=5 BENCH_RECOVERY_SECONDS=8 BENCH_STORM_SECONDS=5 npm run bench:overload   # quick run (does not touch docs/)
\`\`\`

Settings (environment): \`BENCH_SECONDS\` (per level, ${s.seconds}), \`BENCH_LEVELS\` (${String(s.levels)}), \`BENCH_WARMUP\` (${s.warmup} s at 1×),
\`BENCH_RECOVERY_SECONDS\` (${s.recoverySeconds}), \`BENCH_PROTECTION\` (ladders to run: ${String(s.protection)}), \`BENCH_STORM_LEVELS\` (${String(s.stormLevels)}),
\`BENCH_STORM_SECONDS\` (${s.stormSeconds}), \`BENCH_STORM_PROTECTION\` (${String(s.stormProtection)}; \`none\` skips the storm), \`BENCH_LADDER_POLICY\` (client retries during the ladder: ${s.ladderPolicy}),
\`BENCH_CAPACITY\` (req/s; skips the capacity search), \`BENCH_STEP_SECONDS\` (${s.stepSeconds}), \`BENCH_CONNECTIONS\` (${s.connections}), \`BENCH_CLIENT_TIMEOUT_MS\` (${s.timeoutMs}),
\`BENCH_OBJECTIVE_MS\` (${s.objectiveMs}), \`BENCH_USERS\` (${s.users}), \`BENCH_POSTS\` (${s.posts}), \`BENCH_POOL_SIZE\` (Levee's default), \`BENCH_DOCS\` (\`1\` writes docs/ even on a shortened run, \`0\` never), \`BENCH_TIMEOUT\` (whole run, s, ${s.timeoutSeconds}).

### Method

- **Server**: Levee as a child process (\`node bin/levee.js start --roles api\`, \`LOG_LEVEL=warn\`) on a fresh PostgreSQL database,
  ${r0(Number(s.users))} users and ${r0(Number(s.posts))} posts seeded by SQL, refresh-token sessions created by SQL as the run needs them. Per-IP and per-user rate limits are
  raised out of the way (\`LEVEE_RATE_LIMIT_IP_PER_MINUTE\`/\`_USER_PER_MINUTE\` = 10⁷, bursts 10⁶: all traffic comes from 127.0.0.1 and 200 users); "protection off" is \`LEVEE_PROTECTION=off\`.
- **Load generator** (\`bench/overload/generator.ts\`): its own process, **open model** — arrivals evenly spaced at the offered rate whatever the server
  answers, sent by a 1 ms tick; **latency measured from the scheduled send time** (no coordinated omission); undici \`Pool\` with ${s.connections} connections;
  client timeout ${s.timeoutMs} ms per attempt (the request is aborted, as a mobile client would); HdrHistograms per class. It reports its own lag behind the
  schedule and its CPU; a level where the lag p99 exceeds a tenth of the objective, it sent < 95 % of the schedule, used > 0.9 core, or found every connection busy
  is marked **generator-limited**: there the figures say as much about the generator as about the server.
- **Mix**: 70 % feed — \`GET /v1/collections/posts/documents?sort=-createdAt&limit=20\` (65 % first page, class *default*; 20 % a later page with a cursor from an
  earlier answer, *sheddable*; 15 % a prefetch of the first page with \`Levee-Priority: sheddable\`), 20 % writes (\`POST /v1/collections/posts/documents\`,
  small JSON body, \`Idempotency-Key\`, *critical*), 10 % token refreshes (\`POST /v1/auth/refresh\`; each token used once, the new one kept, *critical*).
- **Capacity**: a 5 s closed-loop run (${s.closedConcurrency} in flight) gives an estimate; open-loop steps of ${s.stepSeconds} s go up from 60 % of it (a step that fails is tried
  once more); capacity is the highest offered rate whose goodput is ≥ 95 % of it with p99 ≤ ${s.objectiveMs} ms (measured once, with protection on, and used for every ladder).
- **Ladder**: ${s.warmup} s warm-up at 1×, then each level for ${s.seconds} s back to back, then ${s.recoverySeconds} s at 1× again (recovery, in 1 s windows). Once with
  protection on, once off, each on a freshly started server (VACUUM ANALYZE in between). **Goodput** = 2xx answers within ${s.objectiveMs} ms of their scheduled time,
  per second; **ok** columns = 2xx / attempts of that class; latency percentiles are of 2xx answers only, from the scheduled time.
- **Retry storm**: the same mix at ${(s.stormLevels as unknown as number[]).map((x) => `${x}×`).join(' and ')} capacity (${s.stormSeconds} s each after a 5 s warm-up), with two client populations: *naive* — on a timeout, a
  5xx/429 or a connection error, retry at once, up to 3 times; *disciplined* — \`src/client/retry.ts\`: only retryable failures, only safe requests
  (writes carry an Idempotency-Key; refreshes have none and are not retried), full-jitter backoff (100 ms base, 2 s cap), Retry-After as a floor, one shared
  budget of 10 % of requests. Goodput counts each attempt against its own scheduled time; *attempts per request* shows the amplification.

### Machine

| | |
|:--|:--|
${Object.entries(r.machine).map(([k, v]) => `| ${k} | ${v} |`).join('\n')}

### Capacity

${r.capacity.given ? `Given: **${r0(r.capacity.capacity)} req/s** (BENCH_CAPACITY).` : `Closed loop (${r.capacity.closedLoop.concurrency} in flight): goodput ${r0(r.capacity.closedLoop.goodput)}/s, p99 ${fmtMs(r.capacity.closedLoop.p99)}. Open-loop steps:
${r.capacity.steps.map((x) => `${r0(x.rate)}/s → goodput ${r0(x.goodput)}/s, p99 ${fmtMs(x.p99)} (${x.pass ? 'pass' : 'fail'})`).join('; ')}.
**Capacity: ${r0(r.capacity.capacity)} req/s** of the mix.`}
`);
  for (const l of r.ladders) {
    out.push(`### Protection ${l.protection ? 'on' : 'off'}${l.serverExited ? ' — the server exited during the run' : ''}

${mdTable(LADDER_HEAD, l.rows.map(ladderCells))}

${mdTable(LADDER_HEAD_2, l.rows.map(ladderCells2))}

Recovery: ${recoveryText(l)}. Other processes used ${l.busyBefore.toFixed(2)} cores just before this run. Refresh sessions lost (timed out or revoked): ${r0(l.sessionsLost)}; refreshes skipped for want of a session: ${r0(l.refreshUnderflow)}; requests unanswered when the run ended: ${r0(l.abandoned)}.
`);
  }
  if (r.storm.length) {
    out.push(`### Retry storm

${mdTable(STORM_HEAD, r.storm.map(stormCells))}
${r.stormServerExited.length ? `\nThe server exited during: ${r.stormServerExited.join(', ')}.\n` : ''}`);
  }
  const t = targets(r);
  if (t.length) {
    out.push(`### Targets (protection on)

${mdTable(['target', 'goal', 'measured', ''], t.map((x) => [x.target, x.goal, x.measured, x.met === undefined ? '' : x.met ? '**met**' : '**not met**']), 'text')}
`);
  }
  out.push(`### Notes

${notes(r)
  .map((n) => `- ${n}`)
  .join('\n')}
${DOC_END}`);
  return out.join('\n');
}

/** Observations that follow from the figures (generator limits, failures), written out so nobody has to dig. */
function notes(r: OverloadReport): string[] {
  const out: string[] = [];
  for (const l of r.ladders) {
    const limited = l.rows.filter((row) => row.generatorLimit);
    if (limited.length) out.push(`Protection ${l.protection ? 'on' : 'off'}: the generator, not only the server, was a limit at ${limited.map((row) => `${row.name} (${row.generatorLimit})`).join('; ')}. Latency there includes the generator's own delay (it is measured from the schedule).`);
    if (l.serverExited) out.push(`Protection ${l.protection ? 'on' : 'off'}: the server process exited during the run.`);
    const dropped = l.rows.filter((row) => row.server.listenDrops > 100);
    if (dropped.length) {
      out.push(
        `Protection ${l.protection ? 'on' : 'off'}: the kernel dropped connection attempts because the server's listen queue was full at ${dropped.map((row) => `${row.name} (${r0(row.server.listenDrops)})`).join(', ')}: ` +
          'the server was not accepting connections fast enough, so clients saw connect timeouts rather than fast 503s. Every client timeout aborts its request and closes the connection, and the next request opens a new one: timeouts turn into a connection storm.',
      );
    }
  }
  const busiest = Math.max(0, ...r.ladders.flatMap((l) => l.rows.map((row) => row.server.otherCpu)), ...r.storm.map((x) => x.server.otherCpu));
  if (busiest > 0.3) out.push(`Other processes on the machine used up to ${busiest.toFixed(2)} cores during the measured phases (column *other CPU*): the server had that much less, and capacity and every level are depressed accordingly.`);
  const stormLimited = r.storm.filter((s) => s.generatorLimit);
  if (stormLimited.length) out.push(`Retry storm: generator-limited at ${stormLimited.map((s) => `${s.policy} ${s.level}× (${s.generatorLimit})`).join('; ')}.`);
  out.push('Two cores are shared by the generator, Levee and PostgreSQL (and whatever else runs on the machine): every CPU the generator spends at 8× is taken from the server. Compare runs, not single figures.');
  return out;
}
