// What never reaches a log: credentials in headers, `token` (and key) query strings and passwords in URLs, fields
// named like secrets, and secrets inside free text (a worker's output). The deployable passes
// `safeLoggerOptions` to pino; the server itself also scrubs the text it logs on others' behalf.
import { redact } from '../storage/store.ts';

/**
 * pino `redact` paths: request headers (when request logging is on), and any field named like a credential,
 * at the top of a log line or one level down. URLs are kept, with their secret query parameters and their
 * password (a database's connection string) hidden.
 */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.headers["sec-websocket-protocol"]',
  'req.url',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  'headers["sec-websocket-protocol"]',
  ...['authorization', 'token', 'secret', 'key', 'apiKey', 'adminKey', 'password', 'url'].flatMap((f) => [
    f,
    `*.${f}`,
  ]),
];

const HIDDEN = '[hidden]';
/** query parameters that carry credentials */
const SECRET_PARAM = /([?&](?:token|access_token|key|api_key|apikey|secret)=)[^&#\s"']*/gi;

/**
 * An absolute URL (`scheme://`) with an `@`: it may carry a user and password (even a malformed one, with a `/`
 * in it, which parsing then hides whole); a request's path has none.
 */
const URL_WITH_USER = /^[a-z][a-z\d+.-]*:\/\/[^@]*@/i;

/**
 * pino's censor: a URL keeps everything but its secret query parameters and its password (a URL with a user that
 * cannot be parsed is hidden whole); one without a user is kept as written; anything else is hidden.
 */
export function censor(value: unknown, path: readonly string[]): unknown {
  const last = path[path.length - 1];
  if (last === 'url' && typeof value === 'string') {
    const scrubbed = scrubSecrets(value);
    return URL_WITH_USER.test(scrubbed) ? redact(scrubbed) : scrubbed;
  }
  return HIDDEN;
}

/** pino's `redact` option. */
export const redactOptions = { paths: [...REDACT_PATHS], censor };

/**
 * A signed token (JWT), an admin key Usher made, a Standard Webhooks secret, a bearer credential (also as a
 * WebSocket subprotocol, `bearer.<credential>`), a secret query parameter.
 */
const SECRETS: readonly [RegExp, string][] = [
  [SECRET_PARAM, `$1${HIDDEN}`],
  [/\b(Bearer\s+)[^\s"',;]+/gi, `$1${HIDDEN}`],
  [/\b(bearer\.)[^\s"',;]+/gi, `$1${HIDDEN}`],
  [/\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]+/g, HIDDEN],
  [/\busk_[\w-]{8,}/g, HIDDEN],
  [/\bwhsec_[A-Za-z0-9+/=]+/g, HIDDEN],
];

/** Free text (a log message, a worker's output line) with the secrets in it hidden. */
export function scrubSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of SECRETS) out = out.replace(pattern, replacement);
  return out;
}

/**
 * Options to spread into pino's: `pino({ level, ...safeLoggerOptions })`. Fields are redacted by path, and the
 * message text of every line is scrubbed of anything that looks like a token or key.
 */
export const safeLoggerOptions = {
  redact: redactOptions,
  hooks: {
    logMethod(this: unknown, args: unknown[], method: (...a: unknown[]) => void): void {
      method.apply(
        this,
        args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)),
      );
    },
  },
};
