import { createServer } from 'node:http';
import { AdmissionController } from '/work/main/src/protection/admission.ts';
import { createAdmissionGate } from '/work/main/src/http/admission-gate.ts';
const mode = process.argv[2];
let server;
if (mode === 'bare') {
  server = createServer((req, res) => {
    const body = JSON.stringify({ type: 'https://levee.dev/problems/overloaded', title: 'Overloaded', status: 503, detail: 'x'.repeat(60), instance: req.url, requestId: 'abc', retryable: true });
    res.writeHead(503, { 'content-type': 'application/problem+json; charset=utf-8', 'retry-after': '1', 'x-request-id': 'abc' });
    res.end(body);
  });
} else {
  const admission = new AdmissionController({ initialLimit: 1, minLimit: 1, maxLimit: 1, queueSize: Number(process.argv[3] ?? 0), queueWaitMs: 100 } as any);
  admission.acquire('critical'); // hold the only slot
  const gate = createAdmissionGate({ admission, defaultDeadlineMs: 5000, maxDeadlineMs: 30000 });
  server = gate.serverFactory(() => { throw new Error('never admitted'); });
}
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as any).port }));
process.on('message', (m: any) => { if (m === 'cpu') process.send!({ cpu: process.cpuUsage() }); });
