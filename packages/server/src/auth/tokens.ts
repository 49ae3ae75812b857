// Signed, short-lived tokens scoped to one session (or worker) and one role. Admin keys: admin-keys.ts.
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { UsherError } from '@usher/protocol';
import { errors as joseErrors, jwtVerify } from 'jose';

export type TokenRole = 'viewer' | 'user' | 'observer' | 'agent' | 'worker' | 'pool';

export interface TokenClaims {
  role: TokenRole;
  /** session id: viewer, user, observer, agent */
  sid?: string;
  /** worker id: worker */
  wid?: string;
  /** project id */
  pid: string;
  /** region: pool */
  reg?: string;
  /** participant identity */
  idn?: string;
  /** the token's own id: pool (kept in the database, so that it can be revoked) */
  jti?: string;
  /**
   * worker: the token its driver started it with (in its environment and signalling URL), the only worker
   * token the signalling endpoint honours past its expiry
   */
  launch?: true;
}

export interface VerifiedToken extends TokenClaims {
  exp: number;
  /** a launch token honoured past its expiry (verify's `expiredLaunch`) */
  expired?: true;
}

const ISSUER = 'usher';
/** the protected header of every token, base64url-encoded once */
const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256' })).toString('base64url');

export class TokenIssuer {
  /** imported once: jose would import raw bytes again on every verification */
  readonly #key: KeyObject;
  readonly #now: () => number;

  constructor(secret: string, now: () => number) {
    if (secret.length < 32)
      throw new Error('the token secret must be at least 32 characters (config `secret`, env USHER_SECRET)');
    this.#key = createSecretKey(Buffer.from(secret, 'utf8'));
    this.#now = now;
  }

  /**
   * Signs a compact JWS (HS256) with node:crypto directly: the same token jose would sign, at a twentieth of
   * the cost (jose signs through WebCrypto, which costs tens of microseconds a token).
   */
  async sign(claims: TokenClaims, ttlMs: number): Promise<string> {
    const nowS = Math.floor(this.#now() / 1000);
    const payload: Record<string, string | number> = { role: claims.role, pid: claims.pid };
    if (claims.sid) payload.sid = claims.sid;
    if (claims.wid) payload.wid = claims.wid;
    if (claims.reg) payload.reg = claims.reg;
    if (claims.idn) payload.idn = claims.idn;
    if (claims.jti) payload.jti = claims.jti;
    if (claims.launch) payload.launch = 1;
    payload.iss = ISSUER;
    payload.iat = nowS;
    payload.exp = nowS + Math.max(1, Math.ceil(ttlMs / 1000));
    const input = `${HEADER}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
    return `${input}.${createHmac('sha256', this.#key).update(input).digest('base64url')}`;
  }

  /**
   * Verifies a token against the injected clock; throws UNAUTHORIZED with the reason. With `expiredLaunch`, a
   * worker's launch token past its expiry still verifies (signature and issuer checked as ever), marked
   * `expired`: the signalling endpoint honours it for a worker that is not stopped and not connected, as a
   * Pixel Streaming app cannot renew the token in its URL. No other token is honoured past its expiry.
   */
  async verify(token: string, options: { expiredLaunch?: boolean } = {}): Promise<VerifiedToken> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        issuer: ISSUER,
        algorithms: ['HS256'],
        currentDate: new Date(this.#now()),
      });
      if (typeof payload.role !== 'string' || typeof payload.pid !== 'string')
        throw new Error('missing claims');
      return claimsOf(payload);
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) {
        // jose checks the signature and the issuer before the expiry: the payload it hands back is genuine
        const p = err.payload;
        if (
          options.expiredLaunch &&
          p.role === 'worker' &&
          p.launch === 1 &&
          typeof p.wid === 'string' &&
          typeof p.pid === 'string'
        )
          return { ...claimsOf(p), expired: true };
        throw new UsherError('UNAUTHORIZED', 'the token has expired; ask for a new one');
      }
      throw new UsherError('UNAUTHORIZED', 'the token is not valid');
    }
  }
}

/** A verified payload as claims (`launch` is signed as 1). */
function claimsOf(payload: Record<string, unknown>): VerifiedToken {
  const { launch, ...rest } = payload;
  return { ...(rest as unknown as VerifiedToken), ...(launch === 1 ? { launch: true } : {}) };
}
