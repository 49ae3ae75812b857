// LiveKit access tokens for a session's room: one per participant, with the grants its role allows and the
// role itself in the participant's attributes.
import { UsherError } from '@usher/protocol';
import { AccessToken, type VideoGrant } from 'livekit-server-sdk';
import type { LiveKitSettings } from './config.ts';
import { type LiveKitRole, RECORDER_IDENTITY, ROLE_ATTRIBUTE } from './roles.ts';

export interface ParticipantTokenRequest {
  /** the session id, which is the LiveKit room's name */
  sessionId: string;
  identity: string;
  kind: LiveKitRole;
  name?: string;
  ttlMs: number;
}

/**
 * What each role may do in its room. Nobody may change their own metadata or attributes, so the role
 * attribute stays what Usher signed.
 *
 * The agent is marked by the token's `kind: "agent"` claim, not by the `agent` video grant: that grant lets a
 * token register as a LiveKit Agents worker for the whole LiveKit project, which a token scoped to one session
 * must not do.
 */
export function grantsFor(kind: LiveKitRole, room: string): VideoGrant {
  const base = { roomJoin: true, room, canUpdateOwnMetadata: false };
  switch (kind) {
    case 'viewer':
    case 'user':
    case 'agent':
      return { ...base, canPublish: true, canSubscribe: true, canPublishData: true };
    case 'observer':
      return { ...base, canPublish: false, canSubscribe: true, canPublishData: false, hidden: true };
    case 'recorder':
      // it reads data packets only: no media in, nothing out; `recorder` shows the room as being recorded
      return {
        ...base,
        canPublish: false,
        canSubscribe: false,
        canPublishData: false,
        hidden: true,
        recorder: true,
      };
  }
}

export class LiveKitTokens {
  readonly #apiKey: string;
  readonly #apiSecret: string;

  constructor(settings: Pick<LiveKitSettings, 'apiKey' | 'apiSecret'>) {
    this.#apiKey = settings.apiKey;
    this.#apiSecret = settings.apiSecret;
  }

  /** A signed JWT for one participant of one session's room, valid for ttlMs (rounded up to seconds). */
  async participantToken(r: ParticipantTokenRequest): Promise<string> {
    if (!r.sessionId) throw new UsherError('BAD_REQUEST', 'a LiveKit token needs the session id (the room)');
    if (!r.identity) throw new UsherError('BAD_REQUEST', 'a LiveKit token needs a participant identity');
    if (r.identity === RECORDER_IDENTITY && r.kind !== 'recorder')
      throw new UsherError(
        'BAD_REQUEST',
        `the identity "${RECORDER_IDENTITY}" is reserved for Usher's recorder`,
      );
    const at = new AccessToken(this.#apiKey, this.#apiSecret, {
      identity: r.identity,
      ttl: Math.max(1, Math.ceil(r.ttlMs / 1000)),
      attributes: { [ROLE_ATTRIBUTE]: r.kind },
      ...(r.name ? { name: r.name } : {}),
    });
    if (r.kind === 'agent') at.kind = 'agent';
    at.addGrant(grantsFor(r.kind, r.sessionId));
    return at.toJwt();
  }
}
