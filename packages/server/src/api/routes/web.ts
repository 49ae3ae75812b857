// Files for browsers: the Web SDK bundle at /sdk/usher.js (with its source map), the operator dashboard at
// /dashboard/, and optionally a folder of pages at / (the demo's).
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { UsherError } from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';

/** Where `npm run build -w packages/web-sdk` (run by `npm install`) writes the browser bundle. */
export const WEB_SDK_DIST = join(dirname(fileURLToPath(import.meta.url)), '../../../../web-sdk/dist');

/** Where `npm run build -w packages/dashboard` (run by `npm install`) writes the dashboard. */
export const DASHBOARD_DIST = join(dirname(fileURLToPath(import.meta.url)), '../../../../dashboard/dist');

const DASHBOARD_FILES = {
  '': ['index.html', 'text/html; charset=utf-8', 'The operator dashboard (sign in with an admin key)'],
  'dashboard.js': ['dashboard.js', 'text/javascript; charset=utf-8', "The dashboard's script"],
  'dashboard.js.map': ['dashboard.js.map', 'application/json; charset=utf-8', "The dashboard's source map"],
  'dashboard.css': ['dashboard.css', 'text/css; charset=utf-8', "The dashboard's style sheet"],
} as const;

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
  app.get(
    '/dashboard',
    { schema: { tags: ['web'], summary: 'Redirects to /dashboard/', response: { 302: Type.Null() } } },
    async (_req, reply) => reply.redirect('/dashboard/'),
  );
  for (const [path, [file, type, summary]] of Object.entries(DASHBOARD_FILES)) {
    app.get(
      `/dashboard/${path}`,
      { schema: { tags: ['web'], summary, response: { 200: Type.String() } } },
      async (_req, reply) => {
        let body: Buffer;
        try {
          body = await readFile(join(DASHBOARD_DIST, file));
        } catch {
          throw new UsherError(
            'NOT_FOUND',
            'the dashboard is not built: run `npm install` (or `npm run build -w packages/dashboard`)',
          );
        }
        return reply.type(type).header('cache-control', 'no-cache').send(body);
      },
    );
  }
  if (pagesRoot) await app.register(fastifyStatic, { root: pagesRoot, prefix: '/', decorateReply: false });
}
