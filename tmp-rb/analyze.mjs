import { readFileSync } from 'node:fs';
const p = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map(); for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const dt = new Map(); p.samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
const total = [...dt.values()].reduce((a, b) => a + b, 0);
const self = new Map(); const incl = new Map();
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/.*node_modules\//, 'nm/').replace(/.*\/work\/main\//, '')}:${n.callFrame.lineNumber}`;
for (const [id, t] of dt) {
  const n = byId.get(id); self.set(key(n), (self.get(key(n)) ?? 0) + t);
  const seen = new Set(); let cur = id;
  while (cur !== undefined) { const k = key(byId.get(cur)); if (!seen.has(k)) { seen.add(k); incl.set(k, (incl.get(k) ?? 0) + t); } cur = parent.get(cur); }
}
const pct = (t) => (100 * t / total).toFixed(1) + '%';
console.log('total ms', (total / 1000).toFixed(0));
console.log('--- self'); [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.argv[3] ?? 35)).forEach(([k, t]) => console.log(pct(t), k));
console.log('--- inclusive'); [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(process.argv[4] ?? 60)).forEach(([k, t]) => console.log(pct(t), k));
