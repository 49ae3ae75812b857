// The webhook delivery log (admin only): list deliveries newest first, read one with its payload, and queue one
// again (docs/webhooks.md).
import { UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { iso, isoOrNull } from '../../engine/views.ts';
import { DELIVERY_STATUSES, type DeliveryRecord, type DeliveryWithPayload } from '../../storage/webhooks.ts';
import type { Webhooks } from '../../webhooks/service.ts';
import { type AuthContext, callerOf, requireAdmin } from '../auth.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';

const Time = Type.String({ format: 'date-time' });
const TimeOrNull = Type.Union([Time, Type.Null()]);
const Status = Type.Union(DELIVERY_STATUSES.map((s) => Type.Literal(s)));

const Delivery = Type.Object({
  id: Type.String({ description: 'also the `webhook-id` header of every attempt' }),
  endpointUrl: Type.String(),
  eventType: Type.String(),
  sessionId: Type.String(),
  projectId: Type.String(),
  status: Status,
  attempts: Type.Integer({ description: 'attempts since the delivery was last queued' }),
  nextAttemptAt: Type.Union([Time, Type.Null()], {
    description: 'when a pending delivery is due; else null',
  }),
  lastStatus: Type.Union([Type.Integer(), Type.Null()], {
    description: "the HTTP status of the last attempt's answer; null when there was no answer",
  }),
  lastError: Type.Union([Type.String(), Type.Null()], {
    description: 'why the last attempt failed (the start of the answer, a timeout, a refused connection)',
  }),
  lastAttemptAt: TimeOrNull,
  createdAt: Time,
  deliveredAt: TimeOrNull,
});

const DeliveryDetail = Type.Object({
  ...Delivery.properties,
  payload: Type.Unknown({ description: 'the body POSTed: {type, timestamp, data}' }),
});

const DeliveriesQuery = Type.Object(
  {
    status: Type.Optional(Status),
    sessionId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    projectId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: 50, description: 'deliveries per page, 1–100' }),
    ),
    before: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: 'a delivery id: only deliveries queued before it (the nextBefore of the previous page)',
      }),
    ),
  },
  { additionalProperties: false },
);

const DeliveryPage = Type.Object({
  deliveries: Type.Array(Delivery, { description: 'newest first' }),
  nextBefore: Type.Union([Type.String(), Type.Null()], {
    description: 'more deliveries are older: ask again with before=nextBefore',
  }),
});

function view(d: DeliveryRecord) {
  return {
    id: d.id,
    endpointUrl: d.endpointUrl,
    eventType: d.eventType,
    sessionId: d.sessionId,
    projectId: d.projectId,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: d.status === 'pending' ? iso(d.nextAttemptAt) : null,
    lastStatus: d.lastStatus,
    lastError: d.lastError,
    lastAttemptAt: isoOrNull(d.lastAttemptAt),
    createdAt: iso(d.createdAt),
    deliveredAt: isoOrNull(d.deliveredAt),
  };
}

const detail = (d: DeliveryWithPayload) => ({ ...view(d), payload: JSON.parse(d.payload) as unknown });

const tags = ['webhooks'];

export function webhookRoutes(app: FastifyInstance, ctx: { auth: AuthContext; webhooks: Webhooks }): void {
  const log = ctx.webhooks.deliveries;

  app.get<{ Querystring: Static<typeof DeliveriesQuery> }>(
    '/webhooks/deliveries',
    {
      schema: {
        tags,
        summary: 'The webhook delivery log, newest first, a page at a time',
        querystring: DeliveriesQuery,
        response: { 200: DeliveryPage, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const q = req.query;
      let before: { createdAt: number; id: string } | undefined;
      if (q.before !== undefined) {
        const cursor = await log.get(q.before);
        if (!cursor)
          throw new UsherError(
            'BAD_PARAMETER',
            `querystring.before must be the id of a delivery (the nextBefore of the previous page); no delivery "${q.before.slice(0, 60)}"`,
          );
        before = { createdAt: cursor.createdAt, id: cursor.id };
      }
      const limit = q.limit ?? 50;
      const rows = await log.list({
        limit: limit + 1,
        ...(q.status ? { status: q.status } : {}),
        ...(q.sessionId ? { sessionId: q.sessionId } : {}),
        ...(q.projectId ? { projectId: q.projectId } : {}),
        ...(before ? { before } : {}),
      });
      const more = rows.length > limit;
      if (more) rows.pop();
      return { deliveries: rows.map(view), nextBefore: more ? rows[rows.length - 1]!.id : null };
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/webhooks/deliveries/:id',
    {
      schema: {
        tags,
        summary: 'A webhook delivery with its payload, attempts and last answer',
        params: IdParams,
        response: { 200: DeliveryDetail, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const d = await log.get(req.params.id);
      if (!d)
        throw new UsherError(
          'NOT_FOUND',
          `no webhook delivery "${req.params.id}" (GET /webhooks/deliveries lists them)`,
        );
      return detail(d);
    },
  );

  app.post<{ Params: Static<typeof IdParams> }>(
    '/webhooks/deliveries/:id/retry',
    {
      schema: {
        tags,
        summary:
          'Queue a delivery again, due now: a delivered or failed one gets a fresh set of attempts; a pending one is sent at once',
        params: IdParams,
        response: { 202: DeliveryDetail, '4xx': ErrorResponse },
      },
    },
    async (req, reply) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const d = await ctx.webhooks.retry(req.params.id);
      if (!d)
        throw new UsherError(
          'NOT_FOUND',
          `no webhook delivery "${req.params.id}" (GET /webhooks/deliveries lists them)`,
        );
      reply.status(202);
      return detail(d);
    },
  );
}
