// Room messages sent while the SDK reconnects to the same session (1006, 1011, 1012): held in order, up to
// OUTBOX_LIMIT of them, and sent once the session's socket is back; if it never is (the session ended, or a fresh
// one replaced it), nothing is sent and each acknowledged message's promise rejects with NOT_SENT.
import type { MessageAckInfo } from './acks.ts';
import { UsherError } from './errors.ts';

/**
 * How many room messages the SDK holds while it reconnects; the next one is refused (OUTBOX_FULL). It is the
 * server's default burst of room messages per participant: a full outbox fits in it when no other message of the
 * participant's has used it up just before.
 */
export const OUTBOX_LIMIT = 100;

/** A message waiting for the socket: its frame (without `ref`), and for sendMessageAcked() its promise. */
export interface HeldMessage {
  frame: string;
  acked: {
    timeoutMs: number;
    resolve: (ack: MessageAckInfo) => void;
    reject: (error: UsherError) => void;
  } | null;
}

export class Outbox {
  readonly #held: HeldMessage[] = [];

  get size(): number {
    return this.#held.length;
  }

  /** Holds a fire-and-forget message; false when the outbox is full (it is not held). */
  hold(frame: string): boolean {
    if (this.#held.length >= OUTBOX_LIMIT) return false;
    this.#held.push({ frame, acked: null });
    return true;
  }

  /** Holds an acknowledged message: the promise settles once it is sent and answered, or rejects. */
  holdAcked(frame: string, timeoutMs: number): Promise<MessageAckInfo> {
    if (this.#held.length >= OUTBOX_LIMIT)
      return Promise.reject(
        new UsherError(
          'OUTBOX_FULL',
          `${OUTBOX_LIMIT} messages are already waiting for the connection to come back: not sent`,
        ),
      );
    return new Promise((resolve, reject) => {
      this.#held.push({ frame, acked: { timeoutMs, resolve, reject } });
    });
  }

  /** Everything held, oldest first; the outbox is then empty. */
  take(): HeldMessage[] {
    return this.#held.splice(0);
  }

  /** Nothing held will be sent: each acknowledged message's promise rejects with NOT_SENT and `why`. */
  drop(why: string): void {
    for (const { acked } of this.take())
      acked?.reject(new UsherError('NOT_SENT', `a message held while reconnecting was not sent: ${why}`));
  }
}
