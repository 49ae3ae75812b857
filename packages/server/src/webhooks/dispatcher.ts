// Sends queued webhook deliveries: one lane per endpoint claims the endpoint's due rows (under a lease, so two
// servers sharing PostgreSQL never send the same row at once), POSTs them signed, in the order they were queued,
// and marks each delivered on a 2xx or schedules its next attempt. A lane sleeps on the clock until its next
// delivery is due and is woken at once when rows are queued; a slow endpoint holds up only its own lane.
import { randomUUID } from 'node:crypto';
import type { Clock, TimerHandle } from '../engine/clock.ts';
import type { ClaimedDelivery, WebhookLog } from '../storage/webhooks.ts';
import type { Logger } from '../util/logger.ts';
import type { ResolvedEndpoint } from './endpoints.ts';
import { retryDelayMs } from './schedule.ts';
import { signedHeaders } from './signing.ts';

export interface DispatcherOptions {
  log: WebhookLog;
  endpoints: readonly ResolvedEndpoint[];
  /** the clock of the retry schedule and leases (the engine's) */
  clock: Clock;
  serverId: string;
  logger: Logger;
  /** how long one POST may take, answer included (real time) */
  timeoutMs: number;
  /** attempts before a delivery is failed */
  maxAttempts: number;
  retryScheduleMs: readonly number[];
  /** how often a lane looks for deliveries other servers queued and could not send; 0: only when woken */
  pollMs: number;
  userAgent: string;
  /** deliveries claimed at a time per endpoint */
  batch?: number;
  /** the jitter's randomness */
  random?: () => number;
  /** wall-clock milliseconds for `webhook-timestamp`, which receivers compare with their own clocks */
  wallNow?: () => number;
  fetch?: typeof fetch;
}

const DEFAULT_BATCH = 10;
/** A lane whose database work failed tries again after this long (clock time). */
const ERROR_BACKOFF_MS = 5_000;
/** The most of a receiver's answer kept in `last_error`. */
const MAX_ANSWER_CHARS = 300;
const MAX_ERROR_CHARS = 1_000;

/** How an attempt ended. */
type Attempt = { ok: true; status: number } | { ok: false; status: number | null; error: string } | 'aborted';

export class Dispatcher {
  readonly #o: Required<DispatcherOptions>;
  readonly #lanes = new Map<string, Lane>();
  readonly #stop = new AbortController();
  /**
   * Settles when start() has taken back the earlier run's claims: a lane claims nothing before, or start() would
   * take back this run's own fresh claims, and another server could send those rows again.
   */
  readonly #started = Promise.withResolvers<void>();

  constructor(options: DispatcherOptions) {
    this.#o = {
      batch: DEFAULT_BATCH,
      random: Math.random,
      wallNow: Date.now,
      fetch: globalThis.fetch,
      ...options,
    };
    for (const e of options.endpoints) this.#lanes.set(e.url, new Lane(e, this.#o, this.#stop.signal));
  }

  /** Takes back the claims of this server's previous run (it was killed mid-send) and starts every lane. */
  async start(): Promise<void> {
    try {
      const released = await this.#o.log.releaseServer(this.#o.serverId);
      if (released > 0)
        this.#o.logger.info({ released }, 'webhooks: took back deliveries an earlier run had claimed');
    } finally {
      this.#started.resolve();
    }
    for (const lane of this.#lanes.values()) void lane.kick();
  }

  /**
   * Rows were queued (or re-queued) for this endpoint: its lane looks now, or once start() is done. Resolves once
   * the lane is looking, not when it is done (a backlog to a slow endpoint may take hours); idle() waits for that.
   */
  async wake(endpointUrl: string): Promise<void> {
    await this.#started.promise;
    void this.#lanes.get(endpointUrl)?.kick();
  }

  /** Resolves when no lane is working (tests wait for it after queueing or advancing the clock). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#lanes.values()].map((l) => l.running).filter((p) => p !== null);
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }

  /** Stops the lanes: sends in flight are aborted and their deliveries given back, due again at once. */
  async close(): Promise<void> {
    this.#stop.abort();
    for (const lane of this.#lanes.values()) lane.close();
    await this.idle();
  }
}

class Lane {
  readonly #e: ResolvedEndpoint;
  readonly #o: Required<DispatcherOptions>;
  readonly #stop: AbortSignal;
  /** the URL as logged: without its query, which may carry a token */
  readonly #logged: string;
  running: Promise<void> | null = null;
  #again = false;
  #timer: TimerHandle | null = null;
  #closed = false;

  constructor(endpoint: ResolvedEndpoint, options: Required<DispatcherOptions>, stop: AbortSignal) {
    this.#e = endpoint;
    this.#o = options;
    this.#stop = stop;
    const u = new URL(endpoint.url);
    this.#logged = `${u.origin}${u.pathname}`;
  }

  /** Looks for due deliveries now; resolves when the lane has nothing due left. */
  kick(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#again = true;
    this.running ??= this.#loop();
    return this.running;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) this.#o.clock.clearTimer(this.#timer);
    this.#timer = null;
  }

  async #loop(): Promise<void> {
    try {
      do {
        while (this.#again && !this.#closed) {
          this.#again = false;
          // a full batch means there may be more due
          while ((await this.#round()) === this.#o.batch && !this.#closed) {}
        }
        if (!this.#closed) await this.#arm();
      } while (this.#again && !this.#closed);
    } catch (err) {
      this.#o.logger.error(
        { err, endpoint: this.#logged },
        'webhooks: a delivery lane failed; retrying soon',
      );
      if (!this.#closed) this.#armAt(this.#o.clock.now() + ERROR_BACKOFF_MS);
    } finally {
      this.running = null;
    }
  }

  /** Claims due deliveries and sends them in order; returns how many it claimed. */
  async #round(): Promise<number> {
    const o = this.#o;
    const now = o.clock.now();
    const claim = randomUUID();
    const rows = await o.log.claim({
      endpointUrl: this.#e.url,
      serverId: o.serverId,
      claim,
      now,
      // long enough to send the whole batch, each POST to its timeout
      leaseUntil: now + o.batch * o.timeoutMs + 30_000,
      limit: o.batch,
    });
    let sent = 0;
    try {
      for (const row of rows) {
        if (this.#closed) break;
        const attempt = await this.#post(row);
        if (attempt === 'aborted') break;
        sent++;
        await this.#record(row, attempt);
      }
    } finally {
      // what was not attempted goes back, due as it was
      if (sent < rows.length) await o.log.release(claim);
    }
    return rows.length;
  }

  async #post(row: ClaimedDelivery): Promise<Attempt> {
    const o = this.#o;
    const headers = {
      ...signedHeaders(this.#e.key, row.id, Math.floor(o.wallNow() / 1000), row.payload),
      'user-agent': o.userAgent,
    };
    const timeout = AbortSignal.timeout(o.timeoutMs);
    try {
      const res = await o.fetch(this.#e.url, {
        method: 'POST',
        headers,
        body: row.payload,
        // a redirect is an answer, not a place to send a signed event to
        redirect: 'manual',
        signal: AbortSignal.any([timeout, this.#stop]),
      });
      // a 2xx is the receiver's word that it has the event, whatever its body does next (it may stream, or
      // stall): the body is not read, and the connection is let go
      if (res.status >= 200 && res.status < 300) {
        await res.body?.cancel().catch(() => {});
        return { ok: true, status: res.status };
      }
      const text = await answer(res);
      return {
        ok: false,
        status: res.status,
        error: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${text ? `: ${text}` : ''}`,
      };
    } catch (err) {
      if (this.#stop.aborted) return 'aborted';
      if (timeout.aborted) return { ok: false, status: null, error: `no answer within ${o.timeoutMs} ms` };
      return { ok: false, status: null, error: describe(err) };
    }
  }

  async #record(row: ClaimedDelivery, a: Exclude<Attempt, 'aborted'>): Promise<void> {
    const o = this.#o;
    const at = o.clock.now();
    if (a.ok) {
      await o.log.delivered(row.id, row.claim, at, a.status);
      return;
    }
    const attempts = row.attempts + 1;
    const last = attempts >= o.maxAttempts;
    const nextAttemptAt = last ? null : at + retryDelayMs(attempts, o.retryScheduleMs, o.random);
    await o.log.attemptFailed(row.id, row.claim, {
      at,
      status: a.status,
      // what the receiver answered may hold anything; PostgreSQL stores no NUL (the write would fail, and the
      // delivery would be tried again and again without ever counting an attempt)
      error: a.error.replace(CONTROL_CHARS, '\uFFFD').slice(0, MAX_ERROR_CHARS),
      nextAttemptAt,
    });
    const fields = { deliveryId: row.id, endpoint: this.#logged, attempts, status: a.status };
    if (last) o.logger.warn({ ...fields, error: a.error }, 'webhooks: delivery failed for good');
    else
      o.logger.info(
        { ...fields, retryInMs: nextAttemptAt! - at, error: a.error },
        'webhooks: delivery attempt failed',
      );
  }

  /** Sleeps until the next delivery is due (or the next poll). */
  async #arm(): Promise<void> {
    const o = this.#o;
    const due = await o.log.nextDue(this.#e.url);
    const now = o.clock.now();
    let at = due ?? Number.POSITIVE_INFINITY;
    // due already, yet not claimed: another server holds it right now; look again in a while
    if (at <= now) at = now + ERROR_BACKOFF_MS;
    if (o.pollMs > 0) at = Math.min(at, now + o.pollMs);
    if (this.#timer) o.clock.clearTimer(this.#timer);
    this.#timer = null;
    if (at !== Number.POSITIVE_INFINITY) this.#armAt(at);
  }

  #armAt(at: number): void {
    if (this.#timer) this.#o.clock.clearTimer(this.#timer);
    this.#timer = this.#o.clock.setTimer(at, () => {
      this.#timer = null;
      return this.kick();
    });
  }
}

/** The start of a receiver's answer (for the log), reading no more of it than that. */
async function answer(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length < MAX_ANSWER_CHARS) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const trimmed = text.replace(/\s+/g, ' ').trim();
  return trimmed.length > MAX_ANSWER_CHARS ? `${trimmed.slice(0, MAX_ANSWER_CHARS)}…` : trimmed;
}

/** Control characters (NUL among them) in an answer's text, shown as U+FFFD when it is recorded. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL_CHARS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;

/** A network error in words: fetch's own message says only "fetch failed"; its cause says why. */
function describe(err: unknown): string {
  const e = err as Error & { cause?: Error & { code?: string } };
  const cause = e.cause;
  if (cause?.message) return `${cause.code ? `${cause.code}: ` : ''}${cause.message}`;
  return e.message || String(err);
}
