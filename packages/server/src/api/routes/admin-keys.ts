// Admin API keys (admin only): make one (its value is shown once), list them (no secrets), revoke one. Rotation
// is make, switch, revoke (docs/security.md).
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { iso, isoOrNull } from '../../engine/views.ts';
import type { AdminKeyRecord } from '../../storage/admin-keys.ts';
import { type AuthContext, callerOf, requireAdmin } from '../auth.ts';
import { ErrorResponse, IdParams } from '../schemas.ts';

const Time = Type.String({ format: 'date-time' });

const AdminKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String({ description: 'the first characters of the key, to tell keys apart; not a secret' }),
  createdAt: Time,
  lastUsedAt: Type.Union([Time, Type.Null()], {
    description: 'when a server last checked the key against the database (to within 10 s of its last use)',
  }),
  revokedAt: Type.Union([Time, Type.Null()]),
});

const CreatedAdminKey = Type.Object({
  ...AdminKey.properties,
  key: Type.String({
    description:
      'the key itself: shown this once, stored only as a hash. Send it as "Authorization: Bearer <key>"',
  }),
});

const CreateAdminKey = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 100, description: 'what or who the key is for' }) },
  { additionalProperties: false },
);

const tags = ['admin keys'];

const view = (k: AdminKeyRecord) => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  createdAt: iso(k.createdAt),
  lastUsedAt: isoOrNull(k.lastUsedAt),
  revokedAt: isoOrNull(k.revokedAt),
});

export function adminKeyRoutes(app: FastifyInstance, ctx: { auth: AuthContext }): void {
  const keys = ctx.auth.adminKeys;

  app.post<{ Body: Static<typeof CreateAdminKey> }>(
    '/admin-keys',
    {
      schema: {
        tags,
        summary: 'Make an admin key: the answer is the only time its value is shown',
        body: CreateAdminKey,
        response: { 201: CreatedAdminKey, '4xx': ErrorResponse },
      },
    },
    async (req, reply) => {
      requireAdmin(await callerOf(req, ctx.auth));
      const k = await keys.create(req.body.name);
      reply.status(201);
      return { ...view(k), key: k.key };
    },
  );

  app.get(
    '/admin-keys',
    {
      schema: {
        tags,
        summary: 'The admin keys made through the API, revoked ones included (never their values or hashes)',
        response: {
          200: Type.Object({
            keys: Type.Array(AdminKey),
            configuredKeys: Type.Integer({
              description: 'how many keys the configuration gives (adminKeys); they are not listed',
            }),
          }),
          '4xx': ErrorResponse,
        },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      return { keys: (await keys.list()).map(view), configuredKeys: keys.configuredCount };
    },
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    '/admin-keys/:id',
    {
      schema: {
        tags,
        summary:
          'Revoke an admin key: refused from then on, on every server. The last key cannot be revoked (409): make another first',
        params: IdParams,
        response: { 200: AdminKey, '4xx': ErrorResponse },
      },
    },
    async (req) => {
      requireAdmin(await callerOf(req, ctx.auth));
      return view(await keys.revoke(req.params.id));
    },
  );
}
