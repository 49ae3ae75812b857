// The one place that turns any error into `{error:{code,message}}` with the right HTTP status.
import { type ErrorCode, UsherError } from '@usher/protocol';
import type { FastifyError, FastifyInstance } from 'fastify';

/** Fastify's own error codes, mapped to ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_VALIDATION: 'BAD_REQUEST',
  FST_ERR_RATE_LIMITED: 'RATE_LIMITED',
  // the router's: a path that is not valid percent-encoding, a path parameter over maxParamLength
  FST_ERR_BAD_URL: 'BAD_REQUEST',
  FST_ERR_MAX_PARAM_LENGTH: 'BAD_REQUEST',
};

export function toUsherError(err: unknown): UsherError {
  if (err instanceof UsherError) return err;
  const e = err as FastifyError & { validationContext?: string };
  if (e.code && FASTIFY_CODES[e.code]) {
    let message = e.message;
    if (e.code === 'FST_ERR_VALIDATION' && e.validation?.[0]) {
      const v = e.validation[0];
      const where = `${e.validationContext ?? 'body'}${v.instancePath ? v.instancePath.replaceAll('/', '.') : ''}`;
      const params = v.params as { additionalProperty?: string; allowedValues?: unknown[] };
      // a choice of literals fails once per literal ("must be equal to constant"): name them all (a single
      // one is a branch of a union of shapes, whose other branches failed for other reasons)
      const consts = e.validation
        .filter((x) => x.instancePath === v.instancePath && x.keyword === 'const')
        .map((x) => (x.params as { allowedValue?: unknown }).allowedValue);
      const choices = consts.length > 1 ? consts : v.keyword === 'enum' ? params.allowedValues : undefined;
      if (v.keyword === 'additionalProperties' && params.additionalProperty) {
        message = `${where} has an unknown field "${params.additionalProperty}"`;
      } else if (choices) {
        message = `${where} must be one of ${choices.map((a) => JSON.stringify(a)).join(', ')}`;
      } else {
        message = `${where} ${v.message ?? 'is invalid'}`;
      }
      if (e.validationContext === 'querystring') return new UsherError('BAD_PARAMETER', message);
    } else if (
      e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
      (e.code.startsWith('FST_ERR_CTP') && e.statusCode === 400)
    ) {
      message = `the body is not valid JSON: ${e.message}`;
    } else if (e.code === 'FST_ERR_BAD_URL' || e.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      // the router's own message repeats the whole URL, its query string (and a token in it) included
      message =
        e.code === 'FST_ERR_BAD_URL'
          ? 'the URL path is not valid: a "%" must begin an escape of UTF-8 bytes (%XX)'
          : 'the URL path is not valid: a part of it is too long (ids are at most 200 characters)';
    } else if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      message = 'bodies are JSON: send this one with the header content-type: application/json';
    } else if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      message = `the body is larger than this server takes (server option bodyLimitBytes; 1 MiB by default)`;
    }
    return new UsherError(FASTIFY_CODES[e.code]!, message);
  }
  if (e instanceof SyntaxError)
    return new UsherError('BAD_REQUEST', `the body is not valid JSON: ${e.message}`);
  return new UsherError('INTERNAL', 'an unexpected error happened; it was logged');
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    const ue = toUsherError(err);
    if (ue.code === 'INTERNAL') req.log.error({ err }, 'unhandled error');
    void reply.status(ue.status).send(ue.toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    const ue = new UsherError('ROUTE_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
    void reply.status(ue.status).send(ue.toBody());
  });
}
