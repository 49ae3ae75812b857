// Session routes: create, read, list, join, pause, resume, end.
import {
  CreateSessionRequest,
  JoinRequest,
  JoinResponse,
  ProjectId,
  SESSION_STATES,
  Session,
  type SessionState,
  UsherError,
} from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { newId } from '../../engine/ids.ts';
import { sessionView } from '../../engine/views.ts';
import { type Caller, callerOf, requireAdmin, requireCurrentAgent, requireSession } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';
import { refuse } from '../session-rate.ts';

const CreatedSession = Type.Intersect([
  Session,
  Type.Object({
    token: Type.String({ description: 'viewer token, scoped to this session' }),
    url: Type.String({ description: 'WebSocket URL of the session: events, and the viewer connection' }),
  }),
]);

const ListQuery = Type.Object(
  {
    // a project's id (an empty one would list every project's sessions)
    projectId: Type.Optional(ProjectId),
    state: Type.Optional(
      Type.String({ description: `one or more of ${SESSION_STATES.join(', ')}, comma-separated` }),
    ),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);

const tags = ['sessions'];

/**
 * Identities Usher makes (newId): workers' (`w_…`, the agent's) and those of the participants it names itself,
 * a prefix and 21 lower-case letters and digits.
 */
const USHER_IDENTITY = /^(w|viewer|user|observer)_[0-9a-z]{21}$/;

export function sessionRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { engine } = ctx;

  /**
   * The project a session is asked for. A caller without an admin key learns nothing of projects that are
   * not public: an unknown project and a private one get the same 401.
   */
  const projectFor = (caller: Caller, projectId: string) => {
    if (caller.kind === 'admin') return engine.getProject(projectId).settings;
    const project = engine.findProject(projectId)?.settings;
    if (!project?.public)
      throw new UsherError(
        'UNAUTHORIZED',
        `creating a session in project "${projectId}" needs an admin API key (send "Authorization: Bearer <key>"); only a public project that exists takes sessions without one`,
      );
    return project;
  };

  app.post<{ Body: Static<typeof CreateSessionRequest> }>(
    '/sessions',
    {
      schema: {
        tags,
        summary: 'Ask for a session: it is seated on a worker, or queued',
        description:
          'Rate-limited per client address (callers with an admin key are exempt) and, when configured, per project: over a limit the answer is 429 RATE_LIMITED with Retry-After (docs/security.md).',
        body: CreateSessionRequest,
        response: {
          201: CreatedSession,
          429: Type.Object(ErrorResponse.properties, {
            description: 'RATE_LIMITED: too many sessions asked for; try again after Retry-After seconds',
            headers: {
              'retry-after': { type: 'integer', description: 'seconds to wait before asking again' },
            },
          }),
          '4xx': ErrorResponse,
          '5xx': ErrorResponse,
        },
      },
    },
    async (req, reply) => {
      const caller = await callerOf(req, ctx.auth);
      // admin-key callers are trusted backends: only the per-project limit applies to them
      if (caller.kind !== 'admin')
        ctx.sessionRate.client(req.ip, reply, req.headers['x-forwarded-for'] !== undefined);
      if (caller.kind === 'token')
        throw new UsherError('FORBIDDEN', 'a session token cannot create sessions');
      const project = projectFor(caller, req.body.projectId);
      ctx.sessionRate.project(project.id, reply);
      const { session, queuePosition, estimatedWaitMs } = await engine.createSession(req.body);
      const token = await engine.issueSessionToken(session, 'viewer', newId('viewer', engine.clock.now()));
      reply.status(201);
      return {
        ...sessionView(session, { queuePosition, estimatedWaitMs }),
        token,
        url: ctx.sessionSocketUrl(session.id, req),
      };
    },
  );

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/sessions',
    {
      schema: {
        tags,
        summary: 'List sessions, newest first',
        querystring: ListQuery,
        response: { 200: Type.Object({ sessions: Type.Array(Session) }), '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const states = req.query.state?.split(',').map((s) => s.trim());
      for (const s of states ?? []) {
        if (!(SESSION_STATES as readonly string[]).includes(s)) {
          throw new UsherError(
            'BAD_PARAMETER',
            `state "${s}" is not a session state (${SESSION_STATES.join(', ')})`,
          );
        }
      }
      const list = await engine.store.read.listSessions({
        projectId: req.query.projectId,
        states: states as SessionState[] | undefined,
        limit: req.query.limit ?? 100,
      });
      return {
        sessions: await Promise.all(list.map(async (s) => sessionView(s, await engine.withQueue(s)))),
      };
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/sessions/:id',
    {
      schema: {
        tags,
        summary: 'A session with its timeline',
        params: IdParams,
        response: { 200: Session, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      const caller = await callerOf(req, ctx.auth);
      requireSession(caller, req.params.id, ['viewer', 'user', 'observer', 'agent']);
      const s = await engine.getSession(req.params.id);
      if (caller.kind === 'token') requireCurrentAgent(caller.token, s);
      const q = await engine.withQueue(s);
      return sessionView(s, { ...q, timeline: await engine.store.read.timeline(s.id) });
    },
  );

  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof JoinRequest> | null }>(
    '/sessions/:id/join',
    {
      schema: {
        tags,
        summary: 'A token and URL for one more participant of the session',
        params: IdParams,
        // optional: Fastify validates a missing body as null
        body: Type.Union([JoinRequest, Type.Null()]),
        response: { 200: JoinResponse, '4xx': ErrorResponse },
      },
    },
    async (req, reply) => {
      const caller = await callerOf(req, ctx.auth);
      requireSession(caller, req.params.id, ['viewer', 'user']);
      const s = await engine.getSession(req.params.id);
      if (s.state === 'ended' || s.state === 'ending')
        throw new UsherError('ILLEGAL_TRANSITION', `session "${s.id}" is ${s.state}; nobody can join it`);
      // participants may let others in, but not without end: each identity brings its own message allowance
      if (caller.kind !== 'admin') {
        const waitMs = ctx.joinRate.take(s.id);
        if (waitMs > 0) {
          const { perSecond, burst } = ctx.joinRate.limit;
          refuse(
            reply,
            waitMs,
            'join',
            `session "${s.id}" gives its participants at most ${perSecond} join tokens a second (bursts of ${burst}); try again later, or use an admin API key`,
          );
        }
      }
      const role = req.body?.role ?? 'user';
      const identity = req.body?.identity ?? newId(role, engine.clock.now());
      // a participant may name whoever it lets in, but not after someone in the room: others would take one for
      // the other (an admin may, to hand a participant a new token), nor with a name Usher makes (the agent's,
      // or one it gave someone now briefly away). Its own name it may ask for again, as after a reload.
      if (caller.kind === 'token' && req.body?.identity !== undefined && identity !== caller.token.idn) {
        if (USHER_IDENTITY.test(identity))
          throw new UsherError(
            'CONFLICT',
            `"${identity}" looks like an identity Usher makes (w_…, viewer_…, user_…, observer_…, with 21 letters and digits): choose another`,
          );
        if (engine.rooms.participants(s.id).some((p) => p.identity === identity))
          throw new UsherError(
            'CONFLICT',
            `"${identity}" is in the room of session "${s.id}" already: choose another identity`,
          );
      }
      // LiveKit mode: the participant joins the LiveKit room with a LiveKit token
      const livekit = engine.liveKitFor(s.projectId);
      if (livekit) return { ...(await livekit.access(s.id, identity, role)), identity };
      return {
        token: await engine.issueSessionToken(s, role, identity),
        url: ctx.sessionSocketUrl(s.id, req),
        identity,
      };
    },
  );

  const control = (action: 'pause' | 'resume' | 'end', summary: string) =>
    app.post<{ Params: Static<typeof IdParams> }>(
      `/sessions/:id/${action}`,
      { schema: { tags, summary, params: IdParams, response: { 200: Session, '4xx': ErrorResponse } } },
      async (req) => {
        const caller = await callerOf(req, ctx.auth);
        requireSession(caller, req.params.id, ['viewer', 'user']);
        const by = caller.kind === 'admin' ? 'api' : caller.kind === 'token' ? caller.token.role : 'api';
        const id = req.params.id;
        const s =
          action === 'pause'
            ? await engine.pauseSession(id, `${by}:pause`)
            : action === 'resume'
              ? await engine.resumeSession(id, `${by}:resume`)
              : await engine.endSession(id, `${by}:end`);
        return sessionView(s);
      },
    );
  control('pause', 'Pause a live session (the paused timeout starts)');
  control('resume', 'Resume a paused session');
  control('end', 'End a session: a waiting one is canceled, a seated one shuts its worker down');
}
