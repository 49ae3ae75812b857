// GET /events/ws: the operator's live feed. After `hello`, every session event of every session (this server's
// and the others') with its projectId, and every worker change, in the order they happened here. One
// subscription to the hub serves every such socket; a socket that reads too slowly is closed, never waited for.
import { type SessionEvent, SocketCloseCode, type UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { RawData, WebSocket } from 'ws';
import { callerOf, requireAdmin } from '../api/auth.ts';
import type { ApiContext } from '../api/context.ts';
import { workerView } from '../api/routes/workers.ts';
import type { EventHub } from '../engine/event-hub.ts';
import type { SessionDirectory, SessionKey } from '../observability/session-directory.ts';
import type { WorkerRecord } from '../storage/records.ts';
import { closeToRetry, failedOnServer, parseJsonText } from './frames.ts';
import { releaseUpgrade } from './upgrade.ts';

/** How much a socket may have queued and unsent before it counts as too slow (default 4 MiB). */
export const DEFAULT_EVENTS_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/**
 * Events the feed may hold while their sessions' projects are read; past this the database is too slow for the
 * flow of events, and every event socket is closed with 4101 rather than the feed growing without end.
 */
export const DEFAULT_EVENTS_MAX_QUEUED = 10_000;

export interface EventsSocketOptions {
  /** the server's session directory: where each event's projectId comes from */
  sessions: SessionDirectory;
  /** bytes queued on one socket beyond which it is closed with 4101 (SocketCloseCode.SlowConsumer) */
  maxBufferedBytes?: number;
}

const EventsQuery = Type.Object(
  {
    token: Type.Optional(Type.String({ description: 'the admin key, when no Authorization header is sent' })),
    messages: Type.Optional(
      Type.String({
        enum: ['0', '1', 'false', 'true'],
        description: '1: include session.message events (room messages), which are left out by default',
      }),
    ),
  },
  { additionalProperties: false },
);

/** Session ids looked up in one query. */
const LOOKUP_BATCH = 500;
/** Delivered items are dropped from the front of the queue once this many have piled up there. */
const COMPACT_AT = 1_024;

type Item =
  /** projectId: undefined while not known yet; null for a session the store does not know, or a failed lookup */
  | { kind: 'session'; event: SessionEvent; projectId: string | null | undefined }
  | { kind: 'worker'; frame: WorkerChanged };

export interface WorkerChanged {
  type: 'worker.changed';
  at: string;
  worker: ReturnType<typeof workerView>;
}

export interface Subscriber {
  /** wants session.message events */
  readonly messages: boolean;
  send(text: string): void;
  /** The feed fell too far behind and has dropped this subscriber: close its socket with 4101. */
  tooSlow(reason: string): void;
}

export interface EventFeedOptions {
  hub: Pick<EventHub, 'subscribeAll' | 'subscribeWorkers'>;
  /** each event's project */
  sessions: SessionDirectory;
  /** a worker change as it is sent */
  workerFrame(worker: WorkerRecord): WorkerChanged;
  /** events held at most while projects are looked up; past this every subscriber is dropped (tooSlow) */
  maxQueued: number;
}

/**
 * The events of the hub, each with its session's project, in order, to every subscriber. The projects come from
 * the server's session directory (in memory, else read, several sessions in one query); while a lookup runs,
 * what comes after waits, so that nothing overtakes an earlier event. What waits is bounded (maxQueued).
 */
export class EventFeed {
  readonly #o: EventFeedOptions;
  readonly #subscribers = new Set<Subscriber>();
  #unsubscribe: (() => void)[] = [];
  #queue: Item[] = [];
  #head = 0;
  #lookingUp = false;
  #wantMessages = 0;

  constructor(options: EventFeedOptions) {
    this.#o = options;
  }

  /** Items held in memory: those waiting, and delivered ones at the front not yet dropped (for tests). */
  get held(): number {
    return this.#queue.length;
  }

  add(sub: Subscriber): void {
    this.#subscribers.add(sub);
    if (sub.messages) this.#wantMessages++;
    if (this.#subscribers.size > 1) return;
    const hub = this.#o.hub;
    this.#unsubscribe = [
      hub.subscribeAll((event) => this.#onEvent(event)),
      hub.subscribeWorkers((worker) => this.#onWorker(worker), { everywhere: true }),
    ];
  }

  remove(sub: Subscriber): void {
    if (!this.#subscribers.delete(sub)) return;
    if (sub.messages) this.#wantMessages--;
    if (this.#subscribers.size > 0) return;
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    this.#queue = [];
    this.#head = 0;
  }

  #onEvent(event: SessionEvent): void {
    if (event.type === 'session.message' && this.#wantMessages === 0) return;
    this.#push({ kind: 'session', event, projectId: this.#o.sessions.peek(event.sessionId)?.projectId });
  }

  #onWorker(worker: WorkerRecord): void {
    this.#push({ kind: 'worker', frame: this.#o.workerFrame(worker) });
  }

  #push(item: Item): void {
    if (this.#queue.length - this.#head >= this.#o.maxQueued) {
      // lookups cannot keep up with the events: drop the subscribers (they reconnect and read the state afresh)
      const reason = `more than ${this.#o.maxQueued} events waited for their sessions' projects to be read`;
      for (const sub of [...this.#subscribers]) {
        this.remove(sub);
        sub.tooSlow(reason);
      }
      return;
    }
    this.#queue.push(item);
    this.#pump();
  }

  /** Delivers from the head of the queue while the projects are known; looks up the rest. */
  #pump(): void {
    if (this.#lookingUp) return;
    while (this.#head < this.#queue.length) {
      const item = this.#queue[this.#head]!;
      if (item.kind === 'session' && item.projectId === undefined) break;
      this.#head++;
      this.#deliver(item);
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
      return;
    }
    // the queue may never drain under a steady flow of new sessions: drop what was delivered from its front
    if (this.#head >= COMPACT_AT) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    this.#lookingUp = true;
    void this.#lookUp().finally(() => {
      this.#lookingUp = false;
      this.#pump();
    });
  }

  async #lookUp(): Promise<void> {
    const ids = new Set<string>();
    for (let i = this.#head; i < this.#queue.length && ids.size < LOOKUP_BATCH; i++) {
      const item = this.#queue[i]!;
      if (item.kind === 'session' && item.projectId === undefined) ids.add(item.event.sessionId);
    }
    let found: Map<string, SessionKey> | null = null;
    try {
      found = await this.#o.sessions.keys(ids);
    } catch {
      // the database did not answer (the directory logs it): these events go out without their project
      // rather than never
    }
    for (let i = this.#head; i < this.#queue.length; i++) {
      const item = this.#queue[i]!;
      if (item.kind !== 'session' || item.projectId !== undefined) continue;
      const id = item.event.sessionId;
      const key = found?.get(id) ?? this.#o.sessions.peek(id);
      if (key) item.projectId = key.projectId;
      else if (found === null || ids.has(id)) item.projectId = null;
    }
  }

  #deliver(item: Item): void {
    let text: string;
    let message = false;
    if (item.kind === 'session') {
      const { event } = item;
      message = event.type === 'session.message';
      text = JSON.stringify({ ...event, projectId: item.projectId ?? null });
    } else text = JSON.stringify(item.frame);
    for (const sub of [...this.#subscribers]) if (!message || sub.messages) sub.send(text);
  }
}

export function eventsSocketRoute(app: FastifyInstance, ctx: ApiContext, options: EventsSocketOptions): void {
  const { engine } = ctx;
  const feed = new EventFeed({
    hub: engine.hub,
    sessions: options.sessions,
    workerFrame: (worker) => ({
      type: 'worker.changed',
      at: new Date(engine.clock.now()).toISOString(),
      worker: workerView(engine, worker),
    }),
    maxQueued: DEFAULT_EVENTS_MAX_QUEUED,
  });
  const maxBuffered = options.maxBufferedBytes ?? DEFAULT_EVENTS_MAX_BUFFERED_BYTES;

  app.get<{ Querystring: { token?: string; messages?: string } }>(
    '/events/ws',
    {
      websocket: true,
      schema: {
        tags: ['operations'],
        description:
          'The operator’s live feed (admin key): `hello` first, then every session event of every session with its `projectId` (`session.message` only with `messages=1`) and `worker.changed` for every worker change. A socket that falls more than the configured number of bytes behind is closed with 4101. See docs/operations-api.md.',
        querystring: EventsQuery,
      },
    },
    async (socket: WebSocket, req) => {
      const log = releaseUpgrade(socket, req);
      const send = (m: Record<string, unknown>) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(m));
      };
      try {
        requireAdmin(await callerOf(req, ctx.auth));
      } catch (err) {
        if (failedOnServer(err)) {
          log.error({ err }, 'the event socket could not open');
          closeToRetry(socket, send, 'the admin key could not be checked on the server; try again');
          return;
        }
        const { code, message } = err as UsherError;
        send({ type: 'error', code, message });
        socket.close(SocketCloseCode.PolicyViolation, message.slice(0, 120));
        return;
      }
      // the client may have gone while its key was checked
      if (socket.readyState !== socket.OPEN) return;

      const messages = req.query.messages === '1' || req.query.messages === 'true';
      const sub: Subscriber = {
        messages,
        send(text) {
          if (socket.readyState !== socket.OPEN) return;
          socket.send(text);
          if (socket.bufferedAmount > maxBuffered) {
            feed.remove(sub);
            log.warn(
              { bufferedBytes: socket.bufferedAmount, maxBufferedBytes: maxBuffered },
              'an event socket read too slowly; closed it',
            );
            socket.close(
              SocketCloseCode.SlowConsumer,
              `more than ${maxBuffered} bytes of events were waiting to be read`,
            );
          }
        },
        tooSlow(reason) {
          feed.remove(sub);
          log.warn(
            { maxQueuedEvents: DEFAULT_EVENTS_MAX_QUEUED },
            'the event feed fell behind reading sessions’ projects; closed an event socket',
          );
          if (socket.readyState === socket.OPEN) socket.close(SocketCloseCode.SlowConsumer, reason);
        },
      };
      sub.send(
        JSON.stringify({
          type: 'hello',
          serverId: ctx.servers.selfId,
          at: new Date(engine.clock.now()).toISOString(),
          messages,
        }),
      );
      feed.add(sub);
      ctx.keepalive.track(socket);
      socket.on('close', () => feed.remove(sub));
      socket.on('message', (raw: RawData, isBinary: boolean) => {
        const parsed = isBinary ? null : parseJsonText((raw as Buffer).toString('utf8'));
        const frame = parsed?.ok ? (parsed.value as { type?: unknown; id?: unknown } | null) : null;
        if (frame?.type === 'ping') {
          // the id is echoed back: a string or a number only
          const id = typeof frame.id === 'string' || typeof frame.id === 'number' ? frame.id : null;
          send({ type: 'pong', id, at: new Date(engine.clock.now()).toISOString() });
          return;
        }
        send({
          type: 'error',
          code: 'BAD_REQUEST',
          message: 'this socket only sends events; the one frame it takes is {"type":"ping"}',
        });
      });
    },
  );
}
