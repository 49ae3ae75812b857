// Who is calling: an admin (API key), a participant or worker (signed token), or nobody.
import { UsherError } from '@usher/protocol';
import type { FastifyRequest } from 'fastify';
import type { AdminKeys } from '../auth/admin-keys.ts';
import type { TokenIssuer, TokenRole, VerifiedToken } from '../auth/tokens.ts';

/** An admin (`keyId`: the stored key's id, null for a key given in configuration), a token, or nobody. */
export type Caller =
  | { kind: 'admin'; keyId: string | null }
  | { kind: 'token'; token: VerifiedToken }
  | { kind: 'anonymous' };

export interface AuthContext {
  adminKeys: AdminKeys;
  tokens: TokenIssuer;
}

const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]+$/;

/** The WebSocket subprotocol the server selects when a client offers it (with a `bearer.` credential). */
export const SOCKET_PROTOCOL = 'usher';
/** A subprotocol entry that carries a credential: `bearer.<admin key or token>`. */
const BEARER_PROTOCOL = 'bearer.';

/**
 * Reads `Authorization: Bearer …`, `x-api-key`, or (for WebSockets, on which browsers cannot set headers)
 * `?token=`, then a `bearer.<credential>` entry of `Sec-WebSocket-Protocol`, which stays out of URLs and so
 * out of proxies' access logs.
 */
export function credentialOf(req: FastifyRequest): string | null {
  const header = req.headers.authorization;
  if (header) {
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m)
      throw new UsherError('UNAUTHORIZED', 'the Authorization header must be "Bearer <admin key or token>"');
    return m[1]!.trim();
  }
  const key = req.headers['x-api-key'];
  if (typeof key === 'string' && key) return key;
  const token = (req.query as Record<string, unknown> | undefined)?.token;
  if (typeof token === 'string' && token) return token;
  const offered = req.headers['sec-websocket-protocol'];
  for (const entry of typeof offered === 'string' ? offered.split(',') : []) {
    const p = entry.trim();
    if (p.startsWith(BEARER_PROTOCOL) && p.length > BEARER_PROTOCOL.length)
      return p.slice(BEARER_PROTOCOL.length);
  }
  return null;
}

/**
 * Picks the subprotocol a WebSocket upgrade answers with (ws's `handleProtocols`): `usher` when offered; else
 * the first offered that carries no credential, as ws would by default; else none. A `bearer.` entry is never
 * echoed back.
 */
export function selectSocketProtocol(offered: ReadonlySet<string>): string | false {
  if (offered.has(SOCKET_PROTOCOL)) return SOCKET_PROTOCOL;
  for (const p of offered) if (!p.startsWith(BEARER_PROTOCOL)) return p;
  return false;
}

export async function callerOf(req: FastifyRequest, auth: AuthContext): Promise<Caller> {
  const credential = credentialOf(req);
  if (credential === null) return { kind: 'anonymous' };
  if (JWT_SHAPE.test(credential)) return { kind: 'token', token: await auth.tokens.verify(credential) };
  const admin = await auth.adminKeys.verify(credential);
  if (admin) return { kind: 'admin', keyId: admin.keyId };
  throw new UsherError(
    'UNAUTHORIZED',
    credential.includes('.')
      ? 'the credential is neither an admin key nor a whole token (a token is three dot-separated parts, as POST /sessions or /join gave it: was it cut short?)'
      : 'the admin key is not valid (or was revoked)',
  );
}

export function requireAdmin(caller: Caller): void {
  if (caller.kind === 'admin') return;
  if (caller.kind === 'anonymous') {
    throw new UsherError('UNAUTHORIZED', 'this needs an admin API key: send "Authorization: Bearer <key>"');
  }
  throw new UsherError('FORBIDDEN', 'this needs an admin API key; a session token is not enough');
}

/** Admins may act on any session; a token only on its own session, and only in the given roles. */
export function requireSession(caller: Caller, sessionId: string, roles: readonly TokenRole[]): void {
  if (caller.kind === 'admin') return;
  if (caller.kind === 'anonymous') {
    throw new UsherError(
      'UNAUTHORIZED',
      'this needs a session token or an admin API key: send "Authorization: Bearer <token or key>" (or ?token=<token> in the URL)',
    );
  }
  const { token } = caller;
  if (token.sid !== sessionId) throw new UsherError('FORBIDDEN', 'this token belongs to another session');
  if (!roles.includes(token.role))
    throw new UsherError(
      'FORBIDDEN',
      `${/^[aeiou]/.test(token.role) ? 'an' : 'a'} ${token.role} token cannot do this: it takes the session's ${roles.join(' or ')} token, or an admin API key`,
    );
}

/**
 * An agent token is its worker's (`idn`): it acts for the session only while that worker serves it. A crashed
 * worker's token, once auto-restart has moved the session to another, is refused (FORBIDDEN).
 */
export function requireCurrentAgent(token: VerifiedToken, s: { id: string; workerId: string | null }): void {
  if (token.role === 'agent' && token.idn !== s.workerId)
    throw new UsherError(
      'FORBIDDEN',
      `this agent token is worker "${token.idn}"'s, which no longer serves session "${s.id}"`,
    );
}
