// The session resource as the API returns it, its timeline, and the request to create one.
import Type, { type Static } from 'typebox';
import { ProjectId, RegionName } from './project.ts';

export const StateName = Type.Union([
  Type.Literal('requesting'),
  Type.Literal('queued'),
  Type.Literal('connecting'),
  Type.Literal('active'),
  Type.Literal('idle'),
  Type.Literal('paused'),
  Type.Literal('ending'),
  Type.Literal('ended'),
]);

export const TimelineEntry = Type.Object({
  from: Type.Union([StateName, Type.Null()]),
  to: StateName,
  at: Type.String({ format: 'date-time' }),
  cause: Type.String({
    description: 'what made the transition happen, e.g. "api", "timer:pending", "worker:exit"',
  }),
});
export type TimelineEntry = Static<typeof TimelineEntry>;

export const Session = Type.Object({
  id: Type.String(),
  projectId: ProjectId,
  region: RegionName,
  agentType: Type.Union([Type.String(), Type.Null()]),
  config: Type.Record(Type.String(), Type.Unknown()),
  state: StateName,
  workerId: Type.Union([Type.String(), Type.Null()]),
  queuePosition: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
    description: '1-based, while queued',
  }),
  estimatedWaitMs: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
  restarts: Type.Integer({ minimum: 0 }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  activeAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'first time active',
  }),
  endedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  endCode: Type.Union([Type.Integer(), Type.Null()]),
  endReason: Type.Union([Type.String(), Type.Null()]),
  outcome: Type.Union([Type.Literal('disconnected'), Type.Literal('failed'), Type.Null()]),
  timeline: Type.Optional(Type.Array(TimelineEntry)),
});
export type Session = Static<typeof Session>;

export const CreateSessionRequest = Type.Object(
  {
    projectId: ProjectId,
    agentType: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    region: Type.Optional(RegionName),
    config: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), { description: 'passed to the worker' }),
    ),
  },
  { additionalProperties: false },
);
export type CreateSessionRequest = Static<typeof CreateSessionRequest>;

/** POST /sessions answers with the session and the token its viewer uses to connect. */
export const CreateSessionResponse = Type.Object({
  session: Session,
  token: Type.String({ description: 'viewer token, scoped to this session' }),
  url: Type.String({ description: 'WebSocket URL of the session (events and room)' }),
});

export const ParticipantKind = Type.Union([
  Type.Literal('viewer'),
  Type.Literal('user'),
  Type.Literal('agent'),
  Type.Literal('observer'),
]);
export type ParticipantKind = Static<typeof ParticipantKind>;

export const JoinRequest = Type.Object(
  {
    role: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('observer')])),
    identity: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    name: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
export type JoinRequest = Static<typeof JoinRequest>;

export const JoinResponse = Type.Object({
  token: Type.String(),
  url: Type.String(),
  identity: Type.String(),
});
