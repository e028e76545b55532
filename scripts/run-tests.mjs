#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with Node's test runner. Node 20 neither expands globs
// nor discovers .ts files when given a directory (and then exits 0 having run nothing), so the
// files are listed here, and a run with zero tests — or, with LEVEE_CI=1, any skipped test — fails.
// Usage: npm test [-- file-or-substring …]
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const walk = (dir) =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });

const filters = process.argv.slice(2);
const files = ['src', 'test'].flatMap(walk).sort().filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
const ci = process.env.LEVEE_CI === '1' || process.env.CI === 'true';

// Suites that measure latency (*.timing.test.ts) run after the others, one at a time, so that no
// other suite competes with them for the machine's cores.
const timing = files.filter((f) => f.endsWith('.timing.test.ts'));
const batches = [
  { files: files.filter((f) => !timing.includes(f)), concurrency: 2 },
  { files: timing, concurrency: 1 },
].filter((b) => b.files.length > 0);

function run({ files: batch, concurrency }) {
  const tap = join(tmpdir(), `levee-tests-${process.pid}-${concurrency}.tap`);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=120000', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tap}`, ...batch],
    { stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } },
  );
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      const out = readFileSync(tap, 'utf8');
      rmSync(tap, { force: true });
      resolve({ code: code ?? 1, out });
    }),
  );
}

let tests = 0;
let exitCode = 0;
const skippedNames = [];
for (const batch of batches) {
  const { code, out } = await run(batch);
  tests += Number(out.match(/^# tests (\d+)$/m)?.[1] ?? 0);
  // Counts skipped tests and skipped suites alike (a suite skipped as a whole has no tests).
  skippedNames.push(...[...out.matchAll(/^\s*ok \d+ - (.*) # SKIP ?(.*)$/gm)].map((m) => `${m[1]}${m[2] ? ` (${m[2]})` : ''}`));
  if (code !== 0) exitCode = code;
}
console.log(`\nrun-tests: ${tests} tests in ${files.length} files, ${skippedNames.length} skipped`);
for (const s of skippedNames) console.log(`  skipped: ${s}`);
if (tests === 0) {
  console.error('run-tests: no test ran — failing');
  process.exit(1);
}
if (ci && skippedNames.length > 0) {
  console.error('run-tests: LEVEE_CI is set and suites were skipped — failing');
  process.exit(1);
}
process.exit(exitCode);
