// A small hand-written SVG line chart: panels side by side, each with axes, grid, polylines with
// markers, optional horizontal reference lines and a legend. No chart library.

export interface Series {
  label: string;
  color: string;
  dashed?: boolean;
  points: [number, number][];
}

export interface PanelSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** x values are placed on a log2 scale (1, 2, 4, 8 equally spaced). */
  xTicks: number[];
  y: { scale: 'linear' | 'log'; min: number; max: number; ticks: number[]; format?: (v: number) => string };
  series: Series[];
  refs?: { y: number; label: string }[];
}

const W = 420;
const H = 380;
const M = { left: 74, right: 16, top: 40, bottom: 110 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f1 = (n: number) => (Math.round(n * 10) / 10).toString();

function panel(p: PanelSpec, ox: number): string {
  const iw = W - M.left - M.right;
  const ih = H - M.top - M.bottom;
  const lx = (v: number) => Math.log2(v);
  const x0 = lx(Math.min(...p.xTicks));
  const x1 = lx(Math.max(...p.xTicks));
  const pad = (x1 - x0) * 0.06 || 0.5;
  const X = (v: number) => ox + M.left + ((lx(v) - x0 + pad) / (x1 - x0 + 2 * pad)) * iw;
  const ty = (v: number) => (p.y.scale === 'log' ? Math.log10(Math.max(v, p.y.min)) : v);
  const Y = (v: number) => M.top + ih - ((ty(Math.min(Math.max(v, p.y.min), p.y.max)) - ty(p.y.min)) / (ty(p.y.max) - ty(p.y.min))) * ih;
  const fmt = p.y.format ?? ((v: number) => String(v));
  const out: string[] = [];
  out.push(`<text x="${ox + W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  out.push(`<rect x="${ox + M.left}" y="${M.top}" width="${iw}" height="${ih}" fill="none" stroke="#999"/>`);
  for (const t of p.y.ticks) {
    const y = f1(Y(t));
    out.push(`<line x1="${ox + M.left}" x2="${ox + M.left + iw}" y1="${y}" y2="${y}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${ox + M.left - 6}" y="${y}" dy="4" text-anchor="end" font-size="11">${esc(fmt(t))}</text>`);
  }
  for (const t of p.xTicks) {
    const x = f1(X(t));
    out.push(`<line x1="${x}" x2="${x}" y1="${M.top}" y2="${M.top + ih}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${x}" y="${M.top + ih + 16}" text-anchor="middle" font-size="11">${t}×</text>`);
  }
  out.push(`<text x="${ox + M.left + iw / 2}" y="${M.top + ih + 34}" text-anchor="middle" font-size="12">${esc(p.xLabel)}</text>`);
  out.push(`<text transform="translate(${ox + 16},${M.top + ih / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(p.yLabel)}</text>`);
  for (const r of p.refs ?? []) {
    const y = f1(Y(r.y));
    out.push(`<line x1="${ox + M.left}" x2="${ox + M.left + iw}" y1="${y}" y2="${y}" stroke="#c0392b" stroke-dasharray="2 3"/>`);
    out.push(`<text x="${ox + M.left + iw - 4}" y="${y}" dy="-4" text-anchor="end" font-size="10" fill="#c0392b">${esc(r.label)}</text>`);
  }
  for (const s of p.series) {
    if (s.points.length === 0) continue;
    const pts = s.points.map(([x, y]) => `${f1(X(x))},${f1(Y(y))}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const [x, y] of s.points) out.push(`<circle cx="${f1(X(x))}" cy="${f1(Y(y))}" r="3.5" fill="${s.color}"><title>${esc(`${s.label}: ${x}× → ${fmt(Math.round(y * 10) / 10)}`)}</title></circle>`);
  }
  p.series.forEach((s, i) => {
    const y = M.top + ih + 52 + i * 15;
    const x = ox + M.left;
    out.push(`<line x1="${x}" x2="${x + 24}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${x + 30}" y="${y}" dy="4" font-size="11">${esc(s.label)}</text>`);
  });
  return out.join('\n');
}

/** Panels side by side in one SVG document. */
export function renderSvg(title: string, subtitle: string, panels: PanelSpec[]): string {
  const width = W * panels.length;
  const height = H + 44;
  const body = panels.map((p, i) => `<g transform="translate(0,44)">\n${panel(p, i * W)}\n</g>`).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="12" y="20" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="12" y="37" font-size="11" fill="#555">${esc(subtitle)}</text>
${body}
</svg>
`;
}
