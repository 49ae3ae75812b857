// How far a client (the Web SDK, the worker SDK) has heard its session's room: the cursor it reconnects with
// (`?after=` on a session socket, `register.after` for a worker), so that the server replays what it missed, and
// the ids of the messages it got last, so that one that comes both replayed and live is taken once.
import { MAX_REPLAYED_MESSAGES } from './limits.ts';

export interface HeardUpTo {
  /** a message's `at`, or a server's mark (`upto`) */
  at: string;
  /** the message's id; absent for a mark (everything at that time was heard) */
  id?: string;
}

export class RoomCursor {
  #heard: HeardUpTo | null = null;
  readonly #recent = new Set<string>();
  /** how many ids it keeps: more than a replay holds */
  readonly #keep: number;

  constructor(keep = 2 * MAX_REPLAYED_MESSAGES) {
    this.#keep = keep;
  }

  /** The cursor to reconnect with, or null when nothing was heard yet. */
  get heard(): HeardUpTo | null {
    return this.#heard;
  }

  /** A message received: false when it came already; else it is the newest heard (times compare as text). */
  message(id: string, at: string): boolean {
    if (this.#recent.has(id)) return false;
    this.#recent.add(id);
    if (this.#recent.size > this.#keep) this.#recent.delete(this.#recent.values().next().value!);
    const heard = this.#heard;
    if (!heard || at > heard.at || (at === heard.at && heard.id !== undefined && id > heard.id))
      this.#heard = { at, id };
    return true;
  }

  /** The server's mark (`upto`): everything up to it was heard, unless something later was. */
  mark(upto: string): void {
    if (!this.#heard || upto > this.#heard.at) this.#heard = { at: upto };
  }

  /** A new session: heard from `upto` on (or nothing yet), and no id is remembered. */
  reset(upto: string | null = null): void {
    this.#heard = upto === null ? null : { at: upto };
    this.#recent.clear();
  }
}
