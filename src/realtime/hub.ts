import type { Principal } from '../auth/access-tokens.js';
import type { CollectionConfig } from '../config/collections.js';
import { readScope } from '../data/access.js';
import { LeveeError } from '../lib/errors.js';
import { after, type CursorCodec, type Position } from '../sync/cursor.js';
import type { PullScope } from '../sync/store.js';
import type { CatchUpReader } from './catch-up.js';
import type { RealtimeEvent } from './event.js';
import type { Peer } from './peer.js';
import type { UserEvent } from './signal.js';

// The hub: who is subscribed to what, and the fan-out of each change to the connections that may
// read it. Subscriptions are indexed by collection and by user, so a change costs a look-up and a
// pass over the connections that want it, not over every connection. Read rules are applied when a
// subscription is made (the same rules as pull: readScope) and kept as an owner filter per
// collection; the user's own channel is every change to documents that user owns, in any
// collection they may read.
//
// Resume without gaps or duplicates: a subscription with a cursor first reads what the client
// missed (catch-up, from the change log), while live changes for that connection are held back;
// then the held-back changes at or before what the catch-up read are dropped and the rest sent.
// Every connection has a floor — the last position sent to it — and nothing at or before it is
// sent again.

/** WebSocket close codes (1000–1015 are the protocol's; 4000–4999 are the application's). */
export const CLOSE = {
  goingAway: 1001,
  policy: 1008,
  internal: 1011,
  tryAgainLater: 1013,
  tokenExpired: 4001,
  slowConsumer: 4008,
} as const;

/** Live events held back per connection during its catch-up; past it they are re-read from the log. */
const HELD_MAX = 1_000;
/** A catch-up whose client does not take its bytes for this long is a slow consumer. */
const DRAIN_TIMEOUT_MS = 10_000;

export interface Subscription {
  collections?: string[] | undefined;
  user?: boolean | undefined;
  cursor?: string | undefined;
}

export class Client {
  /** Subscribed collections → owner filter (undefined: every document). */
  readonly collections = new Map<string, string | undefined>();
  /** With the user channel: the collections whose documents owned by the user reach them. */
  userChannel: Set<string> | undefined;
  /** The last position sent: nothing at or before it is sent again. */
  floor: Position = { tx: 0, seq: 0 };
  /** Live events held back while a catch-up runs (undefined: live). */
  held: RealtimeEvent[] | undefined;
  heldOverflow = false;
  closed = false;
  /** Dispatch stamp: a change reaching a connection through two subscriptions is sent once. */
  stamp = 0;
  constructor(
    readonly peer: Peer,
    readonly principal: Principal | undefined,
  ) {}
}

export interface HubOptions {
  collections: Map<string, CollectionConfig>;
  catchUp: CatchUpReader;
  cursors: CursorCodec;
  /** The tailer's position: every change at or before it has been published. */
  livePosition(): Position;
  maxSubscriptions: number;
  maxBufferedBytes: number;
  onDelivered?: (n: number) => void;
  onSlowConsumer?: () => void;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

export function createHub(opts: HubOptions) {
  const clients = new Set<Client>();
  const byCollection = new Map<string, Set<Client>>();
  const byUser = new Map<string, Set<Client>>();
  let stamp = 0;

  const index = <K>(map: Map<K, Set<Client>>, key: K, c: Client) => {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(c);
  };
  const unindex = <K>(map: Map<K, Set<Client>>, key: K, c: Client) => {
    const set = map.get(key);
    if (set?.delete(c) && set.size === 0) map.delete(key);
  };

  function error(c: Client, e: LeveeError | { code: string; message: string }, extra: Record<string, unknown> = {}) {
    if (!c.closed) c.peer.message({ type: 'error', code: e.code, detail: e.message, ...extra });
  }

  function close(c: Client, code: number, reason: string) {
    if (c.closed) return;
    disconnect(c);
    c.peer.close(code, reason);
  }

  function slowConsumer(c: Client) {
    opts.onSlowConsumer?.();
    close(c, CLOSE.slowConsumer, `slow consumer: resume from ${opts.cursors.encode(c.floor)}`);
  }

  /** Sends a live event, or cuts the client off when its buffer is over the bound. */
  function offer(c: Client, e: RealtimeEvent): number {
    if (c.held) {
      if (c.held.length < HELD_MAX) c.held.push(e);
      else c.heldOverflow = true;
      return 0;
    }
    if (!after(e.position, c.floor)) return 0;
    if (c.peer.buffered() > opts.maxBufferedBytes) {
      slowConsumer(c);
      return 0;
    }
    c.peer.write(e);
    c.floor = e.position;
    return 1;
  }

  /** The change-log scopes a connection reads, for catch-up: one per collection. */
  function scopesOf(c: Client): PullScope[] {
    const out = new Map<string, PullScope>();
    for (const [collection, ownerId] of c.collections) out.set(collection, { collection, ownerId });
    // The user channel reads the user's own documents; a collection already subscribed in full
    // (or already filtered to this owner) covers it.
    if (c.userChannel) for (const collection of c.userChannel) if (!out.has(collection)) out.set(collection, { collection, ownerId: c.principal!.userId });
    return [...out.values()];
  }

  /** Reads from `from` up to at least where live delivery takes over, sending as it goes. */
  async function catchUp(c: Client, from: Position) {
    const scopes = scopesOf(c);
    c.floor = from;
    c.held = [];
    c.heldOverflow = false;
    let target = opts.livePosition();
    let pos = from;
    for (let behind = 0; ; ) {
      const page = await opts.catchUp.read(scopes, pos);
      let sent = 0;
      for (const e of page.events) {
        if (c.closed) return;
        if (!after(e.position, c.floor)) continue;
        // A catch-up waits for a slow client to take its bytes (bounded), rather than queue them all.
        for (let waited = 0; c.peer.buffered() > opts.maxBufferedBytes; waited += 20) {
          if (waited > DRAIN_TIMEOUT_MS) return slowConsumer(c);
          await sleep(20);
          if (c.closed) return;
        }
        c.peer.write(e);
        c.floor = e.position;
        sent++;
      }
      if (sent) opts.onDelivered?.(sent);
      pos = page.next;
      if (page.full) continue;
      if (c.heldOverflow) {
        // More went by than is worth holding: read it from the log instead.
        c.held = [];
        c.heldOverflow = false;
        target = opts.livePosition();
      }
      if (!after(target, pos)) break;
      // This read's snapshot was older than the tailer's: read again shortly.
      if (++behind > 100) throw new LeveeError('unavailable', 'The change log did not catch up with live changes');
      await sleep(10);
    }
    if (after(pos, c.floor)) c.floor = pos;
  }

  /** Checks a subscription against the read rules and the bound; throws what the client is told. */
  function plan(c: Client, s: Subscription) {
    const adds = new Map<string, string | undefined>();
    for (const name of s.collections ?? []) {
      if (typeof name !== 'string' || name.length > 64) throw new LeveeError('bad_request', 'collections is an array of collection names');
      const config = opts.collections.get(name);
      if (!config) throw new LeveeError('unknown_collection', `No collection "${name}"`);
      adds.set(name, readScope(config.read, c.principal).ownerOnly);
    }
    let userChannel: Set<string> | undefined;
    if (s.user) {
      if (!c.principal) throw new LeveeError('unauthenticated', 'The user channel needs an access token');
      userChannel = new Set();
      for (const config of opts.collections.values()) {
        try {
          readScope(config.read, c.principal);
          userChannel.add(config.name);
        } catch {
          // a collection this user may not read: their documents there do not reach them
        }
      }
    }
    const total = new Set([...c.collections.keys(), ...adds.keys()]).size + (s.user || c.userChannel ? 1 : 0);
    if (total > opts.maxSubscriptions) {
      throw new LeveeError('too_many_subscriptions', `A connection may hold at most ${opts.maxSubscriptions} subscriptions (collections, plus one for the user channel)`);
    }
    const from = s.cursor !== undefined ? opts.cursors.decode(s.cursor) : undefined;
    return { adds, userChannel, from };
  }

  function apply(c: Client, p: ReturnType<typeof plan>) {
    for (const [name, owner] of p.adds) {
      c.collections.set(name, owner);
      index(byCollection, name, c);
    }
    if (p.userChannel) {
      c.userChannel = p.userChannel;
      index(byUser, c.principal!.userId, c);
    }
  }

  function disconnect(c: Client) {
    if (c.closed) return;
    c.closed = true;
    clients.delete(c);
    for (const name of c.collections.keys()) unindex(byCollection, name, c);
    if (c.userChannel) unindex(byUser, c.principal!.userId, c);
    c.held = undefined;
  }

  return {
    CLOSE,
    connect(peer: Peer, principal: Principal | undefined): Client {
      const c = new Client(peer, principal);
      clients.add(c);
      return c;
    },

    disconnect,
    close,
    error,
    slowConsumer,

    /** Throws what subscribing would answer (for SSE, which answers with an HTTP status first). */
    check(principal: Principal | undefined, s: Subscription): void {
      plan(new Client(undefined as unknown as Peer, principal), s);
    },

    /**
     * Adds a subscription. With a cursor, first sends everything after it on all of the
     * connection's subscriptions, then `subscribed` with the position live delivery continues
     * from; without, `subscribed` carries the current position (the client's resume point).
     */
    async subscribe(c: Client, s: Subscription): Promise<void> {
      if (c.held) return error(c, new LeveeError('bad_request', 'A subscribe with a cursor is still catching up: wait for its "subscribed"'));
      let from: Position | undefined;
      try {
        const p = plan(c, s);
        from = p.from;
        apply(c, p);
      } catch (e) {
        if (!(e instanceof LeveeError)) throw e;
        error(c, e);
        if (e.code === 'too_many_subscriptions') close(c, CLOSE.policy, 'too many subscriptions');
        return;
      }
      if (from === undefined) {
        const live = opts.livePosition();
        if (after(live, c.floor)) c.floor = live;
      } else {
        try {
          await catchUp(c, from);
        } catch (e) {
          const le = e instanceof LeveeError ? e : new LeveeError('internal', 'The catch-up read failed');
          error(c, le, le.code === 'cursor_expired' ? { resync: true } : {});
          if (le.code === 'cursor_expired') {
            // The subscription stays live; what it missed must come from a full resync (pull).
            const live = opts.livePosition();
            if (after(live, c.floor)) c.floor = live;
          } else {
            return close(c, le.retryable ? CLOSE.tryAgainLater : CLOSE.internal, `${le.code}: reconnect and resume from your last position`);
          }
        }
        if (c.closed) return;
      }
      c.peer.message({ type: 'subscribed', collections: [...c.collections.keys()], user: c.userChannel !== undefined, position: opts.cursors.encode(c.floor) });
      const held = c.held ?? [];
      c.held = undefined;
      let n = 0;
      for (const e of held) n += offer(c, e);
      if (n) opts.onDelivered?.(n);
    },

    unsubscribe(c: Client, s: Subscription): void {
      for (const name of s.collections ?? []) {
        if (c.collections.delete(name)) unindex(byCollection, name, c);
      }
      if (s.user && c.userChannel) {
        c.userChannel = undefined;
        unindex(byUser, c.principal!.userId, c);
      }
      c.peer.message({ type: 'unsubscribed', collections: [...c.collections.keys()], user: c.userChannel !== undefined });
    },

    /** Fans out changes from the tailer, in position order. */
    publish(events: RealtimeEvent[]): void {
      let n = 0;
      for (const e of events) {
        const s = ++stamp;
        const { collection, ownerId } = e.change;
        const subs = byCollection.get(collection);
        if (subs) {
          for (const c of subs) {
            const owner = c.collections.get(collection);
            if (owner !== undefined && owner !== ownerId) continue;
            c.stamp = s;
            n += offer(c, e);
          }
        }
        const own = ownerId === null ? undefined : byUser.get(ownerId);
        if (own) {
          for (const c of own) {
            if (c.stamp === s || !c.userChannel?.has(collection)) continue;
            c.stamp = s;
            n += offer(c, e);
          }
        }
      }
      if (n) opts.onDelivered?.(n);
    },

    /** A notice to one user's connections that follow their user channel (not resumable). */
    notifyUser(userId: string, event: UserEvent): void {
      const own = byUser.get(userId);
      if (!own) return;
      for (const c of own) {
        if (c.held || c.peer.buffered() > opts.maxBufferedBytes) continue; // catching up or slow: it will poll
        c.peer.message({ type: 'event', event });
      }
    },

    clients: (): ReadonlySet<Client> => clients,
  };
}

export type Hub = ReturnType<typeof createHub>;
