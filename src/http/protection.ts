import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { LeveeError } from '../lib/errors.js';
import type { Priority } from '../protection/admission.js';
import { RequestDeadline, runWithDeadline } from '../protection/deadline.js';
import { deadlineOf, type AdmissionGate, type GateOptions } from './admission-gate.js';
import { sendProblem } from './problem.js';

// Deadlines and the last-line guard inside Fastify. Admission control itself runs before Fastify
// sees the request (admission-gate.ts); @fastify/under-pressure (event-loop delay, heap) is the
// last line behind it.

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
    /** The route's costly work is bounded by a bulkhead of its own (password hashing): see RoutePolicy. */
    bulkhead?: { saturated(): boolean };
    /** A connection that stays open (realtime SSE): admitted by its own connection admission, see RoutePolicy. */
    longLived?: boolean;
  }
}

export interface ProtectionOptions extends GateOptions {
  /** Last-line guard; 0 disables it. */
  maxEventLoopDelayMs: number;
}

export async function installProtection(app: FastifyInstance, gate: AdmissionGate, opts: ProtectionOptions) {
  app.decorateRequest('deadline', undefined);

  // Each route's policy goes to the gate; its handler runs inside the request's deadline scope
  // (see protection/deadline.ts).
  app.addHook('onRoute', (route) => {
    const { priority, deadlineMs, unprotected, bulkhead, longLived } = route.config ?? {};
    gate.addRoute(route.method, route.url, { priority, deadlineMs, unprotected, bulkhead, longLived });
    const handler = route.handler;
    route.handler = function (this: FastifyInstance, req: FastifyRequest, reply: FastifyReply) {
      const deadline = req.deadline;
      if (!deadline) return handler.call(this, req, reply);
      if (deadline.at <= performance.now()) return Promise.reject(new LeveeError('timeout', 'The request used up its deadline before it could start'));
      return runWithDeadline(deadline, () => handler.call(this, req, reply));
    };
  });

  // Registered first, so its cheap check runs before the other hooks.
  if (opts.admission && opts.maxEventLoopDelayMs > 0) {
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

  // The gate gave the request its deadline; requests that bypass the server (inject) get one here.
  // The remaining hooks (rate limits, authentication) run inside the deadline's scope; the handler
  // is re-entered into it above, since body parsing runs outside any scope.
  app.addHook('onRequest', (req, reply, done) => {
    let deadline = deadlineOf(req.raw);
    if (!deadline) {
      const own = new RequestDeadline(performance.now() + Math.min(req.routeOptions.config.deadlineMs ?? opts.defaultDeadlineMs, opts.maxDeadlineMs));
      reply.raw.once('close', () => own.dispose());
      deadline = own;
    }
    req.deadline = deadline;
    runWithDeadline(deadline, done);
  });
}
