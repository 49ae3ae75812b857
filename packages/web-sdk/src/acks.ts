// Room messages sent with a `ref`: the server answers `message_ack` once the message is relayed (and stored,
// for recorded types), or an `error` frame with the same ref. One promise per message, settled by either, by
// a timeout, or by the connection closing first.
import { UsherError } from './errors.ts';
import type { Timers } from './platform.ts';

/** How long the SDK waits for an acknowledgement unless told otherwise. */
export const ACK_TIMEOUT_MS = 10_000;

/** What the server says about a message it took: its envelope's `id` and `at`, and whether it was stored. */
export interface MessageAckInfo {
  /** the reference the SDK sent with the message */
  ref: string;
  /** the envelope's id, as other participants and the transcript see it */
  id: string;
  /** the server's time stamp of the message (ISO-8601, up to microseconds) */
  at: string;
  /** true when the type is recorded and the message is durably stored */
  recorded: boolean;
}

interface Pending {
  resolve: (ack: MessageAckInfo) => void;
  reject: (error: UsherError) => void;
  timer: unknown;
}

export class AckTracker {
  readonly #timers: Timers;
  readonly #pending = new Map<string, Pending>();
  #seq = 0;

  constructor(timers: Timers) {
    this.#timers = timers;
  }

  /** A new ref and the promise that its acknowledgement settles. */
  track(timeoutMs: number): { ref: string; acked: Promise<MessageAckInfo> } {
    const ref = `m${++this.#seq}`;
    const acked = new Promise<MessageAckInfo>((resolve, reject) => {
      const timer = this.#timers.setTimeout(
        () =>
          this.#settle(ref, (p) =>
            p.reject(
              new UsherError(
                'NO_ACK',
                `the server did not acknowledge message ${ref} within ${timeoutMs} ms`,
              ),
            ),
          ),
        timeoutMs,
      );
      this.#pending.set(ref, { resolve, reject, timer });
    });
    return { ref, acked };
  }

  has(ref: string): boolean {
    return this.#pending.has(ref);
  }

  /** A `message_ack` frame; false when its ref is not one this tracker waits for. */
  acked(frame: Record<string, unknown>): boolean {
    const { ref, id, at, recorded } = frame;
    if (typeof ref !== 'string' || typeof id !== 'string' || typeof at !== 'string') return false;
    return this.#settle(ref, (p) => p.resolve({ ref, id, at, recorded: recorded === true }));
  }

  /** An `error` frame that names a ref of ours: the message was refused (e.g. RATE_LIMITED, TOO_LARGE). */
  refused(ref: string, code: string, message: string): boolean {
    return this.#settle(ref, (p) => p.reject(new UsherError(code, message)));
  }

  /** The connection closed: nothing pending will be acknowledged any more. */
  failAll(reason: string): void {
    for (const ref of [...this.#pending.keys()])
      this.#settle(ref, (p) =>
        p.reject(new UsherError('NO_ACK', `message ${ref} was not acknowledged: ${reason}`)),
      );
  }

  #settle(ref: string, action: (p: Pending) => void): boolean {
    const p = this.#pending.get(ref);
    if (!p) return false;
    this.#pending.delete(ref);
    this.#timers.clearTimeout(p.timer);
    action(p);
    return true;
  }
}
