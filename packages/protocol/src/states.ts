// Session states and the only transitions between them (SPEC §2).

export const SessionState = {
  Requesting: 'requesting',
  Queued: 'queued',
  Connecting: 'connecting',
  Active: 'active',
  Idle: 'idle',
  Paused: 'paused',
  Ending: 'ending',
  Ended: 'ended',
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

export const SESSION_STATES: readonly SessionState[] = Object.values(SessionState);

/**
 * Every legal transition. Anything not listed here is refused.
 * - pending states (requesting, queued) hold no worker, so they may end directly;
 * - states holding a worker go through `ending`, where the worker is told to stop and cleaned up;
 * - active/idle/paused may go back to `connecting` when auto-restart moves a crashed session to a fresh worker;
 *   one that was paused goes from there back to `paused`.
 */
export const TRANSITIONS: Readonly<Record<SessionState, readonly SessionState[]>> = {
  requesting: ['queued', 'connecting', 'ended'],
  queued: ['connecting', 'ended'],
  connecting: ['active', 'paused', 'ending'],
  active: ['idle', 'paused', 'connecting', 'ending'],
  idle: ['active', 'paused', 'connecting', 'ending'],
  paused: ['active', 'connecting', 'ending'],
  ending: ['ended'],
  ended: [],
};

export function canTransition(from: SessionState, to: SessionState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** States in which the session waits for a worker (the seed's PENDING). */
export const PENDING_STATES: readonly SessionState[] = ['requesting', 'queued'];
/** States in which a worker is seated on the session. */
export const SEATED_STATES: readonly SessionState[] = ['connecting', 'active', 'idle', 'paused', 'ending'];
/** States in which the session is live for its participants. */
export const LIVE_STATES: readonly SessionState[] = ['active', 'idle', 'paused'];
/** Every state but `ended`: the states a session is counted in while it lives (metrics, statistics). */
export const OPEN_STATES: readonly Exclude<SessionState, 'ended'>[] = SESSION_STATES.filter(
  (s): s is Exclude<SessionState, 'ended'> => s !== 'ended',
);

export function isSessionState(value: unknown): value is SessionState {
  return typeof value === 'string' && (SESSION_STATES as readonly string[]).includes(value);
}

/** How the canonical states map to the names used by the two source documents (for docs and migration). */
export const SEED_STATE_NAMES: Readonly<Record<SessionState, { pixelStreaming: string; agent: string }>> = {
  requesting: { pixelStreaming: 'requesting', agent: 'PENDING' },
  queued: { pixelStreaming: 'queued', agent: 'PENDING' },
  connecting: { pixelStreaming: 'connecting', agent: 'CONNECTING' },
  active: { pixelStreaming: 'streaming', agent: 'ACTIVE' },
  idle: { pixelStreaming: 'idle', agent: 'ACTIVE' },
  paused: { pixelStreaming: '-', agent: 'PAUSED' },
  ending: { pixelStreaming: '-', agent: 'ENDING' },
  ended: { pixelStreaming: 'disconnected / failed', agent: 'ENDED' },
};
