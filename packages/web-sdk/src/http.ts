// The HTTP calls of a session: create it (POST /sessions), add a participant (POST /sessions/{id}/join), end it
// (POST /sessions/{id}/end); and `call`, which turns every answer into JSON or an UsherError.
import type { SessionState } from '@usher/protocol';
import { UsherError } from './errors.ts';
import type { FetchLike } from './platform.ts';

export interface CreatedSession {
  id: string;
  state: SessionState;
  /** viewer token, scoped to this session */
  token: string;
  /** WebSocket URL of the session, with the token */
  url: string;
}

export async function createSession(
  fetchFn: FetchLike,
  server: string,
  request: { projectId: string; region?: string | undefined },
  apiKey: string | undefined,
): Promise<CreatedSession> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const body = JSON.stringify(
    request.region === undefined
      ? { projectId: request.projectId }
      : { projectId: request.projectId, region: request.region },
  );
  const json = await call(fetchFn, `${server}/sessions`, { method: 'POST', headers, body });
  // the session is either nested ({session, token, url}) or spread beside token and url
  const s = (isObject(json) && isObject(json.session) ? json.session : json) as Record<string, unknown>;
  const { token, url } = (json ?? {}) as Record<string, unknown>;
  if (typeof s?.id !== 'string' || typeof token !== 'string' || typeof url !== 'string') {
    throw new UsherError(
      'BAD_RESPONSE',
      `POST ${server}/sessions answered without a session id, token and url: is ${server} an Usher server?`,
    );
  }
  return { id: s.id, state: (s.state as SessionState) ?? 'requesting', token, url: withToken(url, token) };
}

export async function endSession(
  fetchFn: FetchLike,
  server: string,
  id: string,
  token: string,
): Promise<void> {
  await call(fetchFn, `${server}/sessions/${encodeURIComponent(id)}/end`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
}

/** Who may join through POST /sessions/{id}/join: `user` (the server's default) talks, `observer` only listens. */
export type JoinRole = 'user' | 'viewer' | 'observer';

/** A participant's ticket into a session: its own token, the socket URL (with that token) and its identity. */
export interface Invite {
  token: string;
  /**
   * the session's socket URL with `?token=`: what UsherSession.join() and acceptInvite() take. For a project
   * whose rooms are on LiveKit: the LiveKit server's URL, which a LiveKit client joins with `token`
   */
  url: string;
  identity: string;
}

/** POST /sessions/{id}/join with a viewer or user token of the session: a token for one more participant. */
export async function joinSession(
  fetchFn: FetchLike,
  server: string,
  id: string,
  token: string,
  participant: { identity?: string | undefined; role?: JoinRole | undefined },
): Promise<Invite> {
  const body: Record<string, string> = {};
  if (participant.identity !== undefined) body.identity = participant.identity;
  if (participant.role !== undefined) body.role = participant.role;
  const url = `${server}/sessions/${encodeURIComponent(id)}/join`;
  const json = await call(fetchFn, url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const r = (json ?? {}) as Record<string, unknown>;
  if (typeof r.token !== 'string' || typeof r.url !== 'string' || typeof r.identity !== 'string') {
    throw new UsherError('BAD_RESPONSE', `POST ${url} answered without a token, url and identity`);
  }
  // an Usher socket URL carries its token; a LiveKit server's URL (a project with LiveKit rooms) is given as it is,
  // for a LiveKit client, with the token beside it
  const usherSocket = URL.canParse(r.url) && /\/sessions\/[^/]+\/ws$/.test(new URL(r.url).pathname);
  return { token: r.token, url: usherSocket ? withToken(r.url, r.token) : r.url, identity: r.identity };
}

/** The socket URL with `?token=` added, unless it already carries one (or `replace`: with this one instead). */
export function withToken(url: string, token: string, replace = false): string {
  const u = new URL(url);
  if (replace || !u.searchParams.has('token')) u.searchParams.set('token', token);
  return u.toString();
}

/** Sends a request; a network failure or an error answer ({error:{code,message}}) rejects with UsherError. */
export async function call(fetchFn: FetchLike, url: string, init: RequestInit): Promise<unknown> {
  let res: Response;
  try {
    res = await fetchFn(url, init);
  } catch (err) {
    throw new UsherError(
      'NETWORK',
      `could not reach ${url} (${(err as Error)?.message ?? err}); check the \`server\` option and that the server is up`,
      { cause: err },
    );
  }
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // an answer that is not JSON: reported below by status, or as a bad response
  }
  if (res.ok) return json;
  const error = isObject(json) && isObject(json.error) ? json.error : null;
  if (error && typeof error.code === 'string' && typeof error.message === 'string') {
    throw new UsherError(error.code, error.message, {
      status: res.status,
      ...(typeof error.retryable === 'boolean' ? { retryable: error.retryable } : {}),
      ...(isObject(error.details) ? { details: error.details } : {}),
    });
  }
  throw new UsherError(
    'BAD_RESPONSE',
    `${init.method} ${url} answered HTTP ${res.status}: ${text.slice(0, 200)}`,
    {
      status: res.status,
      retryable: res.status >= 500,
    },
  );
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
