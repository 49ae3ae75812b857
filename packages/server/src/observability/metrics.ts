// The server's Prometheus metrics (GET /metrics, docs/observability.md), in a registry of its own so that several
// servers can run in one process, served with Node's process metrics (collected once per process). Gauges are
// read from the database at each scrape (so they describe the whole cluster); counters and histograms count the
// events this server published, so that each event is counted once however many servers share the database.
import { OPEN_STATES, type SessionEvent, type SessionEventOf } from '@usher/protocol';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { WorkerLaunch } from '../drivers/driver.ts';
import type { EventHub } from '../engine/event-hub.ts';
import type { StoredMessage } from '../storage/messages.ts';
import { sessionCountsByPool } from '../storage/observability.ts';
import type { Store } from '../storage/store.ts';
import type { SessionDirectory, SessionKey } from './session-directory.ts';

/** Latency buckets, in seconds: from a seat on a warm worker (milliseconds) to a long queue (30 minutes). */
export const LATENCY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

/** The region label of sessions asked for in a region their project does not have. */
export const OTHER_REGION = 'other';

/** The worker counts a pool is shown with: the live states, and draining workers (whatever their state). */
export const WORKER_GAUGE_STATES = ['starting', 'ready', 'reserved', 'busy', 'stopping', 'draining'] as const;

let processRegistry: Registry | null = null;

/**
 * Node's process metrics (CPU, memory, event loop, GC), collected once per process: collecting starts a GC
 * observer and an event-loop monitor that are never stopped, so every server in the process shares these.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export interface MetricsOptions {
  store: Store;
  hub: EventHub;
  sessions: SessionDirectory;
  /** the pools configured now: each gets a value at every scrape, 0 when it has nothing */
  pools: () => Iterable<{ projectId: string; region: string }>;
  /** whether the project has the region (sessions asked for in another are labelled region="other") */
  hasPool: (projectId: string, region: string) => boolean;
  onError: (err: unknown) => void;
}

export class Metrics {
  /** this server's registry: the Usher metrics (the process metrics are processMetrics(), served beside them) */
  readonly registry = new Registry();
  readonly #o: MetricsOptions;
  readonly #off: () => void;

  readonly #sessions: Gauge<'project' | 'region' | 'state'>;
  readonly #queueLength: Gauge<'project' | 'region'>;
  readonly #workers: Gauge<'project' | 'region' | 'state'>;
  readonly #created: Counter<'project' | 'region'>;
  readonly #ended: Counter<'project' | 'region' | 'code' | 'reason'>;
  readonly #queueWait: Histogram<'project' | 'region' | 'result'>;
  readonly #seatLatency: Histogram<'project' | 'region'>;
  readonly #timeToActive: Histogram<'project' | 'region'>;
  readonly #workerStarts: Counter<'project' | 'region' | 'driver'>;
  readonly #workerStartFailures: Counter<'project' | 'region' | 'driver'>;
  readonly #workerCrashes: Counter<'project' | 'region' | 'recoverable'>;
  /** per project, messages relayed and recorded since the last scrape: added to the counters when they are read */
  readonly #relayedSince = new Map<string, { n: number }>();
  readonly #recordedSince = new Map<string, { n: number }>();

  constructor(options: MetricsOptions) {
    this.#o = options;
    const registers = [this.registry];
    this.#sessions = new Gauge({
      name: 'usher_sessions',
      help: 'Sessions in each state but ended, per pool (read from the database at each scrape: the whole cluster)',
      labelNames: ['project', 'region', 'state'],
      registers,
    });
    this.#queueLength = new Gauge({
      name: 'usher_queue_length',
      help: 'Sessions waiting in the queue of each pool (read from the database at each scrape: the whole cluster)',
      labelNames: ['project', 'region'],
      registers,
    });
    this.#workers = new Gauge({
      name: 'usher_workers',
      help: 'Live workers of each pool by state; draining ones under state="draining" (read from the database at each scrape)',
      labelNames: ['project', 'region', 'state'],
      registers,
    });
    this.#created = new Counter({
      name: 'usher_sessions_created_total',
      help: 'Sessions this server created for POST /sessions, those refused at admission (4000-4002) included; requests turned away before (429, 400, 401, 403, 404, 503) are not counted',
      labelNames: ['project', 'region'],
      registers,
    });
    this.#ended = new Counter({
      name: 'usher_sessions_ended_total',
      help: 'Sessions that ended, by close code and end reason (counted by the server that ended them)',
      labelNames: ['project', 'region', 'code', 'reason'],
      registers,
    });
    this.#queueWait = new Histogram({
      name: 'usher_queue_wait_seconds',
      help: 'Time sessions spent queued, observed when they leave the queue: result="seated" (a worker took them) or "ended" (canceled, timed out)',
      labelNames: ['project', 'region', 'result'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#seatLatency = new Histogram({
      name: 'usher_seat_latency_seconds',
      help: 'Time from a session request to its first seat: a worker reserved or being started for it (state connecting)',
      labelNames: ['project', 'region'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#timeToActive = new Histogram({
      name: 'usher_time_to_active_seconds',
      help: 'Time from a session request to the session first becoming active (worker started, and for streams the viewer connected)',
      labelNames: ['project', 'region'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#workerStarts = new Counter({
      name: 'usher_worker_starts_total',
      help: 'Workers this server asked a driver to start',
      labelNames: ['project', 'region', 'driver'],
      registers,
    });
    this.#workerStartFailures = new Counter({
      name: 'usher_worker_start_failures_total',
      help: 'Worker starts the driver refused (bad command, Kubernetes API error)',
      labelNames: ['project', 'region', 'driver'],
      registers,
    });
    this.#workerCrashes = new Counter({
      name: 'usher_worker_crashes_total',
      help: 'Workers that died while their session was live (session.error AGENT_CRASHED); recoverable="true" when the session was restarted on a fresh worker',
      labelNames: ['project', 'region', 'recoverable'],
      registers,
    });
    // counted per message on the relay's hot path: in a map, moved into the counters whenever they are read
    const relayedSince = this.#relayedSince;
    const recordedSince = this.#recordedSince;
    new Counter({
      name: 'usher_messages_relayed_total',
      help: 'Room messages relayed by this server',
      labelNames: ['project'],
      registers,
      collect() {
        addCounts(this, relayedSince);
      },
    });
    new Counter({
      name: 'usher_messages_recorded_total',
      help: 'Transcript entries this server stored durably (recorded message types, joins and departures)',
      labelNames: ['project'],
      registers,
      collect() {
        addCounts(this, recordedSince);
      },
    });
    this.#off = options.hub.subscribeAll((event, local) => {
      if (local) this.#onEvent(event);
    });
  }

  /** The exposition text: the gauges are read from the database first, after every event published so far. */
  async render(): Promise<string> {
    await this.#o.sessions.idle();
    const pools = [...this.#o.pools()];
    const [counts, workers] = await Promise.all([
      sessionCountsByPool(this.#o.store.read.q),
      Promise.all(pools.map((p) => this.#o.store.read.poolCounts(p.projectId, p.region))),
    ]);
    // reset and refill in one synchronous stretch: a concurrent scrape never sees a gauge half filled
    this.#sessions.reset();
    this.#queueLength.reset();
    this.#workers.reset();
    for (const p of pools) {
      const labels = { project: p.projectId, region: p.region };
      for (const state of OPEN_STATES) this.#sessions.set({ ...labels, state }, 0);
      this.#queueLength.set(labels, 0);
    }
    for (const c of counts) {
      const labels = { project: c.projectId, region: c.region };
      this.#sessions.set({ ...labels, state: c.state }, c.count);
      if (c.state === 'queued') this.#queueLength.set(labels, c.count);
    }
    pools.forEach((p, i) => {
      const labels = { project: p.projectId, region: p.region };
      for (const state of WORKER_GAUGE_STATES)
        this.#workers.set({ ...labels, state }, workers[i]![state] ?? 0);
    });
    return Registry.merge([processMetrics(), this.registry]).metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** A driver was asked to start a worker (see observedDriver). */
  workerStarting(launch: WorkerLaunch, driver: string): void {
    this.#workerStarts.inc({ project: launch.projectId, region: launch.region, driver });
  }

  workerStartFailed(launch: WorkerLaunch, driver: string): void {
    this.#workerStartFailures.inc({ project: launch.projectId, region: launch.region, driver });
  }

  /** A batch of transcript entries is durable (the recorder's onWritten). */
  recorded(batch: readonly StoredMessage[]): void {
    for (const { message } of batch) {
      const key = this.#o.sessions.peek(message.sessionId);
      if (key) count(this.#recordedSince, key.projectId);
      else this.#o.sessions.with(message.sessionId, (k) => count(this.#recordedSince, k.projectId));
    }
  }

  close(): void {
    this.#off();
  }

  #onEvent(e: SessionEvent): void {
    try {
      switch (e.type) {
        case 'session.message': {
          // the relay's hot path: a lookup in memory and an increment
          const key = this.#o.sessions.peek(e.sessionId);
          if (key) count(this.#relayedSince, key.projectId);
          else this.#o.sessions.with(e.sessionId, (k) => count(this.#relayedSince, k.projectId));
          return;
        }
        case 'session.status_changed':
          this.#o.sessions.with(e.sessionId, (key) => this.#statusChanged(e, key));
          return;
        case 'session.error':
          if (e.code === 'AGENT_CRASHED')
            this.#o.sessions.with(e.sessionId, (key) =>
              this.#workerCrashes.inc({
                project: key.projectId,
                region: key.region, // a worker runs only in a region of its project
                recoverable: String(e.recoverable),
              }),
            );
          return;
        default:
          return;
      }
    } catch (err) {
      this.#o.onError(err);
    }
  }

  #statusChanged(e: SessionEventOf<'session.status_changed'>, key: SessionKey): void {
    const at = Date.parse(e.at);
    // a request may name any region: one the project does not have (refused with 4002) is not a label value
    const region = this.#o.hasPool(key.projectId, key.region) ? key.region : OTHER_REGION;
    const pool = { project: key.projectId, region };
    if (e.previous === null) this.#created.inc(pool);
    if (e.previous === 'queued') {
      const result = e.status === 'connecting' ? 'seated' : 'ended';
      if (key.queuedAt !== null) this.#queueWait.observe({ ...pool, result }, seconds(at - key.queuedAt));
      else void this.#o.sessions.track(this.#queueWaitFromTimeline(e.sessionId, at, { ...pool, result }));
    }
    // the first seat: a session comes to `connecting` from the queue (or straight from its request) only once;
    // an auto-restart comes back to it from a live state
    if (e.status === 'connecting' && (e.previous === 'requesting' || e.previous === 'queued'))
      this.#seatLatency.observe(pool, seconds(at - key.createdAt));
    // the first activation: the key's activeAt is the first one's time (or not known yet when it is this one)
    if (
      e.status === 'active' &&
      e.previous === 'connecting' &&
      (key.activeAt === null || key.activeAt === at)
    )
      this.#timeToActive.observe(pool, seconds(at - key.createdAt));
    if (e.status === 'ended')
      this.#ended.inc({ ...pool, code: String(e.endCode ?? ''), reason: e.endReason ?? '' });
  }

  /** A session left the queue, but when it entered it was not seen here (e.g. before a restart): the timeline says. */
  async #queueWaitFromTimeline(
    sessionId: string,
    leftAt: number,
    labels: { project: string; region: string; result: string },
  ): Promise<void> {
    try {
      const timeline = await this.#o.store.read.timeline(sessionId);
      const entered = timeline.findLast((t) => t.to === 'queued' && t.at <= leftAt);
      if (entered) this.#queueWait.observe(labels, seconds(leftAt - entered.at));
    } catch (err) {
      this.#o.onError(err);
    }
  }
}

function count(counts: Map<string, { n: number }>, project: string): void {
  const c = counts.get(project);
  if (c) c.n++;
  else counts.set(project, { n: 1 });
}

function addCounts(counter: Counter<'project'>, counts: Map<string, { n: number }>): void {
  for (const [project, c] of counts) {
    if (c.n > 0) counter.inc({ project }, c.n);
    c.n = 0;
  }
}

function seconds(ms: number): number {
  return Math.max(0, ms) / 1000;
}
