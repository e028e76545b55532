// A job-consuming process for the crash tests (test/integration/jobs-crash.test.ts): it consumes the
// `work` queue of the engine named in argv and, for each job, appends `start <id> <pid>` to the file
// JOB_LOG, works for JOB_MS, then appends `done <id> <pid>`.
import { appendFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { openJobQueues, type QueueEngineChoice } from '../../src/jobs/engines.js';

const choice = JSON.parse(process.argv[2]!) as QueueEngineChoice;
const log = process.env.JOB_LOG!;
const workMs = Number(process.env.JOB_MS ?? 3000);
const queues = await openJobQueues(choice, [{ name: 'work', concurrency: 2, maxSize: 100, attempts: 5, backoffMs: 100, deadlineMs: 20_000, keepDeadLetters: 10, lockMs: 2_000 }], new Registry());
queues.consume('work', {
  slow: async (_payload, ctx) => {
    appendFileSync(log, `start ${ctx.id} ${process.pid}\n`);
    await new Promise((r) => setTimeout(r, workMs));
    appendFileSync(log, `done ${ctx.id} ${process.pid}\n`);
  },
});
appendFileSync(log, `ready ${process.pid}\n`);
process.on('SIGTERM', () => void queues.close().then(() => process.exit(0)));
