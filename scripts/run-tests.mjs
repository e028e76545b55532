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
const tap = join(tmpdir(), `levee-tests-${process.pid}.tap`);
const ci = process.env.LEVEE_CI === '1' || process.env.CI === 'true';
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tap}`, ...files],
  { stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } },
);
child.on('exit', (code) => {
  const out = readFileSync(tap, 'utf8');
  rmSync(tap, { force: true });
  const count = (name) => Number(out.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
  const tests = count('tests');
  // Counts skipped tests and skipped suites alike (a suite skipped as a whole has no tests).
  const skippedNames = [...out.matchAll(/^\s*ok \d+ - (.*) # SKIP ?(.*)$/gm)].map((m) => `${m[1]}${m[2] ? ` (${m[2]})` : ''}`);
  const skipped = skippedNames.length;
  console.log(`\nrun-tests: ${tests} tests in ${files.length} files, ${skipped} skipped`);
  for (const s of skippedNames) console.log(`  skipped: ${s}`);
  if (tests === 0) {
    console.error('run-tests: no test ran — failing');
    process.exit(1);
  }
  if (ci && skipped > 0) {
    console.error('run-tests: LEVEE_CI is set and suites were skipped — failing');
    process.exit(1);
  }
  process.exit(code ?? 1);
});
