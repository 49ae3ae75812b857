// What route handlers get: the engine, auth, and how to spell the server's public URLs.
import type { Engine } from '../engine/engine.ts';
import type { AuthContext } from './auth.ts';

export interface ApiContext {
  engine: Engine;
  auth: AuthContext;
  /** ws(s)://…/sessions/{id}/ws */
  sessionSocketUrl(sessionId: string): string;
  version: string;
}
