// Room-message load: in each room two users send `user_text` messages to each other through a relay (Usher, or
// the bare forwarder it is compared with); every message is timed from its send to its delivery at the other
// user and to its `message_ack` at the sender. The users are plain `ws` clients in this process.
import type WebSocket from 'ws';
import { sleep } from './harness.ts';

/** One user of a room: its socket and the identity its messages carry in `from`. */
export interface RoomUser {
  ws: WebSocket;
  identity: string;
}

/** A session's room with its two users (the relay may deliver to more, e.g. the session's worker). */
export interface Room {
  sessionId: string;
  users: [RoomUser, RoomUser];
}

/** What one run of load measured; counts and latencies are of the measured window only. */
export interface LoadResult {
  /** messages delivered to the other user */
  delivered: number;
  /** acks received (durable when the relay records) */
  acked: number;
  /** messages sent */
  sent: number;
  ms: number;
  /** send → delivery at the other user (ms) */
  relay: number[];
  /** send → message_ack at the sender (ms) */
  ack: number[];
  /** a paced run's sends it skipped because a user had `maxInFlight` unanswered (0 otherwise) */
  skipped: number;
}

/** Everything the users saw over all runs, for the end-of-benchmark checks. */
export interface RoomTotals {
  sent: number;
  /** acks saying `recorded: true` */
  recorded: number;
  acks: number;
  /** deliveries out of order or never sent, and acks for no message */
  wrong: number;
  /** `error` frames (rate limits, refusals) and the last one */
  errors: number;
  lastError: string | null;
}

/** ~100 characters, like a short chat line or a transcript fragment. */
const TEXT = 'Could you add oat milk, two lemons and a loaf of rye bread to the shopping list for Saturday?';

const DELIVERED = 1;
const ACKED = 2;

/** One user's outgoing messages: their send times by sequence number, and what has come back. */
class Lane {
  readonly user: RoomUser;
  readonly sentAt: number[] = [];
  readonly state: number[] = [];
  /** next sequence number the other user should receive (deliveries are in order on one session) */
  head = 0;
  done = 0;
  /** called when a message of this lane is both delivered and acked */
  onDone: () => void = () => {};

  constructor(user: RoomUser) {
    this.user = user;
  }

  get inFlight(): number {
    return this.sentAt.length - this.done;
  }

  send(): void {
    const n = this.sentAt.length;
    this.sentAt.push(performance.now());
    this.state.push(0);
    this.user.ws.send(
      `{"type":"message","messageType":"user_text","data":{"text":"${TEXT}","n":${n}},"ref":"${n}"}`,
    );
  }

  mark(n: number, bit: number): void {
    const s = this.state[n]! | bit;
    this.state[n] = s;
    if (s === (DELIVERED | ACKED)) {
      this.done++;
      this.onDone();
    }
  }
}

interface Frame {
  type: string;
  ref?: string;
  recorded?: boolean;
  code?: string;
  message?: { type?: string; from?: { identity?: string }; data?: { n?: number } } | string;
}

/** Load over a set of rooms: one lane per user; run() and oneAtATime() drive it. */
export class RoomLoad {
  readonly lanes: Lane[] = [];
  readonly totals: RoomTotals = { sent: 0, recorded: 0, acks: 0, wrong: 0, errors: 0, lastError: null };
  #window: LoadResult | null = null;

  constructor(rooms: readonly Room[]) {
    for (const room of rooms) {
      const [a, b] = room.users.map((u) => new Lane(u)) as [Lane, Lane];
      this.#listen(a, b);
      this.#listen(b, a);
      this.lanes.push(a, b);
    }
  }

  /** The frames `own`'s socket receives: its acks, the other user's messages, and its own echoed back. */
  #listen(own: Lane, other: Lane): void {
    const ws = own.user.ws;
    ws.removeAllListeners('message');
    ws.on('message', (raw: Buffer) => {
      const now = performance.now();
      const f = JSON.parse(raw.toString()) as Frame;
      if (f.type === 'session.message' && typeof f.message === 'object') {
        const m = f.message;
        if (m.type !== 'user_text' || m.from?.identity === own.user.identity) return;
        const n = m.data?.n;
        if (n !== other.head || n >= other.sentAt.length) {
          this.totals.wrong++;
          return;
        }
        other.head++;
        const w = this.#window;
        if (w) {
          w.delivered++;
          w.relay.push(now - other.sentAt[n]!);
        }
        other.mark(n, DELIVERED);
      } else if (f.type === 'message_ack') {
        const n = Number(f.ref);
        if (!(n < own.sentAt.length) || own.state[n]! & ACKED) {
          this.totals.wrong++;
          return;
        }
        this.totals.acks++;
        if (f.recorded) this.totals.recorded++;
        const w = this.#window;
        if (w) {
          w.acked++;
          w.ack.push(now - own.sentAt[n]!);
        }
        own.mark(n, ACKED);
      } else if (f.type === 'error') {
        this.totals.errors++;
        this.totals.lastError = `${f.code}: ${String(f.message).slice(0, 200)}`;
      }
    });
  }

  #send(lane: Lane): void {
    lane.send();
    this.totals.sent++;
    if (this.#window) this.#window.sent++;
  }

  /** Messages sent and not yet both delivered and acked. */
  get inFlight(): number {
    let n = 0;
    for (const l of this.lanes) n += l.inFlight;
    return n;
  }

  /** Waits until nothing is in flight, or throws after timeoutMs naming what is missing. */
  async drain(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight > 0) {
      if (Date.now() > deadline)
        throw new Error(
          `${this.inFlight} messages still unanswered ${timeoutMs} ms after sending stopped (${this.totals.errors} errors; last: ${this.totals.lastError})`,
        );
      await sleep(10);
    }
  }

  /**
   * Load for warmupMs (not counted) then durationMs (counted), then drains. With `window`, every user keeps
   * that many messages in flight (a new one as soon as one is delivered and acked): the relay's capacity.
   * With `perSecond`, messages go out at that rate in all, round-robin over the users, checked every
   * millisecond; a user with `maxInFlight` unanswered skips its turn (counted).
   */
  async run(
    o: { warmupMs: number; durationMs: number } & (
      | { window: number }
      | { perSecond: number; maxInFlight: number }
    ),
  ): Promise<LoadResult> {
    const result: LoadResult = { delivered: 0, acked: 0, sent: 0, ms: 0, relay: [], ack: [], skipped: 0 };
    let sending = true;
    let timer: NodeJS.Timeout | null = null;
    if ('window' in o) {
      for (const lane of this.lanes) {
        lane.onDone = () => {
          if (sending) this.#send(lane);
        };
        for (let i = 0; i < o.window; i++) this.#send(lane);
      }
    } else {
      const start = performance.now();
      const { perSecond, maxInFlight } = o;
      let issued = 0;
      let next = 0;
      const tick = () => {
        if (!sending) return;
        const due = Math.floor(((performance.now() - start) * perSecond) / 1000) - issued;
        for (let k = 0; k < due; k++) {
          const lane = this.lanes[next++ % this.lanes.length]!;
          if (lane.inFlight < maxInFlight) this.#send(lane);
          else if (this.#window) this.#window.skipped++;
          issued++;
        }
        timer = setTimeout(tick, 1);
      };
      tick();
    }
    await sleep(o.warmupMs);
    this.#window = result;
    const t = performance.now();
    await sleep(o.durationMs);
    this.#window = null;
    result.ms = performance.now() - t;
    sending = false;
    if (timer) clearTimeout(timer);
    await this.drain();
    for (const lane of this.lanes) lane.onDone = () => {};
    return result;
  }

  /**
   * `count` messages one at a time, alternating between the two users of the first room; each waits for its
   * delivery and its ack. Returns the two latencies of each message.
   */
  async oneAtATime(count: number): Promise<{ relay: number[]; ack: number[] }> {
    const result: LoadResult = { delivered: 0, acked: 0, sent: 0, ms: 0, relay: [], ack: [], skipped: 0 };
    this.#window = result;
    try {
      for (let i = 0; i < count; i++) {
        const lane = this.lanes[i % 2]!;
        let timer: NodeJS.Timeout | undefined;
        const done = new Promise<void>((resolve, reject) => {
          lane.onDone = resolve;
          timer = setTimeout(
            () => reject(new Error(`message ${i} was not both delivered and acked within 5 s`)),
            5_000,
          );
        });
        this.#send(lane);
        await done.finally(() => clearTimeout(timer));
        lane.onDone = () => {};
      }
    } finally {
      this.#window = null;
    }
    return { relay: result.relay, ack: result.ack };
  }
}
