import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FastifyRequest } from 'fastify';
import FindMyWay from 'find-my-way';
import { LeveeError } from '../lib/errors.js';
import { AdmissionRejected, PRIORITIES, type AdmissionController, type Priority, type Ticket } from '../protection/admission.js';
import { RequestDeadline } from '../protection/deadline.js';
import { PROBLEM_TYPE, problemOf } from './problem.js';
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
}

export interface GateOptions {
  /** Undefined when protection is off: every request gets a deadline and goes straight through. */
  admission: AdmissionController | undefined;
  defaultDeadlineMs: number;
  maxDeadlineMs: number;
  onRejected?: (priority: Priority, reason: string) => void;
}

const ADMISSION = Symbol('levee.admission');
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
  if (p === 'default' && CURSOR.test(url)) p = 'sheddable';
  if (typeof lowerTo === 'string') {
    const asked = PRIORITIES.indexOf(lowerTo as Priority);
    if (asked > PRIORITIES.indexOf(p)) p = lowerTo as Priority;
  }
  return p;
}

export function createAdmissionGate(opts: GateOptions) {
  const policies = FindMyWay({ ignoreTrailingSlash: true, maxParamLength: 200 });
  const noop = () => {};

  const refuse = (req: IncomingMessage, res: ServerResponse, priority: Priority, reason: string) => {
    opts.onRejected?.(priority, reason);
    // Spread the retries of shed requests over a few seconds; critical ones come back first.
    const retryAfter = priority === 'critical' ? 1 : 1 + Math.floor(Math.random() * 3);
    const id = requestIdOf(req);
    const body = problemOf(new LeveeError('overloaded', undefined, { retryAfter }), { url: req.url ?? '/', id } as FastifyRequest);
    res.writeHead(503, { 'content-type': `${PROBLEM_TYPE}; charset=utf-8`, 'retry-after': String(retryAfter), 'x-request-id': id });
    res.end(JSON.stringify(body));
  };

  return {
    /** Called for every route Fastify registers (its onRoute hook). */
    addRoute(methods: string | string[], url: string, policy: RoutePolicy) {
      for (const method of Array.isArray(methods) ? methods : [methods]) {
        if (!policies.hasRoute(method as 'GET', url)) policies.on(method as 'GET', url, noop, policy);
      }
    },

    /** The HTTP server Fastify runs on (its `serverFactory`), with the gate in front of its handler. */
    serverFactory(handler: (req: IncomingMessage, res: ServerResponse) => void, timeouts: { requestTimeout?: number; keepAliveTimeout?: number } = {}): Server {
      const server = createServer((req: GatedRequest, res) => {
        const url = req.url ?? '/';
        const method = req.method ?? 'GET';
        const policy = policies.find(method as 'GET', url.split('?', 1)[0]!)?.store as RoutePolicy | undefined;
        const budget = Math.min(policy?.deadlineMs ?? opts.defaultDeadlineMs, opts.maxDeadlineMs);
        const state: NonNullable<GatedRequest[typeof ADMISSION]> = { deadline: new RequestDeadline(performance.now() + budget), ticket: undefined };
        req[ADMISSION] = state;
        let closed = false;
        res.once('close', () => {
          closed = true;
          state.deadline.dispose();
          state.ticket?.release({ ok: res.statusCode !== 504 });
        });
        if (!opts.admission || policy?.unprotected) return handler(req, res);

        const priority = classify(method, url, req.headers['levee-priority'], policy?.priority);
        const admitted = opts.admission.acquire(priority, budget);
        if (typeof admitted === 'string') return refuse(req, res, priority, admitted);
        if (!(admitted instanceof Promise)) {
          state.ticket = admitted;
          return handler(req, res);
        }
        admitted.then(
          (ticket) => {
            // The client may have gone while it waited: hand the slot straight back.
            if (closed) return ticket.release();
            state.ticket = ticket;
            handler(req, res);
          },
          (e: unknown) => refuse(req, res, priority, e instanceof AdmissionRejected ? e.reason : 'rejected'),
        );
      });
      // What Fastify sets on the servers it creates itself.
      server.keepAliveTimeout = timeouts.keepAliveTimeout ?? 72_000;
      server.requestTimeout = timeouts.requestTimeout ?? 0;
      return server;
    },
  };
}

export type AdmissionGate = ReturnType<typeof createAdmissionGate>;
