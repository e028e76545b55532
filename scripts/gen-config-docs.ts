// Generates docs/configuration.md from the settings schema (src/config/settings.ts) and the
// collection parser's own defaults, so the reference cannot drift from the code:
//   npm run docs:config            rewrite docs/configuration.md
//   npm run docs:config -- --check exit 1 if it is out of date
// test/docs.test.ts compares the file with renderConfigDocs() too.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ACCESS_RULES, COLLECTION_NAME, FIELD_NAME, parseCollections, SYSTEM_FIELDS } from '../src/config/collections.js';
import { SETTINGS } from '../src/config/settings.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../src/data/list-query.js';

export const CONFIG_DOCS_PATH = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));

/** The example config file shown in the docs; test/docs.test.ts checks loadConfig accepts it. */
export const EXAMPLE_CONFIG = {
  port: 8080,
  adminEmails: ['ops@example.com'],
  appleAudiences: ['com.example.app'],
  collections: {
    posts: {
      read: 'public',
      write: 'owner',
      indexes: ['createdAt', 'status', 'score'],
      schema: {
        type: 'object',
        required: ['title'],
        properties: { title: { type: 'string', maxLength: 200 }, status: { type: 'string', enum: ['draft', 'published'] }, score: { type: 'number' } },
      },
      maxDocumentBytes: 16384,
    },
    notes: { read: 'owner', write: 'owner', indexes: ['updatedAt'], conflict: 'last-write-wins' },
  },
};

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function renderDefault(v: unknown): string {
  if (v === undefined) return '*(unset)*';
  if (Array.isArray(v)) return v.length === 0 ? '*(empty)*' : `\`${v.join(',')}\``;
  return `\`${String(v)}\``;
}

function settingsTable(): string {
  const rows = Object.entries(SETTINGS).map(([key, s]) => `| \`${s.env}\` | \`${key}\` | ${cell(renderDefault(s.default))} | ${cell(s.doc)} |`);
  return ['| environment variable | config-file key | default | description |', '|---|---|---|---|', ...rows].join('\n');
}

/** The markdown of docs/configuration.md. Pure: same code, same output. */
export function renderConfigDocs(): string {
  // Collection defaults come from the parser itself: a definition with no keys.
  const dflt = parseCollections({ example: {} }).get('example')!;
  const systemFields = Object.keys(SYSTEM_FIELDS).map((f) => `\`${f}\``).join(', ');
  return `<!-- Generated from src/config/settings.ts by \`npm run docs:config\` (scripts/gen-config-docs.ts). Do not edit by hand: test/docs.test.ts fails when this file and the code disagree. -->

# Configuration

Levee reads its settings once, at start-up, from three layers; a later layer wins:

1. the defaults below;
2. the config file: \`./levee.config.json\`, or the path in \`LEVEE_CONFIG\`;
3. environment variables (an empty variable counts as unset).

\`levee start --roles …\` overrides \`LEVEE_ROLES\`. Every setting is checked before anything starts;
all problems are reported together, one line each, naming the variable (and the file key), and the
process exits with status 1:

\`\`\`
levee: PORT must be between 0 and 65535, got 70000
levee: DATABASE_URL must start with postgres:// or postgresql://
levee: LEVEE_CONFIG: ./levee.config.json: collections.posts.read must be one of ${ACCESS_RULES.join(', ')}, got "everyone"
\`\`\`

## Settings

${settingsTable()}

Lists (\`LEVEE_ROLES\`, \`LEVEE_ADMIN_EMAILS\`, the audiences and issuers) are comma-separated in the
environment and JSON arrays of strings in the config file.

## The config file

A JSON object. Its keys are the config-file keys of the table above, plus \`collections\` and an
optional \`$schema\`; any other key is an error (so a typo does not go unnoticed). If \`LEVEE_CONFIG\`
names a file that does not exist, that is an error too; without \`LEVEE_CONFIG\`, a missing
\`./levee.config.json\` just means "defaults and environment only".

\`\`\`json
${JSON.stringify(EXAMPLE_CONFIG, null, 2)}
\`\`\`

## Collections

\`collections\` declares the document collections clients may use, by name. A name is lowercase
letters, digits and \`_\`, starting with a letter, at most 40 characters (\`${COLLECTION_NAME.source}\`).
Documents are JSON objects; every document also has the system fields ${systemFields} and a
\`version\`. The smallest useful declaration:

\`\`\`json
{ "collections": { "posts": { "read": "public", "write": "owner", "indexes": ["createdAt"] } } }
\`\`\`

| key | default | meaning |
|---|---|---|
| \`read\` | \`${dflt.read}\` | Who may list and read documents: one of the rules below. |
| \`write\` | \`${dflt.write}\` | Who may create, replace, patch and delete documents: one of the rules below. |
| \`indexes\` | \`[]\` | Fields that get a database index; only these (plus \`id\`, \`ownerId\` and \`createdAt\`) may be filtered and sorted on. |
| \`schema\` | *(none)* | A JSON Schema every document must satisfy. |
| \`maxDocumentBytes\` | \`${dflt.maxDocumentBytes}\` | Largest document, in bytes of its JSON (64 to 1048576). |
| \`conflict\` | \`${dflt.conflict}\` | How an offline write based on an old version is settled: \`server-wins\` (answered as a conflict, the client merges) or \`last-write-wins\` (the offline change's fields are merged over the newer server version). See [sync.md](sync.md#conflicts). |

### Access rules

| rule | read (list, get) | create | change (replace, patch, delete) |
|---|---|---|---|
| \`public\` | Anyone, even without an access token. | Anyone, even without an access token (the document then has no owner). | Anyone, even without an access token. |
| \`authenticated\` | Any signed-in user, anonymous accounts included. | Any signed-in user. | Any signed-in user, whoever owns the document. |
| \`owner\` | Each user sees only their own documents: others' are left out of lists and answer 404. | Any signed-in user; the creator owns the document. | Only the document's owner. |
| \`admin\` | Only administrators. | Only administrators. | Only administrators. |

- Administrators are the accounts whose email was listed in \`LEVEE_ADMIN_EMAILS\` when they signed
  up (with a password, or with Apple or Google giving that verified email). They pass every rule: under \`owner\` they read and change every user's documents.
- Without an access token, a rule other than \`public\` answers 401 \`unauthenticated\`; signed in but
  not allowed answers 403 \`forbidden\` (an \`admin\` collection, or someone else's document under an
  \`owner\` write rule).
- A change also needs read access to the document: one you may not read answers as a read would
  (404 \`document_not_found\`, or 401/403 under the read rule), whatever the write rule says.
- Rules combine freely. \`read: public, write: owner\` is a public feed whose posts only their
  authors edit; \`read: owner, write: owner\` is private per-user data; \`read: authenticated,
  write: admin\` is content only administrators publish.

### Indexes

Each entry is a field name (\`${FIELD_NAME.source}\`): a system field (${systemFields}) or a
top-level field of the document. Each becomes a PostgreSQL index on that collection's documents,
created at start-up (\`CREATE INDEX IF NOT EXISTS\`, so adding one to a running deployment takes
effect on the next start). A field's type comes from the collection's \`schema\`: \`number\` or
\`integer\` properties compare as numbers, \`boolean\` as booleans, anything else as text;
\`createdAt\` and \`updatedAt\` are timestamps. Without a schema a data field compares as text
(\`"10" < "9"\`), so declare numeric fields in the schema. Nested fields cannot be indexed.

### Schema

Any JSON Schema (Ajv, with the \`ajv-formats\` formats such as \`email\`, \`uri\`, \`date-time\`). It is
compiled at start-up, so an invalid schema stops the server with a message naming the collection.
Every created or replaced document, and every patched document after the patch is applied, must
satisfy it; otherwise the write answers 422 \`document_invalid\` with an \`errors\` list.

### maxDocumentBytes

The size of the document's JSON. Larger documents answer 413 \`payload_too_large\`. The whole
request body is also bounded by \`LEVEE_BODY_LIMIT_BYTES\`.

### Listing: filters, sort and cursor

\`\`\`
GET /v1/collections/posts/documents?status=published&score[gte]=10&sort=-score&limit=20
GET /v1/collections/posts/documents?status=published&score[gte]=10&sort=-score&limit=20&cursor=<nextCursor>
\`\`\`

- **Filters**: \`field=value\` or \`field[op]=value\` on an indexed field (or \`id\`, \`ownerId\`,
  \`createdAt\`). Operators: \`eq\` (the default), \`ne\`, \`gt\`, \`gte\`, \`lt\`, \`lte\`, and \`in\`
  with up to 100 comma-separated values. Several filters, or one repeated, must all hold. Values
  are typed by the field: numbers, \`true\`/\`false\`, RFC 3339 timestamps, UUIDs for \`id\` and
  \`ownerId\`, text otherwise (at most 1024 characters).
- **Sort**: \`sort=field\` ascending or \`sort=-field\` descending, on one indexed field; the default
  is \`-createdAt\` (newest first). Ties are broken by \`id\`. Documents that lack a data field being
  sorted on are left out of that list.
- **Page size**: \`limit\` from 1 to ${MAX_LIMIT}, default ${DEFAULT_LIMIT}.
- **Cursor**: each page has \`nextCursor\` (\`null\` on the last page). Ask for the next page with the
  same filters and sort plus \`cursor=<nextCursor>\`. Cursors are opaque and keyset-based: documents
  created between pages do not make a page skip or repeat. A cursor from another sort order
  answers 400 \`invalid_cursor\`.
- Anything else — an undeclared field, an unknown operator, a value of the wrong type — answers
  400 \`invalid_filter\`. Under an \`owner\` read rule, lists contain only the caller's documents.
`;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const markdown = renderConfigDocs();
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(CONFIG_DOCS_PATH, 'utf8');
    } catch {
      // missing: out of date
    }
    if (current !== markdown) {
      console.error('docs/configuration.md is out of date: run npm run docs:config');
      process.exit(1);
    }
  } else {
    writeFileSync(CONFIG_DOCS_PATH, markdown);
    console.log(`wrote ${CONFIG_DOCS_PATH}`);
  }
}
