// JSON-schema validation for routes: bodies strictly (no coercion, unknown fields refused), query strings
// with type coercion (they arrive as strings).

import { UsherError } from '@usher/protocol';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';

export function installValidation(app: FastifyInstance): void {
  const strict = addFormats.default(
    new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: false, strict: false }),
  );
  const coercing = addFormats.default(
    new Ajv({ removeAdditional: false, coerceTypes: true, useDefaults: true, strict: false }),
  );
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const ajv = httpPart === 'body' ? strict : coercing;
    return ajv.compile(schema);
  });
}

/** JSON bodies as Fastify parses them (prototype-poisoning safe), except that an empty body means none. */
export function installJsonParser(app: FastifyInstance): void {
  const json = app.getDefaultJsonParser('error', 'error');
  // JSON only: Fastify's built-in text/plain parser would let a non-JSON body through to validation (400)
  // instead of refusing its media type (415)
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    // a NUL can reach a string only through its escape; PostgreSQL stores no NUL in text
    if (!text.includes('\\u0000')) return json(req, text, done);
    json(req, text, (err, value) => {
      if (err || !holdsNul(value)) return done(err, value);
      done(
        new UsherError('BAD_REQUEST', 'strings in the body may not contain the NUL character (\\u0000)'),
        undefined,
      );
    });
  });
}

/**
 * URLs with an encoded NUL (%00) are refused before routing: no id or query value holds one, and PostgreSQL
 * stores no NUL in text (a lookup would fail with 500 rather than answer 404).
 */
export function installUrlGuard(app: FastifyInstance): void {
  app.addHook('onRequest', (req, _reply, done) => {
    if (req.url.includes('%00'))
      done(new UsherError('BAD_REQUEST', 'the URL may not contain the NUL character (%00)'));
    else done();
  });
}

/** Whether a parsed JSON value holds a string (or a key) with a NUL character. */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (Array.isArray(value)) return value.some(holdsNul);
  if (value && typeof value === 'object')
    return Object.entries(value).some(([k, v]) => k.includes('\0') || holdsNul(v));
  return false;
}
