// Token buckets: at most `burst` at once, refilled at `perSecond`. One per participant for room messages, one per
// client and per project for session creation (BucketMap keeps those, bounded); one per viewer socket for
// Pixel Streaming signalling.

export interface RateLimit {
  /** sustained rate */
  perSecond: number;
  /** how many may arrive at once */
  burst: number;
}

export const DEFAULT_MESSAGE_RATE: RateLimit = { perSecond: 50, burst: 100 };
/**
 * Room messages of all of a session's participants together (the agent's aside), on top of each one's own:
 * identities made with POST /sessions/{id}/join do not multiply what one room may take.
 */
export const DEFAULT_ROOM_MESSAGE_RATE: RateLimit = { perSecond: 500, burst: 1000 };
/** Tokens for new participants of one session (POST /sessions/{id}/join by its participants; admin keys aside). */
export const DEFAULT_JOIN_RATE: RateLimit = { perSecond: 1, burst: 20 };
/** Participants whose room-message allowance a server keeps (the least recently heard from goes first). */
export const MESSAGE_RATE_KEYS = 100_000;

/** The key of a participant's room-message allowance. */
export function roomSender(sessionId: string, identity: string): string {
  return `${sessionId}\u0000${identity}`;
}

/**
 * Pixel Streaming signalling a viewer's socket may send: a negotiation takes an offer or answer and a few dozen
 * ICE candidates, so this leaves room for several; each frame may cross to another server through the bus.
 */
export const SIGNALLING_RATE: RateLimit = { perSecond: 20, burst: 200 };

export class TokenBucket {
  readonly #limit: RateLimit;
  readonly #now: () => number;
  #tokens: number;
  #at: number;

  /** `now` in milliseconds: real time by default; the server passes its clock, tests a manual one */
  constructor(limit: RateLimit, now: () => number = performance.now.bind(performance)) {
    this.#limit = limit;
    this.#now = now;
    this.#tokens = limit.burst;
    this.#at = now();
  }

  #refill(): void {
    const now = this.#now();
    if (now > this.#at)
      this.#tokens = Math.min(
        this.#limit.burst,
        this.#tokens + ((now - this.#at) / 1000) * this.#limit.perSecond,
      );
    this.#at = Math.max(this.#at, now);
  }

  /** Takes one token; false when there is none left. */
  take(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** How long until a token is there, in ms (0: one is there now). */
  waitMs(): number {
    this.#refill();
    if (this.#tokens >= 1) return 0;
    return Math.ceil(((1 - this.#tokens) / this.#limit.perSecond) * 1000);
  }
}

/**
 * One bucket per key (a client's address, a project), created full on first use. At most `maxKeys` are kept:
 * the least recently used goes first, which at worst gives that key a fresh burst.
 */
export class BucketMap {
  readonly #limit: RateLimit;
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(limit: RateLimit, now: () => number, maxKeys = 10_000) {
    this.#limit = limit;
    this.#now = now;
    this.#maxKeys = maxKeys;
  }

  get limit(): RateLimit {
    return this.#limit;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes a token of the key's bucket: 0 when taken, else how many ms until one is there. */
  take(key: string): number {
    let bucket = this.#buckets.get(key);
    if (bucket) this.#buckets.delete(key);
    else {
      bucket = new TokenBucket(this.#limit, this.#now);
      while (this.#buckets.size >= this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    // (re)inserted last: the map's order is the order of last use
    this.#buckets.set(key, bucket);
    return bucket.take() ? 0 : Math.max(1, bucket.waitMs());
  }
}
