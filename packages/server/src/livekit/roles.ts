// How Usher tells its participants apart inside a LiveKit room: each token Usher mints carries the
// participant's role as a participant attribute, so webhooks and data packets say who is who.
import type { Participant, ParticipantKind } from '@usher/protocol';

/** What a LiveKit token can be minted for: Usher's participant kinds, plus the hidden recorder. */
export type LiveKitRole = ParticipantKind | 'recorder';
export const LIVEKIT_ROLES: readonly LiveKitRole[] = ['viewer', 'user', 'observer', 'agent', 'recorder'];

/**
 * The participant attribute holding the role. Attributes come from the signed token, and a participant can
 * change its own only with the `canUpdateOwnMetadata` grant, which Usher never gives.
 */
export const ROLE_ATTRIBUTE = 'usher.role';

/** The recorder's identity in every room; no other participant may take it. */
export const RECORDER_IDENTITY = 'usher-recorder';

/** LiveKit's ParticipantInfo.Kind numbers (the same in the server protocol and in @livekit/rtc-node). */
const LIVEKIT_KIND_EGRESS = 2;
const LIVEKIT_KIND_AGENT = 4;

/**
 * Usher's kind for a LiveKit participant: the role in its token when Usher minted it (the recorder counts as an
 * observer); otherwise LiveKit's own kind: an agent is an agent, an egress an observer, anyone else a user.
 */
export function kindOf(
  attributes: Readonly<Record<string, string>> | undefined,
  livekitKind?: number,
): ParticipantKind {
  const role = attributes?.[ROLE_ATTRIBUTE];
  if (role === 'recorder') return 'observer';
  if (role === 'viewer' || role === 'user' || role === 'observer' || role === 'agent') return role;
  if (livekitKind === LIVEKIT_KIND_AGENT) return 'agent';
  if (livekitKind === LIVEKIT_KIND_EGRESS) return 'observer';
  return 'user';
}

/** A LiveKit participant as Usher names it in events. */
export function toParticipant(p: {
  identity: string;
  name?: string;
  attributes?: Readonly<Record<string, string>>;
  kind?: number;
}): Participant {
  const participant: Participant = { identity: p.identity, kind: kindOf(p.attributes, p.kind) };
  if (p.name) participant.name = p.name;
  return participant;
}
