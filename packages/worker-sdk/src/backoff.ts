// Exponential reconnect backoff with jitter, bounded by a maximum delay.

export interface BackoffPolicy {
  /** delay before the first retry */
  initialDelayMs: number;
  /** no delay is longer than this (before jitter) */
  maxDelayMs: number;
  /** each retry waits this many times longer than the previous one */
  multiplier: number;
  /** fraction of each delay that is randomised away, 0 (none) to 1 (full jitter) */
  jitter: number;
}

/** The delay before retry number `attempt` (1-based); `random` returns a number in [0, 1). */
export function backoffDelayMs(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const exp = policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1);
  const base = Math.min(policy.maxDelayMs, exp);
  return Math.max(0, Math.round(base * (1 - policy.jitter * random())));
}
