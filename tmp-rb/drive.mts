import { fork } from 'node:child_process';
import { Pool } from 'undici';
for (const mode of ['bare', 'gate', 'gate-q']) {
  const child = fork('/work/main/tmp-rb/server.mts', mode === 'gate-q' ? ['gate', '128'] : [mode], { execArgv: ['--import', 'tsx'] });
  const { port } = await new Promise<any>((r) => child.once('message', r));
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 50 });
  const cpu = () => new Promise<any>((r) => { child.once('message', (m: any) => r(m.cpu)); child.send('cpu'); });
  let n = 0; let stop = false; const statuses: Record<number, number> = {};
  const worker = async () => { while (!stop) { const r = await pool.request({ path: '/v1/collections/posts/documents?limit=20', method: 'GET' }); await r.body.text(); statuses[r.statusCode] = (statuses[r.statusCode] ?? 0) + 1; n++; } };
  // warm
  stop = false; const warm = Array.from({ length: 50 }, worker); await new Promise((r) => setTimeout(r, 1500)); stop = true; await Promise.all(warm);
  n = 0; stop = false; const c0 = await cpu(); const t0 = performance.now();
  const ws = Array.from({ length: 50 }, worker); await new Promise((r) => setTimeout(r, 4000)); stop = true; await Promise.all(ws);
  const c1 = await cpu(); const secs = (performance.now() - t0) / 1000;
  const us = (c1.user + c1.system - c0.user - c0.system);
  console.log(mode, { rps: Math.round(n / secs), serverCpuPerReqUs: Math.round(us / n), serverCpuCores: (us / 1e6 / secs).toFixed(2), statuses });
  await pool.close(); child.kill();
}
