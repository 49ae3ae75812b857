// Which web pages may use the API from the browser: CORS for HTTP (@fastify/cors answers preflights), and a check
// of the Origin of WebSocket upgrades (browsers do not apply CORS to WebSockets). Same-origin pages (the demo)
// always may; clients that send no Origin (workers, Node, curl) are not browsers and are not concerned.
import { UsherError } from '@usher/protocol';
import type { FastifyRequest } from 'fastify';

export class OriginPolicy {
  readonly #any: boolean;
  readonly #allowed: ReadonlySet<string>;
  /** the origin of the public URL, which is this server's own however a proxy rewrites Host */
  readonly #own: string | null;

  /** `allowed`: exact origins (scheme://host[:port]) or `*` for any; throws naming the one that is not. */
  constructor(allowed: readonly string[], publicUrl?: string) {
    this.#any = allowed.includes('*');
    this.#allowed = new Set(allowed.filter((o) => o !== '*').map(checkOrigin));
    this.#own = publicUrl ? new URL(publicUrl).origin : null;
  }

  /** Whether any cross-origin page is allowed (else CORS is not even installed). */
  get crossOrigin(): boolean {
    return this.#any || this.#allowed.size > 0;
  }

  /** The Access-Control-Allow-Origin for a request's Origin, or false for none. */
  corsOrigin(origin: string | undefined): string | false {
    if (!origin) return false;
    if (this.#any) return '*';
    return this.#allowed.has(origin) ? origin : false;
  }

  /** Whether a WebSocket upgrade with this Origin may proceed. */
  allowsSocket(req: FastifyRequest): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (this.#any || this.#allowed.has(origin) || origin === this.#own) return true;
    // same origin: the page was served by the host it connects to (scheme aside: a proxy may end TLS)
    try {
      return new URL(origin).host === (req.host ?? '').toLowerCase();
    } catch {
      return false; // `null` (a sandboxed or file:// page) or garbage
    }
  }

  /**
   * A route's onRequest hook for browser-facing WebSocket endpoints: an upgrade from a page of another origin is
   * refused with 403 before it is upgraded.
   */
  readonly socketGuard = async (req: FastifyRequest): Promise<void> => {
    if (this.allowsSocket(req)) return;
    throw new UsherError(
      'FORBIDDEN',
      `WebSocket connections from pages of ${JSON.stringify(req.headers.origin)} are not allowed; an operator allows an origin with the server option allowedOrigins (exact origins such as https://app.example.com, or "*")`,
    );
  };
}

/** `https://App.example.com:443/` → `https://app.example.com`; throws for what is not an origin. */
export function checkOrigin(o: string): string {
  let url: URL | null = null;
  try {
    url = new URL(o);
  } catch {}
  const bare =
    url !== null &&
    (url.protocol === 'http:' || url.protocol === 'https:') &&
    url.pathname === '/' &&
    !url.search &&
    !url.hash &&
    !url.username &&
    !url.password;
  if (!bare)
    throw new Error(
      `allowedOrigins: "${o}" is not an origin; give scheme://host[:port] with no path (e.g. https://app.example.com), or "*"`,
    );
  return url!.origin;
}
