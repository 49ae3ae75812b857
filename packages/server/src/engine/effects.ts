// Work that may only happen after a transaction commits: events, frames to workers, driver calls.
import type { SessionEvent } from '@usher/protocol';
import type { SessionRecord } from '../storage/records.ts';

export class Effects {
  /** sessions the transaction created, as they were inserted */
  readonly created: SessionRecord[] = [];
  readonly events: SessionEvent[] = [];
  readonly tasks: (() => void | Promise<void>)[] = [];
  /** pools whose queue changed, as `projectId\u0000region` */
  readonly dirtyPools = new Set<string>();
  /** pools whose warm pool should be refilled soon, as `projectId\u0000region` */
  readonly refills = new Set<string>();
  /** earliest timer due that was set in this transaction */
  earliestTimer: number | null = null;

  event(e: SessionEvent): void {
    this.events.push(e);
  }

  after(task: () => void | Promise<void>): void {
    this.tasks.push(task);
  }

  poolChanged(projectId: string, region: string): void {
    this.dirtyPools.add(poolKey(projectId, region));
  }

  refill(projectId: string, region: string): void {
    this.refills.add(poolKey(projectId, region));
  }

  timerSet(dueAt: number): void {
    if (this.earliestTimer === null || dueAt < this.earliestTimer) this.earliestTimer = dueAt;
  }
}

export function poolKey(projectId: string, region: string): string {
  return `${projectId}\u0000${region}`;
}

export function parsePoolKey(key: string): { projectId: string; region: string } {
  const [projectId = '', region = ''] = key.split('\u0000');
  return { projectId, region };
}
