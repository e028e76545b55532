import { v7 } from 'uuid';
import { hashPassword } from '../src/auth/passwords.js';
import type { Db } from '../src/db/port.js';
import { newId } from '../src/lib/ids.js';

// Seeds the benchmark data set straight into the database (through the same Db port Levee uses, so
// one function serves PostgreSQL and PGlite): users with one precomputed argon2 hash, and posts
// whose UUIDv7 ids and created_at are spread over the last 30 days, owned by random users.

export const BENCH_PASSWORD = 'bench-password-1';
export const emailOf = (i: number) => `bench-user-${String(i).padStart(5, '0')}@bench.levee.test`;

export interface Seeded {
  users: number;
  posts: number;
  /** The post every connection reads in W5. */
  hotPostId: string;
  seconds: number;
}

/** About 400 bytes of JSON per post, close to W2's request body. */
const POST_DATA_SQL = `jsonb_build_object(
  'title', 'Post number ' || r.n || ' from the benchmark seed',
  'body', repeat('The quick brown fox jumps over the lazy dog. ', 6),
  'tags', jsonb_build_array('bench', 'tag' || (r.n % 50)),
  'lang', 'en',
  'likes', r.n % 997)`;

export async function seed(db: Db, opts: { users: number; posts: number; batch?: number }): Promise<Seeded> {
  const t0 = performance.now();
  const hash = await hashPassword(BENCH_PASSWORD);
  const userIds = Array.from({ length: opts.users }, () => newId());
  const start = Date.now() - 30 * 86_400_000;

  const userRows = userIds.map((id, i) => ({ id, email: emailOf(i), ts: new Date(start - 86_400_000 + i * 1000).toISOString() }));
  await db.query(
    `INSERT INTO users (id, email, password_hash, is_anonymous, role, created_at, updated_at)
     SELECT r.id, r.email, $2, false, 'user', r.ts, r.ts FROM jsonb_to_recordset($1::text::jsonb) AS r(id uuid, email text, ts timestamptz)`,
    [JSON.stringify(userRows), hash],
  );

  const batch = opts.batch ?? 5_000;
  const step = (30 * 86_400_000) / opts.posts;
  for (let from = 0; from < opts.posts; from += batch) {
    const rows = [];
    for (let n = from; n < Math.min(opts.posts, from + batch); n++) {
      const ms = Math.floor(start + n * step);
      rows.push({ n, id: v7({ msecs: ms }), owner: userIds[(n * 7919) % userIds.length], ts: new Date(ms).toISOString() });
    }
    await db.query(
      `INSERT INTO documents (collection, id, owner_id, data, version, created_at, updated_at)
       SELECT 'posts', r.id, r.owner, ${POST_DATA_SQL}, 1, r.ts, r.ts
         FROM jsonb_to_recordset($1::text::jsonb) AS r(n int, id uuid, owner uuid, ts timestamptz)`,
      [JSON.stringify(rows)],
    );
  }
  // Fresh statistics and visibility map, as a long-running database would have.
  await db.exec('VACUUM ANALYZE users');
  await db.exec('VACUUM ANALYZE documents');

  const hot = await db.query<{ id: string }>(`SELECT id FROM documents WHERE collection = 'posts' ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET 100`);
  return { users: opts.users, posts: opts.posts, hotPostId: hot.rows[0]!.id, seconds: (performance.now() - t0) / 1000 };
}
