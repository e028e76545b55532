// Admission of new realtime connections. After a restart or a network blip every client reconnects
// at once, and each new connection costs a TLS/HTTP handshake, a token check and often a catch-up
// read. New connections are let in at a bounded rate (a token bucket) and up to a cap per process;
// the rest are refused before the upgrade with a jittered Retry-After, which spreads the storm over
// a few seconds instead of letting it queue up in the process.

export interface ConnectionSlot {
  /** Idempotent: the connection ended (or never started). */
  release(): void;
}

export type Admitted = { slot: ConnectionSlot } | { refused: 'rate' | 'max_connections' | 'draining'; retryAfterSeconds: number };

export interface ConnectionAdmissionOptions {
  perSecond: number;
  burst: number;
  maxConnections: number;
  now?: () => number;
  random?: () => number;
}

export function createConnectionAdmission(opts: ConnectionAdmissionOptions) {
  const now = opts.now ?? (() => performance.now());
  const random = opts.random ?? Math.random;
  let tokens = opts.burst;
  let refilledAt = now();
  let open = 0;
  let closed = false;

  // 1–5 s: long enough for the bucket to refill for a good part of the refused, spread so that they
  // do not come back together.
  const retryAfter = () => 1 + Math.floor(random() * 5);

  return {
    admit(): Admitted {
      if (closed) return { refused: 'draining', retryAfterSeconds: retryAfter() };
      if (open >= opts.maxConnections) return { refused: 'max_connections', retryAfterSeconds: retryAfter() };
      const t = now();
      tokens = Math.min(opts.burst, tokens + ((t - refilledAt) / 1000) * opts.perSecond);
      refilledAt = t;
      if (tokens < 1) return { refused: 'rate', retryAfterSeconds: retryAfter() };
      tokens -= 1;
      open++;
      let held = true;
      return {
        slot: {
          release() {
            if (!held) return;
            held = false;
            open--;
          },
        },
      };
    },
    /** Connections admitted and not yet released. */
    open: () => open,
    /** Shutting down: refuse everything from now on. */
    close() {
      closed = true;
    },
  };
}

export type ConnectionAdmission = ReturnType<typeof createConnectionAdmission>;
