import { Generator } from './generator.js';
import type { FromGenerator, ToGenerator } from './protocol.js';

// The load generator's process: forked by the orchestrator (scenario.ts), it takes commands over
// IPC and answers with results. It exits when the orchestrator goes away.

if (!process.send) throw new Error('gen-process.ts is started by bench/overload/main.ts (it talks over IPC)');
const reply = (m: FromGenerator) => process.send!(m);
const fail = (e: unknown) => reply({ type: 'error', message: String((e as Error)?.stack ?? e) });
let gen: Generator | undefined;
let busy = false;

process.on('message', (m: ToGenerator) => {
  try {
    if (m.type === 'init') {
      gen = new Generator(m.spec);
      reply({ type: 'ready' });
    } else if (m.type === 'sessions') {
      gen!.addSessions(m.tokens);
    } else if (m.type === 'run') {
      if (busy) throw new Error('a run is already going');
      busy = true;
      const id = m.spec.id;
      gen!
        .run(m.spec, (index) => reply({ type: 'phase', runId: id, index }))
        .then((result) => reply({ type: 'done', runId: id, result }))
        .catch(fail)
        .finally(() => (busy = false));
    } else if (m.type === 'exit') {
      void (gen?.close() ?? Promise.resolve()).finally(() => process.exit(0));
    }
  } catch (e) {
    fail(e);
  }
});
process.on('disconnect', () => process.exit(0));
