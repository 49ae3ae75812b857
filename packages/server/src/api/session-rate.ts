// Rate limits on asking for sessions (POST /sessions): per client address (admin-key callers are trusted backends
// and exempt) and per project (every caller). docs/security.md says how to set them.
import { BlockList, isIP } from 'node:net';
import { UsherError } from '@usher/protocol';
import type { FastifyReply } from 'fastify';
import { BucketMap, type RateLimit } from '../realtime/rate-limit.ts';
import type { Logger } from '../util/logger.ts';

export interface SessionRateOptions {
  /** sessions one client address may ask for (default 10 a second, bursts of 20); false: no limit */
  perClient?: RateLimit | false;
  /** sessions each project takes from all callers together, admins included (default: no limit) */
  perProject?: RateLimit | false;
  /**
   * Client addresses or CIDR ranges the per-client limit does not apply to. Default: loopback (127.0.0.0/8,
   * ::1): the operator's own tools, or a proxy on this machine not yet trusted (set trustProxy so that each
   * client behind it counts on its own). [] limits loopback too.
   */
  exemptClients?: readonly string[];
}

export const DEFAULT_SESSION_RATE = {
  perClient: { perSecond: 10, burst: 20 },
  perProject: false,
  exemptClients: ['127.0.0.0/8', '::1'],
} as const satisfies Required<SessionRateOptions>;

/** Client buckets kept at most; past that the least recently seen client starts again with a full bucket. */
const MAX_CLIENTS = 10_000;
const MAX_PROJECTS = 10_000;

export class SessionRateLimiter {
  readonly #clients: BucketMap | null;
  readonly #projects: BucketMap | null;
  readonly #exempt: BlockList;
  readonly #trustProxy: boolean;
  readonly #log: Logger;
  #warnedProxy = false;

  constructor(options: SessionRateOptions | undefined, trustProxy: boolean, now: () => number, log: Logger) {
    const perClient = options?.perClient ?? DEFAULT_SESSION_RATE.perClient;
    const perProject = options?.perProject ?? DEFAULT_SESSION_RATE.perProject;
    if (perClient) checkLimit(perClient, 'sessionRate.perClient');
    if (perProject) checkLimit(perProject, 'sessionRate.perProject');
    this.#clients = perClient ? new BucketMap(perClient, now, MAX_CLIENTS) : null;
    this.#projects = perProject ? new BucketMap(perProject, now, MAX_PROJECTS) : null;
    this.#exempt = blockList(options?.exemptClients ?? DEFAULT_SESSION_RATE.exemptClients);
    this.#trustProxy = trustProxy;
    this.#log = log;
  }

  /**
   * A caller that is not an admin asks for a session from this address (Fastify's req.ip, which honours
   * trustProxy): throws RATE_LIMITED, with Retry-After set on the reply, when the client is over its limit.
   */
  client(ip: string, reply: FastifyReply, forwarded: boolean): void {
    if (!this.#clients) return;
    if (forwarded && !this.#trustProxy && !this.#warnedProxy) {
      this.#warnedProxy = true;
      this.#log.warn(
        { ip },
        'requests carry X-Forwarded-For but trustProxy is off: every client behind the proxy counts as the proxy for the per-client session rate; set trustProxy',
      );
    }
    const address = unmapped(ip);
    if (this.#exempt.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')) return;
    const waitMs = this.#clients.take(clientKey(address));
    if (waitMs === 0) return;
    const { perSecond, burst } = this.#clients.limit;
    refuse(
      reply,
      waitMs,
      'client',
      `too many sessions asked for from ${address}: at most ${perSecond} a second (bursts of ${burst}) per client; try again in ${seconds(waitMs)} s. Backends should call with an admin key, which this limit does not apply to; an operator raises it with the server option sessionRate.perClient`,
    );
  }

  /** Any caller asks for a session of this (existing) project: throws RATE_LIMITED when it is over its limit. */
  project(projectId: string, reply: FastifyReply): void {
    if (!this.#projects) return;
    const waitMs = this.#projects.take(projectId);
    if (waitMs === 0) return;
    const { perSecond, burst } = this.#projects.limit;
    refuse(
      reply,
      waitMs,
      'project',
      `project "${projectId}" takes at most ${perSecond} new sessions a second (bursts of ${burst}) from all callers; try again in ${seconds(waitMs)} s. An operator raises this with the server option sessionRate.perProject`,
    );
  }
}

/** Answers 429 RATE_LIMITED with Retry-After (whole seconds), naming the limit that was reached. */
export function refuse(
  reply: FastifyReply,
  waitMs: number,
  limit: 'client' | 'project' | 'join',
  message: string,
): never {
  const retryAfter = seconds(waitMs);
  reply.header('retry-after', String(retryAfter));
  throw new UsherError('RATE_LIMITED', message, { limit, retryAfterSeconds: retryAfter });
}

/** Retry-After is in whole seconds: rounded up, at least 1. */
function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function checkLimit(l: RateLimit, option: string): void {
  if (!(l.perSecond > 0) || !(l.burst >= 1))
    throw new Error(`${option} needs perSecond > 0 and burst >= 1 (or false for no limit)`);
}

/** `::ffff:1.2.3.4` (IPv4 on an IPv6 socket) → `1.2.3.4`. */
function unmapped(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/**
 * The bucket a client address counts in: an IPv4 address, or an IPv6 address's /64 (one site usually holds a
 * whole /64, so counting single IPv6 addresses would let one client take 2^64 buckets).
 */
export function clientKey(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const [head = '', tail = ''] = ip.split('::', 2) as [string, string?];
  const h = head ? head.split(':') : [];
  const t = ip.includes('::') && tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

function blockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', bits] = entry.split('/', 2);
    const family = isIP(address);
    const prefix = bits === undefined ? undefined : Number(bits);
    if (
      family === 0 ||
      (prefix !== undefined &&
        (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)))
    )
      throw new Error(
        `sessionRate.exemptClients: "${entry}" is not an IP address or CIDR range (e.g. 10.0.0.0/8, fd00::/8)`,
      );
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, prefix, type);
  }
  return list;
}
