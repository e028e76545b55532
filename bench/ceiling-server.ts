import Fastify from 'fastify';
import pg from 'pg';
import { loadConfig } from '../src/config/load.js';
import { parseListQuery } from '../src/data/list-query.js';
import { listSql } from '../src/data/store.js';

// The ceiling for W1: a bare Fastify route (no logging, auth, validation, metrics or response
// schema) running the same feed SELECT Levee runs — the SQL text comes from Levee's own list-query
// builder for `?sort=-createdAt&limit=20` — through `pg` with the same pool size.
// Env: PORT, DATABASE_URL, LEVEE_CONFIG (the posts collection), LEVEE_DB_POOL_SIZE.

const config = loadConfig(process.env);
const posts = config.collections.get('posts');
if (!config.databaseUrl || !posts) throw new Error('ceiling-server needs DATABASE_URL and a posts collection in LEVEE_CONFIG');
const { sql, params } = listSql('posts', parseListQuery(posts, { sort: '-createdAt', limit: '20' }));
const pool = new pg.Pool({ connectionString: config.databaseUrl, max: config.dbPoolSize, keepAlive: true });

const app = Fastify({ logger: false });
app.get('/v1/collections/posts/documents', async () => {
  // A named prepared statement, as Levee's PostgreSQL adapter uses: the raw engine at its best.
  const { rows } = await pool.query({ name: 'feed', text: sql, values: params });
  return { items: rows.slice(0, 20), nextCursor: null };
});
app.get('/readyz', async () => {
  await pool.query('SELECT 1');
  return { status: 'ready' };
});
await app.listen({ port: config.port, host: '127.0.0.1' });
console.log(`ceiling server on ${config.port}, pool ${config.dbPoolSize}\n${sql.replace(/\s+/g, ' ')}`);

const stop = () => {
  void app
    .close()
    .then(() => pool.end())
    .finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
