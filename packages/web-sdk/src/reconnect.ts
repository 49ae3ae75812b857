// What to do after the session socket closed (SPEC §4), and how long to wait before each attempt.
import { CLOSE_CODES, isCloseCode, type Outcome, outcomeOf, SocketCloseCode } from '@usher/protocol';

/** `resume`: reopen the same session; `fresh`: start a new one; `none`: the session is over. */
export type ClosePolicy = 'resume' | 'fresh' | 'none';

/**
 * Known codes follow the protocol's table (1006 resumes, 4007 starts fresh, the rest end). A server that
 * restarts closes with 1012, and one that failed on its side with 1011: both resume like a drop. Any other code
 * (1008 refused, 1009 frame too large, …) ends the session: retrying the same thing would fail the same way.
 */
export function closePolicy(code: number): ClosePolicy {
  if (code === SocketCloseCode.ServerShutdown || code === SocketCloseCode.InternalError) return 'resume';
  return isCloseCode(code) ? CLOSE_CODES[code].reconnect : 'none';
}

/** The outcome of a session that closed with `code` and no end reported by the server. */
export function closeOutcome(code: number): Outcome {
  return isCloseCode(code) ? outcomeOf(code) : 'failed';
}

export interface ReconnectPolicy {
  /**
   * give up after this many attempts in a row (default 20: with the default delays, at least 67 s of trying,
   * which outlasts the server's default reconnect window of 60 s)
   */
  maxAttempts: number;
  /** the first attempt waits up to this long (default 500) */
  baseDelayMs: number;
  /** no attempt waits longer (default 8000) */
  maxDelayMs: number;
}

export const DEFAULT_RECONNECT: Readonly<ReconnectPolicy> = Object.freeze({
  maxAttempts: 20,
  baseDelayMs: 500,
  maxDelayMs: 8000,
});

/**
 * Exponential backoff with equal jitter: attempt `n` (0-based) waits a random time in [cap/2, cap), where cap is
 * min(maxDelayMs, baseDelayMs·2ⁿ). Half of each delay is certain, so maxAttempts sets how long the SDK tries at
 * least (the sum of the halves), and the jitter still spreads the viewers of a restarted server. `random`
 * returns a number in [0, 1).
 */
export function reconnectDelayMs(attempt: number, policy: ReconnectPolicy, random: () => number): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.floor(cap / 2 + (random() * cap) / 2);
}
