// Signed, short-lived tokens scoped to one session (or worker) and one role, and admin key checks.
import { createHash, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { UsherError } from '@usher/protocol';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';

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
}

export interface VerifiedToken extends TokenClaims {
  exp: number;
}

const ISSUER = 'usher';

export class TokenIssuer {
  /** imported once: jose would import raw bytes again on every call */
  readonly #key: KeyObject;
  readonly #now: () => number;

  constructor(secret: string, now: () => number) {
    if (secret.length < 32)
      throw new Error('the token secret must be at least 32 characters (config `secret`, env USHER_SECRET)');
    this.#key = createSecretKey(Buffer.from(secret, 'utf8'));
    this.#now = now;
  }

  async sign(claims: TokenClaims, ttlMs: number): Promise<string> {
    const nowS = Math.floor(this.#now() / 1000);
    const payload: Record<string, string> = { role: claims.role, pid: claims.pid };
    if (claims.sid) payload.sid = claims.sid;
    if (claims.wid) payload.wid = claims.wid;
    if (claims.reg) payload.reg = claims.reg;
    if (claims.idn) payload.idn = claims.idn;
    return new SignJWT(payload)
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setIssuedAt(nowS)
      .setExpirationTime(nowS + Math.max(1, Math.ceil(ttlMs / 1000)))
      .sign(this.#key);
  }

  /** Verifies a token against the injected clock; throws UNAUTHORIZED with the reason. */
  async verify(token: string): Promise<VerifiedToken> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        issuer: ISSUER,
        algorithms: ['HS256'],
        currentDate: new Date(this.#now()),
      });
      if (typeof payload.role !== 'string' || typeof payload.pid !== 'string')
        throw new Error('missing claims');
      return payload as unknown as VerifiedToken;
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired)
        throw new UsherError('UNAUTHORIZED', 'the token has expired; ask for a new one');
      throw new UsherError('UNAUTHORIZED', 'the token is not valid');
    }
  }
}

/** Admin API keys, kept only as SHA-256 hashes and compared in constant time. */
export class AdminKeys {
  readonly #hashes: Buffer[];

  constructor(keys: readonly string[]) {
    this.#hashes = keys.map(hashKey);
  }

  get configured(): boolean {
    return this.#hashes.length > 0;
  }

  check(key: string): boolean {
    const h = hashKey(key);
    let ok = false;
    for (const k of this.#hashes) ok = timingSafeEqual(k, h) || ok;
    return ok;
  }
}

function hashKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
