// Webhook endpoints as configured, checked once at start-up into frozen, resolved endpoints: which session
// events go where, and the key that signs them. Secrets live only here (from configuration), never in the
// database or a log line.
import { SessionEvent, type SessionEventType } from '@usher/protocol';

export interface WebhookEndpoint {
  /** where events are POSTed: an http(s) URL, unique among the endpoints */
  url: string;
  /**
   * The signing secret: at least 24 printable ASCII characters (signed with as its bytes), or the Standard
   * Webhooks form `whsec_<base64 of 24 to 64 random bytes>` (signed with the decoded bytes).
   */
  secret: string;
  /** the event types sent; default every session event except `session.message` and `session.queue_position` */
  events?: readonly string[];
  /** only the sessions of these projects; default every project */
  projects?: readonly string[];
}

/** An endpoint with its defaults applied and its key decoded. */
export interface ResolvedEndpoint {
  readonly url: string;
  readonly key: Buffer;
  readonly events: ReadonlySet<SessionEventType>;
  /** null: every project */
  readonly projects: ReadonlySet<string> | null;
}

/** Every session event type, in the protocol's order. */
export const SESSION_EVENT_TYPES: readonly SessionEventType[] = SessionEvent.anyOf.map(
  (s) => s.properties.type.const,
);

/** What an endpoint gets when it names no events: the chatty ones (messages, queue moves) are opt-in. */
export const DEFAULT_WEBHOOK_EVENTS: readonly SessionEventType[] = SESSION_EVENT_TYPES.filter(
  (t) => t !== 'session.message' && t !== 'session.queue_position',
);

export class WebhookConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookConfigError';
  }
}

const PLAIN_SECRET = /^[\x21-\x7e]{24,}$/;
const WHSEC = /^whsec_([A-Za-z0-9+/]+={0,2})$/;

/** The bytes a secret signs with: a `whsec_` secret's base64 decoded, any other secret's own characters. */
export function signingKey(secret: string, where = 'webhooks[].secret'): Buffer {
  if (secret.startsWith('whsec_')) {
    const m = WHSEC.exec(secret);
    const key = m ? Buffer.from(m[1]!, 'base64') : Buffer.alloc(0);
    if (!m || key.length < 24 || key.length > 64 || key.toString('base64') !== m[1])
      throw new WebhookConfigError(
        `${where}: a whsec_ secret must be "whsec_" followed by the base64 of 24 to 64 random bytes (e.g. "whsec_" + \`openssl rand -base64 32\`)`,
      );
    return key;
  }
  if (!PLAIN_SECRET.test(secret))
    throw new WebhookConfigError(
      `${where} must be at least 24 printable ASCII characters without spaces, or a Standard Webhooks "whsec_…" secret (e.g. \`openssl rand -base64 32\`)`,
    );
  return Buffer.from(secret, 'ascii');
}

/** Checks the configured endpoints and applies their defaults; messages name the field to fix. */
export function resolveEndpoints(input: readonly WebhookEndpoint[]): readonly ResolvedEndpoint[] {
  const seen = new Set<string>();
  const known = new Set<string>(SESSION_EVENT_TYPES);
  return Object.freeze(
    input.map((e, i) => {
      const at = `webhooks[${i}]`;
      if (typeof e?.url !== 'string') throw new WebhookConfigError(`${at}.url is required`);
      let url: URL;
      try {
        url = new URL(e.url);
      } catch {
        throw new WebhookConfigError(
          `${at}.url "${e.url}" is not a URL; write e.g. https://example.com/usher`,
        );
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new WebhookConfigError(`${at}.url must be an http:// or https:// URL; got "${url.protocol}"`);
      if (url.username || url.password)
        throw new WebhookConfigError(
          `${at}.url must not carry credentials: receivers check the signature instead`,
        );
      if (seen.has(e.url))
        throw new WebhookConfigError(`${at}.url "${e.url}" is configured twice; merge the two endpoints`);
      seen.add(e.url);
      if (typeof e.secret !== 'string') throw new WebhookConfigError(`${at}.secret is required`);
      const key = signingKey(e.secret, `${at}.secret`);
      const events = e.events ?? DEFAULT_WEBHOOK_EVENTS;
      if (!Array.isArray(events) || events.length === 0)
        throw new WebhookConfigError(`${at}.events must be a non-empty list, or left out for the default`);
      for (const t of events)
        if (!known.has(t))
          throw new WebhookConfigError(
            `${at}.events: "${t}" is not a session event; choose from ${SESSION_EVENT_TYPES.join(', ')}`,
          );
      if (e.projects !== undefined && (!Array.isArray(e.projects) || e.projects.length === 0))
        throw new WebhookConfigError(
          `${at}.projects must be a non-empty list of project ids, or left out for every project`,
        );
      return Object.freeze({
        url: e.url,
        key,
        events: new Set(events as SessionEventType[]),
        projects: e.projects ? new Set(e.projects) : null,
      });
    }),
  );
}

/** Whether an event of this type, of a session of this project, goes to the endpoint. */
export function wants(endpoint: ResolvedEndpoint, type: SessionEventType, projectId: string): boolean {
  return endpoint.events.has(type) && (endpoint.projects === null || endpoint.projects.has(projectId));
}
