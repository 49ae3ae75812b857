// JSON-schema validation for routes: bodies strictly (no coercion, unknown fields refused), query strings
// with type coercion (they arrive as strings); and the checks of JSON text that bodies and WebSocket frames
// share (nesting depth, the NUL character).

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

/**
 * JSON bodies as Fastify parses them (prototype-poisoning safe), except that an empty body means none, and that
 * nesting deeper than MAX_JSON_DEPTH or a NUL character is refused (see scanJson).
 */
export function installJsonParser(app: FastifyInstance): void {
  const json = app.getDefaultJsonParser('error', 'error');
  // JSON only: Fastify's built-in text/plain parser would let a non-JSON body through to validation (400)
  // instead of refusing its media type (415)
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    const scan = scanJson(text);
    if (scan.tooDeep) return done(new UsherError('BAD_REQUEST', tooDeepMessage('the body')), undefined);
    if (!scan.nul) return json(req, text, done);
    // a body that is not JSON is told so first
    json(req, text, (err, value) => {
      if (err) return done(err, value);
      done(new UsherError('BAD_REQUEST', nulMessage('the body')), undefined);
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

/**
 * How deeply objects and arrays may nest in a JSON body or frame. A value nested deeper would overflow the
 * stack of the recursive walks it meets later (JSON.stringify, the database drivers); no message of the API
 * needs more than a few levels.
 */
export const MAX_JSON_DEPTH = 64;

/** The messages that refuse a body or a frame (`what`) for what scanJson found in it. */
export const tooDeepMessage = (what: string) =>
  `${what} is nested deeper than ${MAX_JSON_DEPTH} levels of objects and arrays`;
/** PostgreSQL stores no NUL character in text. */
export const nulMessage = (what: string) => `strings in ${what} may not contain the NUL character (\\u0000)`;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * What a JSON text holds that JSON.parse lets through: objects and arrays nested deeper than MAX_JSON_DEPTH,
 * and a NUL character in a string or key (JSON has no raw control characters in strings: a NUL comes only as
 * the escape \u0000). One pass over the text, skipping strings, with no recursion, so that it is safe on any
 * input; it stops at the first level too deep. Syntax is left to JSON.parse: on text that is not JSON the
 * answer means nothing.
 */
export function scanJson(text: string): { tooDeep: boolean; nul: boolean } {
  let depth = 0;
  let nul = false;
  const end = text.length;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // to the closing quote, stepping over each escape
      for (i++; i < end; i++) {
        const d = text.charCodeAt(i);
        if (d === QUOTE) break;
        if (d === BACKSLASH) {
          if (!nul && text.startsWith('u0000', i + 1)) nul = true;
          i++;
        }
      }
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > MAX_JSON_DEPTH) return { tooDeep: true, nul };
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return { tooDeep: false, nul };
}
