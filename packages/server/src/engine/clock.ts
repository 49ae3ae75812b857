// The one clock every timer reads. Tests use ManualClock to move time forward without waiting.

export interface Clock {
  now(): number;
  /** Calls fn at `at` (epoch ms) or as soon as possible after it. */
  setTimer(at: number, fn: () => void | Promise<void>): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

export interface TimerHandle {
  readonly id: number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(at, fn) {
    // Node caps timeouts at 2^31-1 ms; a longer delay re-arms itself
    const MAX = 2_147_483_647;
    const handle = { id: 0, t: undefined as NodeJS.Timeout | undefined };
    const arm = () => {
      const delay = Math.max(0, at - Date.now());
      handle.t = setTimeout(
        () => {
          if (at - Date.now() > 0) arm();
          else void fn();
        },
        Math.min(delay, MAX),
      );
      handle.t.unref?.();
    };
    arm();
    return handle;
  },
  clearTimer(handle) {
    clearTimeout((handle as { t?: NodeJS.Timeout }).t);
  },
};

interface ManualTimer {
  id: number;
  at: number;
  fn: () => void | Promise<void>;
}

/** A clock that only moves when told to; `advance` runs due timers in order and awaits each. */
export class ManualClock implements Clock {
  #now: number;
  #nextId = 1;
  #timers: ManualTimer[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(at: number, fn: () => void | Promise<void>): TimerHandle {
    const t = { id: this.#nextId++, at, fn };
    this.#timers.push(t);
    return { id: t.id };
  }

  clearTimer(handle: TimerHandle): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle.id);
  }

  /** Moves time forward by ms, firing every timer that falls due on the way, earliest first. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      await due.fn();
    }
    this.#now = target;
  }

  /** Number of armed timers (for tests that check nothing is left behind). */
  get pending(): number {
    return this.#timers.length;
  }
}
