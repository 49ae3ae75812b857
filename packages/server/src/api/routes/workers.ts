// Worker routes: list and drain.
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { handleFields } from '../../drivers/driver.ts';
import type { Engine } from '../../engine/engine.ts';
import type { WorkerRecord } from '../../storage/records.ts';
import { callerOf, requireAdmin } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';

/** A live worker, as GET /workers and the operator's event socket show it. */
export const Worker = Type.Object({
  id: Type.String(),
  projectId: Type.String(),
  region: Type.String(),
  driver: Type.String(),
  state: Type.String(),
  sessionId: Type.Union([Type.String(), Type.Null()]),
  draining: Type.Boolean(),
  connected: Type.Boolean({ description: 'its control socket is on this server' }),
  createdAt: Type.String({ format: 'date-time' }),
  readyAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  where: Type.Union([Type.String(), Type.Null()], {
    description:
      'where it runs, as far as its driver knows: "pid 12345 on server <id>" (process), "<namespace>/<pod>" (kubernetes); null for an external worker or one not started yet',
  }),
});

/** Where a worker runs, from its driver's handle (see Worker.where). */
function whereOf(w: WorkerRecord): string | null {
  const h = w.handle ? handleFields(w.handle) : null;
  if (!h) return null;
  if (typeof h.pid === 'number') return `pid ${h.pid} on server ${w.serverId}`;
  if (typeof h.namespace === 'string' && typeof h.pod === 'string') return `${h.namespace}/${h.pod}`;
  return null;
}

const tags = ['workers'];

export function workerView(engine: Engine, w: WorkerRecord): Static<typeof Worker> {
  return {
    id: w.id,
    projectId: w.projectId,
    region: w.region,
    driver: w.driver,
    state: w.state,
    sessionId: w.sessionId,
    draining: w.draining,
    connected: engine.isWorkerConnected(w.id),
    createdAt: new Date(w.createdAt).toISOString(),
    readyAt: w.readyAt === null ? null : new Date(w.readyAt).toISOString(),
    where: whereOf(w),
  };
}

export function workerRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { engine } = ctx;
  const view = (w: WorkerRecord) => workerView(engine, w);

  app.get<{ Querystring: { projectId?: string } }>(
    '/workers',
    {
      schema: {
        tags,
        summary: 'Live workers',
        querystring: Type.Object(
          { projectId: Type.Optional(Type.String()) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ workers: Type.Array(Worker) }), '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      return { workers: (await engine.listWorkers({ projectId: req.query.projectId })).map(view) };
    },
  );

  app.post<{ Params: Static<typeof IdParams> }>(
    '/workers/:id/drain',
    {
      schema: {
        tags,
        summary: 'Drain a worker: no new sessions; an idle one stops now, a busy one after its session',
        params: IdParams,
        response: { 200: Worker, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      return view(await engine.drainWorker(req.params.id));
    },
  );
}
