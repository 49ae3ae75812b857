// A participant's socket in tests: records every event and lets a test wait for the one it expects.
import type { ClientFrame, SessionEvent } from '@usher/protocol';
import WebSocket from 'ws';

type Predicate = (e: SessionEvent) => boolean;

export class TestSocket {
  readonly ws: WebSocket;
  readonly events: SessionEvent[] = [];
  /** frames that are not session events (pong, error) */
  readonly other: Record<string, unknown>[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: { pred: Predicate; resolve: (e: SessionEvent) => void; from: number }[] = [];
  #otherWaiters: { type: string; resolve: (m: Record<string, unknown>) => void }[] = [];
  #otherWatchers: { pred: (frames: readonly Record<string, unknown>[]) => boolean; resolve: () => void }[] =
    [];

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as SessionEvent | Record<string, unknown>;
      if (typeof msg.type === 'string' && msg.type.startsWith('session.')) {
        const e = msg as SessionEvent;
        this.events.push(e);
        this.#waiters = this.#waiters.filter((w) => {
          if (w.pred(e)) {
            w.resolve(e);
            return false;
          }
          return true;
        });
      } else {
        const m = msg as Record<string, unknown>;
        this.other.push(m);
        const i = this.#otherWaiters.findIndex((w) => w.type === m.type);
        if (i >= 0) this.#otherWaiters.splice(i, 1)[0]!.resolve(m);
        this.#otherWatchers = this.#otherWatchers.filter((w) => {
          if (!w.pred(this.other)) return true;
          w.resolve();
          return false;
        });
      }
    });
  }

  /** The first event (already received or still to come) that matches. */
  waitFor(pred: Predicate): Promise<SessionEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve, from: this.events.length }));
  }

  /**
   * The next frame of this type that is not a session event (signalling, pong, error): the first one received
   * since the last call for that type, or the next to come.
   */
  next(type: string): Promise<Record<string, unknown>> {
    const taken = this.#taken.get(type) ?? 0;
    const seen = this.other.filter((m) => m.type === type);
    this.#taken.set(type, taken + 1);
    if (seen.length > taken) return Promise.resolve(seen[taken]!);
    return new Promise((resolve) => this.#otherWaiters.push({ type, resolve }));
  }
  #taken = new Map<string, number>();

  /** Resolves once the frames that are not session events (all received so far) satisfy the predicate. */
  untilOther(pred: (frames: readonly Record<string, unknown>[]) => boolean): Promise<void> {
    if (pred(this.other)) return Promise.resolve();
    return new Promise((resolve) => this.#otherWatchers.push({ pred, resolve }));
  }

  /** Waits until the session reports the state. */
  state(
    status: SessionEvent extends infer E ? (E extends { status: infer S } ? S : never) : never,
  ): Promise<SessionEvent> {
    return this.waitFor((e) => e.type === 'session.status_changed' && e.status === status);
  }

  /** States seen so far, in order. */
  get states(): string[] {
    return this.events.flatMap((e) => (e.type === 'session.status_changed' ? [e.status] : []));
  }

  send(frame: ClientFrame | Record<string, unknown>): void {
    this.ws.send(JSON.stringify(frame));
  }

  close(code = 1000): Promise<{ code: number; reason: string }> {
    this.ws.close(code);
    return this.closed;
  }

  /** Drops the connection without a close frame, as a network failure would (the server sees 1006). */
  drop(): Promise<{ code: number; reason: string }> {
    this.ws.terminate();
    return this.closed;
  }
}
