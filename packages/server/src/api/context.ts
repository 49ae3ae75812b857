// What route handlers get: the engine, auth, and how to spell the server's public URLs.

import type { FastifyRequest } from 'fastify';
import type { ServerInfo } from '../cluster/registry.ts';
import type { Engine } from '../engine/engine.ts';
import type { Keepalive } from '../realtime/keepalive.ts';
import type { BucketMap, RateLimit } from '../realtime/rate-limit.ts';
import type { SignallingRelay } from '../realtime/signalling/relay.ts';
import type { AuthContext } from './auth.ts';
import type { SessionRateLimiter } from './session-rate.ts';

export interface ApiContext {
  engine: Engine;
  auth: AuthContext;
  /** Pixel Streaming signalling between viewers and streamers on this server */
  relay: SignallingRelay;
  /** pings participants' sockets and drops the dead ones */
  keepalive: Keepalive;
  /**
   * Room messages per participant (key: session id, NUL, identity), whatever carries them: the participant's
   * sockets on this server share one allowance, kept while they reconnect, and so do LiveKit data packets.
   */
  messageRate: BucketMap;
  /** room messages of each session's participants together (key: session id), on top of messageRate */
  roomMessageRate: BucketMap;
  /** tokens for new participants each session's participants may ask for (key: session id) */
  joinRate: BucketMap;
  /** signalling messages a viewer's socket may send (Pixel Streaming) */
  signallingRate: RateLimit;
  /** how many sessions a client, and a project, may ask for */
  sessionRate: SessionRateLimiter;
  /**
   * ws(s)://…/sessions/{id}/ws. The URLs handed out start with the public URL when one is set, else with where
   * `req`, the caller's request, reached this server.
   */
  sessionSocketUrl(sessionId: string, req?: FastifyRequest): string;
  /** ws(s)://…/workers/ws, the worker protocol */
  workerSocketUrl(req?: FastifyRequest): string;
  /** ws(s)://…/workers/signalling, the Pixel Streaming streamer protocol */
  signallingUrl(req?: FastifyRequest): string;
  version: string;
  /** the servers sharing the database */
  servers: {
    readonly selfId: string;
    list(): Promise<ServerInfo[]>;
    /** asks a server (this one, or another through the bus) to drain */
    drain(serverId: string): void;
  };
}
