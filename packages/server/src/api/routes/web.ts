// Files for browsers: the Web SDK bundle at /sdk/usher.js, and optionally a folder of pages at / (the demo).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

/** Where `npm run build -w packages/web-sdk` (run by `npm install`) writes the browser bundle. */
export const WEB_SDK_DIST = join(dirname(fileURLToPath(import.meta.url)), '../../../../web-sdk/dist');

export async function webRoutes(app: FastifyInstance, pagesRoot: string | undefined): Promise<void> {
  if (existsSync(join(WEB_SDK_DIST, 'usher.js'))) {
    await app.register(fastifyStatic, { root: WEB_SDK_DIST, prefix: '/sdk/', decorateReply: false });
  } else {
    app.get('/sdk/usher.js', { schema: { hide: true } }, async (_req, reply) =>
      reply.status(404).send({
        error: {
          code: 'NOT_FOUND',
          message:
            'the Web SDK bundle is not built: run `npm install` (or `npm run build -w packages/web-sdk`)',
        },
      }),
    );
  }
  if (pagesRoot) await app.register(fastifyStatic, { root: pagesRoot, prefix: '/', decorateReply: false });
}
