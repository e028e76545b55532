import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseCollections } from '../src/config/collections.js';
import { loadConfig } from '../src/config/load.js';
import { SETTINGS } from '../src/config/settings.js';
import { LeveeStartupError } from '../src/lib/startup-error.js';

// loadConfig is given its environment as an object and LEVEE_CONFIG points at temp files, so these
// tests never read the process environment or the repository's own levee.config.json.

const dir = mkdtempSync(join(tmpdir(), 'levee-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
/** Writes a config file (an object is serialised; a string is written as is) and returns its path. */
function configFile(content: unknown): string {
  const path = join(dir, `levee.${files++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The startup error's lines; fails if loadConfig does not throw a LeveeStartupError. */
function problems(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (e) {
    assert.ok(e instanceof LeveeStartupError, `expected a LeveeStartupError, got ${String(e)}`);
    return e.message.split('\n');
  }
  assert.fail('loadConfig accepted a bad configuration');
}

const defaults = Object.fromEntries(Object.entries(SETTINGS).map(([k, s]) => [k, s.default]));

describe('loadConfig', () => {
  it('with no file and no environment, every setting is its default', () => {
    const empty = mkdtempSync(join(dir, 'cwd-'));
    const cwd = process.cwd();
    process.chdir(empty); // no ./levee.config.json here
    try {
      const config = loadConfig({});
      const { configFile: file, collections, ...settings } = config;
      assert.deepEqual(settings, defaults);
      assert.equal(file, undefined);
      assert.equal(collections.size, 0);
    } finally {
      process.chdir(cwd);
    }
  });

  it('reads ./levee.config.json from the working directory when LEVEE_CONFIG is unset', () => {
    const here = mkdtempSync(join(dir, 'cwd-'));
    writeFileSync(join(here, 'levee.config.json'), JSON.stringify({ port: 9001 }));
    const cwd = process.cwd();
    process.chdir(here);
    try {
      const config = loadConfig({});
      assert.equal(config.port, 9001);
      assert.equal(config.configFile, join(process.cwd(), 'levee.config.json'));
    } finally {
      process.chdir(cwd);
    }
  });

  it('the file overrides defaults, the environment overrides the file, overrides win over both', () => {
    const file = configFile({ port: 9000, logLevel: 'debug', roles: ['api', 'worker'], adminEmails: ['Boss@Example.com'], googleIssuers: ['https://accounts.google.com'] });
    const config = loadConfig({ LEVEE_CONFIG: file, PORT: '9100', HOST: '0.0.0.0' });
    assert.equal(config.port, 9100); // env over file
    assert.equal(config.host, '0.0.0.0'); // env over default
    assert.equal(config.logLevel, 'debug'); // file over default
    assert.deepEqual(config.roles, ['api', 'worker']);
    assert.deepEqual(config.adminEmails, ['boss@example.com']);
    assert.deepEqual(config.googleIssuers, ['https://accounts.google.com']);
    assert.equal(config.sessionTtlDays, SETTINGS.sessionTtlDays.default);
    assert.equal(config.configFile, file);

    // An empty variable counts as unset: the file's value stays.
    assert.equal(loadConfig({ LEVEE_CONFIG: file, PORT: '' }).port, 9000);
    // Overrides (levee start --roles) beat the environment.
    assert.deepEqual(loadConfig({ LEVEE_CONFIG: file, LEVEE_ROLES: 'api' }, { roles: ['push'] }).roles, ['push']);
  });

  it('parses lists, URLs and numbers from the environment', () => {
    const config = loadConfig({
      LEVEE_CONFIG: configFile({}),
      LEVEE_ROLES: ' api , push,api ',
      LEVEE_APPLE_AUDIENCES: 'com.example.app,com.example.app.watch',
      DATABASE_URL: 'postgresql://u@db.internal:5432/levee',
      REDIS_URL: 'rediss://cache.internal:6380',
      LEVEE_DB_POOL_SIZE: '25',
    });
    assert.deepEqual(config.roles, ['api', 'push']);
    assert.deepEqual(config.appleAudiences, ['com.example.app', 'com.example.app.watch']);
    assert.equal(config.databaseUrl, 'postgresql://u@db.internal:5432/levee');
    assert.equal(config.redisUrl, 'rediss://cache.internal:6380');
    assert.equal(config.dbPoolSize, 25);
  });

  it('LEVEE_TRUST_PROXY: off, on, a hop count or addresses; booleans and lists from the file', () => {
    const trust = (v: string) => loadConfig({ LEVEE_CONFIG: configFile({}), LEVEE_TRUST_PROXY: v }).trustProxy;
    assert.equal(loadConfig({ LEVEE_CONFIG: configFile({}) }).trustProxy, false);
    assert.equal(trust('off'), false);
    assert.equal(trust('on'), true);
    assert.equal(trust('2'), 2);
    assert.deepEqual(trust('10.0.0.0/8, 127.0.0.1'), ['10.0.0.0/8', '127.0.0.1']);
    assert.equal(loadConfig({ LEVEE_CONFIG: configFile({ trustProxy: true }) }).trustProxy, true);
    assert.deepEqual(loadConfig({ LEVEE_CONFIG: configFile({ trustProxy: ['10.0.0.1'] }) }).trustProxy, ['10.0.0.1']);
    assert.throws(() => trust('500'), /LEVEE_TRUST_PROXY must be between 1 and 100/);
  });

  it('accepts the minimal collections form', () => {
    const file = configFile({ collections: { posts: { read: 'public', write: 'owner', indexes: ['createdAt'] } } });
    const config = loadConfig({ LEVEE_CONFIG: file });
    assert.deepEqual([...config.collections.values()], [
      { name: 'posts', read: 'public', write: 'owner', indexes: [{ name: 'createdAt', type: 'timestamp' }], maxDocumentBytes: 65_536, conflict: 'server-wins' },
    ]);
  });

  it('the same file loads twice in one process (a schema with an $id included)', () => {
    const file = configFile({ collections: { posts: { schema: { $id: 'https://example.com/post', type: 'object' } } } });
    assert.equal(loadConfig({ LEVEE_CONFIG: file }).collections.size, 1);
    assert.equal(loadConfig({ LEVEE_CONFIG: file }).collections.size, 1);
  });

  const bad: { name: string; env?: Record<string, string>; file?: unknown; line: RegExp }[] = [
    { name: 'PORT=abc', env: { PORT: 'abc' }, line: /^PORT must be a whole number, got "abc"$/ },
    { name: 'PORT=70000', env: { PORT: '70000' }, line: /^PORT must be between 0 and 65535, got 70000$/ },
    { name: 'PORT=-1', env: { PORT: '-1' }, line: /^PORT must be between 0 and 65535/ },
    { name: 'PORT=80.5', env: { PORT: '80.5' }, line: /^PORT must be a whole number/ },
    { name: 'DATABASE_URL=mysql://', env: { DATABASE_URL: 'mysql://db/app' }, line: /^DATABASE_URL must start with postgres:\/\/ or postgresql:\/\/$/ },
    { name: 'DATABASE_URL not a URL', env: { DATABASE_URL: 'localhost:5432' }, line: /^DATABASE_URL / },
    { name: 'REDIS_URL=http://x', env: { REDIS_URL: 'http://x' }, line: /^REDIS_URL must start with redis:\/\/ or rediss:\/\/$/ },
    { name: 'LEVEE_ROLES=bogus', env: { LEVEE_ROLES: 'bogus' }, line: /^LEVEE_ROLES unknown role "bogus"/ },
    { name: 'LEVEE_ROLES=,', env: { LEVEE_ROLES: ',' }, line: /^LEVEE_ROLES must name at least one of api, worker, push$/ },
    { name: 'LOG_LEVEL=loud', env: { LOG_LEVEL: 'loud' }, line: /^LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"$/ },
    { name: 'a bad value in the file names the variable and the key', file: { port: 'eighty' }, line: /^PORT \(.*levee\.\d+\.json: port\) must be a whole number, got "eighty"$/ },
    { name: 'a wrongly typed value in the file', file: { host: { name: 'x' } }, line: /^HOST \(.*: host\) must be a string$/ },
    { name: 'unknown top-level key', file: { prot: 8080 }, line: /levee\.\d+\.json: unknown key "prot"$/ },
    { name: 'bad rule', file: { collections: { posts: { read: 'everyone' } } }, line: /^LEVEE_CONFIG: .*: collections\.posts\.read must be one of public, authenticated, owner, admin, got "everyone"$/ },
    { name: 'bad index field name', file: { collections: { posts: { indexes: ['author.name'] } } }, line: /^LEVEE_CONFIG: .*: collections\.posts\.indexes: "author\.name" is not a valid field name$/ },
    { name: 'indexes not an array', file: { collections: { posts: { indexes: 'createdAt' } } }, line: /^LEVEE_CONFIG: .*: collections\.posts\.indexes must be an array of field names$/ },
    { name: 'bad JSON Schema', file: { collections: { posts: { schema: { type: 'sting' } } } }, line: /^LEVEE_CONFIG: .*: collections\.posts\.schema is not a valid JSON Schema: / },
    { name: 'schema not an object', file: { collections: { posts: { schema: 'yes' } } }, line: /^LEVEE_CONFIG: .*: collections\.posts\.schema must be a JSON Schema object$/ },
    { name: 'maxDocumentBytes out of range', file: { collections: { posts: { maxDocumentBytes: 10 } } }, line: /^LEVEE_CONFIG: .*: collections\.posts\.maxDocumentBytes must be a whole number between 64 and 1048576$/ },
    { name: 'unknown collection key', file: { collections: { posts: { reed: 'public' } } }, line: /^LEVEE_CONFIG: .*: collections\.posts\.reed is not a known key/ },
    { name: 'bad collection name', file: { collections: { 'My Posts': {} } }, line: /^LEVEE_CONFIG: .*: collections\.My Posts: a collection name is lowercase/ },
    { name: 'collection definition not an object', file: { collections: { posts: true } }, line: /^LEVEE_CONFIG: .*: collections\.posts must be an object$/ },
    { name: 'collections not an object', file: { collections: ['posts'] }, line: /^LEVEE_CONFIG: .*: collections must be an object of collection name → definition$/ },
    { name: 'unreadable JSON', file: '{ "port": 8080, ', line: /^LEVEE_CONFIG: .*levee\.\d+\.json is not valid: / },
    { name: 'top level not an object', file: '[1, 2]', line: /^LEVEE_CONFIG: .* is not valid: the top level must be a JSON object$/ },
  ];
  for (const c of bad) {
    it(`reports ${c.name} as one line naming the setting`, () => {
      const env = { ...(c.file !== undefined ? { LEVEE_CONFIG: configFile(c.file) } : { LEVEE_CONFIG: configFile({}) }), ...c.env };
      const lines = problems(env);
      assert.equal(lines.length, 1, `expected one line, got:\n${lines.join('\n')}`);
      assert.match(lines[0]!, c.line);
    });
  }

  it('reports a missing or unreadable LEVEE_CONFIG', () => {
    assert.deepEqual(problems({ LEVEE_CONFIG: join(dir, 'nope.json') }), [`LEVEE_CONFIG: ${join(dir, 'nope.json')} does not exist`]);
    const directory = join(dir, 'a-directory.json');
    mkdirSync(directory);
    const [line, ...rest] = problems({ LEVEE_CONFIG: directory });
    assert.deepEqual(rest, []);
    assert.match(line!, /^LEVEE_CONFIG: .*a-directory\.json is not valid: EISDIR/);
  });

  it('reports every problem at once, one line each', () => {
    const file = configFile({
      prot: 8080,
      sessionTtlDays: 0,
      collections: { posts: { read: 'everyone' }, notes: { indexes: ['a-b'] }, fine: { read: 'public' } },
    });
    const lines = problems({ LEVEE_CONFIG: file, PORT: 'abc', DATABASE_URL: 'mysql://db/app', REDIS_URL: 'http://x', LEVEE_ROLES: 'api,bogus' });
    const expected = [/unknown key "prot"/, /^PORT /, /^DATABASE_URL /, /^REDIS_URL /, /^LEVEE_ROLES /, /^LEVEE_SESSION_TTL_DAYS \(.*: sessionTtlDays\) must be between 1 and 3650/, /collections\.posts\.read/, /collections\.notes\.indexes/];
    assert.equal(lines.length, expected.length, lines.join('\n'));
    for (const re of expected) assert.ok(lines.some((l) => re.test(l)), `no line matches ${re}:\n${lines.join('\n')}`);
  });
});

describe('parseCollections', () => {
  it('no section means no collections', () => {
    assert.equal(parseCollections(undefined).size, 0);
  });

  it('fills in defaults: read authenticated, write owner, no indexes, 64 KiB documents, server-wins', () => {
    assert.deepEqual(parseCollections({ items: {} }).get('items'), { name: 'items', read: 'authenticated', write: 'owner', indexes: [], maxDocumentBytes: 65_536, conflict: 'server-wins' });
  });

  it('takes a conflict policy and refuses an unknown one, naming the key', () => {
    assert.equal(parseCollections({ x: { conflict: 'last-write-wins' } }).get('x')!.conflict, 'last-write-wins');
    assert.throws(() => parseCollections({ x: { conflict: 'client-wins' } }), /collections\.x\.conflict must be one of server-wins, last-write-wins/);
  });

  it('accepts every rule and the bounds of maxDocumentBytes', () => {
    for (const rule of ['public', 'authenticated', 'owner', 'admin']) {
      const c = parseCollections({ x: { read: rule, write: rule } }).get('x')!;
      assert.equal(c.read, rule);
      assert.equal(c.write, rule);
    }
    assert.equal(parseCollections({ x: { maxDocumentBytes: 64 } }).get('x')!.maxDocumentBytes, 64);
    assert.equal(parseCollections({ x: { maxDocumentBytes: 1_048_576 } }).get('x')!.maxDocumentBytes, 1_048_576);
    for (const n of [63, 1_048_577, 100.5, '1000']) assert.throws(() => parseCollections({ x: { maxDocumentBytes: n } }), /maxDocumentBytes/);
  });

  it('types indexes: system columns, then the schema (number, integer, boolean), else text; duplicates collapse', () => {
    const c = parseCollections({
      posts: {
        indexes: ['createdAt', 'updatedAt', 'ownerId', 'score', 'rank', 'pinned', 'title', 'untyped', 'score'],
        schema: { type: 'object', properties: { score: { type: 'number' }, rank: { type: 'integer' }, pinned: { type: 'boolean' }, title: { type: 'string' } } },
      },
    }).get('posts')!;
    assert.deepEqual(c.indexes, [
      { name: 'createdAt', type: 'timestamp' },
      { name: 'updatedAt', type: 'timestamp' },
      { name: 'ownerId', type: 'text' },
      { name: 'score', type: 'number' },
      { name: 'rank', type: 'number' },
      { name: 'pinned', type: 'boolean' },
      { name: 'title', type: 'text' },
      { name: 'untyped', type: 'text' },
    ]);
    assert.deepEqual(c.schema, { type: 'object', properties: { score: { type: 'number' }, rank: { type: 'integer' }, pinned: { type: 'boolean' }, title: { type: 'string' } } });
  });

  it('collection and field names are checked', () => {
    for (const name of ['Posts', '1posts', 'my-posts', 'a'.repeat(41), '']) assert.throws(() => parseCollections({ [name]: {} }), /a collection name is/, name);
    assert.ok(parseCollections({ ['a'.repeat(40)]: {} }).size === 1);
    for (const field of ['a.b', 'a-b', '1a', '', 'x'.repeat(41), 7]) assert.throws(() => parseCollections({ x: { indexes: [field] } }), /is not a valid field name/, String(field));
    assert.equal(parseCollections({ x: { indexes: ['_private', 'camelCase9'] } }).get('x')!.indexes.length, 2);
  });
});
