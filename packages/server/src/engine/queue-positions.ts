// Queue positions: each queued session's 1-based place in its pool's queue and its estimated wait, read from the
// store, and broadcast to the sessions' sockets when a queue moves (at most once per interval per pool). When
// servers share a database, the server whose transaction moved a queue tells the others, and each one tells the
// sockets it holds: positions never cross the bus one by one.
import type { SessionRecord } from '../storage/records.ts';
import type { Store } from '../storage/store.ts';
import type { Clock } from './clock.ts';
import { parsePoolKey, poolKey } from './effects.ts';
import type { EventHub } from './event-hub.ts';
import { estimateWaitMs } from './project-rules.ts';

/** Queue positions are sent this many at a time between turns of the event loop. */
const POSITION_CHUNK = 200;
/** A pool's mean session duration (for estimated waits) is read again after this long (clock time). */
const MEAN_TTL_MS = 5_000;

export interface QueuePositionsOptions {
  store: Store;
  hub: EventHub;
  clock: Clock;
  /** at most one broadcast per pool this often (real time) */
  intervalMs: number;
  /** the pool's `max` workers, which the estimated wait divides by */
  poolMax(projectId: string, region: string): number;
  /** runs work in the background, tracked so that shutdown waits for it */
  track(task: () => Promise<void>): void;
  /** tells the other servers that the pool's queue moved (their broadcasts reach the sockets they hold) */
  announce?(key: string): void;
}

/** What a queued session was last told. */
interface Told {
  position: number;
  queueLength: number;
}

export class QueuePositions {
  readonly #o: QueuePositionsOptions;
  readonly #broadcasts = new Map<
    string,
    { timer: NodeJS.Timeout | null; last: number; running: boolean; again: boolean; here: boolean }
  >();
  /**
   * per pool, per queued session, the position and queue length it was last told (sessions that left the queue
   * drop out): a session is told again when either changes
   */
  readonly #sent = new Map<string, Map<string, Told>>();
  readonly #means = new Map<string, { at: number; value: number | null }>();
  #closed = false;

  constructor(options: QueuePositionsOptions) {
    this.#o = options;
  }

  /**
   * The pool's queue moved: here (`here`, the default), or on another server that said so. Positions go out at
   * most once per intervalMs per pool, counted from the end of the last broadcast, so a large queue cannot keep
   * the server busy broadcasting.
   */
  schedule(key: string, here = true): void {
    const state = this.#broadcasts.get(key) ?? {
      timer: null,
      last: 0,
      running: false,
      again: false,
      here: false,
    };
    this.#broadcasts.set(key, state);
    state.here ||= here;
    if (state.running) {
      state.again = true;
      return;
    }
    if (state.timer || this.#closed) return;
    const wait = Math.max(0, state.last + this.#o.intervalMs - Date.now());
    state.timer = setTimeout(() => {
      state.timer = null;
      state.running = true;
      const here = state.here;
      state.here = false;
      if (here) this.#o.announce?.(key);
      this.#o.track(async () => {
        try {
          await this.#broadcast(key, here);
        } finally {
          state.running = false;
          state.last = Date.now();
          if (state.again) {
            state.again = false;
            this.schedule(key);
          }
        }
      });
    }, wait);
  }

  /**
   * Tells the sockets on this server their positions. The events stay on this server (each server tells its
   * own); they count as this server's (`local`, for webhooks and metrics) only when the move was made here.
   */
  async #broadcast(key: string, here: boolean): Promise<void> {
    if (this.#closed) return;
    const { projectId, region } = parsePoolKey(key);
    const ids = await this.#o.store.read.queuedSessionIds(projectId, region);
    const estimate = await this.waitEstimator(projectId, region);
    const at = new Date(this.#o.clock.now()).toISOString();
    const told = this.#sent.get(key) ?? new Map<string, Told>();
    this.#sent.set(key, told);
    const queueLength = ids.length;
    for (let i = 0; i < ids.length; i++) {
      // let other work run between chunks: a broadcast to 10,000 sockets must not stall the event loop
      if (i > 0 && i % POSITION_CHUNK === 0) await new Promise((resolve) => setImmediate(resolve));
      const sessionId = ids[i]!;
      const position = i + 1;
      const last = told.get(sessionId);
      if (last?.position === position && last.queueLength === queueLength) continue;
      // it counts as told even without a socket here: current() tells a socket that connects later
      told.set(sessionId, { position, queueLength });
      if (!this.#o.hub.hasListeners(sessionId)) continue;
      this.#o.hub.publishHere(
        {
          type: 'session.queue_position',
          sessionId,
          at,
          position,
          queueLength,
          estimatedWaitMs: estimate(position),
        },
        here,
      );
    }
    // sessions that left the queue other than by a seat (they ended while waiting) are forgotten once they
    // outnumber those still in it
    if (told.size > 2 * ids.length + 100) {
      const queued = new Set(ids);
      for (const id of told.keys()) if (!queued.has(id)) told.delete(id);
    }
    if (told.size === 0) this.#sent.delete(key);
  }

  /** A queued session's 1-based position (sessions ahead of it, plus one) and its estimated wait. */
  async positionOf(s: SessionRecord): Promise<{ position: number; estimatedWaitMs: number | null } | null> {
    if (s.state !== 'queued' || s.queuedAt === null) return null;
    const ahead = await this.#o.store.read.countQueuedAhead(s.projectId, s.region, s.queuedAt, s.id);
    const position = ahead + 1;
    return { position, estimatedWaitMs: (await this.waitEstimator(s.projectId, s.region))(position) };
  }

  /** The position now, with the queue's length, for a socket that connects late (it counts as told). */
  async current(
    s: SessionRecord,
  ): Promise<{ position: number; queueLength: number; estimatedWaitMs: number | null } | null> {
    const q = await this.positionOf(s);
    if (!q) return null;
    const key = poolKey(s.projectId, s.region);
    const queueLength = await this.#o.store.read.countQueued(s.projectId, s.region);
    const told = this.#sent.get(key) ?? new Map<string, Told>();
    told.set(s.id, { position: q.position, queueLength });
    this.#sent.set(key, told);
    return { ...q, queueLength };
  }

  /** The estimated wait of each position in a pool's queue, as queued sessions are told it (GET /queues). */
  async waitEstimator(projectId: string, region: string): Promise<(position: number) => number | null> {
    const mean = await this.#mean(projectId, region);
    const poolMax = this.#o.poolMax(projectId, region);
    return (position) => estimateWaitMs(position, mean, poolMax);
  }

  async #mean(projectId: string, region: string): Promise<number | null> {
    const key = poolKey(projectId, region);
    const now = this.#o.clock.now();
    const cached = this.#means.get(key);
    if (cached && now - cached.at < MEAN_TTL_MS) return cached.value;
    const value = await this.#o.store.read.meanSessionDurationMs(projectId, region);
    this.#means.set(key, { at: now, value });
    return value;
  }

  /** The session left the queue for a seat. */
  seated(s: SessionRecord): void {
    this.#sent.get(poolKey(s.projectId, s.region))?.delete(s.id);
  }

  /** A session of the pool ended: its mean duration is read again. */
  sessionEnded(projectId: string, region: string): void {
    this.#means.delete(poolKey(projectId, region));
  }

  /** No broadcast from now on. */
  close(): void {
    this.#closed = true;
    for (const b of this.#broadcasts.values()) if (b.timer) clearTimeout(b.timer);
  }
}
