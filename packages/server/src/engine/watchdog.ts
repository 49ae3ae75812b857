// Deadlines that move: each watched key is lost unless it is watched again before its deadline. Worker liveness
// (heartbeats, re-attach after a restart, the start of a launched worker) runs on it.
import type { Clock, TimerHandle } from './clock.ts';

interface Watched {
  due: number;
  onLost: () => void | Promise<void>;
  timer: TimerHandle | null;
}

export class Watchdog {
  readonly #clock: Clock;
  readonly #onError: (err: unknown, key: string) => void;
  /**
   * Per watched key: when it is lost unless watched again, what happens then, and the timer that checks. A
   * new watch only moves `due` later; the timer, when it fires early, sets itself again for the new due time.
   */
  readonly #watched = new Map<string, Watched>();

  /** @param onError  what an onLost that failed is told to (a timer's failure has no caller to reach) */
  constructor(clock: Clock, onError: (err: unknown, key: string) => void) {
    this.#clock = clock;
    this.#onError = onError;
  }

  /** The key is lost `ms` from now (onLost runs then) unless watched again, or unwatched, before. */
  watch(key: string, ms: number, onLost: () => void | Promise<void>): void {
    const due = this.#clock.now() + ms;
    const watched = this.#watched.get(key);
    // the usual case, a frame from a watched worker: its timer fires no later than the new due time
    if (watched && watched.due <= due) {
      watched.due = due;
      watched.onLost = onLost;
      return;
    }
    if (watched) this.unwatch(key);
    const w: Watched = { due, onLost, timer: null };
    this.#watched.set(key, w);
    this.#arm(key, w);
  }

  unwatch(key: string): void {
    const watched = this.#watched.get(key);
    if (!watched) return;
    if (watched.timer) this.#clock.clearTimer(watched.timer);
    this.#watched.delete(key);
  }

  /** Stops watching every key. */
  close(): void {
    for (const key of [...this.#watched.keys()]) this.unwatch(key);
  }

  #arm(key: string, w: Watched): void {
    w.timer = this.#clock.setTimer(w.due, () => {
      if (this.#watched.get(key) !== w) return;
      // watched again since this timer was set
      if (this.#clock.now() < w.due) return this.#arm(key, w);
      this.#watched.delete(key);
      return (async () => w.onLost())().catch((err) => this.#onError(err, key));
    });
  }
}
