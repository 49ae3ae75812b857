// What the operator's dashboard reads: every queue with its positions, session statistics over time, and who was
// in a session's room. The live feed is realtime/events-socket.ts.
import { OPEN_STATES, Participant, UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { iso } from '../../engine/views.ts';
import { microsToIso } from '../../storage/messages.ts';
import { presence } from '../../storage/presence.ts';
import { queuedSessions, StatsReader } from '../../storage/stats.ts';
import { callerOf, requireAdmin, requireCurrentAgent, requireSession } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';

const Iso = Type.String({ format: 'date-time' });
const Wait = Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
  description: 'estimated wait in ms, as the session is told it; null without history or pool size',
});

const QueuesQuery = Type.Object(
  { projectId: Type.Optional(Type.String({ description: 'only this project’s queues' })) },
  { additionalProperties: false },
);
const Queues = Type.Object({
  queues: Type.Array(
    Type.Object({
      projectId: Type.String(),
      region: Type.String(),
      length: Type.Integer({ minimum: 1 }),
      estimatedWaitMs: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
        description: 'the estimated wait of the last in line',
      }),
      sessions: Type.Array(
        Type.Object({
          id: Type.String(),
          position: Type.Integer({ minimum: 1 }),
          queuedAt: Iso,
          estimatedWaitMs: Wait,
        }),
        { description: 'first in line first' },
      ),
    }),
    { description: 'every queue that is not empty, by project then region' },
  ),
});

/** Bucket sizes the default is picked from: the smallest that gives at most MAX_DEFAULT_BUCKETS. */
const NICE_BUCKET_MINUTES = [1, 2, 3, 5, 10, 15, 20, 30, 60, 90, 120, 180] as const;
/** Consecutive sizes differ by a factor 2 at most, so the default gives 48–96 buckets. */
const MAX_DEFAULT_BUCKETS = 96;
const MAX_BUCKETS = 2000;

const StatsQuery = Type.Object(
  {
    hours: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 168,
        default: 24,
        description: 'the window: the last 1–168 hours',
      }),
    ),
    bucketMinutes: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10_080,
        description: `bucket size; default the smallest of ${NICE_BUCKET_MINUTES.join(', ')} that gives at most ${MAX_DEFAULT_BUCKETS} buckets (48–96)`,
      }),
    ),
    projectId: Type.Optional(Type.String({ description: 'only this project’s sessions' })),
  },
  { additionalProperties: false },
);
const StateCounts = Type.Object(
  Object.fromEntries(OPEN_STATES.map((s) => [s, Type.Integer({ minimum: 0 })])),
  { description: 'sessions in each state at the bucket’s end (every state but ended)' },
);
const Stats = Type.Object({
  from: Type.String({ format: 'date-time', description: 'start of the first bucket' }),
  to: Type.String({ format: 'date-time', description: 'end of the last bucket: now' }),
  bucketMs: Type.Integer(),
  series: Type.Array(
    Type.Object({
      at: Type.String({ format: 'date-time', description: 'the bucket’s start' }),
      states: StateCounts,
      queueLength: Type.Integer({ minimum: 0, description: 'sessions queued at the bucket’s end' }),
      leftQueue: Type.Integer({ minimum: 0, description: 'sessions that left the queue in the bucket' }),
      waitMsAvg: Type.Union([Type.Integer(), Type.Null()], {
        description: 'their mean time in the queue (ms); null when none left it',
      }),
      waitMsMax: Type.Union([Type.Integer(), Type.Null()], {
        description: 'their longest time in the queue',
      }),
      ended: Type.Integer({ minimum: 0, description: 'sessions that ended in the bucket' }),
    }),
    { description: 'oldest bucket first' },
  ),
  closeCodes: Type.Array(
    Type.Object({ code: Type.Integer(), reason: Type.String(), count: Type.Integer({ minimum: 1 }) }),
    {
      description: 'the sessions that ended in the window by close code and end reason, most frequent first',
    },
  ),
});

const ParticipantsQuery = Type.Object(
  {
    token: Type.Optional(
      Type.String({ description: 'a session token, when no Authorization header is sent' }),
    ),
  },
  { additionalProperties: false },
);
const Participants = Type.Object({
  participants: Type.Array(
    Type.Intersect([
      Participant,
      Type.Object({
        joinedAt: Iso,
        leftAt: Type.Union([Iso, Type.Null()], {
          description:
            'null while in the room; one still listed when the session ended left with it (its endedAt)',
        }),
      }),
    ]),
    { description: 'each stay in the room, oldest first; one who came back has a stay for each visit' },
  ),
});

const tags = ['operations'];

export function operationRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { engine } = ctx;
  const stats = new StatsReader(engine.store.db);

  app.get<{ Querystring: Static<typeof QueuesQuery> }>(
    '/queues',
    {
      schema: {
        tags,
        summary:
          'Every queue that is not empty, across all servers: the sessions in line, positions and waits',
        querystring: QueuesQuery,
        response: { 200: Queues, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const rows = await queuedSessions(engine.store.db, req.query.projectId);
      const queues: Static<typeof Queues>['queues'] = [];
      for (let i = 0; i < rows.length; ) {
        const { projectId, region } = rows[i]!;
        let end = i;
        while (end < rows.length && rows[end]!.projectId === projectId && rows[end]!.region === region) end++;
        const estimate = await engine.positions.waitEstimator(projectId, region);
        const sessions = rows.slice(i, end).map((s, k) => ({
          id: s.id,
          position: k + 1,
          queuedAt: iso(s.queuedAt),
          estimatedWaitMs: estimate(k + 1),
        }));
        queues.push({
          projectId,
          region,
          length: sessions.length,
          estimatedWaitMs: estimate(sessions.length),
          sessions,
        });
        i = end;
      }
      return { queues };
    },
  );

  app.get<{ Querystring: Static<typeof StatsQuery> }>(
    '/stats',
    {
      schema: {
        tags,
        summary: 'Session statistics over the last hours: states, queue and waits, endings, close codes',
        querystring: StatsQuery,
        response: { 200: Stats, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const hours = req.query.hours ?? 24;
      const minutes = req.query.bucketMinutes ?? defaultBucketMinutes(hours);
      const span = hours * 60;
      if (minutes > span)
        throw new UsherError(
          'BAD_PARAMETER',
          `querystring.bucketMinutes (${minutes}) is longer than the window of ${hours} hours; use at most ${span}`,
        );
      if (Math.ceil(span / minutes) > MAX_BUCKETS)
        throw new UsherError(
          'BAD_PARAMETER',
          `querystring.bucketMinutes ${minutes} makes ${Math.ceil(span / minutes)} buckets over ${hours} hours; at most ${MAX_BUCKETS} are allowed: use ${Math.ceil(span / MAX_BUCKETS)} or more`,
        );
      const bucketMs = minutes * 60_000;
      const to = engine.clock.now();
      // buckets start on multiples of their size, so that a chart asked for again lines up with the last one
      const from = Math.floor((to - hours * 3_600_000) / bucketMs) * bucketMs;
      const result = await stats.read({ from, to, bucketMs, projectId: req.query.projectId });
      return {
        from: iso(from),
        to: iso(to),
        bucketMs,
        series: result.buckets.map((b) => ({
          at: iso(b.at),
          states: b.states,
          queueLength: b.states.queued,
          leftQueue: b.left,
          waitMsAvg: b.waitMsAvg,
          waitMsMax: b.waitMsMax,
          ended: b.ended,
        })),
        closeCodes: result.closeCodes,
      };
    },
  );

  app.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof ParticipantsQuery> }>(
    '/sessions/:id/participants',
    {
      schema: {
        tags: ['sessions'],
        summary: 'Who was in the session’s room and when, from its recorded joins and departures',
        params: IdParams,
        querystring: ParticipantsQuery,
        response: { 200: Participants, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      const caller = await callerOf(req, ctx.auth);
      requireSession(caller, req.params.id, ['viewer', 'user', 'observer', 'agent']);
      const s = await engine.getSession(req.params.id);
      if (caller.kind === 'token') requireCurrentAgent(caller.token, s);
      // joins and departures this server relayed are written in the background: wait for them
      await engine.recorder.flushed();
      const stays = await presence(engine.store.db, s.id);
      const endedUs = s.endedAt === null ? null : s.endedAt * 1000;
      return {
        participants: stays.map((p) => {
          const leftUs = p.leftUs ?? endedUs;
          return {
            ...p.participant,
            joinedAt: microsToIso(p.joinedUs),
            leftAt: leftUs === null ? null : microsToIso(Math.max(leftUs, p.joinedUs)),
          };
        }),
      };
    },
  );
}

/** The smallest of the usual bucket sizes that cuts the window into at most MAX_DEFAULT_BUCKETS. */
export function defaultBucketMinutes(hours: number): number {
  const span = hours * 60;
  return NICE_BUCKET_MINUTES.find((m) => Math.ceil(span / m) <= MAX_DEFAULT_BUCKETS) ?? 180;
}
