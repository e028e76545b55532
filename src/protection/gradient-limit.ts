// The adaptive concurrency limit: Netflix concurrency-limits' Gradient2 algorithm, over windows of
// samples. It compares the latency of the last window (short RTT) with its long-run average (long
// RTT): while they agree, nothing queues downstream and the limit grows by a small headroom
// (√limit); when the short RTT rises above `tolerance` × the long one, the limit shrinks in
// proportion (at most by half per window). Requests that failed by timing out shrink it by 10 %,
// like AIMD, since a timeout says more about overload than its latency does.

export interface LimitOptions {
  initialLimit: number;
  minLimit: number;
  maxLimit: number;
  /** How much the short RTT may exceed the long one before the limit shrinks (Gradient2: 1.5–2). */
  tolerance?: number;
  /** Samples averaged into one window (and at least `windowMs` long). */
  windowSize?: number;
  windowMs?: number;
  now?: () => number;
}

export class GradientLimit {
  #limit: number;
  #longRtt = 0;
  #longWindows = 0;
  readonly #o: Required<LimitOptions>;
  // The window being collected.
  #sum = 0;
  #count = 0;
  #maxInFlight = 0;
  #dropped = false;
  #windowStart: number;

  constructor(opts: LimitOptions) {
    this.#o = { tolerance: 1.5, windowSize: 20, windowMs: 50, now: () => performance.now(), ...opts };
    this.#limit = opts.initialLimit;
    this.#windowStart = this.#o.now();
  }

  get value(): number {
    return Math.floor(this.#limit);
  }

  onSample(rttMs: number, inFlight: number, dropped: boolean) {
    this.#sum += rttMs;
    this.#count++;
    this.#maxInFlight = Math.max(this.#maxInFlight, inFlight);
    this.#dropped ||= dropped;
    const now = this.#o.now();
    if (this.#count < this.#o.windowSize || now - this.#windowStart < this.#o.windowMs) return;
    this.#update(this.#sum / this.#count, this.#maxInFlight, this.#dropped);
    this.#sum = 0;
    this.#count = 0;
    this.#maxInFlight = 0;
    this.#dropped = false;
    this.#windowStart = now;
  }

  #update(shortRtt: number, inFlight: number, dropped: boolean) {
    const o = this.#o;
    // Long RTT: an exponential average over ~600 windows, warmed up by a plain mean of the first 10.
    this.#longWindows++;
    const factor = this.#longWindows <= 10 ? 1 / this.#longWindows : 2 / 601;
    this.#longRtt += (shortRtt - this.#longRtt) * factor;
    // After a long overload the long RTT is inflated; pull it down quickly once latency recovers.
    if (this.#longRtt / shortRtt > 2) this.#longRtt *= 0.95;

    let next: number;
    if (dropped) next = this.#limit * 0.9;
    else if (inFlight < this.#limit / 2) return; // not using the limit: no evidence either way
    else {
      const gradient = Math.max(0.5, Math.min(1, (o.tolerance * this.#longRtt) / Math.max(shortRtt, 1e-3)));
      next = this.#limit * gradient + Math.sqrt(this.#limit);
      next = this.#limit * 0.8 + next * 0.2; // smoothing
    }
    this.#limit = Math.max(o.minLimit, Math.min(o.maxLimit, next));
  }
}
