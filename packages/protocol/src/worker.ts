// The worker protocol on /workers/ws: each direction is one discriminated union (SPEC §5).
import Type, { type Static } from 'typebox';
import { Envelope, Participant } from './events.ts';

export const WorkerState = {
  Starting: 'starting',
  Ready: 'ready',
  Reserved: 'reserved',
  Busy: 'busy',
  Stopping: 'stopping',
  Stopped: 'stopped',
} as const;
export type WorkerState = (typeof WorkerState)[keyof typeof WorkerState];

/** Worker → server. The first frame must be `register`; anything else closes the socket with 1008. */
export const WorkerFrame = Type.Union([
  Type.Object(
    {
      type: Type.Literal('register'),
      token: Type.String({ minLength: 1, maxLength: 4096 }),
      protocolVersion: Type.Optional(Type.String()),
      name: Type.Optional(Type.String({ maxLength: 200 })),
      /**
       * A worker that comes back with its session: the newest room message it received (`at`, `id`), or the
       * `upto` of its last `registered` or `replayed` frame. The server replays what the agent missed after it
       * (room messages and participants' arrivals and departures), then `replayed`, then goes on live.
       */
      after: Type.Optional(
        Type.Object(
          {
            sessionId: Type.String({ maxLength: 200 }),
            at: Type.String({ maxLength: 40 }),
            id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
          },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('ready') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('heartbeat') }, { additionalProperties: false }),
  Type.Object(
    { type: Type.Literal('session_started'), sessionId: Type.String() },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('message'),
      sessionId: Type.String(),
      messageType: Type.String({ minLength: 1, maxLength: 64 }),
      data: Type.Unknown(),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    { type: Type.Literal('save_state'), sessionId: Type.String(), state: Type.Unknown() },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('control'),
      sessionId: Type.String(),
      action: Type.Union([Type.Literal('pause'), Type.Literal('resume'), Type.Literal('end')]),
    },
    { additionalProperties: false },
  ),
  /** the worker could not set up its assigned session (instead of `session_started`): it ends with 4003 */
  Type.Object(
    {
      type: Type.Literal('session_failed'),
      sessionId: Type.String(),
      message: Type.String({ maxLength: 1000 }),
    },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('stopped') }, { additionalProperties: false }),
]);
export type WorkerFrame = Static<typeof WorkerFrame>;

export const Assignment = Type.Object({
  sessionId: Type.String(),
  projectId: Type.String(),
  region: Type.String(),
  agentType: Type.Union([Type.String(), Type.Null()]),
  config: Type.Record(Type.String(), Type.Unknown()),
  token: Type.String({ description: 'worker token scoped to this session' }),
  savedState: Type.Unknown({
    description: 'the last state saved by a previous worker of this session, or null',
  }),
  restarts: Type.Integer({ minimum: 0 }),
  participants: Type.Array(Participant),
  livekit: Type.Optional(
    Type.Object(
      { url: Type.String(), token: Type.String() },
      {
        description:
          "LiveKit mode only: the LiveKit server's URL and the agent's access token for the session's room",
      },
    ),
  ),
  transcript: Type.Optional(
    Type.Object(
      { messages: Type.Array(Envelope), hasMore: Type.Boolean() },
      {
        description:
          'after an auto-restart: the newest recorded messages of the session, oldest first (page further back with GET /sessions/{id}/messages)',
      },
    ),
  ),
});
export type Assignment = Static<typeof Assignment>;

/** Server → worker. */
export const ServerToWorkerFrame = Type.Union([
  Type.Object({
    type: Type.Literal('registered'),
    workerId: Type.String(),
    heartbeatIntervalMs: Type.Integer(),
    /**
     * A worker token of its own, fresh: the worker registers with it when it reconnects, so that it comes back
     * as the same worker, with its session (a worker that registered with a pool token has no other)
     */
    token: Type.Optional(Type.String()),
    /** where the room stood as the worker registered: a cursor (`register.after.at`) for its next reconnect */
    upto: Type.Optional(Type.String()),
    /**
     * the session the server has the worker on, or null for none (or for one that has ended): a worker that
     * comes back holding another has lost it (it ended while the worker was away), and is free
     */
    sessionId: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  }),
  /** what a re-registered worker missed was replayed (see `register.after`); `complete` as for participants */
  Type.Object({
    type: Type.Literal('replayed'),
    sessionId: Type.String(),
    upto: Type.String(),
    count: Type.Integer({ minimum: 0 }),
    complete: Type.Boolean(),
  }),
  Type.Object({
    type: Type.Literal('assign'),
    assignment: Assignment,
    /** where the room stood as the session was handed over: the cursor (`register.after.at`) to start from */
    upto: Type.Optional(Type.String()),
  }),
  Type.Object({ type: Type.Literal('message'), message: Envelope }),
  Type.Object({
    type: Type.Literal('participant_joined'),
    sessionId: Type.String(),
    participant: Participant,
  }),
  Type.Object({ type: Type.Literal('participant_left'), sessionId: Type.String(), participant: Participant }),
  Type.Object({ type: Type.Literal('session_state'), sessionId: Type.String(), state: Type.String() }),
  Type.Object({
    type: Type.Literal('shutdown'),
    sessionId: Type.Union([Type.String(), Type.Null()]),
    graceMs: Type.Integer({ minimum: 0 }),
    reason: Type.String(),
    /** the worker is kept for a next session: it sends `stopped` and stays connected (absent: false) */
    reuse: Type.Optional(Type.Boolean()),
  }),
  Type.Object({ type: Type.Literal('error'), code: Type.String(), message: Type.String() }),
  /**
   * Fresh credentials before the old ones expire (sent with a heartbeat's answer once half a token's life has
   * passed): `worker`, to register with when the worker reconnects; `session`, the session's agent token (its
   * transcript, its socket) in place of `assignment.token`.
   */
  Type.Object({
    type: Type.Literal('token'),
    worker: Type.Optional(Type.String()),
    session: Type.Optional(Type.Object({ sessionId: Type.String(), token: Type.String() })),
  }),
]);
export type ServerToWorkerFrame = Static<typeof ServerToWorkerFrame>;

/** Environment variables the process driver gives a worker it starts. */
export const WORKER_ENV = {
  url: 'USHER_WORKER_URL',
  token: 'USHER_WORKER_TOKEN',
  /** the Pixel Streaming signalling URL with the token: what a UE app's -PixelStreamingSignallingURL takes */
  signallingUrl: 'USHER_SIGNALLING_URL',
  workerId: 'USHER_WORKER_ID',
  projectId: 'USHER_PROJECT_ID',
  region: 'USHER_REGION',
  sessionId: 'USHER_SESSION_ID',
  sessionToken: 'USHER_SESSION_TOKEN',
} as const;

/**
 * The largest frame a worker may send on /workers/ws, in bytes: a larger one closes the connection with 1009.
 * It bounds `save_state`, whose state may be large; a room `message` is held to MAX_CLIENT_FRAME_BYTES.
 */
export const MAX_WORKER_FRAME_BYTES = 1024 * 1024;
