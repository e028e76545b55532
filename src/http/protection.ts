import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { LeveeError } from '../lib/errors.js';
import { AdmissionRejected, PRIORITIES, type AdmissionController, type Priority, type Ticket } from '../protection/admission.js';
import { RequestDeadline, runWithDeadline } from '../protection/deadline.js';
import { sendProblem } from './problem.js';

// The front of the request path: every request gets a deadline, then passes admission control
// (adaptive concurrency limit by priority class), with @fastify/under-pressure behind them as the
// last line (event-loop delay, heap). Rejections happen in onRequest, before the body is read.

declare module 'fastify' {
  interface FastifyRequest {
    deadline: RequestDeadline | undefined;
  }
  interface FastifyContextConfig {
    /** Admission class; by default writes are `critical`, reads `default`, later pages `sheddable`. */
    priority?: Priority;
    /** This route's request budget in ms (capped by LEVEE_REQUEST_DEADLINE_MAX_MS). */
    deadlineMs?: number;
    /** Probes and docs: no admission control, no rate limits. */
    unprotected?: boolean;
  }
}

export interface ProtectionOptions {
  /** Undefined when protection is off (benchmark comparison): deadlines still apply. */
  admission: AdmissionController | undefined;
  defaultDeadlineMs: number;
  maxDeadlineMs: number;
  /** Last-line guards; 0 disables one. */
  maxEventLoopDelayMs: number;
  onRejected?: (priority: Priority, reason: string) => void;
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The class of one request: the route's declaration, else by method; a client may only lower it. */
export function priorityOf(req: FastifyRequest): Priority {
  let p: Priority = req.routeOptions.config.priority ?? (WRITE_METHODS.has(req.method) ? 'critical' : 'default');
  // A later page of a list is worth less than the first: the user is not looking at it yet.
  if (p === 'default' && typeof (req.query as { cursor?: unknown } | undefined)?.cursor === 'string') p = 'sheddable';
  const asked = req.headers['levee-priority'];
  if (typeof asked === 'string' && (PRIORITIES as string[]).includes(asked) && PRIORITIES.indexOf(asked as Priority) > PRIORITIES.indexOf(p)) p = asked as Priority;
  return p;
}

const overloaded = (priority: Priority) =>
  // Spread the retries of shed requests over a few seconds; critical ones come back first.
  new LeveeError('overloaded', undefined, { retryAfter: priority === 'critical' ? 1 : 1 + Math.floor(Math.random() * 3) });

export async function installProtection(app: FastifyInstance, opts: ProtectionOptions) {
  app.decorateRequest('deadline', undefined);

  // Each route handler runs inside its request's deadline scope (see protection/deadline.ts).
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    route.handler = function (this: FastifyInstance, req: FastifyRequest, reply: FastifyReply) {
      const deadline = req.deadline;
      if (!deadline) return handler.call(this, req, reply);
      if (deadline.at <= performance.now()) return Promise.reject(new LeveeError('timeout', 'The request used up its deadline before it could start'));
      return runWithDeadline(deadline, () => handler.call(this, req, reply));
    };
  });

  // Registered first, so its cheap check runs before admission.
  if (opts.admission) {
    // The delay is a mean over each sample interval, so the first samples still carry start-up
    // (module loading, migrations, PGlite's initdb): not a reason to turn the first callers away.
    const sampleInterval = 500;
    let measuringSince = Infinity;
    app.addHook('onReady', async () => {
      measuringSince = performance.now() + 2 * sampleInterval;
    });
    await app.register(underPressure, {
      maxEventLoopDelay: opts.maxEventLoopDelayMs,
      // The heap guard sits just under V8's limit: past it the process would crash on OOM anyway.
      maxHeapUsedBytes: Math.floor(getHeapStatistics().heap_size_limit * 0.95),
      sampleInterval,
      pressureHandler: (req, reply, type, value) => {
        if (req.routeOptions.config.unprotected) return;
        if (type === 'eventLoopDelay' && performance.now() < measuringSince) return;
        req.log.warn({ type, value }, 'under pressure: shedding');
        opts.onRejected?.('default', `pressure_${type}`);
        sendProblem(new LeveeError('overloaded', `The server is under pressure (${type})`, { retryAfter: 5 }), req, reply);
      },
    });
  }

  app.addHook('onRequest', (req, reply, done) => {
    const config = req.routeOptions.config;
    const budget = Math.min(config.deadlineMs ?? opts.defaultDeadlineMs, opts.maxDeadlineMs);
    const deadline = new RequestDeadline(performance.now() + budget);
    req.deadline = deadline;
    let ticket: Ticket | undefined;
    let closed = false;
    reply.raw.once('close', () => {
      closed = true;
      deadline.dispose();
      ticket?.release({ ok: reply.statusCode !== 504 });
    });
    // The rest of the hooks (rate limits, authentication) run inside the deadline's scope too;
    // the handler is re-entered into it above, since body parsing runs outside any scope.
    const proceed = () => runWithDeadline(deadline, done);
    if (!opts.admission || config.unprotected) return proceed();

    const priority = priorityOf(req);
    const admitted = opts.admission.acquire(priority, budget);
    const reject = (reason: string) => {
      opts.onRejected?.(priority, reason);
      sendProblem(overloaded(priority), req, reply);
    };
    if (typeof admitted === 'string') {
      reject(admitted);
      return;
    }
    if (!(admitted instanceof Promise)) {
      ticket = admitted;
      return proceed();
    }
    admitted.then(
      (t) => {
        // The client may have gone while it waited: hand the slot straight back.
        if (closed) return t.release();
        ticket = t;
        proceed();
      },
      (e: unknown) => reject(e instanceof AdmissionRejected ? e.reason : 'rejected'),
    );
  });

}
