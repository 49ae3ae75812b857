// When a failed webhook delivery is tried again: exponential backoff with jitter, so that many deliveries that
// failed together (a receiver that was down) do not all come back in the same instant.

/** The wait after the 1st, 2nd, … failed attempt; the last one repeats. */
export const RETRY_SCHEDULE_MS: readonly number[] = [
  5_000, // 5 s
  30_000, // 30 s
  120_000, // 2 min
  600_000, // 10 min
  1_800_000, // 30 min
  3_600_000, // 1 h
  7_200_000, // 2 h
  14_400_000, // 4 h
  28_800_000, // 8 h
];

/** Each wait is stretched or shrunk by up to this fraction, at random. */
export const RETRY_JITTER = 0.2;

/**
 * How long to wait after the `attempts`-th failed attempt (1-based): the schedule's entry, times a random
 * factor between 1 − RETRY_JITTER and 1 + RETRY_JITTER.
 */
export function retryDelayMs(
  attempts: number,
  schedule: readonly number[] = RETRY_SCHEDULE_MS,
  random: () => number = Math.random,
): number {
  const base = schedule[Math.min(Math.max(attempts, 1), schedule.length) - 1]!;
  return Math.round(base * (1 + RETRY_JITTER * (2 * random() - 1)));
}
