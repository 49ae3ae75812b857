// AFK on the viewer's side (the server enforces it): tells the server about input at most once a second, shows
// the AFK warning with a countdown each second, dismisses it on input, and applies the SDK's own stricter
// threshold when `afk.warnAfterMs` is set.
import type { SessionState } from '@usher/protocol';
import type { Emitter } from './emitter.ts';
import type { SessionEvents } from './events.ts';
import type { ResolvedAfk } from './options.ts';
import type { Timers } from './platform.ts';

/** The server needs no more than one input report a second (it ignores more). */
export const INPUT_REPORT_INTERVAL_MS = 1000;
const TICK_MS = 1000;

export interface AfkHooks {
  /** sends `{type:'input'}` to the server */
  reportInput(): void;
  /** the SDK's own AFK warning ran out: end the session */
  onTimeout(): void;
}

interface Warning {
  deadline: number;
  /** raised by the SDK's own threshold, not by the server */
  local: boolean;
  tick: unknown;
}

export class AfkMonitor {
  readonly #options: ResolvedAfk | null;
  readonly #timers: Timers;
  readonly #now: () => number;
  readonly #events: Emitter<SessionEvents>;
  readonly #hooks: AfkHooks;
  #lastReportAt = Number.NEGATIVE_INFINITY;
  #lastInputAt = 0;
  #live = false;
  #warning: Warning | null = null;
  #localTimer: unknown = null;

  constructor(
    options: ResolvedAfk | null,
    timers: Timers,
    now: () => number,
    events: Emitter<SessionEvents>,
    hooks: AfkHooks,
  ) {
    this.#options = options;
    this.#timers = timers;
    this.#now = now;
    this.#events = events;
    this.#hooks = hooks;
  }

  /** The viewer did something: report it (throttled), or at once if it dismisses the warning. */
  input(): void {
    const now = this.#now();
    this.#lastInputAt = now;
    if (this.#warning) {
      this.#clearWarning();
      this.#armLocal();
      this.#events.emit('afkDismissed', { by: 'input' });
    } else if (now - this.#lastReportAt < INPUT_REPORT_INTERVAL_MS) {
      return;
    }
    this.#lastReportAt = now;
    this.#hooks.reportInput();
  }

  /** The server's `session.afk_warning`. */
  serverWarning(remainingMs: number, disconnectAt: string): void {
    this.#show(remainingMs, disconnectAt, false);
  }

  /** Follows the session's state: AFK only concerns a live session that is not paused. */
  stateChanged(state: SessionState, previous: SessionState): void {
    const live = state === 'active' || state === 'idle';
    const dismissed = this.#warning !== null && (!live || (previous === 'idle' && state === 'active'));
    if (dismissed) this.#clearWarning();
    if (live && !this.#live) this.#lastInputAt = this.#now();
    this.#live = live;
    if (live) this.#armLocal();
    else this.#disarmLocal();
    if (dismissed && live) this.#events.emit('afkDismissed', { by: 'server' });
  }

  stop(): void {
    this.#live = false;
    this.#disarmLocal();
    this.#clearWarning();
  }

  #show(remainingMs: number, disconnectAt: string, local: boolean): void {
    const deadline = this.#now() + Math.max(0, remainingMs);
    // two warnings (the server's and the SDK's): the earlier deadline is the one that counts
    if (this.#warning && this.#warning.deadline <= deadline) return;
    this.#clearWarning();
    this.#warning = { deadline, local, tick: null };
    this.#events.emit('afkWarning', { remainingMs: Math.max(0, remainingMs), disconnectAt });
    this.#scheduleTick();
  }

  #scheduleTick(): void {
    const w = this.#warning;
    if (!w) return;
    const remaining = w.deadline - this.#now();
    w.tick = this.#timers.setTimeout(
      () => {
        if (this.#warning !== w) return;
        const remainingMs = Math.max(0, w.deadline - this.#now());
        this.#events.emit('afkCountdown', { remainingMs });
        if (remainingMs > 0) this.#scheduleTick();
        else if (w.local) this.#hooks.onTimeout();
      },
      Math.max(0, Math.min(TICK_MS, remaining)),
    );
  }

  #clearWarning(): void {
    if (this.#warning) this.#timers.clearTimeout(this.#warning.tick);
    this.#warning = null;
  }

  /** The SDK's own threshold: a timer that, when it fires, checks the last input and waits again if needed. */
  #armLocal(): void {
    const warnAfterMs = this.#options?.warnAfterMs;
    if (!warnAfterMs || !this.#live || this.#localTimer !== null || this.#warning) return;
    const check = () => {
      this.#localTimer = null;
      if (!this.#live || this.#warning) return;
      const quietMs = this.#now() - this.#lastInputAt;
      if (quietMs >= warnAfterMs) {
        const ms = this.#options!.disconnectAfterMs;
        this.#show(ms, new Date(this.#now() + ms).toISOString(), true);
      } else {
        this.#localTimer = this.#timers.setTimeout(check, warnAfterMs - quietMs);
      }
    };
    this.#localTimer = this.#timers.setTimeout(check, warnAfterMs - (this.#now() - this.#lastInputAt));
  }

  #disarmLocal(): void {
    if (this.#localTimer !== null) this.#timers.clearTimeout(this.#localTimer);
    this.#localTimer = null;
  }
}
