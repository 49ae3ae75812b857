// Project routes: create, read, list, update settings, enable, disable.
import { Project, ProjectInput, UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { newId } from '../../engine/ids.ts';
import { projectView } from '../../engine/views.ts';
import type { PoolTokenRecord } from '../../storage/pool-tokens.ts';
import { callerOf, requireAdmin } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';

const tags = ['projects'];

export function projectRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { engine } = ctx;
  const admin = async (req: Parameters<typeof callerOf>[0]) => requireAdmin(await callerOf(req, ctx.auth));

  app.post<{ Body: Static<typeof ProjectInput> }>(
    '/projects',
    {
      schema: {
        tags,
        summary: 'Create a project; every setting not given takes its default',
        body: ProjectInput,
        response: { 201: Project, '4xx': ErrorResponse },
      },
    },
    async (req, reply) => {
      await admin(req);
      reply.status(201);
      return projectView(await engine.createProject(req.body));
    },
  );

  app.get(
    '/projects',
    {
      schema: {
        tags,
        summary: 'List projects',
        response: { 200: Type.Object({ projects: Type.Array(Project) }), '4xx': ErrorResponse },
      },
    },
    async (req) => {
      await admin(req);
      return { projects: engine.listProjects().map(projectView) };
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/projects/:id',
    {
      schema: {
        tags,
        summary: 'A project and its settings',
        params: IdParams,
        response: { 200: Project, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      await admin(req);
      return projectView(engine.getProject(req.params.id));
    },
  );

  app.patch<{ Params: Static<typeof IdParams>; Body: Static<typeof ProjectInput> }>(
    '/projects/:id',
    {
      schema: {
        tags,
        summary: 'Update settings (only the fields given); disabling ends live and queued sessions with 4000',
        params: IdParams,
        body: ProjectInput,
        response: { 200: Project, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      await admin(req);
      return projectView(await engine.updateProject(req.params.id, req.body));
    },
  );

  for (const [action, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    app.post<{ Params: Static<typeof IdParams> }>(
      `/projects/:id/${action}`,
      {
        schema: {
          tags,
          summary: enabled
            ? 'Enable a project'
            : 'Disable a project: its live and queued sessions end with 4000',
          params: IdParams,
          response: { 200: Project, '4xx': ErrorResponse },
        },
      },
      async (req) => {
        await admin(req);
        return projectView(await engine.updateProject(req.params.id, { enabled }));
      },
    );
  }

  const PoolTokenBody = Type.Object(
    {
      region: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 90 * 24 * 3600 })),
    },
    { additionalProperties: false },
  );
  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof PoolTokenBody> }>(
    '/projects/:id/pool-tokens',
    {
      schema: {
        tags,
        summary:
          'A pool token: workers started outside Usher (external driver, UE apps started by hand) register with it',
        params: IdParams,
        body: PoolTokenBody,
        response: {
          201: Type.Object({
            id: Type.String({ description: 'what GET lists and DELETE revokes it by' }),
            token: Type.String(),
            region: Type.String(),
            expiresAt: Type.String({ format: 'date-time' }),
            workerUrl: Type.String({ description: 'for workers that speak the worker protocol' }),
            signallingUrl: Type.String({
              description: "for Pixel Streaming streamers: a UE app's -PixelStreamingSignallingURL",
            }),
          }),
          '4xx': ErrorResponse,
        },
      },
    },
    async (req, reply) => {
      await admin(req);
      const p = engine.getProject(req.params.id).settings;
      const region = req.body?.region ?? p.defaultRegion;
      if (!Object.hasOwn(p.regions, region))
        throw new UsherError(
          'BAD_REQUEST',
          `project "${p.id}" has no region "${region}"; its regions are ${Object.keys(p.regions).join(', ')}`,
        );
      const ttlMs = (req.body?.ttlSeconds ?? 30 * 24 * 3600) * 1000;
      const now = engine.clock.now();
      const made = await engine.store.poolTokens.insert({
        id: newId('pt', now),
        projectId: p.id,
        region,
        createdAt: now,
        expiresAt: now + ttlMs,
      });
      const token = await ctx.auth.tokens.sign({ role: 'pool', pid: p.id, reg: region, jti: made.id }, ttlMs);
      reply.status(201);
      return {
        id: made.id,
        token,
        region,
        expiresAt: new Date(made.expiresAt).toISOString(),
        workerUrl: ctx.workerSocketUrl(req),
        signallingUrl: `${ctx.signallingUrl(req)}?token=${token}`,
      };
    },
  );
  const PoolTokenView = Type.Object({
    id: Type.String(),
    region: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    expiresAt: Type.String({ format: 'date-time' }),
    revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  });
  const poolTokenView = (t: PoolTokenRecord) => ({
    id: t.id,
    region: t.region,
    createdAt: new Date(t.createdAt).toISOString(),
    expiresAt: new Date(t.expiresAt).toISOString(),
    revokedAt: t.revokedAt === null ? null : new Date(t.revokedAt).toISOString(),
  });

  app.get<{ Params: Static<typeof IdParams> }>(
    '/projects/:id/pool-tokens',
    {
      schema: {
        tags,
        summary:
          "The project's pool tokens (not the tokens themselves), newest first; expired a day ago: left out",
        params: IdParams,
        response: { 200: Type.Object({ poolTokens: Type.Array(PoolTokenView) }), '4xx': ErrorResponse },
      },
    },
    async (req) => {
      await admin(req);
      const p = engine.getProject(req.params.id).settings;
      const list = await engine.store.poolTokens.list(p.id, engine.clock.now());
      return { poolTokens: list.map(poolTokenView) };
    },
  );

  const TokenParams = Type.Object(
    {
      id: Type.String({ minLength: 1, maxLength: 128 }),
      tokenId: Type.String({ minLength: 1, maxLength: 128 }),
    },
    { additionalProperties: false },
  );
  app.delete<{ Params: Static<typeof TokenParams> }>(
    '/projects/:id/pool-tokens/:tokenId',
    {
      schema: {
        tags,
        summary:
          'Revokes a pool token: no worker registers with it any more (workers already registered keep running; drain them to stop them)',
        params: TokenParams,
        response: { 200: PoolTokenView, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      await admin(req);
      const p = engine.getProject(req.params.id).settings;
      const revoked = await engine.store.poolTokens.revoke(p.id, req.params.tokenId, engine.clock.now());
      if (!revoked)
        throw new UsherError('NOT_FOUND', `project "${p.id}" has no pool token "${req.params.tokenId}"`);
      return poolTokenView(revoked);
    },
  );
}
