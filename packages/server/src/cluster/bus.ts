// The bus between Usher servers that share one PostgreSQL: session events, and frames for a worker whose socket
// is on another server, travel as PostgreSQL notifications (LISTEN/NOTIFY) on one channel per schema. No broker:
// the database the servers share already is one.
//
// Limits (docs/scaling.md): a notification reaches the servers listening at that moment, at most once; a server
// whose listening connection drops misses what is sent until it reconnects. Payloads over PostgreSQL's 8,000
// bytes go through the bus_payloads table, kept for a minute.
//
// A listening connection can also die without a word (a NAT or firewall that forgets it, a network cut: no FIN,
// no RST): nothing fails, nothing more arrives. Each server pings itself through the channel every few seconds,
// and a ping not heard back in time means the connection is deaf: it is cut and opened again.
import type { Participant, ServerToWorkerFrame, SessionEvent } from '@usher/protocol';

/** A viewer's signalling socket: the server it is on, and its id there. */
export interface PlayerRef {
  server: string;
  ref: string;
}

/** Pixel Streaming signalling between a viewer and a streamer on different servers (realtime/signalling). */
export type SignalMessage =
  /** a streamer here was seated for the session (an answer to `list`, or news) */
  | { op: 'seated'; sessionId: string; workerId: string }
  /** a viewer asks which streamer its session is seated on */
  | { op: 'list'; sessionId: string }
  | { op: 'subscribe'; workerId: string; sessionId: string; from: PlayerRef }
  | { op: 'unsubscribe'; workerId: string; from: PlayerRef }
  | { op: 'toStreamer'; workerId: string; from: PlayerRef; m: Record<string, unknown> }
  | { op: 'toPlayer'; to: PlayerRef; m: Record<string, unknown> };

import { type Listening, PG_NOW_MS, type PostgresDb } from '../storage/postgres.ts';
import type { WorkerRecord } from '../storage/records.ts';
import type { Logger } from '../util/logger.ts';

export type BusMessage =
  | { kind: 'event'; event: SessionEvent }
  | { kind: 'worker'; workerId: string; frame: ServerToWorkerFrame }
  /** a project was created or its settings changed: the other servers read it again */
  | { kind: 'project'; projectId: string }
  | { kind: 'signal'; signal: SignalMessage }
  /** an admin asked that server to drain */
  | { kind: 'drain'; serverId: string }
  /** a server started: the others know they are not alone */
  | { kind: 'hello'; serverId: string }
  /** a draining server freed a worker of this pool: another server refills it and seats its queue */
  | { kind: 'dispatch'; projectId: string; region: string }
  /** an admin key was revoked: the others drop it from their caches at once */
  | { kind: 'admin_key_revoked'; keyId: string }
  /** that server has (or no longer has) an operator feed open: worker changes are sent to it */
  | { kind: 'worker_watch'; serverId: string; watching: boolean }
  /** a worker changed on the sending server, for the operator feeds open on the others */
  | { kind: 'worker_changed'; worker: WorkerRecord }
  /** the sending server stopped, and its LiveKit recorder left these sessions' rooms: the others put one back */
  | { kind: 'recorders_left'; sessionIds: string[] }
  /** a pool's queue moved on the sending server: each server tells the queued sockets it holds their positions */
  | { kind: 'queue_moved'; projectId: string; region: string }
  /**
   * A participant's first socket in a room opened on the sending server, or its last there closed
   * (Rooms.presenceNote): whether the room was told (`announced`) or the participant is still in it elsewhere
   */
  | PresenceNote
  /** the sending server adopted that one, which is gone: the others forget whom it held in rooms */
  | { kind: 'server_gone'; serverId: string };

export interface PresenceNote {
  kind: 'presence';
  serverId: string;
  sessionId: string;
  participant: Participant;
  present: boolean;
  announced: boolean;
  /** the participant is gone from every server: an agent whose session ended or that crashed, or a LiveKit participant (Rooms.leftEverywhere) */
  everywhere?: boolean;
}

export interface Bus {
  /** whether other servers may hear what is sent (false: this server is alone, nothing leaves it) */
  readonly shared: boolean;
  send(message: BusMessage): void;
  /** what other servers sent; never this server's own messages */
  onMessage(listener: (message: BusMessage) => void): void;
  close(): Promise<void>;
}

/** One server alone (SQLite, or PostgreSQL used by one server): nothing to send. */
export const localBus: Bus = Object.freeze({
  shared: false,
  send() {},
  onMessage() {},
  async close() {},
});

/** PostgreSQL refuses payloads of 8,000 bytes or more. */
const MAX_NOTIFY_BYTES = 7_900;
/** At most this many notifications go out in one statement. */
const SEND_BATCH = 500;
const PAYLOAD_TTL_MS = 60_000;
const RECONNECT_MS = 1_000;
/** How often a server pings itself through its listening connection, by default */
const PING_MS = 5_000;
/** A ping not heard back within this (by default) means the listening connection is deaf */
const PING_TIMEOUT_MS = 10_000;
/** a newcomer's row is in the servers table well within this after its hello */
const HELLO_COUNTS_MS = 15_000;

interface Envelope {
  /** its sequence number: PostgreSQL drops a repeated identical payload within one transaction */
  n: number;
  m?: BusMessage;
  /** a payload kept in bus_payloads */
  ref?: number;
  /** a server's ping to itself, through its listening connection (the others skip it, as any envelope without m) */
  ping?: number;
}

export interface PostgresBusOptions {
  /** how often the listening connection is checked with a ping (real time); default 5 s */
  pingMs?: number;
  /** a ping not heard back within this means the connection is deaf, and it is replaced; default 10 s */
  pingTimeoutMs?: number;
  /** the wait before opening a lost listening connection again; default 1 s */
  reconnectMs?: number;
}

/** A payload on the wire: the sending server's id, a newline, the envelope's JSON (a server skips its own unread). */
const wire = (serverId: string, e: Envelope) => `${serverId}\n${JSON.stringify(e)}`;

export class PostgresBus implements Bus {
  readonly #db: PostgresDb;
  readonly #serverId: string;
  readonly #log: Logger;
  readonly #channel: string;
  readonly #listeners: ((m: BusMessage) => void)[] = [];
  #queue: string[] = [];
  #sending: Promise<void> | null = null;
  #seq = 0;
  #inbox: Promise<void> = Promise.resolve();
  #connection: Listening | null = null;
  /** counts listening connections: what an older one reports after it was replaced is not heard */
  #generation = 0;
  /** the listening connection was lost: the next one that listens says so */
  #lost = false;
  #reconnect: NodeJS.Timeout | null = null;
  #sweep: NodeJS.Timeout | null = null;
  readonly #pingMs: number;
  readonly #pingTimeoutMs: number;
  readonly #reconnectMs: number;
  #pinger: NodeJS.Timeout | null = null;
  #pings = 0;
  /** the ping awaited back, and when it counts as lost */
  #awaiting: { n: number; deaf: NodeJS.Timeout } | null = null;
  #closed = false;
  /** whether another server runs: until one does, nothing is sent (one server alone pays nothing) */
  #peers = false;
  /** when another server last said hello (a servers table read from before it does not count) */
  #helloAt = 0;

  private constructor(db: PostgresDb, serverId: string, log: Logger, options: PostgresBusOptions) {
    this.#db = db;
    this.#serverId = serverId;
    this.#log = log;
    this.#channel = `usher_${db.schema}`;
    this.#pingMs = options.pingMs ?? PING_MS;
    this.#pingTimeoutMs = options.pingTimeoutMs ?? PING_TIMEOUT_MS;
    this.#reconnectMs = options.reconnectMs ?? RECONNECT_MS;
  }

  /** Listens on the schema's channel; resolves once listening. */
  static async open(
    db: PostgresDb,
    serverId: string,
    log: Logger,
    options: PostgresBusOptions = {},
  ): Promise<PostgresBus> {
    const bus = new PostgresBus(db, serverId, log, options);
    await bus.#listen();
    bus.#sweep = setInterval(() => void bus.#dropOldPayloads(), PAYLOAD_TTL_MS);
    bus.#sweep.unref();
    bus.#pinger = setInterval(() => bus.#ping(), bus.#pingMs);
    bus.#pinger.unref();
    return bus;
  }

  get shared(): boolean {
    return this.#peers;
  }

  /** Whether other servers run, as the servers table says; a hello heard lately outweighs a table without it. */
  setPeers(peers: boolean): void {
    this.#peers = peers || Date.now() - this.#helloAt < HELLO_COUNTS_MS;
  }

  onMessage(listener: (m: BusMessage) => void): void {
    this.#listeners.push(listener);
  }

  send(message: BusMessage): void {
    // a hello goes out even from a server that thinks it is alone: that is how the others learn of it
    if (this.#closed || (!this.#peers && message.kind !== 'hello')) return;
    this.#queue.push(wire(this.#serverId, { n: ++this.#seq, m: message }));
    this.#sending ??= this.#flush();
  }

  /** Sends what is queued, in order: one statement per batch, on one connection at a time. */
  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, SEND_BATCH);
        const payloads: string[] = [];
        for (const p of batch)
          payloads.push(Buffer.byteLength(p) < MAX_NOTIFY_BYTES ? p : await this.#keep(p));
        await this.#db.run(
          'SELECT pg_notify(?, p) FROM unnest(?::text[]) WITH ORDINALITY AS t(p, i) ORDER BY i',
          [this.#channel, payloads],
        );
      }
    } catch (err) {
      this.#log.error({ err }, 'the server bus could not send; other servers miss these events');
    } finally {
      this.#sending = null;
      if (this.#queue.length > 0 && !this.#closed) this.#sending = this.#flush();
    }
  }

  /** A payload too large for a notification: stored, and its id sent instead. */
  async #keep(payload: string): Promise<string> {
    // stamped on the database's clock, as it is aged: servers' own clocks may disagree
    const row = await this.#db.get<{ id: number }>(
      `INSERT INTO bus_payloads (payload, at) VALUES (?, ${PG_NOW_MS}) RETURNING id`,
      [payload],
    );
    return wire(this.#serverId, { n: ++this.#seq, ref: row!.id });
  }

  async #listen(): Promise<void> {
    const generation = ++this.#generation;
    const ours = `${this.#serverId}\n`;
    const pong = `${ours}{"n":0,"ping":`;
    const connection = await this.#db.listen(
      this.#channel,
      (payload) => {
        if (generation !== this.#generation) return;
        if (payload.startsWith(ours)) {
          // this server's own, unread but for its pings: the connection hears, as it should
          if (payload.startsWith(pong) && Number(payload.slice(pong.length, -1)) === this.#awaiting?.n) {
            clearTimeout(this.#awaiting.deaf);
            this.#awaiting = null;
          }
          return;
        }
        // one at a time, so that a payload fetched from the table keeps its place
        this.#inbox = this.#inbox
          .then(() => this.#receive(payload))
          .catch((err) => {
            this.#log.error({ err }, 'the server bus could not read a message');
          });
      },
      (err) => {
        if (generation !== this.#generation) return;
        this.#log.warn({ err }, 'the server bus lost its connection; reconnecting');
        this.#lose();
      },
    );
    if (this.#closed || generation !== this.#generation) {
      // closed (or replaced) while it connected
      connection.destroy();
      return;
    }
    this.#connection = connection;
    if (this.#lost) {
      this.#lost = false;
      this.#log.info({}, 'the server bus listens again; what other servers sent meanwhile is missed');
    }
  }

  /** The listening connection is gone or useless: it is dropped, and another one opened in a moment. */
  #lose(): void {
    this.#generation++;
    this.#lost = true;
    this.#connection?.destroy();
    this.#connection = null;
    if (this.#awaiting) clearTimeout(this.#awaiting.deaf);
    this.#awaiting = null;
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnect) return;
    this.#reconnect = setTimeout(() => {
      this.#reconnect = null;
      if (this.#closed) return;
      this.#listen().catch((err) => {
        this.#log.warn({ err }, 'the server bus could not reconnect; trying again');
        this.#scheduleReconnect();
      });
    }, this.#reconnectMs);
    this.#reconnect.unref();
  }

  /**
   * Pings this server through the channel (sent through the pool, heard on the listening connection): a ping
   * not heard back within the bound means the listening connection hears nothing any more, though nothing
   * failed. One ping at a time; none while the connection is being opened again.
   */
  #ping(): void {
    if (this.#closed || !this.#connection || this.#awaiting) return;
    const n = ++this.#pings;
    const generation = this.#generation;
    const deaf = setTimeout(() => {
      if (this.#closed || generation !== this.#generation || this.#awaiting?.n !== n) return;
      this.#log.warn(
        { afterMs: this.#pingTimeoutMs },
        'the server bus heard nothing back on its connection (cut off without a word?); reconnecting',
      );
      this.#lose();
    }, this.#pingTimeoutMs);
    deaf.unref();
    this.#awaiting = { n, deaf };
    // a ping that cannot be sent (the database is away) is not heard back either: the connection is replaced,
    // which is what its own error would bring about anyway
    this.#db
      .run('SELECT pg_notify(?, ?)', [this.#channel, wire(this.#serverId, { n: 0, ping: n })])
      .catch(() => {});
  }

  async #receive(payload: string): Promise<void> {
    const cut = payload.indexOf('\n');
    if (cut < 0) return;
    const e = JSON.parse(payload.slice(cut + 1)) as Envelope;
    let message = e.m;
    if (e.ref !== undefined) {
      const row = await this.#db.get<{ payload: string }>('SELECT payload FROM bus_payloads WHERE id = ?', [
        e.ref,
      ]);
      if (!row) return;
      const kept = row.payload;
      message = (JSON.parse(kept.slice(kept.indexOf('\n') + 1)) as Envelope).m;
    }
    if (!message) return;
    if (message.kind === 'hello') {
      this.#peers = true;
      this.#helloAt = Date.now();
    }
    for (const listener of this.#listeners) {
      // each listener hears it, whatever the one before did
      try {
        listener(message);
      } catch (err) {
        this.#log.error({ err, kind: message.kind }, 'a bus message could not be handled');
      }
    }
  }

  async #dropOldPayloads(): Promise<void> {
    await this.#db
      .run(`DELETE FROM bus_payloads WHERE at < ${PG_NOW_MS} - ?`, [PAYLOAD_TTL_MS])
      .catch((err) => this.#log.warn({ err }, 'old bus payloads could not be dropped'));
  }

  /** Sends what is queued, then stops listening. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#sending;
    this.#closed = true;
    if (this.#reconnect) clearTimeout(this.#reconnect);
    if (this.#sweep) clearInterval(this.#sweep);
    if (this.#pinger) clearInterval(this.#pinger);
    if (this.#awaiting) clearTimeout(this.#awaiting.deaf);
    await this.#inbox;
    await this.#connection?.close().catch(() => {});
  }
}
