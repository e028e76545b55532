import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CONFIG_DOCS_PATH, EXAMPLE_CONFIG, renderConfigDocs } from '../scripts/gen-config-docs.js';
import { loadConfig } from '../src/config/load.js';
import { SETTINGS } from '../src/config/settings.js';
import { ERRORS, type ErrorSpec } from '../src/lib/errors.js';

// The docs API users read are checked against the code they describe, so neither drifts.

const ERRORS_DOC = new URL('../docs/errors.md', import.meta.url);

interface DocumentedCode {
  code: string;
  status: number;
  retryable: boolean;
}

/** The rows of the "## Codes" table in docs/errors.md. A row that does not parse fails the test. */
function documentedCodes(): DocumentedCode[] {
  const md = readFileSync(ERRORS_DOC, 'utf8');
  const section = md.split(/^## Codes$/m)[1];
  assert.ok(section, 'docs/errors.md has a "## Codes" section');
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  return rows.map((row) => {
    const m = /^\| `([a-z_]+)` \| (\d{3}) \| (yes|no) \| \S.*\|$/.exec(row);
    assert.ok(m, `docs/errors.md: malformed row: ${row}`);
    return { code: m[1]!, status: Number(m[2]), retryable: m[3] === 'yes' };
  });
}

describe('docs/errors.md', () => {
  const documented = documentedCodes();

  it('documents every code in the catalogue, with its status and retryability', () => {
    for (const [code, spec] of Object.entries(ERRORS) as [string, ErrorSpec][]) {
      const row = documented.find((d) => d.code === code);
      assert.ok(row, `${code} is missing from docs/errors.md`);
      assert.equal(row.status, spec.status, `${code}: docs say ${row.status}, the catalogue ${spec.status}`);
      assert.equal(row.retryable, spec.retryable ?? false, `${code}: retryable differs between docs and catalogue`);
    }
  });

  it('documents only codes that exist, each once', () => {
    for (const d of documented) assert.ok(d.code in ERRORS, `docs/errors.md documents ${d.code}, which src/lib/errors.ts does not have`);
    assert.equal(new Set(documented.map((d) => d.code)).size, documented.length, 'a code is documented twice');
  });
});

describe('docs/configuration.md', () => {
  it('is exactly what scripts/gen-config-docs.ts generates (run npm run docs:config)', () => {
    assert.equal(readFileSync(CONFIG_DOCS_PATH, 'utf8'), renderConfigDocs());
  });

  it('has a row for every setting, with its env var, file key and default', () => {
    const md = renderConfigDocs();
    for (const [key, s] of Object.entries(SETTINGS)) {
      const row = md.split('\n').find((l) => l.startsWith(`| \`${s.env}\` |`));
      assert.ok(row, `${s.env} is not documented`);
      assert.ok(row.includes(`| \`${key}\` |`), `${s.env}: file key ${key} missing`);
      const dflt = s.default as unknown;
      if (typeof dflt === 'number' || typeof dflt === 'string') assert.ok(row.includes(`\`${dflt}\``), `${s.env}: default ${dflt} missing`);
    }
  });

  it('its example config file is accepted by loadConfig', () => {
    const dir = mkdtempSync(join(tmpdir(), 'levee-docs-'));
    try {
      const file = join(dir, 'levee.config.json');
      writeFileSync(file, JSON.stringify(EXAMPLE_CONFIG));
      const config = loadConfig({ LEVEE_CONFIG: file });
      assert.deepEqual(config.appleAudiences, EXAMPLE_CONFIG.appleAudiences);
      assert.deepEqual([...config.collections.keys()], Object.keys(EXAMPLE_CONFIG.collections));
      // The example is printed in the docs as is.
      assert.ok(renderConfigDocs().includes(JSON.stringify(EXAMPLE_CONFIG, null, 2)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
