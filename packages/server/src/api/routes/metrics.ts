// GET /metrics: the server's Prometheus metrics in the text exposition format (docs/observability.md). An admin
// key is needed unless the server opens it (`metrics: { public: true }`).
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { Metrics } from '../../observability/metrics.ts';
import { callerOf, requireAdmin } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { ErrorResponse } from '../schemas.ts';

export interface MetricsRouteOptions {
  /** serve the metrics without an admin key (default false) */
  public?: boolean;
}

export function metricsRoutes(
  app: FastifyInstance,
  ctx: ApiContext,
  metrics: Metrics,
  options: MetricsRouteOptions = {},
): void {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        summary: 'Prometheus metrics (text exposition format)',
        description: `Sessions by state, queue lengths and waits, seat latency, worker starts and crashes, close codes and message counts, plus Node.js process metrics; docs/observability.md lists them. ${
          options.public
            ? 'This server serves them without an admin key (metrics.public).'
            : 'Needs an admin key (Authorization: Bearer <key>) unless the server runs with metrics.public.'
        }`,
        ...(options.public ? { security: [] } : {}),
        response: {
          200: Type.String({ description: 'text/plain; version=0.0.4 (Prometheus text format)' }),
          '4xx': ErrorResponse,
          '5xx': ErrorResponse,
        },
      },
    },
    async (req, reply) => {
      if (!options.public) requireAdmin(await callerOf(req, ctx.auth));
      const text = await metrics.render();
      return reply.type(metrics.contentType).header('cache-control', 'no-store').send(text);
    },
  );
}
