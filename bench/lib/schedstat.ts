// How long a thread ran on a CPU and waited for one, in ns (Linux /proc/…/schedstat), or null elsewhere.
import { readFileSync } from 'node:fs';

export function schedstat(path = '/proc/thread-self/schedstat'): { runNs: number; waitNs: number } | null {
  try {
    const [run, wait] = readFileSync(path, 'utf8').trim().split(/\s+/).map(Number);
    return { runNs: run ?? 0, waitNs: wait ?? 0 };
  } catch {
    return null;
  }
}
