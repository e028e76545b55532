import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
// Profiles from the first SIGUSR2 to the second.
const s = new Session(); s.connect();
s.post('Profiler.enable'); s.post('Profiler.setSamplingInterval', { interval: 200 });
let on = false;
process.on('SIGUSR2', () => {
  if (!on) { on = true; s.post('Profiler.start'); return; }
  s.post('Profiler.stop', (e, r) => { if (!e) writeFileSync(`/tmp/rb/prof/${process.pid}.cpuprofile`, JSON.stringify(r.profile)); });
});
