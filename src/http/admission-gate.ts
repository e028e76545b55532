import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import FindMyWay from 'find-my-way';
import { PRIORITIES, type AdmissionController, type Priority, type Ticket } from '../protection/admission.js';
import { RequestDeadline } from '../protection/deadline.js';
import { PROBLEM_TYPE, problemFor } from './problem.js';
import { requestIdOf } from './request-id.js';

// Admission control sits in front of Fastify, on the bare node:http request. Shedding is only worth
// it if refusing a request costs far less than serving one: measured on this code, a 503 sent from a
// Fastify hook cost about as much as serving a trivial route, so under 4–8× overload the event loop
// spent itself on refusals. Here a refused request costs Node's HTTP parsing and one small write.
// Route-level policies (class, deadline, unprotected) are looked up in a router of their own,
// filled from Fastify's onRoute hook.

export interface RoutePolicy {
  priority?: Priority | undefined;
  deadlineMs?: number | undefined;
  unprotected?: boolean | undefined;
  /** The route's costly work runs in a bulkhead of its own: no admission slot; refused here while it is full. */
  bulkhead?: { saturated(): boolean } | undefined;
  /**
   * Stays open for minutes or hours (realtime): holding an admission slot that long would starve
   * requests, so such a route is admitted by its own bound (connection rate and count) instead.
   * WebSocket upgrades never come through here at all (Node emits them as 'upgrade', not 'request').
   */
  longLived?: boolean | undefined;
}

export interface GateOptions {
  /** Undefined when protection is off: every request gets a deadline and goes straight through. */
  admission: AdmissionController | undefined;
  defaultDeadlineMs: number;
  maxDeadlineMs: number;
  onRejected?: (priority: Priority, reason: string) => void;
}

const ADMISSION = Symbol('levee.admission');
type Handler = (req: IncomingMessage, res: ServerResponse) => void;
interface GatedRequest extends IncomingMessage {
  [ADMISSION]?: { deadline: RequestDeadline; ticket: Ticket | undefined };
}

/** The deadline the gate gave this request (undefined for requests that did not pass through it, e.g. inject()). */
export const deadlineOf = (req: IncomingMessage): RequestDeadline | undefined => (req as GatedRequest)[ADMISSION]?.deadline;

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const CURSOR = /[?&]cursor=/;

/** The class of one request: the route's declaration, else by method; a client may only lower it. */
export function classify(method: string, url: string, lowerTo: string | string[] | undefined, declared: Priority | undefined): Priority {
  let p: Priority = declared ?? (WRITE_METHODS.has(method) ? 'critical' : 'default');
  // A later page of a list is worth less than the first: the user is not looking at it yet.
  if (declared === undefined && p === 'default' && CURSOR.test(url)) p = 'sheddable';
  if (typeof lowerTo === 'string') {
    const asked = PRIORITIES.indexOf(lowerTo as Priority);
    if (asked > PRIORITIES.indexOf(p)) p = lowerTo as Priority;
  }
  return p;
}

export function createAdmissionGate(opts: GateOptions) {
  const policies = FindMyWay({ ignoreTrailingSlash: true, maxParamLength: 200 });
  const noop = () => {};

  // A refusal builds no Error, no deadline and no listener: under 4–8× overload it is most of the work.
  const refuse = (req: IncomingMessage, res: ServerResponse, path: string, priority: Priority, reason: string) => {
    opts.onRejected?.(priority, reason);
    // Spread the retries of shed requests over a few seconds; critical ones come back first.
    const retryAfter = priority === 'critical' ? 1 : 1 + Math.floor(Math.random() * 3);
    const id = requestIdOf(req);
    const body = JSON.stringify(problemFor('overloaded', path, id));
    res.writeHead(503, {
      'content-type': `${PROBLEM_TYPE}; charset=utf-8`,
      'content-length': Buffer.byteLength(body),
      'retry-after': String(retryAfter),
      'x-request-id': id,
    });
    res.end(body);
  };

  /** Hands an admitted (or unprotected) request to Fastify, with its deadline and slot released on close. */
  const pass = (handler: Handler, req: GatedRequest, res: ServerResponse, deadlineAt: number, ticket: Ticket | undefined) => {
    const state = { deadline: new RequestDeadline(deadlineAt), ticket };
    req[ADMISSION] = state;
    res.once('close', () => {
      state.deadline.dispose();
      ticket?.release({ ok: res.statusCode !== 504 });
    });
    handler(req, res);
  };

  return {
    /** Called for every route Fastify registers (its onRoute hook). */
    addRoute(methods: string | string[], url: string, policy: RoutePolicy) {
      for (const method of Array.isArray(methods) ? methods : [methods]) {
        if (!policies.hasRoute(method as 'GET', url)) policies.on(method as 'GET', url, noop, policy);
      }
    },

    /** The HTTP server Fastify runs on (its `serverFactory`), with the gate in front of its handler. */
    serverFactory(handler: Handler, timeouts: { requestTimeout?: number; keepAliveTimeout?: number } = {}): Server {
      const server = createServer((req: GatedRequest, res) => {
        const arrivedAt = performance.now();
        const url = req.url ?? '/';
        const method = req.method ?? 'GET';
        const path = url.split('?', 1)[0]!;
        const policy = policies.find(method as 'GET', path)?.store as RoutePolicy | undefined;
        const budget = Math.min(policy?.deadlineMs ?? opts.defaultDeadlineMs, opts.maxDeadlineMs);
        if (!opts.admission || policy?.unprotected || policy?.longLived) return pass(handler, req, res, arrivedAt + budget, undefined);
        // Sign-ins: a request that waits for a password hash must not hold a slot a feed request
        // could use, nor teach the adaptive limit that the server is slow; its bulkhead bounds it.
        if (policy?.bulkhead) {
          if (policy.bulkhead.saturated()) return refuse(req, res, path, 'critical', 'bulkhead_full');
          return pass(handler, req, res, arrivedAt + budget, undefined);
        }

        const priority = classify(method, url, req.headers['levee-priority'], policy?.priority);
        const admitted = opts.admission.acquire(priority, budget);
        if (typeof admitted === 'string') return refuse(req, res, path, priority, admitted);
        if (!(admitted instanceof Promise)) return pass(handler, req, res, arrivedAt + budget, admitted);
        let gone = false;
        const onGone = () => (gone = true);
        res.once('close', onGone);
        void admitted.then((outcome) => {
          res.off('close', onGone);
          if (typeof outcome === 'string') return refuse(req, res, path, priority, outcome);
          // The client went away while it waited: hand the slot straight back.
          if (gone) return outcome.release();
          pass(handler, req, res, arrivedAt + budget, outcome);
        });
      });
      // What Fastify sets on the servers it creates itself.
      server.keepAliveTimeout = timeouts.keepAliveTimeout ?? 72_000;
      server.requestTimeout = timeouts.requestTimeout ?? 0;
      return server;
    },
  };
}

export type AdmissionGate = ReturnType<typeof createAdmissionGate>;
