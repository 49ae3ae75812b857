// Durable deadlines: the timers table is the truth; this arms one clock timer for the earliest due.

import type { TimerRecord } from '../storage/records.ts';
import type { Store } from '../storage/store.ts';
import type { Clock, TimerHandle } from './clock.ts';

export interface SchedulerOptions {
  store: Store;
  clock: Clock;
  handle: (timer: TimerRecord) => Promise<void>;
  onError: (err: unknown, timer: TimerRecord) => void;
  /** re-read the earliest deadline this often (ms), to see timers other servers set; 0 = never */
  pollIntervalMs?: number;
}

const BATCH = 500;

export class Scheduler {
  readonly #o: SchedulerOptions;
  #armed: { at: number; handle: TimerHandle } | null = null;
  #running: Promise<void> | null = null;
  #stopped = true;
  #poll: NodeJS.Timeout | null = null;

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
    for (;;) {
      if (this.#stopped) return;
      const due = await this.#o.store.read.dueTimers(this.#o.clock.now(), BATCH);
      for (const t of due) {
        try {
          await this.#o.handle(t);
        } catch (err) {
          this.#o.onError(err, t);
          // a timer that keeps failing must not spin: push it back a little
          await this.#o.store.read.setTimer(t.sessionId, t.kind, this.#o.clock.now() + 1000).catch(() => {});
        }
      }
      if (due.length < BATCH) break;
    }
    await this.#rearm();
  }

  async #rearm(): Promise<void> {
    if (this.#stopped) return;
    const next = await this.#o.store.read.nextTimerDue();
    if (next !== null) this.notify(next);
  }
}
