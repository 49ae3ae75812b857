// Which project and region each session belongs to, for the metrics, log lines, webhooks and operator feed of
// events (which name only their session): kept in memory while the session lives and a while after it ended,
// read from the store in batches (the sessions an event-loop turn asks about, in one statement). One per server.
import type { SessionEvent } from '@usher/protocol';
import type { SessionKey } from '../storage/observability.ts';

export type { SessionKey };

/** Reads the keys of sessions by id; ids it does not find are left out. */
export type KeyReader = (ids: readonly string[]) => Promise<Map<string, SessionKey>>;

/** Sessions kept after they ended: their last events and recorded messages still find their project. */
const RECENTLY_ENDED = 10_000;
/** Open sessions kept at most; past this the oldest are forgotten (and read again if they show up). */
const MAX_OPEN = 100_000;

/** What waits for a session being read: its key (undefined when the store does not know it), or the read's error. */
type Waiter = (outcome: { key: SessionKey | undefined } | { err: unknown }) => void;

export class SessionDirectory {
  readonly #read: KeyReader;
  readonly #onError: (err: unknown) => void;
  readonly #open = new Map<string, SessionKey>();
  readonly #ended = new Map<string, SessionKey>();
  /** sessions being read, with what waits for each, in the order it was asked */
  readonly #waiting = new Map<string, Waiter[]>();
  #batch: string[] | null = null;
  readonly #inflight = new Set<Promise<unknown>>();
  /** while a read hands out its keys: the work they start, which the read then waits for */
  #started: Promise<unknown>[] | null = null;

  constructor(read: KeyReader, onError: (err: unknown) => void) {
    this.#read = read;
    this.#onError = onError;
  }

  /** The session's key if it is in memory now. */
  peek(sessionId: string): SessionKey | undefined {
    return this.#open.get(sessionId) ?? this.#ended.get(sessionId);
  }

  /** A session this server just created: its key is known without a read (unless one is on its way). */
  learn(sessionId: string, key: SessionKey): void {
    if (!this.#waiting.has(sessionId) && !this.peek(sessionId)) this.#remember(sessionId, key);
  }

  /**
   * Runs fn with the session's key: at once when it is in memory, else once it has been read. Calls for one
   * session run in the order they were made; a session the store does not know never runs them.
   */
  with(sessionId: string, fn: (key: SessionKey) => void): void {
    const key = this.#waiting.has(sessionId) ? undefined : this.peek(sessionId);
    if (key) this.#run(fn, key);
    else
      this.#wait(sessionId, (o) => {
        if ('key' in o && o.key) this.#run(fn, o.key);
      });
  }

  /**
   * The keys of these sessions: those in memory at once, the others read (with whatever else this turn asks
   * about). Sessions the store does not know are left out; rejects when the read fails.
   */
  keys(sessionIds: Iterable<string>): Promise<Map<string, SessionKey>> {
    const out = new Map<string, SessionKey>();
    const missing = new Set<string>();
    for (const id of sessionIds) {
      const key = this.peek(id);
      if (key) out.set(id, key);
      else missing.add(id);
    }
    if (missing.size === 0) return Promise.resolve(out);
    return new Promise((resolve, reject) => {
      let left = missing.size;
      for (const id of missing)
        this.#wait(id, (o) => {
          if ('err' in o) reject(o.err);
          else if (o.key) out.set(id, o.key);
          if (--left === 0) resolve(out);
        });
    });
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

  /** Counts work (a read, or what a key handed out starts) that idle() waits for. */
  track<T>(work: Promise<T>): Promise<T> {
    const tracked = work.catch(() => {});
    this.#inflight.add(tracked);
    void tracked.finally(() => this.#inflight.delete(tracked));
    this.#started?.push(tracked);
    return work;
  }

  /**
   * Resolves when every read asked for so far, and what waited for it, is done. Reads asked for later are not
   * waited for: under a steady flow of new sessions this still resolves.
   */
  async idle(): Promise<void> {
    // a read scheduled in this turn starts in a microtask: let it start first
    await Promise.resolve();
    await Promise.allSettled([...this.#inflight]);
  }

  #wait(sessionId: string, waiter: Waiter): void {
    const waiting = this.#waiting.get(sessionId);
    if (waiting) {
      waiting.push(waiter);
      return;
    }
    this.#waiting.set(sessionId, [waiter]);
    if (!this.#batch) {
      const batch: string[] = [];
      this.#batch = batch;
      queueMicrotask(() => this.track(this.#lookUp(batch)));
    }
    this.#batch.push(sessionId);
  }

  async #lookUp(ids: string[]): Promise<void> {
    this.#batch = null;
    let outcome: (id: string) => { key: SessionKey | undefined } | { err: unknown };
    try {
      const found = await this.#read(ids);
      outcome = (id) => ({ key: found.get(id) });
    } catch (err) {
      this.#onError(err);
      outcome = () => ({ err });
    }
    const started: Promise<unknown>[] = [];
    this.#started = started;
    try {
      for (const id of ids) {
        const waiters = this.#waiting.get(id);
        this.#waiting.delete(id);
        const o = outcome(id);
        if ('key' in o && o.key) this.#remember(id, o.key);
        for (const w of waiters ?? []) w(o);
      }
    } finally {
      this.#started = null;
    }
    // what the keys started (a metric read from a timeline) belongs to this read: idle() waits for it too
    await Promise.allSettled(started);
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
