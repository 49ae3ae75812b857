// GET /events/ws: the operator's live feed. After `hello`, every session event of every session (this server's
// and the others') with its projectId, and every worker change, in the order they happened here. One
// subscription to the hub serves every such socket; a socket that reads too slowly is closed, never waited for.
import { type SessionEvent, SocketCloseCode, UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { RawData, WebSocket } from 'ws';
import { callerOf, requireAdmin } from '../api/auth.ts';
import type { ApiContext } from '../api/context.ts';
import { workerView } from '../api/routes/workers.ts';
import type { Engine } from '../engine/engine.ts';
import type { WorkerRecord } from '../storage/records.ts';

/** How much a socket may have queued and unsent before it counts as too slow (default 4 MiB). */
export const DEFAULT_EVENTS_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export interface EventsSocketOptions {
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

/** Session ids whose project is remembered, at most (the oldest learned is forgotten first). */
const KNOWN_SESSIONS = 50_000;
/** Session ids looked up in one query. */
const LOOKUP_BATCH = 500;

type Item = { kind: 'session'; event: SessionEvent } | { kind: 'worker'; frame: WorkerChanged };

interface WorkerChanged {
  type: 'worker.changed';
  at: string;
  worker: ReturnType<typeof workerView>;
}

interface Subscriber {
  /** wants session.message events */
  readonly messages: boolean;
  send(text: string): void;
}

/**
 * The events of the hub, each with its session's project, in order, to every subscriber. A session's project is
 * looked up once (several sessions in one query) and remembered; while a lookup runs, what comes after waits, so
 * that nothing overtakes an earlier event.
 */
class EventFeed {
  readonly #engine: Engine;
  readonly #subscribers = new Set<Subscriber>();
  #unsubscribe: (() => void)[] = [];
  #queue: Item[] = [];
  #head = 0;
  #lookingUp = false;
  /** session id → project id (null: no such session) */
  readonly #projects = new Map<string, string | null>();
  #wantMessages = 0;

  constructor(engine: Engine) {
    this.#engine = engine;
  }

  add(sub: Subscriber): void {
    this.#subscribers.add(sub);
    if (sub.messages) this.#wantMessages++;
    if (this.#subscribers.size > 1) return;
    const hub = this.#engine.hub;
    this.#unsubscribe = [
      hub.subscribeAll((event) => this.#onEvent(event)),
      hub.subscribeWorkers((worker) => this.#onWorker(worker)),
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
    this.#queue.push({ kind: 'session', event });
    this.#pump();
  }

  #onWorker(worker: WorkerRecord): void {
    const at = new Date(this.#engine.clock.now()).toISOString();
    this.#queue.push({
      kind: 'worker',
      frame: { type: 'worker.changed', at, worker: workerView(this.#engine, worker) },
    });
    this.#pump();
  }

  /** Delivers from the head of the queue while the projects are known; looks up the rest. */
  #pump(): void {
    if (this.#lookingUp) return;
    while (this.#head < this.#queue.length) {
      const item = this.#queue[this.#head]!;
      if (item.kind === 'session' && !this.#projects.has(item.event.sessionId)) break;
      this.#head++;
      this.#deliver(item);
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
      return;
    }
    this.#lookingUp = true;
    void this.#lookUp()
      .catch(() => {
        // the database did not answer: these events go out without their project rather than never
        for (const item of this.#queue.slice(this.#head))
          if (item.kind === 'session' && !this.#projects.has(item.event.sessionId))
            this.#remember(item.event.sessionId, null);
      })
      .finally(() => {
        this.#lookingUp = false;
        this.#pump();
      });
  }

  async #lookUp(): Promise<void> {
    const ids = new Set<string>();
    for (let i = this.#head; i < this.#queue.length && ids.size < LOOKUP_BATCH; i++) {
      const item = this.#queue[i]!;
      if (item.kind === 'session' && !this.#projects.has(item.event.sessionId)) ids.add(item.event.sessionId);
    }
    const list = [...ids];
    const rows = await this.#engine.store.db.all<{ id: string; project_id: string }>(
      `SELECT id, project_id FROM sessions WHERE id IN (${list.map(() => '?').join(', ')})`,
      list,
    );
    const found = new Map(rows.map((r) => [r.id, r.project_id]));
    for (const id of list) this.#remember(id, found.get(id) ?? null);
  }

  #remember(sessionId: string, projectId: string | null): void {
    this.#projects.set(sessionId, projectId);
    if (this.#projects.size > KNOWN_SESSIONS) this.#projects.delete(this.#projects.keys().next().value!);
  }

  #deliver(item: Item): void {
    let text: string;
    let message = false;
    if (item.kind === 'session') {
      const { event } = item;
      message = event.type === 'session.message';
      text = JSON.stringify({ ...event, projectId: this.#projects.get(event.sessionId) ?? null });
    } else text = JSON.stringify(item.frame);
    for (const sub of [...this.#subscribers]) if (!message || sub.messages) sub.send(text);
  }
}

export function eventsSocketRoute(
  app: FastifyInstance,
  ctx: ApiContext,
  options: EventsSocketOptions = {},
): void {
  const { engine } = ctx;
  const feed = new EventFeed(engine);
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
      const send = (m: Record<string, unknown>) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(m));
      };
      try {
        requireAdmin(await callerOf(req, ctx.auth));
      } catch (err) {
        const e =
          err instanceof UsherError ? err : new UsherError('INTERNAL', 'could not open the event socket');
        send({ type: 'error', code: e.code, message: e.message });
        socket.close(SocketCloseCode.PolicyViolation, e.message.slice(0, 120));
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
            req.log.warn(
              { bufferedBytes: socket.bufferedAmount, maxBufferedBytes: maxBuffered },
              'an event socket read too slowly; closed it',
            );
            socket.close(
              SocketCloseCode.SlowConsumer,
              `more than ${maxBuffered} bytes of events were waiting to be read`,
            );
          }
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
        let frame: { type?: unknown; id?: unknown } | null = null;
        try {
          frame = isBinary ? null : JSON.parse((raw as Buffer).toString('utf8'));
        } catch {
          frame = null;
        }
        if (frame?.type === 'ping') {
          send({ type: 'pong', id: frame.id ?? null, at: new Date(engine.clock.now()).toISOString() });
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
