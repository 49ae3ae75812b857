// Live sockets with the admin key: the server's event feed (GET /events/ws) for the live views, and a
// session's own socket (GET /sessions/{id}/ws, as an observer) for its page. Each reconnects with exponential
// backoff and jitter when it drops. The key travels as a WebSocket subprotocol, not in the URL, so that no
// proxy's access log records it.
import type { SessionEvent } from '@usher/protocol';
import type { Worker } from './api.ts';

/** What GET /events/ws sends: `hello` first, then session events (with their project) and worker changes. */
export type FeedEvent =
  | { type: 'hello'; serverId: string; at: string }
  | (SessionEvent & { projectId: string })
  | { type: 'worker.changed'; at: string; worker: Worker };

/** connecting: the first attempt; live: a first frame came; reconnecting: dropped, waiting to try again. */
export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'closed';

/** What pages listen to: a feed of events. */
export interface EventSource<E> {
  on(fn: (e: E) => void): () => void;
}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
/** The subprotocol the server selects; the credential rides beside it as `bearer.<key>`. */
const PROTOCOL = 'usher';
/** What a subprotocol may hold (an HTTP token); `new WebSocket` refuses anything else. */
const PROTOCOL_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export class LiveSocket<E extends { type: string }> implements EventSource<E> {
  status: LiveStatus = 'connecting';
  readonly #url: URL;
  readonly #protocols: string[];
  /** whether a close with this code is worth a new attempt */
  readonly #retry: (code: number) => boolean;
  readonly #listeners = new Set<(e: E) => void>();
  readonly #statusListeners = new Set<(s: LiveStatus) => void>();
  #ws: WebSocket | null = null;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(path: string, key: string, retry: (code: number) => boolean = () => true) {
    this.#url = new URL(path, location.href);
    this.#url.protocol = this.#url.protocol === 'https:' ? 'wss:' : 'ws:';
    // a key given in configuration may hold characters a subprotocol cannot (such as / or =): it goes in the
    // URL, the one way left to a browser
    if (PROTOCOL_TOKEN.test(key)) this.#protocols = [PROTOCOL, `bearer.${key}`];
    else {
      this.#protocols = [];
      this.#url.searchParams.set('token', key);
    }
    this.#retry = retry;
  }

  start(): this {
    if (this.status === 'closed') return this;
    const ws = new WebSocket(this.#url, this.#protocols);
    this.#ws = ws;
    let first = true;
    ws.onmessage = (m) => {
      let e: E;
      try {
        e = JSON.parse(String(m.data)) as E;
      } catch {
        return;
      }
      if (first) {
        first = false;
        this.#attempt = 0;
        this.#setStatus('live');
      }
      for (const fn of this.#listeners) fn(e);
    };
    ws.onclose = (c) => {
      if (this.#ws !== ws || this.status === 'closed') return;
      if (!this.#retry(c.code)) return this.#setStatus('closed');
      this.#setStatus('reconnecting');
      const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.#attempt++);
      this.#timer = setTimeout(() => this.start(), delay * (0.8 + Math.random() * 0.4));
    };
    return this;
  }

  /** Calls fn with every event; the first after each (re)connection says that events may have been missed. */
  on(fn: (e: E) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  onStatus(fn: (s: LiveStatus) => void): () => void {
    this.#statusListeners.add(fn);
    fn(this.status);
    return () => this.#statusListeners.delete(fn);
  }

  close(): void {
    this.#setStatus('closed');
    if (this.#timer) clearTimeout(this.#timer);
    this.#ws?.close();
    this.#ws = null;
    this.#listeners.clear();
  }

  #setStatus(s: LiveStatus): void {
    if (this.status === s) return;
    this.status = s;
    for (const fn of this.#statusListeners) fn(s);
  }
}
