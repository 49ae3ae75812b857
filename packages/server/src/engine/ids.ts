// Identifiers that sort by creation time: the queue breaks ties of equal timestamps by id.
import { randomFillSync } from 'node:crypto';

/**
 * The next counter of each recent millisecond. Ids of one millisecond sort in the order they were made even when
 * ids of other times are made in between (a test's manual clock beside the wall clock, say): one counter for the
 * last millisecond alone would start again at 0 each time the clocks took turns.
 */
const counters = new Map<number, number>();
const RECENT_MS = 64;

/** `prefix_` + 9 base-36 chars of time + 4 of a per-ms counter + 8 random: sortable and unique. */
export function newId(prefix: string, nowMs: number = Date.now()): string {
  const counter = counters.get(nowMs) ?? 0;
  // the most recently used milliseconds stay (a Map keeps insertion order: used again, moved to the end)
  counters.delete(nowMs);
  counters.set(nowMs, counter + 1);
  if (counters.size > RECENT_MS) counters.delete(counters.keys().next().value!);
  const time = nowMs.toString(36).padStart(9, '0');
  const seq = counter.toString(36).padStart(4, '0');
  return `${prefix}_${time}${seq}${randomHex()}`;
}

/** Random bytes drawn a page at a time: one call into the crypto library per 1,024 ids, not one per id. */
const pool = Buffer.alloc(4096);
let used = pool.length;

/** 8 random hex characters (4 bytes). */
function randomHex(): string {
  if (used === pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  used += 4;
  return pool.toString('hex', used - 4, used);
}
