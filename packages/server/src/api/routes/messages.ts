// GET /sessions/{id}/messages: a session's transcript, a page at a time, newest pages first (SPEC §7).
import { MessagePage, UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { isoToMicros, pageJson } from '../../storage/messages.ts';
import { callerOf, requireCurrentAgent, requireSession } from '../auth.ts';
import type { ApiContext } from '../context.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';

const MessagesQuery = Type.Object(
  {
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: 50, description: 'messages per page, 1–100' }),
    ),
    before: Type.Optional(
      Type.String({
        description:
          'ISO-8601 time: only messages older than it. A server gives each message it relays a time of its own to the microsecond, so the `at` of the oldest message of a page (or nextBefore) gives the page before it; with several servers add before_id (nextBeforeId) to be exact',
      }),
    ),
    before_id: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'with `before`: also the messages at exactly that time whose id sorts below this one (nextBeforeId)',
      }),
    ),
    include_debug: Type.Optional(
      Type.Union([Type.Literal('true'), Type.Literal('false'), Type.Literal('1'), Type.Literal('0')], {
        description: 'include messages of type `debug`: true or 1 (default false)',
      }),
    ),
    token: Type.Optional(
      Type.String({ description: 'a session token, when no Authorization header is sent' }),
    ),
  },
  { additionalProperties: false },
);

export function messageRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: Static<typeof IdParams>; Querystring: Static<typeof MessagesQuery> }>(
    '/sessions/:id/messages',
    {
      schema: {
        tags: ['sessions'],
        summary: "A page of the session's transcript: the newest messages before a time, oldest first",
        params: IdParams,
        querystring: MessagesQuery,
        response: { 200: MessagePage, '4xx': ErrorResponse },
      },
    },
    async (req, reply) => {
      const caller = await callerOf(req, ctx.auth);
      requireSession(caller, req.params.id, ['viewer', 'user', 'observer', 'agent']);
      if (caller.kind === 'token' && caller.token.role === 'agent')
        requireCurrentAgent(caller.token, await ctx.engine.getSession(req.params.id));
      const q = req.query;
      let beforeUs: number | undefined;
      if (q.before !== undefined) {
        beforeUs = isoToMicros(q.before) ?? undefined;
        if (beforeUs === undefined)
          throw new UsherError(
            'BAD_PARAMETER',
            `querystring.before must be an ISO-8601 time such as 2026-12-04T16:44:35.123456Z; got "${q.before.slice(0, 60)}"`,
          );
      } else if (q.before_id !== undefined) {
        throw new UsherError('BAD_PARAMETER', 'querystring.before_id needs querystring.before as well');
      }
      const page = await ctx.engine.messages(req.params.id, {
        limit: q.limit ?? 50,
        includeDebug: q.include_debug === 'true' || q.include_debug === '1',
        ...(beforeUs !== undefined ? { beforeUs } : {}),
        ...(q.before_id !== undefined ? { beforeId: q.before_id } : {}),
      });
      // the page's JSON is written here, around the data as stored, rather than parsed and serialized again
      return reply.type('application/json; charset=utf-8').send(pageJson(page));
    },
  );
}
