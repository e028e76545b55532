import { renderSvg, type PanelSpec, type Series } from './chart.js';
import type { Mix, PhaseResult, Policy, WindowStats } from './protocol.js';
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
  /** Set when the 1× level itself was unhealthy, so there was no normal to return to. */
  unhealthyBaseline?: { success: number; p99: number };
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
  stormWindows: { policy: Policy; protection: boolean; level?: number; windows: WindowStats[] }[];
  stormServerExited: string[];
}

// ---- analysis -----------------------------------------------------------------------------------

/**
 * Where the generator, not the server, limited a level. Two kinds: its own limits (lag behind the
 * schedule, CPU, a busy event loop, arrivals it could not send in time) — there the figures are the
 * generator's as much as the server's; and client-side queueing (every connection busy, its queue
 * full) — mostly a server too slow to answer, seen through a finite pool of connections.
 */
export function generatorBound(p: PhaseResult, objectiveMs: number): string[] {
  const reasons: string[] = [];
  if (p.lag.p99 > objectiveMs / 10) reasons.push(`lag p99 ${fmtMs(p.lag.p99)}`);
  if (p.cpu > 0.9) reasons.push(`CPU ${p.cpu.toFixed(2)}`);
  else if (p.elu > 0.9) reasons.push(`event loop ${pct(p.elu)} busy on ${p.cpu.toFixed(2)} core`);
  if (p.skipped > 0) reasons.push(`${r0(p.skipped)} not sent in time`);
  return reasons;
}

export function generatorLimit(p: PhaseResult, objectiveMs: number): string {
  const own = generatorBound(p, objectiveMs);
  const queue: string[] = [];
  if (p.sentWhileSaturated > 0.01 * Math.max(1, p.all.attempts)) queue.push(`all connections busy, up to ${r0(p.maxInFlight)} in flight`);
  if (p.queueFull > 0) queue.push(`${r0(p.queueFull)} not sent, queue full`);
  return [...own, ...(queue.length ? [`client queue: ${queue.join(', ')}`] : [])].join('; ');
}

export function levelRow(level: number | undefined, phase: PhaseResult, server: ServerPhaseStats, capacity: number, objectiveMs: number): LevelRow {
  const goodput = phase.all.good / phase.seconds;
  return { level, name: phase.name, phase, server, goodput, goodputPct: goodput / capacity, generatorLimit: generatorLimit(phase, objectiveMs) };
}

/**
 * Recovery after the load drops back to 1×. The 1× level's one-second windows give the normal
 * range: p99 up to its 90th-percentile window (+25 %, at least +25 ms), success down to its
 * 10th-percentile window (−1 pt). Recovery time = start of the first of three normal windows in a
 * row, counted from the drop. A 1× level that was itself broken (success < 50 % or a median
 * window p99 over the objective) is no baseline: then there is no recovery time.
 */
export function recoveryOf(windows: WindowStats[], baselinePhase: number, recoveryPhase: number, objectiveMs: number): Recovery | undefined {
  const success = (w: WindowStats) => (w.attempts ? w.ok / w.attempts : 1);
  const base = windows.filter((w) => w.phase === baselinePhase && w.attempts > 0).slice(2);
  const rec = windows.filter((w) => w.phase === recoveryPhase).sort((a, b) => a.t - b.t);
  if (base.length === 0 || rec.length === 0) return undefined;
  const quantile = (xs: number[], q: number) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  };
  const p90 = quantile(base.map((w) => w.p99), 0.9);
  const p99Threshold = Math.max(p90 * 1.25, p90 + 25);
  const successThreshold = quantile(base.map(success), 0.1) - 0.01;
  const baseSuccess = base.reduce((n, w) => n + w.ok, 0) / base.reduce((n, w) => n + w.attempts, 0);
  const baseP99 = quantile(base.map((w) => w.p99), 0.5);
  const healthyBaseline = baseSuccess >= 0.5 && baseP99 <= objectiveMs;
  const normal = (w: WindowStats | undefined) => w !== undefined && w.attempts > 0 && w.p99 <= p99Threshold && success(w) >= successThreshold;
  let seconds: number | null = null;
  for (let i = 0; healthyBaseline && i < rec.length; i++) {
    if (normal(rec[i]) && normal(rec[i + 1]) && normal(rec[i + 2])) {
      seconds = rec[i]!.t - rec[0]!.t;
      break;
    }
  }
  return { seconds, p99Threshold, successThreshold, windows: rec, ...(healthyBaseline ? {} : { unhealthyBaseline: { success: baseSuccess, p99: baseP99 } }) };
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
    out.push({ target: `goodput at ${x}×`, goal: `≥ ${pct(goal)} of capacity`, measured: row ? `${pct(row.goodputPct)} (${r0(row.goodput)}/s)${generatorBound(row.phase, Number(r.settings.objectiveMs ?? 250)).length ? ' — generator-limited' : ''}` : 'not run', met: row ? row.goodputPct >= goal : undefined });
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
    const measured = on.recovery.unhealthyBaseline ? 'no healthy 1× baseline' : on.recovery.seconds === null ? `not within ${on.recovery.windows.length} s` : `${on.recovery.seconds} s`;
    out.push({ target: 'back to normal after the drop to 1×', goal: '≤ 5 s', measured, met: on.recovery.seconds !== null && on.recovery.seconds <= 5 });
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
    : l.recovery.unhealthyBaseline
      ? `no normal to return to: the 1× level itself had ${pct(l.recovery.unhealthyBaseline.success, 1)} success and a median 1 s p99 of ${fmtMs(l.recovery.unhealthyBaseline.p99)}`
      : `${l.recovery.seconds === null ? `not back to normal within ${l.recovery.windows.length} s` : `back to normal ${l.recovery.seconds} s after the drop`} (normal = three 1 s windows in a row with p99 ≤ ${fmtMs(l.recovery.p99Threshold)} and success ≥ ${pct(l.recovery.successThreshold, 1)}, the 1× level's range)`;

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
      y: { scale: 'log', min: 5, max: 10_000, ticks: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000], format: (v) => (v >= 1000 ? `${v / 1000} s` : `${v} ms`) },
      series: ladderSeries((row) => row.phase.all.latency.p99),
      refs: [{ y: 250, label: 'objective 250 ms' }],
    },
  ];
  if (r.storm.length) {
    const stormLevels = [...new Set(r.storm.map((s) => s.level))].sort((a, b) => a - b);
    const series: Series[] = [];
    const label = { none: 'no retries', naive: 'naive: retry at once ×3', disciplined: 'disciplined: jitter + 10 % budget' } as const;
    const colors: Record<string, string> = { 'none on': '#7f7f7f', 'naive on': '#ff7f0e', 'disciplined on': '#2ca02c', 'none off': '#bcbd22', 'naive off': '#8c564b', 'disciplined off': '#17becf' };
    for (const prot of [true, false]) {
      for (const policy of ['none', 'naive', 'disciplined'] as const) {
        const pts = r.storm.filter((s) => s.policy === policy && s.protection === prot).map((s) => [s.level, s.goodputPct * 100] as [number, number]);
        if (pts.length) series.push({ label: `${label[policy]}${prot ? '' : ' (protection off)'}`, color: colors[`${policy} ${prot ? 'on' : 'off'}`]!, dashed: policy === 'none', points: pts });
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
  const mixText = (m: Mix | undefined) => (m ? `reads ${pct(m.reads)}, writes ${pct(m.writes)}, refreshes ${pct(m.refreshes)}` : 'reads 70 %, writes 20 %, refreshes 10 %');
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

Settings (environment): \`BENCH_SECONDS\` (per level, ${s.seconds}), \`BENCH_LEVELS\` (${String(s.levels)}), \`BENCH_WARMUP\` (${s.warmup} s at ½× on each fresh server),
\`BENCH_RECOVERY_SECONDS\` (${s.recoverySeconds}), \`BENCH_PROTECTION\` (ladders to run: ${String(s.protection)}), \`BENCH_STORM_LEVELS\` (${String(s.stormLevels)}),
\`BENCH_STORM_SECONDS\` (${s.stormSeconds}), \`BENCH_STORM_POLICIES\` (${String(s.stormPolicies ?? 'naive,disciplined')}), \`BENCH_STORM_PROTECTION\` (${String(s.stormProtection)}; \`none\` skips the storm), \`BENCH_LADDER_POLICY\` (client retries during the ladder: ${s.ladderPolicy}),
\`BENCH_CAPACITY\` (req/s; skips the capacity search), \`BENCH_STEP_SECONDS\` (${s.stepSeconds}), \`BENCH_CONNECTIONS\` (${s.connections}), \`BENCH_CLIENT_TIMEOUT_MS\` (${s.timeoutMs}),
\`BENCH_OBJECTIVE_MS\` (${s.objectiveMs}), \`BENCH_MIX\` (\`reads=85,writes=12,refreshes=3\`), \`BENCH_USERS\` (${s.users}), \`BENCH_POSTS\` (${s.posts}), \`BENCH_POOL_SIZE\` (Levee's default), \`BENCH_SERVER_ENV\` (more server settings, \`NAME=value,…\`${Object.keys(s.serverEnv ?? {}).length ? `; this run: \`${Object.entries(s.serverEnv as unknown as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',')}\`` : ''}), \`BENCH_QUIET_WAIT\` (s, ${s.quietWait}), \`BENCH_DOCS\` (\`1\` writes docs/ even on a shortened run, \`0\` never), \`BENCH_TIMEOUT\` (whole run, s, ${s.timeoutSeconds}).

### Method

- **Server**: Levee as a child process (\`node bin/levee.js start --roles api\`, \`LOG_LEVEL=warn\`) on a fresh PostgreSQL database,
  ${r0(Number(s.users))} users and ${r0(Number(s.posts))} posts seeded by SQL, refresh-token sessions created by SQL as the run needs them. Per-IP and per-user rate limits are
  raised out of the way (\`LEVEE_RATE_LIMIT_IP_PER_MINUTE\`/\`_USER_PER_MINUTE\` = 10⁷, bursts 10⁶: all traffic comes from 127.0.0.1 and 200 users); "protection off" is \`LEVEE_PROTECTION=off\`.
- **Load generator** (\`bench/overload/generator.ts\`): its own process, **open model** — arrivals evenly spaced at the offered rate whatever the server
  answers, sent by a 1 ms tick; **latency measured from the scheduled send time** (no coordinated omission); undici \`Pool\` with ${s.connections} connections;
  client timeout ${s.timeoutMs} ms per attempt (the request is aborted, as a mobile client would; an attempt the generator could not send
  within that time of its schedule is not sent and counts as a timeout, so a generator that fell behind does not burst its backlog; nor is one
  while ${Number(s.connections) * 4} are already in flight, which counts as a connection error); HdrHistograms per class. It reports its own lag behind the
  schedule and its CPU; a level where the lag p99 exceeds a tenth of the objective, it sent < 95 % of the schedule, used > 0.9 core, or found every connection busy
  is marked **generator-limited**: there the figures say as much about the generator as about the server.
- **Mix** (\`BENCH_MIX\`, ${mixText(s.mix as unknown as Mix)}): feed reads — \`GET /v1/collections/posts/documents?sort=-createdAt&limit=20\` (65 % first page, class *default*; 20 % a later page with a cursor from an
  earlier answer, *sheddable*; 15 % a prefetch of the first page with \`Levee-Priority: sheddable\`); writes (\`POST /v1/collections/posts/documents\`,
  small JSON body, \`Idempotency-Key\`, *critical*); token refreshes (\`POST /v1/auth/refresh\`; each token used once, the new one kept, *critical*).
  The default is a mobile app's traffic: mostly reads; a refresh once per access-token lifetime and app launch, not every tenth request.
- **Capacity**: a 5 s closed-loop run (${s.closedConcurrency} in flight) gives an estimate; open-loop steps of ${s.stepSeconds} s go up from 60 % of it (a step that fails is tried
  once more); capacity is the highest offered rate whose goodput is ≥ 95 % of it with p99 ≤ ${s.objectiveMs} ms (measured once, with protection on, and used for every ladder).
- **Ladder**: ${s.warmup} s warm-up at ½× (every run starts a fresh, cold server), then each level for ${s.seconds} s back to back, then ${s.recoverySeconds} s at 1× again (recovery, in 1 s windows). Once with
  protection on, once off, each on a freshly started server (VACUUM ANALYZE in between). **Goodput** = 2xx answers within ${s.objectiveMs} ms of their scheduled time,
  per second; **ok** columns = 2xx / attempts of that class; latency percentiles are of 2xx answers only, from the scheduled time.
- **Retry storm**: the same mix at ${(s.stormLevels as unknown as number[]).map((x) => `${x}×`).join(' and ')} capacity (${s.stormSeconds} s after the same warm-up, every level and population on a fresh server, the populations interleaved), with three client populations: *none* — no retries (the baseline, measured the same way); *naive* — on a timeout, a
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

/**
 * Server CPU per answered request, split between 2xx answers and refusals (503/429/504), by least
 * squares over the levels of a ladder: cpu·seconds ≈ a·(2xx) + b·(refusals). Rough (timed-out requests
 * and connection set-up are in there too), but it shows what a refusal costs next to a real answer —
 * the figure that decides how much overload a single process can refuse and still serve its capacity.
 */
export function costSplit(l: Ladder): { per2xxUs: number; perRefusalUs: number } | undefined {
  const rows = l.rows.filter((row) => row.level !== undefined && Number.isFinite(row.server.serverCpu));
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  let sxc = 0;
  let syc = 0;
  for (const row of rows) {
    const p = row.phase;
    const x = twoxx(p);
    const y = (p.all.status['503'] ?? 0) + (p.all.status['429'] ?? 0) + (p.all.status['504'] ?? 0);
    const c = row.server.serverCpu * p.seconds;
    sxx += x * x;
    sxy += x * y;
    syy += y * y;
    sxc += x * c;
    syc += y * c;
  }
  const det = sxx * syy - sxy * sxy;
  if (rows.length < 2 || Math.abs(det) < 1e-9 || syy === 0) return undefined;
  const a = (sxc * syy - syc * sxy) / det;
  const b = (syc * sxx - sxc * sxy) / det;
  return { per2xxUs: a * 1e6, perRefusalUs: b * 1e6 };
}

/** Observations that follow from the figures (generator limits, failures), written out so nobody has to dig. */
function notes(r: OverloadReport): string[] {
  const out: string[] = [];
  const on = r.ladders.find((l) => l.protection);
  const split = on ? costSplit(on) : undefined;
  if (split && split.per2xxUs > 0 && split.perRefusalUs > 0) {
    const ratio = split.perRefusalUs / split.per2xxUs;
    out.push(
      `Cost of a refusal: with protection on, the server spent about ${r0(split.per2xxUs)} µs of CPU per 2xx answer and ${r0(split.perRefusalUs)} µs per refusal (503/429/504) — a refusal costs ${pct(ratio)} of an answer (least squares over the levels; rough). ` +
        `At 8× the server refuses about 7× its capacity, which alone takes ${pct(7 * ratio)} of the CPU that served the capacity${7 * ratio > 0.25 ? ': more than the 25 % the 8× target leaves for it, so that target needs cheaper refusals (earlier in the request path, or fewer bytes) as much as a better limit' : ''}.`,
    );
  }
  for (const l of r.ladders) {
    const objective = Number(r.settings.objectiveMs ?? 250);
    const own = l.rows.filter((row) => generatorBound(row.phase, objective).length);
    if (own.length) out.push(`Protection ${l.protection ? 'on' : 'off'}: the generator itself was a limit at ${own.map((row) => `${row.name} (${generatorBound(row.phase, objective).join(', ')})`).join('; ')}. Latency there includes the generator's own delay (it is measured from the schedule): those levels say as much about the generator as about the server.`);
    const queued = l.rows.filter((row) => row.generatorLimit.includes('client queue'));
    if (queued.length) out.push(`Protection ${l.protection ? 'on' : 'off'}: every one of the generator's ${r.settings.connections} connections was busy at ${queued.map((row) => row.name).join(', ')}, so requests waited (or were dropped) in the client: the server was answering too slowly for that many connections — with more connections they would have waited in the server instead.`);
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
  if (stormLimited.length) out.push(`Retry storm: generator or client-queue limits at ${stormLimited.map((s) => `${s.policy} ${s.level}× (${s.generatorLimit})`).join('; ')}.`);
  const others = r.storm.map((s) => s.server.otherCpu).filter(Number.isFinite);
  if (others.length && Math.max(...others) - Math.min(...others) > 0.3) {
    out.push(`Retry storm: the background load differed between the client populations (other CPU from ${Math.min(...others).toFixed(2)} to ${Math.max(...others).toFixed(2)} cores; each run had its own time slot): compare them with that in mind, and rerun on a quiet machine.`);
  }
  out.push('Two cores are shared by the generator, Levee and PostgreSQL (and whatever else runs on the machine): every CPU the generator spends at 8× is taken from the server. Compare runs, not single figures.');
  return out;
}
