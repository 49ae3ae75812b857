// Identifiers that sort by creation time: the queue breaks ties of equal timestamps by id.
import { randomFillSync } from 'node:crypto';

let lastMs = 0;
let counter = 0;

/** `prefix_` + 9 base-36 chars of time + 4 of a per-ms counter + 8 random: sortable and unique. */
export function newId(prefix: string, nowMs: number = Date.now()): string {
  if (nowMs === lastMs) counter++;
  else {
    lastMs = nowMs;
    counter = 0;
  }
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
