import { EventEmitter } from 'node:events';
import type { PgPool, PgPoolClient } from 'bullmq';
import type { PgliteSession } from '../db/adapters/pglite.js';

// BullMQ's PostgreSQL backend talks to a pg.Pool; in embedded mode there is no server, only PGlite
// in this process — one session, shared with Levee's own queries. This front makes that session
// look like a pool (written here: nothing on npm does it, and @electric-sql/pglite-socket would add
// a TCP hop and lose LISTEN):
// - a statement outside a transaction takes one turn on the session, like any Levee query;
// - BEGIN … COMMIT/ROLLBACK holds the session for the whole transaction, so nothing interleaves;
// - LISTEN/UNLISTEN become PGlite subscriptions whose payloads reach the client as pg's
//   'notification' events (BullMQ waits for new jobs that way);
// - every BullMQ statement runs with search_path set to its schema and set back afterwards, so
//   Levee's own unqualified names (and its migrations) keep resolving to `public`.

const TX_START = /^\s*(BEGIN|START\s+TRANSACTION)\b/i;
const TX_END = /^\s*(COMMIT|END|ROLLBACK)\b(?!\s+TO\b)/i;
const LISTEN = /^\s*LISTEN\s+("?)([\w$]+)\1\s*;?\s*$/i;
const UNLISTEN = /^\s*UNLISTEN\s+("?)([\w$*]+)\1\s*;?\s*$/i;

export function pglitePool(session: PgliteSession, schema = 'bullmq'): PgPool {
  const into = `SET search_path TO "${schema}", public`;
  const back = 'SET search_path TO public';
  const clients = new Set<PgliteClient>();

  /** One statement in its own turn, inside the schema. */
  const once = async (text: string, params?: readonly unknown[]) => {
    const held = await session.hold();
    try {
      await held.run(into);
      return await held.run(text, params);
    } finally {
      await held.run(back).catch(() => {});
      held.release();
    }
  };

  class PgliteClient extends EventEmitter implements PgPoolClient {
    #tx: Awaited<ReturnType<PgliteSession['hold']>> | undefined;
    readonly #listening = new Map<string, () => Promise<void>>();

    async query(text: string, params?: readonly unknown[]) {
      if (this.#tx) {
        const r = await this.#tx.run(text, params);
        if (TX_END.test(text)) await this.#endTx();
        return r as never;
      }
      if (TX_START.test(text)) {
        this.#tx = await session.hold();
        await this.#tx.run(into);
        return (await this.#tx.run(text, params)) as never;
      }
      const listen = LISTEN.exec(text);
      if (listen) {
        const channel = listen[2]!;
        if (!this.#listening.has(channel)) this.#listening.set(channel, await session.listen(channel, (payload) => this.emit('notification', { channel, payload })));
        return { rows: [], rowCount: 0 } as never;
      }
      const unlisten = UNLISTEN.exec(text);
      if (unlisten) {
        for (const [channel, stop] of this.#listening) {
          if (unlisten[2] === '*' || unlisten[2] === channel) {
            this.#listening.delete(channel);
            await stop();
          }
        }
        return { rows: [], rowCount: 0 } as never;
      }
      return (await once(text, params)) as never;
    }

    async #endTx() {
      const tx = this.#tx!;
      this.#tx = undefined;
      await tx.run(back).catch(() => {});
      tx.release();
    }

    release() {
      // A client handed back mid-transaction must not keep the session: roll it back.
      if (this.#tx) void this.#tx.run('ROLLBACK').catch(() => {}).finally(() => this.#endTx());
      for (const stop of this.#listening.values()) void stop().catch(() => {});
      this.#listening.clear();
      clients.delete(this);
    }
  }

  const pool = new (class extends EventEmitter {
    query = (text: string, params?: readonly unknown[]) => once(text, params) as never;
    async connect() {
      const client = new PgliteClient();
      clients.add(client);
      return client;
    }
    async end() {
      for (const c of [...clients]) c.release();
    }
  })();
  return pool as unknown as PgPool;
}
