// Files for browsers: the Web SDK bundle at /sdk/usher.js (with its source map), and optionally a folder of
// pages at / (the demo's).
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';

/** Where `npm run build -w packages/web-sdk` (run by `npm install`) writes the browser bundle. */
export const WEB_SDK_DIST = join(dirname(fileURLToPath(import.meta.url)), '../../../../web-sdk/dist');

const SDK_FILES = {
  'usher.js': 'text/javascript; charset=utf-8',
  'usher.js.map': 'application/json; charset=utf-8',
} as const;

export async function webRoutes(app: FastifyInstance, pagesRoot: string | undefined): Promise<void> {
  for (const [file, type] of Object.entries(SDK_FILES)) {
    app.get(
      `/sdk/${file}`,
      {
        schema: {
          tags: ['web'],
          summary:
            file === 'usher.js'
              ? 'The Web SDK, an ES module: import { UsherSession } from "/sdk/usher.js"'
              : "The Web SDK's source map",
          response: { 200: Type.String() },
        },
      },
      async (_req, reply) => {
        let body: Buffer;
        try {
          body = await readFile(join(WEB_SDK_DIST, file));
        } catch {
          throw new UsherError(
            'NOT_FOUND',
            'the Web SDK bundle is not built: run `npm install` (or `npm run build -w packages/web-sdk`)',
          );
        }
        return reply.type(type).header('cache-control', 'no-cache').send(body);
      },
    );
  }
  if (pagesRoot) await app.register(fastifyStatic, { root: pagesRoot, prefix: '/', decorateReply: false });
}
