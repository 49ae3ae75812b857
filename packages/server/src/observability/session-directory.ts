// Which project and region each session belongs to, for the metrics and log lines of events (which name only
// their session): kept in memory while the session lives and a while after it ended, read from the store in
// batches (the sessions an event-loop turn asks about, in one statement).
import type { SessionEvent } from '@usher/protocol';
import type { SessionKey } from '../storage/observability.ts';

export type { SessionKey };

/** Reads the keys of sessions by id; ids it does not find are left out. */
export type KeyReader = (ids: readonly string[]) => Promise<Map<string, SessionKey>>;

/** Sessions kept after they ended: their last events and recorded messages still find their project. */
const RECENTLY_ENDED = 10_000;
/** Open sessions kept at most; past this the oldest are forgotten (and read again if they show up). */
const MAX_OPEN = 100_000;

export class SessionDirectory {
  readonly #read: KeyReader;
  readonly #onError: (err: unknown) => void;
  readonly #open = new Map<string, SessionKey>();
  readonly #ended = new Map<string, SessionKey>();
  /** sessions being read, with what waits for each, in the order it was asked */
  readonly #waiting = new Map<string, ((key: SessionKey) => void)[]>();
  #batch: string[] | null = null;
  readonly #inflight = new Set<Promise<unknown>>();

  constructor(read: KeyReader, onError: (err: unknown) => void) {
    this.#read = read;
    this.#onError = onError;
  }

  /** The session's key if it is in memory now. */
  peek(sessionId: string): SessionKey | undefined {
    return this.#open.get(sessionId) ?? this.#ended.get(sessionId);
  }

  /**
   * Runs fn with the session's key: at once when it is in memory, else once it has been read. Calls for one
   * session run in the order they were made; a session the store does not know never runs them.
   */
  with(sessionId: string, fn: (key: SessionKey) => void): void {
    const waiting = this.#waiting.get(sessionId);
    if (waiting) {
      waiting.push(fn);
      return;
    }
    const key = this.peek(sessionId);
    if (key) {
      this.#run(fn, key);
      return;
    }
    this.#waiting.set(sessionId, [fn]);
    if (!this.#batch) {
      const batch: string[] = [];
      this.#batch = batch;
      queueMicrotask(() => this.track(this.#lookUp(batch)));
    }
    this.#batch.push(sessionId);
  }

  /**
   * Keeps the times of a session in memory up to date from its events (this server's and the others'): when
   * it entered the queue, when it first became active; an ended one moves to the recently ended. Sessions not in
   * memory are not read for it.
   */
  observe(event: SessionEvent): void {
    if (event.type !== 'session.status_changed') return;
    const id = event.sessionId;
    if (!this.#waiting.has(id) && !this.peek(id)) return;
    this.with(id, (key) => {
      const at = Date.parse(event.at);
      if (event.status === 'queued') key.queuedAt = at;
      else if (event.status === 'active' && key.activeAt === null) key.activeAt = at;
      else if (event.status === 'ended') {
        key.endedAt = at;
        this.#forget(id, key);
      }
    });
  }

  /** Counts work (a read) that idle() waits for. */
  track<T>(work: Promise<T>): Promise<T> {
    const tracked = work.catch(() => {});
    this.#inflight.add(tracked);
    void tracked.finally(() => this.#inflight.delete(tracked));
    return work;
  }

  /** Resolves when every read asked for so far (and what waited for it) is done. */
  async idle(): Promise<void> {
    // a read scheduled in this turn starts in a microtask: let it start first
    await Promise.resolve();
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  async #lookUp(ids: string[]): Promise<void> {
    this.#batch = null;
    let found: Map<string, SessionKey>;
    try {
      found = await this.#read(ids);
    } catch (err) {
      for (const id of ids) this.#waiting.delete(id);
      this.#onError(err);
      return;
    }
    for (const id of ids) {
      const fns = this.#waiting.get(id);
      this.#waiting.delete(id);
      const key = found.get(id);
      if (!fns || !key) continue;
      this.#remember(id, key);
      for (const fn of fns) this.#run(fn, key);
    }
  }

  #run(fn: (key: SessionKey) => void, key: SessionKey): void {
    try {
      fn(key);
    } catch (err) {
      this.#onError(err);
    }
  }

  #remember(id: string, key: SessionKey): void {
    if (key.endedAt !== null) {
      this.#forget(id, key);
      return;
    }
    this.#open.set(id, key);
    if (this.#open.size > MAX_OPEN) this.#open.delete(this.#open.keys().next().value!);
  }

  #forget(id: string, key: SessionKey): void {
    this.#open.delete(id);
    this.#ended.delete(id);
    this.#ended.set(id, key);
    if (this.#ended.size > RECENTLY_ENDED) this.#ended.delete(this.#ended.keys().next().value!);
  }
}
