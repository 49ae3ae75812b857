// A token bucket: at most `burst` at once, refilled at `perSecond`. One per participant socket for room messages.

export interface RateLimit {
  /** sustained rate */
  perSecond: number;
  /** how many may arrive at once */
  burst: number;
}

export const DEFAULT_MESSAGE_RATE: RateLimit = { perSecond: 50, burst: 100 };

export class TokenBucket {
  readonly #limit: RateLimit;
  readonly #now: () => number;
  #tokens: number;
  #at: number;

  constructor(limit: RateLimit, now: () => number = performance.now.bind(performance)) {
    this.#limit = limit;
    this.#now = now;
    this.#tokens = limit.burst;
    this.#at = now();
  }

  /** Takes one token; false when there is none left. */
  take(): boolean {
    const now = this.#now();
    this.#tokens = Math.min(
      this.#limit.burst,
      this.#tokens + ((now - this.#at) / 1000) * this.#limit.perSecond,
    );
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
