// Events on GET /sessions/{id}/ws (server → client) and the frames a client may send on it (SPEC §7).
import Type, { type Static } from 'typebox';
import { ParticipantKind, StateName } from './session.ts';
import { PlayerSignal } from './signalling.ts';

export const Participant = Type.Object({
  identity: Type.String(),
  kind: ParticipantKind,
  name: Type.Optional(Type.String()),
});
export type Participant = Static<typeof Participant>;

/** The envelope of every room message. */
export const Envelope = Type.Object({
  id: Type.String(),
  sessionId: Type.String(),
  type: Type.String({ minLength: 1, maxLength: 64 }),
  from: Type.Object({ identity: Type.String(), kind: ParticipantKind }),
  at: Type.String({ format: 'date-time' }),
  data: Type.Unknown(),
});
export type Envelope = Static<typeof Envelope>;

/** Message types the recorder keeps; everything else is relayed only. */
export const RECORDED_TYPES = [
  'transcript',
  'agent_text',
  'user_text',
  'participant_joined',
  'participant_left',
  'complete_todo_list',
  'state_change_notification',
  'debug',
] as const;
export type RecordedType = (typeof RECORDED_TYPES)[number];

/** Recorded types only the server writes (a room's arrivals and departures): no room message may take them. */
export const SERVER_MESSAGE_TYPES: readonly string[] = ['participant_joined', 'participant_left'];

const Base = { sessionId: Type.String(), at: Type.String({ format: 'date-time' }) };

export const StatusChanged = Type.Object({
  type: Type.Literal('session.status_changed'),
  ...Base,
  status: StateName,
  previous: Type.Union([StateName, Type.Null()]),
  cause: Type.String(),
  endCode: Type.Optional(Type.Integer()),
  endReason: Type.Optional(Type.String()),
  outcome: Type.Optional(Type.Union([Type.Literal('disconnected'), Type.Literal('failed')])),
});
/**
 * A queued session's place in line: sent when its socket opens, then whenever its position or the queue's length
 * changes (a pool's positions go out at most every 250 ms by default).
 */
export const QueuePosition = Type.Object({
  type: Type.Literal('session.queue_position'),
  ...Base,
  position: Type.Integer({ minimum: 1 }),
  queueLength: Type.Integer({ minimum: 1 }),
  estimatedWaitMs: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
});
export const ParticipantJoined = Type.Object({
  type: Type.Literal('session.participant_joined'),
  ...Base,
  participant: Participant,
});
export const ParticipantLeft = Type.Object({
  type: Type.Literal('session.participant_left'),
  ...Base,
  participant: Participant,
});
export const MessageEvent = Type.Object({
  type: Type.Literal('session.message'),
  ...Base,
  message: Envelope,
});
export const ErrorEvent = Type.Object({
  type: Type.Literal('session.error'),
  ...Base,
  code: Type.String(),
  message: Type.String(),
  recoverable: Type.Boolean(),
});
export const AfkWarning = Type.Object({
  type: Type.Literal('session.afk_warning'),
  ...Base,
  disconnectAt: Type.String({ format: 'date-time' }),
  remainingMs: Type.Integer({ minimum: 0 }),
});

export const SessionEvent = Type.Union([
  StatusChanged,
  QueuePosition,
  ParticipantJoined,
  ParticipantLeft,
  MessageEvent,
  ErrorEvent,
  AfkWarning,
]);
export type SessionEvent = Static<typeof SessionEvent>;
export type SessionEventType = SessionEvent['type'];
export type SessionEventOf<T extends SessionEventType> = Extract<SessionEvent, { type: T }>;

/** Frames a participant may send on the session socket; a stream session's viewer also signals (signalling.ts). */
export const ClientFrame = Type.Union([
  Type.Object({ type: Type.Literal('input') }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal('ping'),
      id: Type.Optional(Type.Union([Type.String(), Type.Number()])),
      /** Epic's players send `time` and expect it back in the pong */
      time: Type.Optional(Type.Number()),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('message'),
      messageType: Type.String({ minLength: 1, maxLength: 64 }),
      data: Type.Unknown(),
      /** the sender's own reference: the server answers with `message_ack` (MessageAck) carrying it */
      ref: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    },
    { additionalProperties: false },
  ),
  PlayerSignal,
]);
export type ClientFrame = Static<typeof ClientFrame>;

/**
 * The answer to a client's `message` frame that carried a `ref`: sent once the message was relayed and, when
 * its type is recorded, stored durably (it survives a crash of the server from then on).
 */
export const MessageAck = Type.Object({
  type: Type.Literal('message_ack'),
  ref: Type.String(),
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  recorded: Type.Boolean(),
});
export type MessageAck = Static<typeof MessageAck>;

/**
 * A participant's token made again, sent on the session socket (before the `pong`) in answer to a `ping` once the
 * token in use is past half its life. The same session, role and identity, with a full lifetime: use it from
 * then on, to reconnect and to call the API.
 */
export const TokenRenewal = Type.Object({
  type: Type.Literal('token'),
  token: Type.String(),
});
export type TokenRenewal = Static<typeof TokenRenewal>;

/**
 * Sent on a session socket opened with `?after=`, once what it missed is replayed and before anything live:
 * the recorded room messages and arrivals and departures after the client's cursor, in order, as
 * `session.message`, `session.participant_joined` and `session.participant_left` events (`count` of them).
 * `upto` is where the replay stopped: everything after it comes live. Pass it (or the `at` and `id` of a
 * later message) as `after` the next time the socket opens. `complete` is false when more than
 * MAX_REPLAYED_MESSAGES were missed: the newest were replayed, and the older ones are in the transcript
 * (`GET /sessions/{id}/messages?before=` the first one replayed).
 */
export const Replayed = Type.Object({
  type: Type.Literal('replayed'),
  upto: Type.String(),
  count: Type.Integer({ minimum: 0 }),
  complete: Type.Boolean(),
});
export type Replayed = Static<typeof Replayed>;

/** A page of a session's transcript: GET /sessions/{id}/messages. */
export const MessagePage = Type.Object({
  messages: Type.Array(Envelope, { description: 'oldest first' }),
  hasMore: Type.Boolean({ description: 'older messages exist: ask again with nextBefore and nextBeforeId' }),
  nextBefore: Type.Union([Type.String(), Type.Null()]),
  nextBeforeId: Type.Union([Type.String(), Type.Null()]),
});
export type MessagePage = Static<typeof MessagePage>;
