// The Usher servers that share the database: list them, and drain one (it takes no new sessions and lets the
// sessions of its own workers finish; stopping it then closes its connections). Readiness: GET /readyz.
import { UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { callerOf, requireAdmin } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';

const Server = Type.Object({
  id: Type.String(),
  url: Type.String(),
  version: Type.String(),
  startedAt: Type.String({ format: 'date-time' }),
  seenAt: Type.String({ format: 'date-time', description: 'servers refresh this every 5 s while they run' }),
  draining: Type.Boolean(),
  alive: Type.Boolean({ description: 'seen in the last 15 s; false: killed, or cut off from the database' }),
  self: Type.Boolean({ description: 'the server that answered' }),
});

const tags = ['servers'];

export function serverRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const view = async () =>
    (await ctx.servers.list()).map((s) => ({
      ...s,
      startedAt: new Date(s.startedAt).toISOString(),
      seenAt: new Date(s.seenAt).toISOString(),
      self: s.id === ctx.servers.selfId,
    }));

  app.get(
    '/servers',
    {
      schema: {
        tags,
        summary: 'The Usher servers that share the database',
        response: { 200: Type.Object({ servers: Type.Array(Server) }), '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      return { servers: await view() };
    },
  );

  app.post<{ Params: Static<typeof IdParams> }>(
    '/servers/:id/drain',
    {
      schema: {
        tags,
        summary:
          'Drain a server: it is no longer ready, takes no new sessions and lets the sessions of its own workers finish; stop it (SIGTERM) to close its connections',
        params: IdParams,
        response: { 202: Server, '4xx': ErrorResponse },
      },
    },
    async (req, reply) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const server = (await view()).find((s) => s.id === req.params.id);
      if (!server)
        throw new UsherError('NOT_FOUND', `no server "${req.params.id}" (GET /servers lists them)`);
      if (!server.alive)
        throw new UsherError(
          'ILLEGAL_TRANSITION',
          `server "${server.id}" is not running: there is nothing to drain`,
        );
      ctx.servers.drain(server.id);
      reply.status(202);
      return { ...server, draining: true };
    },
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: 200 while the server takes new sessions; 503 while it drains',
        response: {
          200: Type.Object({ status: Type.Literal('ready') }),
          '5xx': ErrorResponse,
        },
      },
    },
    async () => {
      if (ctx.engine.draining)
        throw new UsherError('UNAVAILABLE', `server "${ctx.servers.selfId}" is draining`);
      await ctx.engine.store.read.q.get('SELECT 1 AS ok');
      return { status: 'ready' as const };
    },
  );
}
