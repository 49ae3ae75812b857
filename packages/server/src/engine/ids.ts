// Identifiers that sort by creation time: the queue breaks ties of equal timestamps by id.
import { randomBytes } from 'node:crypto';

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
  const rand = randomBytes(5).toString('hex').slice(0, 8);
  return `${prefix}_${time}${seq}${rand}`;
}
