// Durable deadlines: the timers table is the truth; this arms one clock timer for the earliest due.

import type { TimerRecord } from '../storage/records.ts';
import type { Store } from '../storage/store.ts';
import type { Clock, TimerHandle } from './clock.ts';

export interface SchedulerOptions {
  store: Store;
  clock: Clock;
  handle: (timer: TimerRecord) => Promise<void>;
  /** a handler failed (timer), or the timers could not be read (null); either is tried again later */
  onError: (err: unknown, timer: TimerRecord | null) => void;
  /** re-read the earliest deadline this often (ms), to see timers other servers set; 0 = never */
  pollIntervalMs?: number;
}

const BATCH = 500;
/** A failed handler's timer is tried again after this, doubled at each failure in a row, up to RETRY_MAX_MS. */
const RETRY_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/** Failing timers whose count is kept; past it the counts start again (the retries only come sooner). */
const MAX_FAILING = 10_000;

export class Scheduler {
  readonly #o: SchedulerOptions;
  #armed: { at: number; handle: TimerHandle } | null = null;
  #running: Promise<void> | null = null;
  #stopped = true;
  #poll: NodeJS.Timeout | null = null;
  /** per failing timer (session and kind), its failures in a row */
  readonly #failures = new Map<string, number>();

  constructor(options: SchedulerOptions) {
    this.#o = options;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#rearm();
    const every = this.#o.pollIntervalMs ?? 0;
    if (every > 0) {
      this.#poll = setInterval(() => void this.#rearm().catch(() => {}), every);
      this.#poll.unref();
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#armed) this.#o.clock.clearTimer(this.#armed.handle);
    this.#armed = null;
    if (this.#poll) clearInterval(this.#poll);
    this.#poll = null;
  }

  /** Tells the scheduler a timer was set for dueAt, so it can arm earlier if needed. */
  notify(dueAt: number): void {
    if (this.#stopped) return;
    if (!this.#armed || dueAt < this.#armed.at) this.#arm(dueAt);
  }

  /** Resolves when no firing is in progress (for orderly shutdown). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  #arm(at: number): void {
    if (this.#armed) this.#o.clock.clearTimer(this.#armed.handle);
    const handle = this.#o.clock.setTimer(at, () => this.#fire());
    this.#armed = { at, handle };
  }

  #fire(): Promise<void> {
    this.#armed = null;
    // a drain already running re-arms from the table when it ends, which catches this deadline too
    if (this.#running) return this.#running;
    this.#running = this.#drain().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #drain(): Promise<void> {
    try {
      for (;;) {
        if (this.#stopped) return;
        const due = await this.#o.store.read.dueTimers(this.#o.clock.now(), BATCH);
        for (const t of due) await this.#handle(t);
        if (due.length < BATCH) break;
      }
      await this.#rearm();
    } catch (err) {
      // the database is away: the timers wait in their table, and are looked at again in a second
      this.#o.onError(err, null);
      if (!this.#stopped) this.#arm(this.#o.clock.now() + RETRY_MS);
    }
  }

  async #handle(t: TimerRecord): Promise<void> {
    const key = `${t.sessionId}\u0000${t.kind}`;
    try {
      await this.#o.handle(t);
      this.#failures.delete(key);
    } catch (err) {
      this.#o.onError(err, t);
      // a timer that keeps failing must not spin: it is pushed back, further at each failure, unless it was
      // moved or cleared meanwhile (what moved it wins)
      const failures = (this.#failures.get(key) ?? 0) + 1;
      if (this.#failures.size >= MAX_FAILING) this.#failures.clear();
      this.#failures.set(key, failures);
      const wait = Math.min(RETRY_MS * 2 ** (failures - 1), RETRY_MAX_MS);
      await this.#o.store.read
        .postponeTimer(t.sessionId, t.kind, t.dueAt, this.#o.clock.now() + wait)
        .catch(() => {});
    }
  }

  async #rearm(): Promise<void> {
    if (this.#stopped) return;
    const next = await this.#o.store.read.nextTimerDue();
    if (next !== null) this.notify(next);
  }
}
