// Liveness and readiness: the server answers and its database does too.
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ApiContext } from '../context.ts';
import { ErrorResponse } from '../schemas.ts';

export function healthRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        summary: 'Health: 200 when the server and its database answer',
        response: {
          200: Type.Object({ status: Type.Literal('ok'), version: Type.String(), storage: Type.String() }),
          '5xx': ErrorResponse,
        },
      },
    },
    async () => {
      await ctx.engine.store.read.q.get('SELECT 1 AS ok');
      return { status: 'ok' as const, version: ctx.version, storage: ctx.engine.store.dialect };
    },
  );
}
