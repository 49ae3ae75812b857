// The outbox: send() and saveState() frames kept while the worker reconnects, bounded, flushed in order once it is back.

/** At most this many room messages wait in the outbox; past it the oldest is dropped. */
export const OUTBOX_MAX_MESSAGES = 1_000;
/** At most this many bytes of room messages (their frames, UTF-8) wait in the outbox; past it the oldest go. */
export const OUTBOX_MAX_BYTES = 8 * 1024 * 1024;

interface Item {
  kind: 'message' | 'state';
  /** the frame, encoded */
  text: string;
  bytes: number;
}

/** The frames made for one session while the worker is away from the server, in the order they were made. */
export class Outbox {
  readonly sessionId: string;
  readonly #items: Item[] = [];
  #messages = 0;
  #bytes = 0;
  /** room messages dropped because the outbox was full */
  #dropped = 0;

  constructor(sessionId: string) {
    this.sessionId = sessionId;
  }

  /** how many frames wait */
  get size(): number {
    return this.#items.length;
  }

  /** how many room messages were dropped to keep within the bounds */
  get dropped(): number {
    return this.#dropped;
  }

  /** Adds a `message` frame; returns how many older messages were dropped to make room for it. */
  message(text: string, bytes: number): number {
    this.#items.push({ kind: 'message', text, bytes });
    this.#messages += 1;
    this.#bytes += bytes;
    let dropped = 0;
    while (this.#messages > OUTBOX_MAX_MESSAGES || this.#bytes > OUTBOX_MAX_BYTES) {
      const oldest = this.#items.findIndex((item) => item.kind === 'message');
      const [item] = this.#items.splice(oldest, 1);
      this.#messages -= 1;
      this.#bytes -= item?.bytes ?? 0;
      dropped += 1;
    }
    this.#dropped += dropped;
    return dropped;
  }

  /** Keeps a `save_state` frame in place of any older one: only the newest state is saved. */
  state(text: string): void {
    const older = this.#items.findIndex((item) => item.kind === 'state');
    if (older >= 0) this.#items.splice(older, 1);
    this.#items.push({ kind: 'state', text, bytes: 0 });
  }

  /** The frames, oldest first; the outbox is empty afterwards. */
  take(): string[] {
    const texts = this.#items.map((item) => item.text);
    this.#items.length = 0;
    this.#messages = 0;
    this.#bytes = 0;
    return texts;
  }
}
