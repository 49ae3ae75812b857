// The session engine: every state change of sessions and workers happens here, in one transaction each.
import {
  type Assignment,
  CloseCode,
  type CreateSessionRequest,
  canTransition,
  END_REASONS,
  ENDING_TIMEOUT_MS,
  type EndReason,
  LIVE_STATES,
  MAX_REPLAYED_MESSAGES,
  OPEN_STATES,
  outcomeOf,
  PENDING_STATES,
  type ProjectInput,
  type ServerToWorkerFrame,
  type SessionEvent,
  type SessionEventOf,
  type SessionState,
  SocketCloseCode,
  UsherError,
  WORKER_ENV,
  type WorkerFrame,
} from '@usher/protocol';
import type { TokenIssuer, VerifiedToken } from '../auth/tokens.ts';
import { type Bus, localBus } from '../cluster/bus.ts';
import type { WorkerDriver, WorkerExit } from '../drivers/driver.ts';
import { type LiveKitMode, RECORDED_ROOM_STATES } from '../livekit/mode.ts';
import { isoToMicros, microsToIso, type StoredPage } from '../storage/messages.ts';
import type {
  ProjectRecord,
  ProjectSettings,
  SessionRecord,
  TimerRecord,
  WorkerRecord,
} from '../storage/records.ts';
import { newSessionRecord, newWorkerRecord, TimerKind } from '../storage/records.ts';
import type { Repo } from '../storage/repo.ts';
import type { Store, StoreTxOptions } from '../storage/store.ts';
import type { Logger } from '../util/logger.ts';
import { Batcher, type Outcome } from './batcher.ts';
import { type Clock, systemClock, type TimerHandle } from './clock.ts';
import { Effects, parsePoolKey, poolKey } from './effects.ts';
import type { EventHub } from './event-hub.ts';
import { newId } from './ids.ts';
import { validateProject } from './project-input.ts';
import { activityTimer, needsViewerToStart, unrunnableReason, usesAfk } from './project-rules.ts';
import { QueuePositions } from './queue-positions.ts';
import { Recorder } from './recorder.ts';
import { Rooms } from './rooms.ts';
import { Scheduler } from './scheduler.ts';
import { Watchdog } from './watchdog.ts';

/** A connected worker socket on this server. */
export interface WorkerLink {
  send(frame: ServerToWorkerFrame): void;
  close(code: number, reason: string): void;
}

export interface EngineOptions {
  store: Store;
  clock: Clock;
  hub: EventHub;
  tokens: TokenIssuer;
  drivers: Record<string, WorkerDriver>;
  log: Logger;
  /** this server's id, stored on the workers it starts */
  serverId: string;
  /** the WebSocket URL workers dial (known once the server listens) */
  workerUrl: () => string;
  /** the WebSocket URL Pixel Streaming streamers dial (without the token) */
  signallingUrl: () => string;
  heartbeatIntervalMs?: number;
  /** a worker whose socket is gone this long is lost */
  workerLossMs?: number;
  /** after a restart, how long workers of the previous run have to re-attach before they are reaped */
  reattachMs?: number;
  /** at most one queue-position broadcast per pool this often (real time) */
  positionIntervalMs?: number;
  workerTokenTtlMs?: number;
  sessionTokenTtlMs?: number;
  /** re-read the earliest deadline this often, to see timers set by other servers; 0 = never */
  timerPollMs?: number;
  /** how this server reaches the others that share its database (default: it is alone) */
  bus?: Bus;
  /** the ids of the servers sharing the database that are running now (default: none but this one) */
  aliveServers?: () => Promise<ReadonlySet<string>>;
  /** LiveKit mode, when the server has LiveKit settings: the rooms of projects with `rooms: livekit` */
  livekit?: LiveKitMode | null;
  /**
   * The clock for worker liveness (heartbeats, re-attach, launch backoff). It measures the real world, so it
   * stays the system clock when tests drive session deadlines with a manual one.
   */
  livenessClock?: Clock;
  /**
   * A session was created: called once its transaction has committed, before any of its events is published
   * (the observability's session directory learns its project and region without reading them back).
   */
  sessionCreated?: (s: SessionRecord) => void;
}

type Resolved = Required<EngineOptions>;

/** At most this many admissions (or worker starts) share one transaction. */
const ADMISSION_BATCH = 128;

/** A pool's warm refill after admissions runs at most this often (real time). */
const REFILL_INTERVAL_MS = 100;

/**
 * A worker that dies within this long of becoming ready counts as a failed launch, so that a pool whose
 * workers crash right after they start backs off instead of respawning in a loop.
 */
const STABLE_WORKER_MS = 30_000;

/** After SIGTERM, how long a worker process has before SIGKILL. */
const STOP_KILL_AFTER_MS = 2_000;

const DEFAULTS = {
  heartbeatIntervalMs: 5_000,
  workerLossMs: 15_000,
  reattachMs: 15_000,
  positionIntervalMs: 250,
  workerTokenTtlMs: 24 * 3_600_000,
  sessionTokenTtlMs: 3_600_000,
  timerPollMs: 0,
  livenessClock: systemClock,
  livekit: null,
  bus: localBus,
  aliveServers: async () => new Set<string>(),
  sessionCreated: () => {},
};

/** Every state of a session that has neither ended nor begun to end. */
const OPEN_SESSION_STATES: readonly SessionState[] = OPEN_STATES.filter((s) => s !== 'ending');

/**
 * Whether new settings of a project may disallow sessions the old ones allowed: it was disabled, or it runs
 * less (a region, its worker, an agent type, a pool's max went).
 */
function narrows(before: ProjectSettings, after: ProjectSettings): boolean {
  if (!after.enabled) return before.enabled;
  if (!after.worker) return !!before.worker;
  // an empty list runs any agent type
  const typesGone =
    before.agentTypes.length === 0 || before.agentTypes.some((t) => !after.agentTypes.includes(t));
  if (after.agentTypes.length > 0 && typesGone) return true;
  return Object.entries(before.regions).some(([region, pool]) => {
    const now = after.regions[region];
    return !now || (now.max === 0 && pool.max > 0);
  });
}

/** Timers that belong to a state and are cleared when the session leaves it. */
const STATE_TIMERS: Record<SessionState, TimerKind[]> = {
  requesting: [TimerKind.Pending],
  queued: [TimerKind.Pending],
  connecting: [TimerKind.Connecting, TimerKind.SeatHold],
  active: [TimerKind.AfkWarning, TimerKind.Idle],
  idle: [TimerKind.AfkDisconnect, TimerKind.Idle],
  paused: [TimerKind.Paused],
  ending: [TimerKind.Ending],
  ended: [],
};

/** After an auto-restart, the fresh worker gets at most this many of the newest recorded messages. */
const RESTART_TRANSCRIPT_MESSAGES = 100;
export interface SessionWithQueue {
  session: SessionRecord;
  queuePosition: number | null;
  estimatedWaitMs: number | null;
}

export class Engine {
  readonly o: Resolved;
  readonly #scheduler: Scheduler;
  readonly #links = new Map<string, WorkerLink>();
  /** workers being told what they missed (#replayToWorker): their live frames wait here meanwhile */
  readonly #replaying = new Map<string, { link: WorkerLink; held: ServerToWorkerFrame[] }>();
  /**
   * Per worker connected here, when its credentials were last issued: its worker token, and its session's agent
   * token. A heartbeat past half a token's life brings fresh ones (a warm worker may wait longer than its
   * token lasts, and a session may run longer than its agent token).
   */
  readonly #issued = new Map<string, { worker: number; session?: { id: string; at: number } }>();
  /** workers' liveness deadlines: heartbeats, re-attach after a restart, a launched worker's start */
  readonly #liveness: Watchdog;
  readonly #viewers = new Map<string, number>();
  /**
   * Per active session, its activity deadline as last written: input and messages then write at most once a
   * second, and read nothing. An entry exists only while the session is active.
   */
  readonly #activityDue = new Map<string, NonNullable<ReturnType<typeof activityTimer>> & { due: number }>();
  readonly #projects = new Map<string, ProjectRecord>();
  readonly positions: QueuePositions;
  readonly #launchBackoff = new Map<
    string,
    { failures: number; until: number; timer: TimerHandle | null; lastWorker: string | null }
  >();
  readonly #pendingTasks = new Set<Promise<unknown>>();
  /** per session and kind of activity, the deadline write on its way (#recordActivity) */
  readonly #activityWrites = new Map<string, Promise<void>>();
  readonly #graceTimers = new Set<NodeJS.Timeout>();
  readonly #unsubscribeHub: () => void;
  readonly #admissions: Batcher<CreateSessionRequest, SessionWithQueue>;
  readonly #starts: Batcher<{ workerId: string; sessionId: string }, void>;
  readonly recorder: Recorder;
  readonly rooms: Rooms;
  /** per pool, whether a refill after admissions is on its way, and when the last one ran (real time) */
  readonly #refills = new Map<string, { pending: boolean; last: number }>();
  /** wakes a delayed refill at close() */
  readonly #delays = new Set<() => void>();
  #started = false;
  #closed = false;
  #draining = false;
  /** the server is closing: the sockets it closes leave their workers marked as attached here (leaving()) */
  #leaving = false;

  constructor(options: EngineOptions) {
    this.o = { ...DEFAULTS, ...options } as Resolved;
    this.#liveness = new Watchdog(this.o.livenessClock, (err, workerId) =>
      this.o.log.error({ err, workerId }, 'checking whether a worker is alive failed'),
    );
    this.positions = new QueuePositions({
      store: options.store,
      hub: this.o.hub,
      clock: this.o.clock,
      intervalMs: this.o.positionIntervalMs,
      poolMax: (projectId, region) => this.#projects.get(projectId)?.settings.regions[region]?.max ?? 0,
      track: (task) => this.#track(task),
      announce: (key) => {
        if (this.o.bus.shared) this.o.bus.send({ kind: 'queue_moved', ...parsePoolKey(key) });
      },
    });
    const track = (work: () => Promise<void>) => this.#track(work);
    this.#admissions = new Batcher((key, reqs) => this.#admitBatch(key, reqs), ADMISSION_BATCH, track);
    this.#starts = new Batcher((_key, items) => this.#sessionsStarted(items), ADMISSION_BATCH, track);
    this.recorder = new Recorder(options.store.messages, track);
    this.rooms = new Rooms({
      serverId: this.o.serverId,
      notify: (note) => {
        if (this.o.bus.shared) this.o.bus.send(note);
      },
      handingOver: () => this.#leaving && this.o.bus.shared,
      store: options.store,
      hub: this.o.hub,
      clock: this.o.clock,
      livenessClock: this.o.livenessClock,
      recorder: this.recorder,
      log: this.o.log,
      track: (task) => this.#track(task),
      sendWorker: (workerId, frame) => this.#sendWorker(workerId, frame),
      activity: (sessionId) => {
        if (!this.#activityKnown(sessionId, 'activity', this.clock.now()))
          this.#track(() => this.recordActivity(sessionId));
      },
    });
    // frames other servers send to workers whose sockets are here
    this.o.bus.onMessage((m) => {
      if (m.kind === 'worker') this.#deliver(m.workerId, m.frame);
      else if (m.kind === 'project') this.#track(() => this.#reloadProject(m.projectId));
      else if (m.kind === 'dispatch' && !this.#draining)
        this.#track(() => this.#redispatch(m.projectId, m.region));
      else if (m.kind === 'event') this.rooms.presenceElsewhere(m.event);
      else if (m.kind === 'presence') this.rooms.presenceNote(m);
      else if (m.kind === 'server_gone') this.rooms.serverGone(m.serverId, false);
      else if (m.kind === 'hello') this.rooms.serverStarted(m.serverId);
      else if (m.kind === 'queue_moved') this.positions.schedule(poolKey(m.projectId, m.region), false);
    });
    this.#unsubscribeHub = this.o.hub.subscribeAll((e) => {
      if (e.type !== 'session.status_changed') return;
      this.rooms.forgetWorker(e.sessionId);
      // an ended session's viewer sockets close without detaching: nothing is left to count
      if (e.status === 'ended') this.#viewers.delete(e.sessionId);
      // once every listener has heard of the end (on whichever server it happened)
      if (e.status === 'ended') queueMicrotask(() => this.rooms.ended(e.sessionId));
    });
    this.#scheduler = new Scheduler({
      store: options.store,
      clock: options.clock,
      handle: (t) => this.#onTimer(t),
      onError: (err, t) =>
        t
          ? this.o.log.error({ err, sessionId: t.sessionId, timer: t }, 'timer handler failed')
          : this.o.log.error({ err }, 'the timers could not be read; trying again in a second'),
      pollIntervalMs: this.o.timerPollMs,
    });
  }

  get store(): Store {
    return this.o.store;
  }
  get clock(): Clock {
    return this.o.clock;
  }
  get hub(): EventHub {
    return this.o.hub;
  }

  // ------------------------------------------------------------------ lifecycle

  /** Recovers what an earlier run left (timers, workers, viewers, queues) and starts the timers. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    for (const p of await this.store.read.listProjects()) this.#projects.set(p.settings.id, p);
    await this.#recover();
    await this.#scheduler.start();
  }

  /** Stops timers and waits for work in flight. Workers are left to the drivers' close(). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribeHub();
    this.positions.close();
    this.#scheduler.stop();
    await this.#scheduler.idle();
    this.#liveness.close();
    for (const b of this.#launchBackoff.values()) if (b.timer) this.o.livenessClock.clearTimer(b.timer);
    for (const t of this.#graceTimers) clearTimeout(t);
    for (const wake of [...this.#delays]) wake();
    await this.recorder.flushed(); // nothing relayed before a clean shutdown is lost
    while (this.#pendingTasks.size) await Promise.allSettled([...this.#pendingTasks]);
  }

  /** Resolves when every after-commit task started so far has finished (tests use it). */
  async settled(): Promise<void> {
    while (this.#pendingTasks.size) await Promise.allSettled([...this.#pendingTasks]);
    await this.#scheduler.idle();
  }

  async #recover(): Promise<void> {
    // viewers' sockets on this server died with the previous run: their reconnect windows start now (a
    // viewer on another server is that server's)
    const self = this.o.serverId;
    await this.#releaseViewers((server) => server === self || server === null);
    // workers of the previous run: alive ones get time to re-attach, dead ones are handled as exits. This
    // server's own processes are its own; a worker of another driver is this server's unless its socket is on
    // another server that runs, or (not connected yet) another server that runs is launching it
    const running = await this.o.aliveServers();
    const workers = (
      await this.store.read.listWorkers({ states: ['starting', 'ready', 'reserved', 'busy', 'stopping'] })
    ).filter((w) => {
      if (w.driver === 'process') return w.serverId === self;
      // a worker still starting is held by the server launching it; one that connected, by its socket's server
      const holder = w.attachedTo ?? (w.state === 'starting' ? w.serverId : null);
      return holder === null || holder === self || !running.has(holder);
    });
    for (const w of workers) {
      const driver = this.o.drivers[w.driver];
      const alive = driver && w.handle ? await driver.isAlive(w.id, w.handle) : w.driver === 'external';
      if (!alive) {
        await this.onWorkerExit({
          workerId: w.id,
          code: null,
          signal: null,
          expected: w.state === 'stopping',
          whileAway: true,
        });
        continue;
      }
      // asked to stop before the restart, and still there: the stop died with the previous run. Should the stop
      // fail (the Kubernetes API away), the worker is watched as the others are, and reaped if it stays away
      if (w.state === 'stopping' && w.driver !== 'external' && driver && w.handle) {
        this.o.log.info(
          { workerId: w.id, projectId: w.projectId },
          'stopping a worker the previous run was stopping',
        );
        const stopped = await driver.reap(w.id, w.handle).then(
          () => true,
          (err) => {
            this.o.log.error(
              { err, workerId: w.id },
              'could not stop a worker the previous run was stopping',
            );
            return false;
          },
        );
        if (stopped) {
          await this.onWorkerExit({
            workerId: w.id,
            code: null,
            signal: null,
            expected: true,
            whileAway: true,
          });
          continue;
        }
      }
      this.#liveness.watch(w.id, this.#reattachWindow(w), async () => {
        if (await this.#attachedElsewhere(w.id)) return;
        this.o.log.warn(
          { workerId: w.id, projectId: w.projectId, region: w.region, sessionId: w.sessionId ?? undefined },
          'worker did not re-attach after restart; reaping it',
        );
        if (driver && w.handle) await driver.reap(w.id, w.handle).catch(() => {});
        await this.onWorkerExit({
          workerId: w.id,
          code: null,
          signal: null,
          expected: false,
          whileAway: true,
        });
      });
    }
    await this.#resumeRecorders();
    // queues and warm pools
    await this.#tx(async (r, fx) => {
      for (const p of this.#projects.values()) {
        if (!p.settings.enabled) continue;
        for (const region of Object.keys(p.settings.regions)) await this.#dispatch(r, fx, p.settings, region);
      }
    });
  }

  // ------------------------------------------------------------------ transactions and effects

  /**
   * Runs fn in a transaction, then (only if it committed) its effects. With `pool`, the transaction holds that
   * pool's lock from its start (on PostgreSQL it is taken with BEGIN, in the same round trip).
   */
  async #tx<T>(fn: (r: Repo, fx: Effects) => Promise<T>, options: StoreTxOptions = {}): Promise<T> {
    let fx = new Effects();
    let changed: Set<string> = new Set();
    const result = await this.store.tx(async (r) => {
      fx = new Effects();
      changed = r.changedWorkers;
      return fn(r, fx);
    }, options);
    try {
      this.#apply(fx);
    } catch (err) {
      // committed: what it sets off must not fail the caller, who would take the change for undone
      this.o.log.error({ err }, 'after-commit effects failed');
    }
    if (changed.size > 0 && this.hub.hasWorkerListeners) {
      // one announcement at a time: each reads its workers after the one before did, so that a worker's states
      // go out in the order they were stored (two reads at once may come back the other way round)
      const next = this.#announcing.then(() => this.#announceWorkers(changed));
      this.#announcing = next.catch(() => {});
      this.#track(() => next);
    }
    return result;
  }

  /** the worker announcement in flight (see #tx) */
  #announcing: Promise<void> = Promise.resolve();

  async #announceWorkers(ids: Set<string>): Promise<void> {
    for (const id of ids) {
      const w = await this.store.read.getWorker(id);
      if (w) this.hub.publishWorker(w);
    }
  }

  #apply(fx: Effects): void {
    for (const s of fx.created) this.o.sessionCreated(s);
    for (const e of fx.events) this.hub.publish(e);
    if (fx.earliestTimer !== null) this.#scheduler.notify(fx.earliestTimer);
    for (const key of fx.dirtyPools) this.positions.schedule(key);
    for (const key of fx.refills) this.#scheduleRefill(key);
    for (const task of fx.tasks) this.#track(task);
  }

  #track(task: () => void | Promise<void>): void {
    const p = (async () => task())().catch((err) => this.o.log.error({ err }, 'after-commit task failed'));
    this.#pendingTasks.add(p);
    void p.finally(() => this.#pendingTasks.delete(p));
  }

  #event(fx: Effects, sessionId: string, e: DistributiveOmit<SessionEvent, 'sessionId' | 'at'>): void {
    fx.event({ ...e, sessionId, at: new Date(this.clock.now()).toISOString() } as SessionEvent);
  }

  async #setTimer(r: Repo, fx: Effects, sessionId: string, kind: TimerKind, dueAt: number): Promise<void> {
    await r.setTimer(sessionId, kind, dueAt);
    fx.timerSet(dueAt);
  }

  // ------------------------------------------------------------------ projects

  /** Another server created or changed the project: its settings are read again. */
  async #reloadProject(id: string): Promise<void> {
    const before = this.#projects.get(id)?.settings;
    const record = await this.store.read.getProject(id);
    if (!record) return;
    this.#projects.set(id, record);
    if (before && narrows(before, record.settings)) this.#sweepDisallowed(before, record.settings);
  }

  /** The project is committed: this server's cache has it, and the other servers are told to read it. */
  #projectChanged(record: ProjectRecord): void {
    this.#projects.set(record.settings.id, record);
    if (this.o.bus.shared) this.o.bus.send({ kind: 'project', projectId: record.settings.id });
  }

  #project(id: string): ProjectSettings {
    const p = this.#projects.get(id);
    if (!p) throw new UsherError('NOT_FOUND', `no project "${id}"`);
    return p.settings;
  }

  getProject(id: string): ProjectRecord {
    const p = this.#projects.get(id);
    if (!p) throw new UsherError('NOT_FOUND', `no project "${id}"`);
    return p;
  }

  /** The project, if there is one by that id. */
  findProject(id: string): ProjectRecord | undefined {
    return this.#projects.get(id);
  }

  #checkRooms(settings: ProjectSettings): ProjectSettings {
    if (settings.rooms === 'livekit' && !this.o.livekit)
      throw new UsherError(
        'BAD_REQUEST',
        `project "${settings.id}" has rooms: livekit, but this server has no LiveKit settings: set livekit.url, livekit.apiKey and livekit.apiSecret (docs/livekit.md), or use rooms: builtin`,
      );
    return settings;
  }

  /** LiveKit mode for the session's project, or null when its room is Usher's own. */
  liveKitFor(projectId: string): LiveKitMode | null {
    return this.#projects.get(projectId)?.settings.rooms === 'livekit' ? this.o.livekit : null;
  }

  listProjects(): ProjectRecord[] {
    return [...this.#projects.values()].sort((a, b) => a.settings.id.localeCompare(b.settings.id));
  }

  async createProject(input: ProjectInput): Promise<ProjectRecord> {
    if (!input.id) throw new UsherError('BAD_REQUEST', 'body.id is required to create a project');
    const settings = this.#checkRooms(validateProject(null, input));
    const now = this.clock.now();
    const record: ProjectRecord = { settings, createdAt: now, updatedAt: now };
    await this.#tx(async (r, fx) => {
      if (!(await r.insertProject(record)))
        throw new UsherError('CONFLICT', `project "${settings.id}" already exists`);
      if (settings.enabled)
        for (const region of Object.keys(settings.regions)) await this.#dispatch(r, fx, settings, region);
    });
    // the cache changes only once the change is committed
    this.#projectChanged(record);
    return record;
  }

  /** Updates settings; disabling ends every live and queued session with 4000. */
  async updateProject(id: string, input: ProjectInput): Promise<ProjectRecord> {
    if (input.id !== undefined && input.id !== id)
      throw new UsherError('BAD_REQUEST', "body.id cannot change a project's id");
    let before: ProjectSettings | undefined;
    const record = await this.#tx(async (r, fx) => {
      // changes to one project queue here (two at once would each write over what the other changed)
      const current = await r.getProject(id, { lock: true });
      if (!current) throw new UsherError('NOT_FOUND', `no project "${id}"`);
      before = current.settings;
      const settings = this.#checkRooms(validateProject(current.settings, input));
      const record: ProjectRecord = { ...current, settings, updatedAt: this.clock.now() };
      await r.updateProject(settings, record.updatedAt);
      if (narrows(current.settings, settings)) {
        const open = await r.listSessions({
          projectId: id,
          states: settings.enabled ? [...PENDING_STATES] : [...OPEN_SESSION_STATES],
          limit: 1_000_000,
        });
        for (const s of open) await this.#endDisallowed(r, fx, settings, s.id);
      }
      if (settings.enabled)
        for (const region of Object.keys(settings.regions)) await this.#dispatch(r, fx, settings, region);
      return record;
    });
    this.#projectChanged(record);
    // an admission that read this server's project before it changed may commit after it: looked for again
    if (before && narrows(before, record.settings)) this.#sweepDisallowed(before, record.settings);
    return record;
  }

  /**
   * Ends a session that its project's settings no longer allow, if it is still open: any (4000) when the project
   * is disabled, one still waiting when it no longer runs its region, or its agent type (4002).
   */
  async #endDisallowed(r: Repo, fx: Effects, settings: ProjectSettings, sessionId: string): Promise<void> {
    const s = await r.getSession(sessionId, { lock: true });
    if (!s || s.state === 'ended' || s.state === 'ending') return;
    if (!settings.enabled) await this.#end(r, fx, s, 'project_disabled', 'project:disabled');
    else if (PENDING_STATES.includes(s.state) && unrunnableReason(settings, s.region, s.agentType) !== null)
      await this.#end(r, fx, s, 'app_not_found', 'project:changed');
  }

  /**
   * After a project changed (on this server, or on another: the bus), ends in the background what its settings
   * no longer allow, which an admission on the settings it knew before may have let in. A first transaction
   * waits for the admissions in flight (it takes the pools' locks, which they hold) and reads the project as it
   * now stands and what is open; each session then ends in a transaction of its own.
   */
  #sweepDisallowed(before: ProjectSettings, after: ProjectSettings): void {
    const regions = [...new Set([...Object.keys(before.regions), ...Object.keys(after.regions)])].sort();
    this.#track(async () => {
      try {
        const found = await this.#tx(async (r) => {
          for (const region of regions) await r.lockPool(after.id, region);
          const now = (await r.getProject(after.id))?.settings;
          if (!now || !narrows(before, now)) return null;
          const states = now.enabled ? [...PENDING_STATES] : [...OPEN_SESSION_STATES];
          const open = await r.listSessions({ projectId: now.id, states, limit: 1_000_000 });
          return { settings: now, ids: open.map((s) => s.id) };
        });
        if (!found) return;
        for (const id of found.ids) await this.#tx((r, fx) => this.#endDisallowed(r, fx, found.settings, id));
      } catch (err) {
        this.o.log.error(
          { err, projectId: after.id },
          'ending the sessions a changed project no longer allows failed',
        );
      }
    });
  }

  // ------------------------------------------------------------------ sessions

  /**
   * Admits a session: refused ones end at once (4000, 4001, 4002) and the error says why; the others are
   * seated on a ready worker, given a new one, or queued. Requests for the same pool that arrive together are
   * admitted in one transaction (group commit): one lock, one commit and one dispatch for the batch.
   */
  async createSession(req: CreateSessionRequest): Promise<SessionWithQueue> {
    if (this.#draining)
      throw new UsherError(
        'UNAVAILABLE',
        `server "${this.o.serverId}" is draining and takes no new sessions: send the request to another server`,
      );
    const project = this.#project(req.projectId);
    const region = req.region ?? project.defaultRegion;
    return this.#admissions.submit(poolKey(project.id, region), req);
  }

  /** One batch of admissions for one pool: one transaction, one lock, one dispatch. */
  async #admitBatch(key: string, reqs: CreateSessionRequest[]): Promise<Outcome<SessionWithQueue>[]> {
    const { projectId, region } = parsePoolKey(key);
    // the transaction holds the pool's lock from its start
    const outcomes = await this.#tx(
      async (r, fx) => {
        const project = this.#project(projectId);
        // nobody waiting: the batch may seat on ready workers, fetched once for all of it
        const counter = await r.seatingView(project.id, region, reqs.length);
        const out = [];
        for (const req of reqs) out.push(await this.#admitOne(r, fx, project, region, req, counter));
        if (counter.waiting > 0) {
          await this.#dispatch(r, fx, project, region); // seats what it can, refills the warm pool
          // dispatch may have seated sessions of this batch that were queued
          for (const o of out)
            if (o.session.state === 'queued') o.session = (await r.getSession(o.session.id))!;
        } else fx.refill(project.id, region); // nobody queued: the warm pool is all dispatch would see to
        return out;
      },
      { pool: { projectId, region } },
    );
    // committed: from here on nothing may fail the batch (the batcher would admit each request again)
    return Promise.all(
      outcomes.map(async ({ session, refusal }): Promise<Outcome<SessionWithQueue>> => {
        if (!refusal) return { ok: true, value: await this.#withQueueIfKnown(session) };
        const details = { sessionId: session.id, closeCode: session.endCode, endReason: session.endReason };
        return { ok: false, error: new UsherError(refusal.code, refusal.message, details) };
      }),
    );
  }

  async #admitOne(
    r: Repo,
    fx: Effects,
    project: ProjectSettings,
    region: string,
    req: CreateSessionRequest,
    counter: { waiting: number; ready: WorkerRecord[] },
  ): Promise<{ session: SessionRecord; refusal: UsherError | null }> {
    const now = this.clock.now();
    const s = newSessionRecord(
      {
        id: newId('s', now),
        projectId: project.id,
        region,
        agentType: req.agentType ?? null,
        config: req.config ?? {},
      },
      now,
    );
    await r.insertSession(s);
    fx.created.push(s);
    await r.addTransition(s.id, { from: null, to: 'requesting', at: now, cause: 'api:create' });
    this.#event(fx, s.id, {
      type: 'session.status_changed',
      status: 'requesting',
      previous: null,
      cause: 'api:create',
    });

    const unrunnable = unrunnableReason(project, region, s.agentType);
    let refusal: { reason: EndReason; error: UsherError } | null = null;
    if (!project.enabled) {
      refusal = {
        reason: 'project_disabled',
        error: new UsherError('PROJECT_DISABLED', `project "${project.id}" is disabled`),
      };
    } else if (unrunnable) {
      refusal = { reason: 'app_not_found', error: new UsherError('APP_NOT_FOUND', unrunnable) };
    }
    if (refusal)
      return { session: await this.#end(r, fx, s, refusal.reason, 'admission'), refusal: refusal.error };
    // nobody waiting and a worker to hand: requesting → connecting, without queueing
    if (counter.waiting === 0) {
      const seated = await this.#seatNow(r, fx, project, s, counter.ready);
      if (seated) return { session: seated, refusal: null };
    }
    // a full queue refuses only those who would wait in it (maxQueueLength 0: seat at once, or not at all)
    if (counter.waiting >= project.maxQueueLength) {
      const error = new UsherError(
        'QUEUE_FULL',
        `the queue of project "${project.id}" in region "${region}" is full (maxQueueLength ${project.maxQueueLength})`,
      );
      return { session: await this.#end(r, fx, s, 'queue_full', 'admission'), refusal: error };
    }
    const queued = await this.#transition(r, fx, s, 'queued', 'admission', { queuedAt: now });
    await this.#setTimer(r, fx, s.id, TimerKind.Pending, s.createdAt + project.timeouts.pendingMs);
    counter.waiting++;
    return { session: queued, refusal: null };
  }

  /** withQueue, or the session without its place in line when that cannot be read now (it comes as an event). */
  async #withQueueIfKnown(s: SessionRecord): Promise<SessionWithQueue> {
    try {
      return await this.withQueue(s);
    } catch (err) {
      this.o.log.warn({ err, sessionId: s.id }, 'the queue position of a new session could not be read');
      return { session: s, queuePosition: null, estimatedWaitMs: null };
    }
  }

  /** A session with its queue position and estimated wait (while queued). */
  async withQueue(s: SessionRecord): Promise<SessionWithQueue> {
    const q = await this.positions.positionOf(s);
    return { session: s, queuePosition: q?.position ?? null, estimatedWaitMs: q?.estimatedWaitMs ?? null };
  }

  async getSession(id: string): Promise<SessionRecord> {
    const s = await this.store.read.getSession(id);
    if (!s) throw new UsherError('NOT_FOUND', `no session "${id}"`);
    return s;
  }

  /** Ends a session on request: pending ones end at once (canceled), seated ones go through `ending`. */
  async endSession(id: string, cause: string): Promise<SessionRecord> {
    return this.#tx(async (r, fx) => {
      const s = await this.#lockSession(r, id);
      if (s.state === 'ended' || s.state === 'ending') {
        throw new UsherError('ILLEGAL_TRANSITION', `session "${id}" is already ${s.state}`);
      }
      return this.#end(r, fx, s, PENDING_STATES.includes(s.state) ? 'canceled' : 'completed', cause);
    });
  }

  async pauseSession(id: string, cause: string): Promise<SessionRecord> {
    return this.#tx(async (r, fx) => {
      const s = await this.#lockSession(r, id);
      // a live session pauses; `connecting → paused` is only auto-restart's way back to a pause (#begin)
      if (s.state !== 'active' && s.state !== 'idle')
        throw new UsherError(
          'ILLEGAL_TRANSITION',
          `session "${id}" is ${s.state}; only an active or idle session can be paused`,
        );
      const p = this.#project(s.projectId);
      const paused = await this.#transition(r, fx, s, 'paused', cause);
      await this.#setTimer(r, fx, s.id, TimerKind.Paused, this.clock.now() + p.timeouts.pausedMs);
      this.#activityDue.delete(s.id);
      this.#notifyWorker(fx, paused, { type: 'session_state', sessionId: s.id, state: 'paused' });
      return paused;
    });
  }

  async resumeSession(id: string, cause: string): Promise<SessionRecord> {
    return this.#tx(async (r, fx) => {
      const s = await this.#lockSession(r, id);
      if (s.state !== 'paused')
        throw new UsherError(
          'ILLEGAL_TRANSITION',
          `session "${id}" is ${s.state}, not paused; only a paused session can resume`,
        );
      const resumed = await this.#enterActive(r, fx, s, cause);
      this.#notifyWorker(fx, resumed, { type: 'session_state', sessionId: s.id, state: 'active' });
      return resumed;
    });
  }

  /** Viewer input: keeps AFK away, and brings an idle session back to active. */
  async recordInput(id: string): Promise<void> {
    await this.#recordActivity(id, 'input');
  }

  /** Any room activity: keeps an agent session's idle timeout away. */
  async recordActivity(id: string): Promise<void> {
    await this.#recordActivity(id, 'activity');
  }

  /**
   * Whether the activity changes nothing: the session is active and its deadline moved less than a second ago,
   * or this kind of activity does not concern it (room messages do not count against AFK).
   */
  #activityKnown(id: string, kind: 'input' | 'activity', now: number): boolean {
    const known = this.#activityDue.get(id);
    return !!known && ((known.inputOnly && kind !== 'input') || now + known.spanMs - known.due < 1000);
  }

  async #recordActivity(id: string, kind: 'input' | 'activity'): Promise<void> {
    const now = this.clock.now();
    // nothing to write and nothing to read
    if (this.#activityKnown(id, kind, now)) return;
    // what arrives while a write for the session is on its way shares it: it moves the deadline to now as well
    const key = `${kind}:${id}`;
    const running = this.#activityWrites.get(key);
    if (running) return running;
    const write = this.#writeActivity(id, kind, now).finally(() => this.#activityWrites.delete(key));
    this.#activityWrites.set(key, write);
    return write;
  }

  async #writeActivity(id: string, kind: 'input' | 'activity', now: number): Promise<void> {
    await this.#tx(async (r, fx) => {
      const s = await r.getSession(id, { lock: true });
      if (!s) return;
      if (s.state === 'idle' && kind === 'input') {
        await this.#enterActive(r, fx, s, 'viewer:input');
        return;
      }
      const a = activityTimer(this.#project(s.projectId));
      if (s.state !== 'active' || !a || (a.inputOnly && kind !== 'input')) return;
      await this.#pushActivity(r, fx, s.id, a, now);
    });
  }

  /** Moves an active session's activity deadline to now + its span. */
  async #pushActivity(
    r: Repo,
    fx: Effects,
    id: string,
    a: NonNullable<ReturnType<typeof activityTimer>>,
    now: number,
  ): Promise<void> {
    const due = now + a.spanMs;
    await this.#setTimer(r, fx, id, a.timer, due);
    this.#activityDue.set(id, { ...a, due });
  }

  /** The session's viewer is connected to this server: its reconnect window, if open, closes. */
  async #viewerHere(r: Repo, id: string): Promise<SessionRecord | null> {
    const s = await r.getSession(id, { lock: true });
    if (!s || s.state === 'ended' || s.state === 'ending') return null;
    await r.updateSession(id, {
      viewerAttached: true,
      viewerServer: this.o.serverId,
      updatedAt: this.clock.now(),
    });
    await r.clearTimer(id, TimerKind.Reconnect);
    return s;
  }

  /**
   * The viewers whose connection was on a server that went away (this one before a restart, or a dead one):
   * their reconnect windows start now.
   */
  async #releaseViewers(wasOn: (server: string | null) => boolean): Promise<void> {
    await this.#tx(async (r, fx) => {
      const open = await r.listSessions({
        states: ['queued', 'connecting', 'active', 'idle', 'paused'],
        limit: 1_000_000,
      });
      const now = this.clock.now();
      for (const s of open) {
        if (!s.viewerAttached || !wasOn(s.viewerServer)) continue;
        await r.updateSession(s.id, { viewerAttached: false, viewerServer: null, updatedAt: now });
        const p = this.#project(s.projectId);
        await this.#setTimer(r, fx, s.id, TimerKind.Reconnect, now + p.timeouts.reconnectWindowMs);
      }
    });
  }

  /** The viewer's connection came up (first socket) or came back (within the reconnect window). */
  async viewerAttached(id: string): Promise<void> {
    const n = (this.#viewers.get(id) ?? 0) + 1;
    this.#viewers.set(id, n);
    if (n > 1) return;
    try {
      const over = await this.#tx(async (r, fx) => {
        const s = await this.#viewerHere(r, id);
        if (!s) return true;
        const p = this.#project(s.projectId);
        if (s.state === 'connecting' && s.workerStarted && needsViewerToStart(p)) {
          await this.#begin(r, fx, { ...s, viewerAttached: true }, 'viewer:attached');
        }
        return false;
      });
      // the session is ending or ended: its sockets close without detaching, so this one is not counted
      if (over) this.#viewerGone(id);
    } catch (err) {
      // the socket is refused: it does not count (the viewer's next try attaches it for real)
      this.#viewerGone(id);
      throw err;
    }
  }

  /** How many viewer sockets of the session this server has open (tests and diagnostics). */
  viewersHere(sessionId: string): number {
    return this.#viewers.get(sessionId) ?? 0;
  }

  /** One viewer socket of the session fewer on this server; how many are left. */
  #viewerGone(id: string): number {
    const n = Math.max(0, (this.#viewers.get(id) ?? 0) - 1);
    if (n > 0) this.#viewers.set(id, n);
    else this.#viewers.delete(id);
    return n;
  }

  /**
   * The viewer's connection closed. 1000 ends the session (a pending one is canceled), 1001 too (the viewer
   * left, seated or waiting), and 4004 (the Web SDK's own AFK timeout: afk_timeout); anything else opens the
   * reconnect window.
   */
  viewerDetached(id: string, code: number): Promise<void> {
    // settled() waits for it: the socket's close handler does not
    const done = this.#viewerDetached(id, code);
    const tracked = done.catch(() => {});
    this.#pendingTasks.add(tracked);
    void tracked.finally(() => this.#pendingTasks.delete(tracked));
    return done;
  }

  async #viewerDetached(id: string, code: number): Promise<void> {
    if (this.#viewerGone(id) > 0) return;
    await this.#tx(async (r, fx) => {
      const s = await r.getSession(id, { lock: true });
      if (!s || s.state === 'ended' || s.state === 'ending') return;
      // the viewer came back on another server meanwhile: it is attached there
      if (s.viewerServer && s.viewerServer !== this.o.serverId) return;
      const now = this.clock.now();
      await r.updateSession(id, { viewerAttached: false, viewerServer: null, updatedAt: now });
      if (code === 1000 || code === 1001 || code === CloseCode.Timeout) {
        // 1001 is a tab closed (or a browser quit), whether the viewer was seated or waiting; 4004 is the Web
        // SDK's own AFK threshold run out
        const pending = PENDING_STATES.includes(s.state);
        const reason: EndReason =
          code === 1001
            ? 'viewer_left'
            : pending
              ? 'canceled'
              : code === CloseCode.Timeout
                ? 'afk_timeout'
                : 'completed';
        await this.#end(r, fx, s, reason, `viewer:closed:${code}`);
        return;
      }
      const p = this.#project(s.projectId);
      await this.#setTimer(r, fx, id, TimerKind.Reconnect, now + p.timeouts.reconnectWindowMs);
    });
  }

  /**
   * A page of the session's transcript, newest first and returned oldest first; it includes every message
   * relayed before the call.
   */
  async messages(
    sessionId: string,
    q: { limit: number; beforeUs?: number; beforeId?: string; includeDebug: boolean },
  ): Promise<StoredPage> {
    const page = await this.recorder.pageRows({ sessionId, ...q });
    // an empty page may be an unknown session: 404 then
    if (page.rows.length === 0) await this.getSession(sessionId);
    return page;
  }

  async issueSessionToken(
    s: SessionRecord,
    role: 'viewer' | 'user' | 'observer' | 'agent',
    identity: string,
  ): Promise<string> {
    return this.o.tokens.sign({ role, sid: s.id, pid: s.projectId, idn: identity }, this.o.sessionTokenTtlMs);
  }

  /** The AFK warning of an idle session as it stands now (the time left to its disconnect), or null. */
  async afkWarningOf(sessionId: string): Promise<SessionEventOf<'session.afk_warning'> | null> {
    const timer = (await this.store.read.timersForSession(sessionId)).find(
      (x) => x.kind === TimerKind.AfkDisconnect,
    );
    if (!timer) return null;
    const now = this.clock.now();
    return {
      type: 'session.afk_warning',
      sessionId,
      at: new Date(now).toISOString(),
      disconnectAt: new Date(timer.dueAt).toISOString(),
      remainingMs: Math.max(0, timer.dueAt - now),
    };
  }

  /** Whether a participant's token is past half its life: the session socket then hands over a fresh one. */
  sessionTokenDue(t: VerifiedToken): boolean {
    return !!t.sid && t.exp * 1000 - this.clock.now() <= this.o.sessionTokenTtlMs / 2;
  }

  /**
   * A participant's token made again with a full lifetime: the same session, role and identity. Someone in a
   * session longer than a token's life can still reconnect and call the API with it.
   */
  async renewSessionToken(t: VerifiedToken & { sid: string }): Promise<VerifiedToken & { token: string }> {
    const claims = { role: t.role, sid: t.sid, pid: t.pid, ...(t.idn ? { idn: t.idn } : {}) };
    const token = await this.o.tokens.sign(claims, this.o.sessionTokenTtlMs);
    return { ...claims, token, exp: (await this.o.tokens.verify(token)).exp };
  }

  // ------------------------------------------------------------------ transitions

  async #lockSession(r: Repo, id: string): Promise<SessionRecord> {
    const s = await r.getSession(id, { lock: true });
    if (!s) throw new UsherError('NOT_FOUND', `no session "${id}"`);
    return s;
  }

  #assertTransition(s: SessionRecord, to: SessionState): void {
    if (!canTransition(s.state, to)) {
      throw new UsherError('ILLEGAL_TRANSITION', `session "${s.id}" is ${s.state}; it cannot become ${to}`);
    }
  }

  /** Applies one legal transition: the row, the timeline, the state's timers and the event. */
  async #transition(
    r: Repo,
    fx: Effects,
    s: SessionRecord,
    to: SessionState,
    cause: string,
    patch: Partial<SessionRecord> = {},
  ): Promise<SessionRecord> {
    this.#assertTransition(s, to);
    const now = this.clock.now();
    const next: SessionRecord = { ...s, ...patch, state: to, updatedAt: now };
    await r.updateSession(s.id, { ...patch, state: to, updatedAt: now });
    await r.addTransition(s.id, { from: s.state, to, at: now, cause });
    // a requesting session has no timers yet (its pending timer is set when it queues)
    const leaving =
      s.state === 'requesting' ? [] : STATE_TIMERS[s.state].filter((k) => !STATE_TIMERS[to].includes(k));
    if (to === 'ended' || to === 'ending') await r.clearTimers(s.id);
    else await r.clearTimers(s.id, leaving);
    if (PENDING_STATES.includes(s.state) || PENDING_STATES.includes(to))
      fx.poolChanged(s.projectId, s.region);
    const event: DistributiveOmit<SessionEvent, 'sessionId' | 'at'> =
      to === 'ended'
        ? {
            type: 'session.status_changed',
            status: to,
            previous: s.state,
            cause,
            endCode: next.endCode!,
            endReason: next.endReason!,
            outcome: next.outcome!,
          }
        : { type: 'session.status_changed', status: to, previous: s.state, cause };
    this.#event(fx, s.id, event);
    if (to === 'ended') {
      const livekit = this.liveKitFor(s.projectId);
      if (livekit) fx.after(() => livekit.close(s.id));
    }
    if (to === 'ended' || to === 'ending') {
      this.#activityDue.delete(s.id);
      const agent = s.workerId;
      if (agent && s.workerStarted) fx.after(() => this.rooms.leftEverywhere(s.id, agent));
    }
    return next;
  }

  /**
   * The worker has the session and it may begin: `active`, or `paused` again for one that was paused when its
   * worker died (auto-restart kept its paused deadline).
   */
  async #begin(r: Repo, fx: Effects, s: SessionRecord, cause: string): Promise<SessionRecord> {
    if (s.restarts > 0 && (await r.getTimer(s.id, TimerKind.Paused))) {
      const paused = await this.#transition(r, fx, s, 'paused', cause);
      this.#notifyWorker(fx, paused, { type: 'session_state', sessionId: s.id, state: 'paused' });
      return paused;
    }
    return this.#enterActive(r, fx, s, cause);
  }

  /** connecting/idle/paused → active, with the timers of an active session. */
  async #enterActive(r: Repo, fx: Effects, s: SessionRecord, cause: string): Promise<SessionRecord> {
    const p = this.#project(s.projectId);
    const now = this.clock.now();
    const first = s.activeAt === null;
    const next = await this.#transition(r, fx, s, 'active', cause, first ? { activeAt: now } : {});
    if (first && p.timeouts.maxRuntimeMs > 0)
      await this.#setTimer(r, fx, s.id, TimerKind.MaxRuntime, now + p.timeouts.maxRuntimeMs);
    const a = activityTimer(p);
    if (a) await this.#pushActivity(r, fx, s.id, a, now);
    return next;
  }

  /**
   * Ends a session for a reason. Pending sessions hold nothing and end at once; seated ones go to `ending`,
   * their worker is told to shut down, and they end when it is gone (or when the 60 s limit forces it).
   */
  async #end(
    r: Repo,
    fx: Effects,
    s: SessionRecord,
    reason: EndReason,
    cause: string,
  ): Promise<SessionRecord> {
    const code = END_REASONS[reason].code;
    if (s.state === 'ended' || s.state === 'ending') return s;
    if (PENDING_STATES.includes(s.state)) {
      return this.#transition(r, fx, s, 'ended', cause, this.#endFields(code, reason));
    }
    const pendingEnd = { code, reason, cause };
    const ending = await this.#transition(r, fx, s, 'ending', cause, { pendingEnd });
    await this.#setTimer(r, fx, s.id, TimerKind.Ending, this.clock.now() + ENDING_TIMEOUT_MS);
    const worker = s.workerId ? await r.getWorker(s.workerId, { lock: true }) : undefined;
    if (!worker || worker.state === 'stopped') return this.#finishEnding(r, fx, ending, `${cause}:no-worker`);
    const p = this.#project(s.projectId);
    const graceMs = Math.min(p.timeouts.shutdownGraceMs, ENDING_TIMEOUT_MS);
    const reuse = this.#reusable(p, worker);
    this.#sendToWorker(fx, worker.id, { type: 'shutdown', sessionId: s.id, graceMs, reason, reuse });
    if (!reuse) {
      await r.updateWorker(worker.id, { state: 'stopping', updatedAt: this.clock.now() });
      this.#stopWorkerAfterCommit(fx, worker, graceMs);
    }
    return ending;
  }

  #endFields(code: CloseCode, reason: EndReason): Partial<SessionRecord> {
    return {
      endCode: code,
      endReason: reason,
      outcome: outcomeOf(code),
      endedAt: this.clock.now(),
      queuedAt: null,
      pendingEnd: null,
    };
  }

  /** ending → ended; the worker goes back to the pool or is recycled, and the pool is dispatched. */
  async #finishEnding(r: Repo, fx: Effects, s: SessionRecord, cause: string): Promise<SessionRecord> {
    const end = s.pendingEnd ?? { code: 1000 as CloseCode, reason: 'completed' as EndReason };
    const ended = await this.#transition(r, fx, s, 'ended', cause, this.#endFields(end.code, end.reason));
    const p = this.#project(s.projectId);
    if (s.workerId) {
      const w = await r.getWorker(s.workerId, { lock: true });
      if (w && w.state !== 'stopped' && w.sessionId === s.id) {
        if (this.#reusable(p, w) && w.state !== 'stopping') {
          await r.updateWorker(w.id, {
            state: 'ready',
            sessionId: null,
            readyAt: this.clock.now(),
            updatedAt: this.clock.now(),
          });
        } else if (w.state !== 'stopping') {
          await r.updateWorker(w.id, { state: 'stopping', updatedAt: this.clock.now() });
          this.#stopWorkerAfterCommit(fx, w, 0);
        }
      }
    }
    this.positions.sessionEnded(s.projectId, s.region);
    await this.#dispatch(r, fx, p, s.region);
    return ended;
  }

  #reusable(p: ProjectSettings, w: WorkerRecord): boolean {
    return (p.reuseWorkers || w.driver === 'external') && !w.draining;
  }

  // ------------------------------------------------------------------ timers

  async #onTimer(t: TimerRecord): Promise<void> {
    await this.#tx(async (r, fx) => {
      const s = await r.getSession(t.sessionId, { lock: true });
      const current = await r.getTimer(t.sessionId, t.kind);
      if (!current || current.dueAt > this.clock.now()) return; // pushed back or handled elsewhere
      await r.clearTimer(t.sessionId, t.kind);
      if (!s || s.state === 'ended') return;
      const p = this.#project(s.projectId);
      const cause = `timer:${t.kind}`;
      switch (t.kind) {
        case TimerKind.Pending:
          if (PENDING_STATES.includes(s.state)) await this.#end(r, fx, s, 'pending_timeout', cause);
          return;
        case TimerKind.Connecting:
          if (s.state === 'connecting') {
            this.o.log.error(
              { sessionId: s.id, projectId: s.projectId, workerId: s.workerId },
              'operator alert: connecting timeout',
            );
            await this.#end(r, fx, s, 'connecting_timeout', cause);
          }
          return;
        case TimerKind.SeatHold:
          if (s.state === 'connecting') await this.#end(r, fx, s, 'seat_expired', cause);
          return;
        case TimerKind.AfkWarning:
          if (s.state === 'active' && usesAfk(p)) {
            await this.#transition(r, fx, s, 'idle', cause);
            const disconnectAt = this.clock.now() + p.timeouts.afkDisconnectMs;
            await this.#setTimer(r, fx, s.id, TimerKind.AfkDisconnect, disconnectAt);
            this.#activityDue.delete(s.id);
            this.#event(fx, s.id, {
              type: 'session.afk_warning',
              disconnectAt: new Date(disconnectAt).toISOString(),
              remainingMs: p.timeouts.afkDisconnectMs,
            });
          }
          return;
        case TimerKind.AfkDisconnect:
          if (s.state === 'idle') await this.#end(r, fx, s, 'afk_timeout', cause);
          return;
        case TimerKind.Idle:
          if (s.state === 'active' || s.state === 'idle') await this.#end(r, fx, s, 'idle_timeout', cause);
          return;
        case TimerKind.Paused:
          // connecting: paused as its worker died, and not yet back (#restartOnFreshWorker)
          if (s.state === 'paused' || s.state === 'connecting')
            await this.#end(r, fx, s, 'paused_timeout', cause);
          return;
        case TimerKind.MaxRuntime:
          if (s.state !== 'ending') await this.#end(r, fx, s, 'max_runtime', cause);
          return;
        case TimerKind.Reconnect:
          if (s.state !== 'ending' && !s.viewerAttached) await this.#end(r, fx, s, 'reconnect_failed', cause);
          return;
        case TimerKind.Ending:
          if (s.state === 'ending') {
            const w = s.workerId ? await r.getWorker(s.workerId) : undefined;
            if (w && w.state !== 'stopped') {
              await r.updateWorker(w.id, { state: 'stopping', updatedAt: this.clock.now() });
              this.#stopWorkerAfterCommit(fx, w, 0);
            }
            await this.#finishEnding(r, fx, s, cause);
          }
          return;
      }
    });
  }

  // ------------------------------------------------------------------ queue and pools

  /**
   * Seats queued sessions of one pool on ready workers in FIFO order, starts workers for the rest while the
   * pool is below `max`, and refills the warm pool to `min`. Runs inside the caller's transaction.
   */
  async #dispatch(r: Repo, fx: Effects, p: ProjectSettings, region: string): Promise<void> {
    const pool = p.regions[region];
    if (!pool || !p.worker || !p.enabled) return;
    await r.lockPool(p.id, region);
    // at most `max` sessions can be seated at once, so that many from the head of the queue is enough
    const queue = await r.queuedSessionIds(p.id, region, pool.max);
    let cursor = 0;
    const nextQueued = async (): Promise<SessionRecord | null> => {
      while (cursor < queue.length) {
        const s = await r.getSession(queue[cursor++]!, { lock: true });
        if (s?.state === 'queued') return s;
      }
      return null;
    };
    // 1. ready workers, longest ready first; 2. workers already starting for no one
    const available = queue.length === 0 ? [] : await r.readyWorkers(p.id, region, queue.length);
    if (available.length < queue.length) {
      available.push(...(await r.unboundStartingWorkers(p.id, region, queue.length - available.length)));
    }
    for (const w of available) {
      const s = await nextQueued();
      if (!s) break;
      await this.#seat(r, fx, p, s, w);
    }
    const counts = await r.poolCounts(p.id, region);
    let total = poolTotal(counts);
    // a draining server starts no workers: the others refill the pools
    const canStart = p.worker.driver !== 'external' && !this.#inBackoff(p.id, region) && !this.#draining;
    // 3. a new worker for each session still waiting, while the pool is below max
    while (canStart && total < pool.max) {
      const s = await nextQueued();
      if (!s) break;
      const w = await this.#startWorker(r, fx, p, region, s.id);
      await this.#seat(r, fx, p, s, w, true);
      total++;
    }
    // 4. keep `min` workers warm: ready, or on their way for no one
    let warm = (counts.ready ?? 0) + (counts.startingUnbound ?? 0);
    while (canStart && warm < pool.min && total < pool.max) {
      await this.#startWorker(r, fx, p, region, null);
      warm++;
      total++;
    }
  }

  /** Seats a new session at once on a ready worker, a starting one, or a new one if below max; null if none. */
  async #seatNow(
    r: Repo,
    fx: Effects,
    p: ProjectSettings,
    s: SessionRecord,
    ready: WorkerRecord[],
  ): Promise<SessionRecord | null> {
    const w = ready.shift() ?? (await r.unboundStartingWorkers(p.id, s.region, 1))[0];
    if (w) return this.#seat(r, fx, p, s, w);
    const pool = p.regions[s.region]!;
    const counts = await r.poolCounts(p.id, s.region);
    const total = poolTotal(counts);
    if (p.worker?.driver === 'external' || total >= pool.max || this.#inBackoff(p.id, s.region)) return null;
    const fresh = await this.#startWorker(r, fx, p, s.region, s.id);
    return this.#seat(r, fx, p, s, fresh, true);
  }

  /** queued (or requesting) → connecting on a worker (ready, starting, or just started for this session). */
  async #seat(
    r: Repo,
    fx: Effects,
    p: ProjectSettings,
    s: SessionRecord,
    w: WorkerRecord,
    fresh = false,
  ): Promise<SessionRecord> {
    const now = this.clock.now();
    const seated = await this.#transition(
      r,
      fx,
      s,
      'connecting',
      `${s.state === 'requesting' ? 'admission' : 'dispatch'}:${w.state === 'ready' ? 'ready-worker' : fresh ? 'new-worker' : 'starting-worker'}`,
      {
        workerId: w.id,
        queuedAt: null,
        workerStarted: false,
      },
    );
    await this.#setTimer(r, fx, s.id, TimerKind.Connecting, now + p.timeouts.connectingMs);
    if (w.state === 'ready') {
      await r.updateWorker(w.id, { state: 'reserved', sessionId: s.id, updatedAt: now });
      await this.#sendAssignment(fx, seated, w.id);
    } else {
      await r.updateWorker(w.id, { sessionId: s.id, updatedAt: now });
    }
    this.positions.seated(s);
    return seated;
  }

  async #startWorker(
    r: Repo,
    fx: Effects,
    p: ProjectSettings,
    region: string,
    sessionId: string | null,
  ): Promise<WorkerRecord> {
    const now = this.clock.now();
    const driverName = p.worker!.driver;
    const w = newWorkerRecord(
      {
        id: newId('w', now),
        projectId: p.id,
        region,
        driver: driverName,
        sessionId,
        handle: null,
        serverId: this.o.serverId,
      },
      now,
    );
    await r.insertWorker(w);
    fx.after(async () => {
      const driver = this.o.drivers[driverName];
      try {
        if (!driver) throw new Error(`no "${driverName}" driver is configured on this server`);
        const token = await this.#workerToken(w.id, p.id, true);
        const env: Record<string, string> = {
          [WORKER_ENV.url]: this.o.workerUrl(),
          [WORKER_ENV.token]: token,
          [WORKER_ENV.signallingUrl]: `${this.o.signallingUrl()}?token=${token}`,
          [WORKER_ENV.workerId]: w.id,
          [WORKER_ENV.projectId]: p.id,
          [WORKER_ENV.region]: region,
        };
        if (sessionId) {
          env[WORKER_ENV.sessionId] = sessionId;
          env[WORKER_ENV.sessionToken] = await this.#agentToken(sessionId, p.id, w.id);
        }
        const { handle } = await driver.start({
          workerId: w.id,
          projectId: p.id,
          region,
          spec: p.worker as Record<string, unknown>,
          env,
        });
        await this.store.read.updateWorker(w.id, { handle, updatedAt: this.clock.now() });
        // the session may have ended while the start was in flight: a stop then found nothing to stop
        const now = await this.store.read.getWorker(w.id);
        if (now?.state === 'stopping' || now?.state === 'stopped') {
          await driver.stop(w.id, STOP_KILL_AFTER_MS);
          return;
        }
        if (!this.#links.has(w.id)) {
          this.#liveness.watch(w.id, p.timeouts.connectingMs, () =>
            this.#workerLost(w.id, 'never registered'),
          );
        }
      } catch (err) {
        this.o.log.error(
          { err, workerId: w.id, projectId: p.id, region, sessionId: sessionId ?? undefined },
          'worker failed to start',
        );
        await this.onWorkerExit({
          workerId: w.id,
          code: null,
          signal: null,
          expected: false,
          error: String(err),
        });
      }
    });
    return w;
  }

  #inBackoff(projectId: string, region: string): boolean {
    const b = this.#launchBackoff.get(poolKey(projectId, region));
    return !!b && b.until > this.o.livenessClock.now();
  }

  /**
   * A worker of the pool became ready: starts may go on at once. The count of failures stays until a worker
   * proves stable (see onWorkerExit), so that workers that crash soon after they are ready back off too.
   */
  #launchWorked(projectId: string, region: string): void {
    const b = this.#launchBackoff.get(poolKey(projectId, region));
    if (!b) return;
    b.until = 0;
    // the backoff's timer stays: it dispatches the pool, which a worker that was started for a session (and
    // says ready now) does not; a queue held back by the backoff is seated then at the latest
  }

  /**
   * Consecutive launch failures slow down the warm refill (1 s, 2 s, 4 s … 60 s). A worker that crashed soon
   * after it was ready (`afterReady`) is replaced at once the first time, and backs off from the second.
   */
  #launchFailed(projectId: string, region: string, workerId: string, afterReady = false): void {
    const key = poolKey(projectId, region);
    const b = this.#launchBackoff.get(key) ?? { failures: 0, until: 0, timer: null, lastWorker: null };
    // a transaction retried on PostgreSQL (serialization failure) hears the same exit twice: it counts once
    if (b.lastWorker === workerId) return;
    b.lastWorker = workerId;
    b.failures++;
    if (afterReady && b.failures === 1) {
      this.#launchBackoff.set(key, b);
      return;
    }
    const delay = Math.min(60_000, 1000 * 2 ** (b.failures - (afterReady ? 2 : 1)));
    b.until = this.o.livenessClock.now() + delay;
    if (b.timer) this.o.livenessClock.clearTimer(b.timer);
    b.timer = this.o.livenessClock.setTimer(b.until, () => {
      b.timer = null;
      return this.#redispatch(projectId, region).catch((err) =>
        this.o.log.error({ err, projectId, region }, 'seating the queue after a launch backoff failed'),
      );
    });
    this.#launchBackoff.set(key, b);
  }

  /**
   * Refills a pool's warm pool in a transaction of its own after admissions took warm workers: at once, or
   * REFILL_INTERVAL_MS after the last refill. Counting a pool's workers costs as much as a batch of
   * admissions, so a stream of admissions refills a few times a second rather than once per batch.
   * settled() waits for it.
   */
  #scheduleRefill(key: string): void {
    const state = this.#refills.get(key) ?? { pending: false, last: 0 };
    this.#refills.set(key, state);
    if (state.pending) return;
    state.pending = true;
    this.#track(async () => {
      await this.#delay(state.last + REFILL_INTERVAL_MS - Date.now());
      state.pending = false;
      state.last = Date.now();
      const { projectId, region } = parsePoolKey(key);
      await this.#redispatch(projectId, region);
    });
  }

  /** Resolves after ms of real time, or at once when the engine closes. */
  #delay(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#delays.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#delays.add(wake);
    });
  }

  async #redispatch(projectId: string, region: string): Promise<void> {
    if (this.#closed) return;
    const p = this.#projects.get(projectId)?.settings;
    if (!p) return;
    await this.#tx((r, fx) => this.#dispatch(r, fx, p, region), { pool: { projectId, region } });
  }

  async #sendAssignment(fx: Effects, s: SessionRecord, workerId: string): Promise<void> {
    const assignmentBase = {
      sessionId: s.id,
      projectId: s.projectId,
      region: s.region,
      agentType: s.agentType,
      config: s.config,
      savedState: s.savedState ?? null,
      restarts: s.restarts,
    };
    fx.after(async () => {
      const token = await this.#agentToken(s.id, s.projectId, workerId);
      const participants = this.rooms.participants(s.id).filter((p) => p.kind !== 'agent');
      const assignment: Assignment = { ...assignmentBase, participants, token };
      const livekit = this.liveKitFor(s.projectId);
      if (livekit) {
        try {
          assignment.livekit = await livekit.access(s.id, workerId, 'agent');
        } catch (err) {
          // without its room the agent has nowhere to meet its users
          this.o.log.error(
            { err, sessionId: s.id, projectId: s.projectId, workerId },
            'the LiveKit room could not be opened',
          );
          this.hub.publish({
            type: 'session.error',
            sessionId: s.id,
            at: new Date(this.clock.now()).toISOString(),
            code: 'LIVEKIT_UNAVAILABLE',
            message: (err as Error).message,
            recoverable: false,
          });
          await this.endSession(s.id, 'livekit:room-failed').catch(() => {});
          return;
        }
      }
      if (s.restarts > 0) {
        // a restarted session's fresh worker carries on the conversation: it gets the transcript so far
        const page = await this.recorder.page({
          sessionId: s.id,
          limit: RESTART_TRANSCRIPT_MESSAGES,
          includeDebug: true,
        });
        assignment.transcript = { messages: page.messages, hasMore: page.hasMore };
      }
      this.#sendWorker(workerId, {
        type: 'assign',
        assignment,
        upto: microsToIso(this.recorder.position(this.clock.now())),
      });
    });
  }

  /** A frame for a worker: on its socket if that is on this server, else through the bus to the server it is on. */
  #sendWorker(workerId: string, frame: ServerToWorkerFrame): void {
    if (!this.#deliver(workerId, frame) && this.o.bus.shared)
      this.o.bus.send({ kind: 'worker', workerId, frame });
  }

  /**
   * Sends a frame on the worker's socket, if it is here: false when it is not. The server that holds the socket
   * keeps the time of an assignment's agent token, which it renews (#refreshTokens), whichever server sent it.
   */
  #deliver(workerId: string, frame: ServerToWorkerFrame): boolean {
    const link = this.#links.get(workerId);
    if (!link) return false;
    const replay = this.#replaying.get(workerId);
    if (replay?.link === link) {
      replay.held.push(frame);
      return true;
    }
    if (frame.type === 'assign') {
      const issued = this.#issued.get(workerId);
      if (issued) issued.session = { id: frame.assignment.sessionId, at: this.clock.now() };
    }
    link.send(frame);
    return true;
  }

  #sendToWorker(fx: Effects, workerId: string, frame: ServerToWorkerFrame): void {
    fx.after(() => this.#sendWorker(workerId, frame));
  }

  #notifyWorker(fx: Effects, s: SessionRecord, frame: ServerToWorkerFrame): void {
    if (s.workerId) this.#sendToWorker(fx, s.workerId, frame);
  }

  /**
   * Stops a worker after the commit. A connected worker that was sent `shutdown` gets graceMs to answer
   * `stopped` (or exit) before the driver stops it; otherwise the driver stops it now.
   */
  #stopWorkerAfterCommit(fx: Effects, w: WorkerRecord, graceMs: number): void {
    fx.after(async () => {
      const driver = this.o.drivers[w.driver];
      if (!driver) return;
      if (w.driver === 'external') {
        if (graceMs === 0)
          this.#sendWorker(w.id, { type: 'shutdown', sessionId: null, graceMs, reason: 'recycle' });
        return;
      }
      // the grace is for a worker that hears its shutdown: connected here, or on another server (the bus)
      if (graceMs > 0 && (this.#links.has(w.id) || w.attachedTo !== null)) {
        const t = setTimeout(() => {
          this.#graceTimers.delete(t);
          this.#track(() => driver.stop(w.id, STOP_KILL_AFTER_MS, w.handle));
        }, graceMs);
        this.#graceTimers.add(t);
        return;
      }
      await driver.stop(w.id, STOP_KILL_AFTER_MS, w.handle);
    });
  }

  // ------------------------------------------------------------------ workers

  /** A worker socket registered with a valid token. Returns the worker id, or throws. */
  async workerRegistered(
    claims: { role: string; wid?: string; pid: string; reg?: string; jti?: string; expired?: true },
    link: WorkerLink,
    after?: { sessionId: string; at: string; id?: string },
  ): Promise<WorkerRecord> {
    let worker: WorkerRecord | undefined;
    if (claims.role === 'worker' && claims.wid) {
      worker = await this.store.read.getWorker(claims.wid);
      if (!worker) throw new UsherError('FORBIDDEN', `no worker "${claims.wid}"`);
      if (worker.state === 'stopped')
        throw new UsherError(
          'FORBIDDEN',
          `worker "${claims.wid}" has been stopped; it cannot register again`,
        );
      // a launch token past its expiry brings back a worker whose connection is gone, and takes over none
      if (claims.expired && (await this.#connectedElsewhere(worker, link)))
        throw new UsherError(
          'FORBIDDEN',
          `worker "${worker.id}" is connected: a launch token past its expiry does not replace its connection`,
        );
    } else if (claims.role === 'pool') {
      // a token made before pool tokens were kept has no id: it runs until it expires
      if (claims.jti !== undefined) {
        const made = await this.store.poolTokens.get(claims.jti);
        if (!made || made.revokedAt !== null)
          throw new UsherError('FORBIDDEN', 'this pool token was revoked; ask an admin for a new one');
      }
      const p = this.#project(claims.pid);
      const region = claims.reg ?? p.defaultRegion;
      const now = this.clock.now();
      worker = newWorkerRecord(
        {
          id: newId('w', now),
          projectId: p.id,
          region,
          driver: 'external',
          sessionId: null,
          handle: 'external',
          serverId: this.o.serverId,
        },
        now,
      );
      worker.attachedTo = this.o.serverId;
      await this.store.read.insertWorker(worker);
    } else {
      throw new UsherError('FORBIDDEN', 'this token is not a worker token');
    }
    if (worker.attachedTo !== this.o.serverId) {
      await this.store.read.updateWorker(worker.id, {
        attachedTo: this.o.serverId,
        updatedAt: this.clock.now(),
      });
      worker = { ...worker, attachedTo: this.o.serverId };
    }
    const old = this.#links.get(worker.id);
    if (old && old !== link) old.close(4100, 'replaced by a newer connection');
    this.#links.set(worker.id, link);
    // from here on the worker hears its room live; what it missed before is replayed (after `registered`)
    const position = this.recorder.position(this.clock.now());
    const afterUs = after ? isoToMicros(after.at) : null;
    // a cursor for another session (the worker's ended while it was away) has nothing to replay
    const replay = afterUs !== null && after?.sessionId === worker.sessionId ? worker.sessionId : null;
    if (replay) this.#replaying.set(worker.id, { link, held: [] });
    this.#heartbeat(worker.id);
    // a token of its own, fresh, to come back as itself after a reconnect (a pool-token worker has no other)
    let own: string;
    // the session it serves: not one that ended while it was away (a worker being stopped still names it)
    let serving: string | null = null;
    /** its session, if it is ending: the shutdown it was sent while away is sent again */
    let ending: SessionRecord | undefined;
    try {
      own = await this.#workerToken(worker.id, worker.projectId);
      const s = worker.sessionId ? await this.store.read.getSession(worker.sessionId) : undefined;
      if (s && s.state !== 'ended') serving = s.id;
      if (s?.state === 'ending') ending = s;
    } catch (err) {
      if (this.#replaying.get(worker.id)?.link === link) this.#replaying.delete(worker.id);
      throw err;
    }
    // a worker that comes back with its session gets a fresh agent token with its first heartbeat (what it
    // holds may be old)
    this.#issued.set(worker.id, {
      worker: this.clock.now(),
      ...(worker.sessionId ? { session: { id: worker.sessionId, at: Number.NEGATIVE_INFINITY } } : {}),
    });
    link.send({
      type: 'registered',
      workerId: worker.id,
      heartbeatIntervalMs: this.o.heartbeatIntervalMs,
      token: own,
      upto: microsToIso(position),
      sessionId: serving,
    });
    if (replay && afterUs !== null)
      await this.#replayToWorker(worker, replay, link, afterUs, after?.id, position);
    else if (after && afterUs === null)
      link.send({
        type: 'error',
        code: 'BAD_REQUEST',
        message: `register.after.at must be the \`at\` of a room message (ISO-8601, such as 2026-12-04T16:44:35.123456Z); got "${after.at.slice(0, 40)}": nothing was replayed`,
      });
    if (ending) {
      // the session began to end while the worker was away: the shutdown that went nowhere, again
      const p = this.#project(ending.projectId);
      link.send({
        type: 'shutdown',
        sessionId: ending.id,
        graceMs: Math.min(p.timeouts.shutdownGraceMs, ENDING_TIMEOUT_MS),
        reason: ending.pendingEnd?.reason ?? 'completed',
        reuse: this.#reusable(p, worker) && worker.state !== 'stopping',
      });
    }
    return worker;
  }

  /**
   * Sends a worker that came back with its session what its room said while it was away (after its cursor, up to
   * `position`; not the agent's own messages and arrivals), then `replayed`, then the frames held meanwhile.
   */
  async #replayToWorker(
    worker: WorkerRecord,
    sessionId: string,
    link: WorkerLink,
    afterUs: number,
    afterId: string | undefined,
    position: number,
  ): Promise<void> {
    const workerId = worker.id;
    try {
      const missed = await this.recorder.missed({
        sessionId,
        afterUs,
        ...(afterId !== undefined ? { afterId } : {}),
        uptoUs: position,
        limit: MAX_REPLAYED_MESSAGES,
        // not the agent's own; in LiveKit mode the agent hears room messages in the LiveKit room: only arrivals
        // and departures
        filter: this.liveKitFor(worker.projectId) === null ? 'notFromAgents' : 'presenceNotFromAgents',
      });
      for (const item of missed.items) {
        if (item.type === 'message') link.send({ type: 'message', message: item.message });
        else link.send({ type: item.type, sessionId, participant: item.participant });
      }
      const count = missed.items.length;
      link.send({
        type: 'replayed',
        sessionId,
        upto: microsToIso(position),
        count,
        complete: missed.complete,
      });
    } catch (err) {
      // the worker registers again with the same cursor (a close it reconnects after), rather than lose the gap
      this.o.log.error({ err, workerId, sessionId }, 'what the worker missed could not be replayed');
      link.close(SocketCloseCode.InternalError, 'what the worker missed could not be read; register again');
    } finally {
      const replay = this.#replaying.get(workerId);
      if (replay?.link === link) {
        this.#replaying.delete(workerId);
        for (const frame of replay.held) this.#deliver(workerId, frame);
      }
    }
  }

  /** Whether the worker has a live connection other than `link`: on this server, or on another that is alive. */
  async #connectedElsewhere(w: WorkerRecord, link: WorkerLink): Promise<boolean> {
    const here = this.#links.get(w.id);
    if (here && here !== link) return true;
    if (!w.attachedTo || w.attachedTo === this.o.serverId) return false;
    return (await this.o.aliveServers()).has(w.attachedTo);
  }

  /** A worker's token; `launch` for the one its driver starts it with (TokenClaims.launch). */
  #workerToken(workerId: string, projectId: string, launch = false): Promise<string> {
    return this.o.tokens.sign(
      { role: 'worker', wid: workerId, pid: projectId, ...(launch ? { launch: true as const } : {}) },
      this.o.workerTokenTtlMs,
    );
  }

  #agentToken(sessionId: string, projectId: string, workerId: string): Promise<string> {
    return this.o.tokens.sign(
      { role: 'agent', sid: sessionId, pid: projectId, idn: workerId },
      this.o.sessionTokenTtlMs,
    );
  }

  /** On a heartbeat: fresh credentials for those past half their life (see #issued). */
  async #refreshTokens(workerId: string): Promise<void> {
    const issued = this.#issued.get(workerId);
    const link = this.#links.get(workerId);
    if (!issued || !link) return;
    const now = this.clock.now();
    const workerDue = now - issued.worker >= this.o.workerTokenTtlMs / 2;
    const sessionDue = !!issued.session && now - issued.session.at >= this.o.sessionTokenTtlMs / 2;
    if (!workerDue && !sessionDue) return;
    const w = await this.store.read.getWorker(workerId);
    if (!w || w.state === 'stopped') return;
    const frame: Extract<ServerToWorkerFrame, { type: 'token' }> = { type: 'token' };
    if (workerDue) {
      frame.worker = await this.#workerToken(w.id, w.projectId);
      issued.worker = now;
    }
    if (sessionDue && issued.session) {
      const s = w.sessionId === issued.session.id ? await this.store.read.getSession(w.sessionId) : undefined;
      if (s && s.workerId === w.id && s.state !== 'ended') {
        frame.session = { sessionId: s.id, token: await this.#agentToken(s.id, s.projectId, w.id) };
        issued.session.at = now;
      } else issued.session = undefined;
    }
    if (frame.worker || frame.session) link.send(frame);
  }

  /** A frame arrived from the worker: it is alive, even if the frame waits behind others to be handled. */
  workerAlive(workerId: string): void {
    this.#heartbeat(workerId);
  }

  /** Heartbeat (or any frame): the worker is alive. */
  #heartbeat(workerId: string): void {
    this.#liveness.watch(workerId, this.o.workerLossMs, () =>
      this.#workerLost(workerId, 'missed heartbeats'),
    );
  }

  async #workerLost(workerId: string, why: string): Promise<void> {
    const w = await this.store.read.getWorker(workerId);
    if (!w || w.state === 'stopped') return;
    // it came back on another server, which watches it now
    if (!this.#links.has(workerId) && (await this.#attachedElsewhere(workerId))) {
      this.#liveness.unwatch(workerId);
      return;
    }
    this.o.log.warn(
      { workerId, projectId: w.projectId, region: w.region, sessionId: w.sessionId ?? undefined, why },
      'worker lost',
    );
    this.#links.get(workerId)?.close(4100, `lost: ${why}`);
    this.#links.delete(workerId);
    const driver = this.o.drivers[w.driver];
    if (driver && w.driver !== 'external') await driver.stop(workerId, 0, w.handle).catch(() => {});
    await this.onWorkerExit({ workerId, code: null, signal: null, expected: false, error: why });
  }

  /** Handles one frame from a registered worker. */
  async workerFrame(workerId: string, frame: Exclude<WorkerFrame, { type: 'register' }>): Promise<void> {
    this.#heartbeat(workerId);
    switch (frame.type) {
      case 'heartbeat':
        return this.#refreshTokens(workerId);
      case 'ready':
        return this.#workerReady(workerId);
      case 'session_started':
        return this.#sessionStarted(workerId, frame.sessionId);
      case 'session_failed':
        return this.#sessionFailed(workerId, frame.sessionId, frame.message);
      case 'save_state':
        await this.rooms.checkWorker(workerId, frame.sessionId);
        await this.store.read.updateSession(frame.sessionId, {
          savedState: frame.state ?? null,
          updatedAt: this.clock.now(),
        });
        return;
      case 'control': {
        await this.rooms.checkWorker(workerId, frame.sessionId);
        if (frame.action === 'pause') await this.pauseSession(frame.sessionId, 'worker:pause');
        else if (frame.action === 'resume') await this.resumeSession(frame.sessionId, 'worker:resume');
        else await this.endSession(frame.sessionId, 'worker:end');
        return;
      }
      case 'message':
        await this.rooms.checkWorker(workerId, frame.sessionId, true);
        this.rooms.agentSpoke(frame.sessionId, workerId);
        await this.rooms.relayMessage(
          frame.sessionId,
          { identity: workerId, kind: 'agent' },
          frame.messageType,
          frame.data,
        );
        return;
      case 'stopped':
        return this.#workerStopped(workerId);
    }
  }

  async #workerReady(workerId: string): Promise<void> {
    await this.#tx(async (r, fx) => {
      const w = await r.getWorker(workerId, { lock: true });
      if (!w || w.state === 'stopped' || w.state === 'stopping') return;
      const now = this.clock.now();
      this.#launchWorked(w.projectId, w.region);
      if (w.sessionId) {
        const s = await r.getSession(w.sessionId, { lock: true });
        // its session ended while it started, or while its socket was down during the shutdown: a worker that
        // says ready has nothing of it left, so the session need not wait out the ending limit
        if (s && s.state === 'ending') {
          if (w.state === 'starting') await r.updateWorker(w.id, { readyAt: now, updatedAt: now });
          await this.#finishEnding(r, fx, s, 'worker:ready');
          return;
        }
        if (w.state === 'starting')
          await r.updateWorker(w.id, { state: 'reserved', readyAt: now, updatedAt: now });
        if (s && s.state === 'connecting' && !s.workerStarted) await this.#sendAssignment(fx, s, w.id);
        return;
      }
      if (w.state === 'starting') {
        await r.updateWorker(w.id, { state: 'ready', readyAt: now, updatedAt: now });
        const p = this.#project(w.projectId);
        await this.#dispatch(r, fx, p, w.region);
      }
    });
  }

  /** A worker took its assignment; starts that arrive together share one transaction. */
  #sessionStarted(workerId: string, sessionId: string): Promise<void> {
    return this.#starts.submit('', { workerId, sessionId });
  }

  /**
   * The worker could not set its session up (the SDK: onConnect threw): the session ends as a failed launch,
   * 4003, at once rather than at the connecting timeout, and its viewer is told why.
   */
  async #sessionFailed(workerId: string, sessionId: string, message: string): Promise<void> {
    await this.#tx(async (r, fx) => {
      const w = await r.getWorker(workerId, { lock: true });
      const s = w?.sessionId === sessionId ? await r.getSession(sessionId, { lock: true }) : undefined;
      if (!s || s.workerId !== workerId)
        throw new UsherError('FORBIDDEN', `worker "${workerId}" was not assigned session "${sessionId}"`);
      if (s.state !== 'connecting') {
        throw new UsherError(
          'ILLEGAL_TRANSITION',
          `session "${sessionId}" is ${s.state}: session_failed is for a session still being set up (end it with control end)`,
        );
      }
      this.#event(fx, s.id, {
        type: 'session.error',
        code: 'AGENT_START_FAILED',
        message: `the worker could not set up session "${s.id}": ${message}`,
        recoverable: false,
      });
      await this.#end(r, fx, s, 'launch_failed', `worker:session_failed: ${message.slice(0, 200)}`);
    });
  }

  async #sessionsStarted(items: { workerId: string; sessionId: string }[]): Promise<Outcome<void>[]> {
    return this.#tx(async (r, fx) => {
      // the batch's workers and their sessions are read (and locked) at once; the loop below only writes, so
      // its writes go out together at the commit
      const assigned = await r.assignments(
        items.map((i) => i.workerId),
        { lock: true },
      );
      const out: Outcome<void>[] = [];
      for (const { workerId, sessionId } of items) {
        const a = assigned.get(workerId);
        if (!a || a.worker.sessionId !== sessionId) {
          out.push({
            ok: false,
            error: new UsherError(
              'FORBIDDEN',
              `worker "${workerId}" was not assigned session "${sessionId}"`,
            ),
          });
          continue;
        }
        out.push({ ok: true, value: undefined });
        const { worker: w, session: s } = a;
        if (s.state !== 'connecting' || s.workerStarted) continue;
        const now = this.clock.now();
        const busy = { state: 'busy', readyAt: w.readyAt ?? now, updatedAt: now } as const;
        await r.updateWorker(w.id, busy);
        await r.updateSession(s.id, { workerStarted: true, updatedAt: now });
        const p = this.#project(s.projectId);
        fx.after(() => this.rooms.agentPresent(s.id, w.id));
        let started: SessionRecord = { ...s, workerStarted: true, updatedAt: now };
        if (!needsViewerToStart(p) || s.viewerAttached) {
          started = await this.#begin(r, fx, started, 'worker:started');
        } else {
          await r.clearTimer(s.id, TimerKind.Connecting);
          await this.#setTimer(r, fx, s.id, TimerKind.SeatHold, now + p.timeouts.seatHoldMs);
        }
        // a repeated session_started later in the batch sees what this one did
        assigned.set(w.id, { worker: { ...w, ...busy }, session: started });
      }
      return out;
    });
  }

  /** The worker finished its shutdown (after a session, or a recycle). */
  /**
   * The worker said `stopped` and closed its socket cleanly, unasked or after its shutdown: it will not come
   * back, so it is stopped now rather than when liveness gives up on it (a session seated on it meanwhile
   * would wait for nothing). Its live session, if it had one, goes as after a crash.
   */
  async workerLeft(workerId: string): Promise<void> {
    const w = await this.store.read.getWorker(workerId);
    if (!w || w.state === 'stopped') return;
    const live = !!w.sessionId && w.state !== 'stopping';
    await this.onWorkerExit({
      workerId,
      code: 0,
      signal: null,
      expected: !live,
      error: 'it closed its connection while its session went on',
    });
  }

  async #workerStopped(workerId: string): Promise<void> {
    await this.#tx(async (r, fx) => {
      const w = await r.getWorker(workerId, { lock: true });
      if (!w?.sessionId) return;
      const s = await r.getSession(w.sessionId, { lock: true });
      if (s?.state === 'ending') await this.#finishEnding(r, fx, s, 'worker:stopped');
      if (w.state === 'stopping' && w.driver !== 'external') {
        const driver = this.o.drivers[w.driver];
        fx.after(() => driver?.stop(w.id, STOP_KILL_AFTER_MS, w.handle));
      }
    });
  }

  /**
   * A worker's socket closed. It may come back (restart, network); if not, liveness declares it lost. False
   * when it was not the worker's link any more (the worker came back on another).
   */
  workerSocketClosed(workerId: string, link: WorkerLink): boolean {
    if (this.#links.get(workerId) !== link) return false;
    this.#links.delete(workerId);
    this.#issued.delete(workerId);
    this.#replaying.delete(workerId);
    // unless it has already come back on another server; a closing server leaves the mark, by which another
    // server adopts what it held (one that does not come back is then handled as lost)
    if (!this.#leaving) this.#track(() => this.store.read.detachWorker(workerId, this.o.serverId));
    return true;
  }

  /**
   * The server is about to close its sockets: the workers connected here stay marked as here, so that the
   * server that adopts this one (its registry row is marked as stopped) watches those that do not come back to
   * another server.
   */
  leaving(): void {
    this.#leaving = true;
  }

  /**
   * The live sessions of LiveKit projects get a recorder back in their rooms where none is (the one that was
   * there went with a server that stopped or died). A failure is logged: what calls it carries on.
   */
  async #resumeRecorders(): Promise<void> {
    const livekit = this.o.livekit;
    if (!livekit) return;
    // and, in the background, rooms of ended sessions that are still there go
    this.#track(async () => {
      await livekit
        .sweepEnded()
        .catch((err) => this.o.log.warn({ err }, 'could not look for the LiveKit rooms of ended sessions'));
    });
    for (const p of this.#projects.values()) {
      if (p.settings.rooms !== 'livekit') continue;
      try {
        const live = await this.store.read.listSessions({
          projectId: p.settings.id,
          states: [...RECORDED_ROOM_STATES],
          limit: Number.MAX_SAFE_INTEGER,
        });
        livekit.resume(live.map((s) => s.id));
      } catch (err) {
        this.o.log.error(
          { err, projectId: p.settings.id },
          'the live sessions of a LiveKit project could not be read: their rooms may have no recorder',
        );
      }
    }
  }

  /** Whether the worker's socket is on another running server now (that server watches it). */
  async #attachedElsewhere(workerId: string): Promise<boolean> {
    const w = await this.store.read.getWorker(workerId);
    if (!w?.attachedTo || w.attachedTo === this.o.serverId) return false;
    return (await this.o.aliveServers()).has(w.attachedTo);
  }

  /**
   * How long a worker found without its socket (after a restart, or on a dead server) has to come back: the
   * re-attach window, or for one still starting (a pod pulling its image, say) what is left of its project's
   * connecting time, if longer.
   */
  #reattachWindow(w: WorkerRecord): number {
    const connectingMs = this.#projects.get(w.projectId)?.settings.timeouts.connectingMs;
    if (w.state !== 'starting' || connectingMs === undefined) return this.o.reattachMs;
    return Math.max(this.o.reattachMs, w.createdAt + connectingMs - this.clock.now());
  }

  /**
   * This server was taken for dead while it was cut off from the database, and another adopted what it held:
   * the viewers still connected here are attached again (their reconnect windows close), and the workers whose
   * sockets are here are marked as here.
   */
  async reclaim(): Promise<void> {
    this.o.log.warn({}, 'this server was taken for dead; taking its viewers and workers back');
    this.rooms.reclaimed();
    for (const id of this.#viewers.keys()) await this.#tx((r) => this.#viewerHere(r, id));
    for (const workerId of this.#links.keys())
      await this.store.read.updateWorker(workerId, {
        attachedTo: this.o.serverId,
        updatedAt: this.clock.now(),
      });
  }

  /**
   * Another server died (its row in the servers table went stale and this server claimed it), or stopped
   * cleanly (`how`: its row was marked so): the viewers that were on it get their reconnect windows, and the
   * workers whose sockets were on it get the re-attach window to come back to any server; those that do not
   * are handled as crashed.
   */
  async adoptServer(dead: string, how: 'died' | 'stopped' = 'died'): Promise<void> {
    if (this.#closed) return;
    if (how === 'died') this.o.log.warn({ server: dead }, 'a server died: adopting its viewers and workers');
    else
      this.o.log.info(
        { server: dead },
        'a server stopped: watching the workers it held until they come back',
      );
    await this.#releaseViewers((server) => server === dead);
    // the participants only it held have left the rooms: this server says so, the others forget them
    this.rooms.serverGone(dead, true);
    if (this.o.bus.shared) this.o.bus.send({ kind: 'server_gone', serverId: dead });
    await this.#resumeRecorders();
    const orphans = (
      await this.store.read.listWorkers({ states: ['starting', 'ready', 'reserved', 'busy', 'stopping'] })
    ).filter((w) => w.attachedTo === dead || (w.attachedTo === null && w.serverId === dead));
    for (const w of orphans) {
      if (this.#links.has(w.id)) continue;
      this.#liveness.watch(w.id, this.#reattachWindow(w), async () => {
        const now = await this.store.read.getWorker(w.id);
        if (!now || now.state === 'stopped' || (now.attachedTo && now.attachedTo !== dead)) return;
        // the server was not dead after all (it was cut off from the database): it still holds the worker
        if ((await this.o.aliveServers()).has(dead)) return;
        // a pod is reachable from any server; a process is only on its own server's machine
        const driver = this.o.drivers[w.driver];
        if (w.driver === 'kubernetes' && driver && w.handle)
          await driver
            .reap(w.id, w.handle)
            .catch((err) =>
              this.o.log.error({ err, workerId: w.id }, 'could not remove the pod of a dead server'),
            );
        await this.onWorkerExit({
          workerId: w.id,
          code: null,
          signal: null,
          expected: false,
          error: `its server ${dead} died and it did not come back`,
          whileAway: true,
        });
      });
    }
  }

  /**
   * A worker is gone (process exit, pod failure, lost socket). Its session ends: 4003 if the worker never
   * became ready, 4005 if it vanished before the viewer was seated, 4006 if the session was live (4007 if its
   * viewer was away), unless auto-restart moves it to a fresh worker (#workerCrashed).
   */
  async onWorkerExit(
    exit: WorkerExit & {
      error?: string;
      /** found gone after its server was away (a restart, a dead server): how long it lived says nothing */
      whileAway?: boolean;
    },
  ): Promise<void> {
    // after close() the server is going away: the next start finds out what is left
    if (this.#closed) return;
    this.#liveness.unwatch(exit.workerId);
    this.#links.get(exit.workerId)?.close(4100, 'worker exited');
    this.#links.delete(exit.workerId);
    this.#issued.delete(exit.workerId);
    let freed = null as { projectId: string; region: string } | null;
    await this.#tx(async (r, fx) => {
      const w = await r.getWorker(exit.workerId, { lock: true });
      if (!w || w.state === 'stopped') return;
      freed = { projectId: w.projectId, region: w.region };
      const now = this.clock.now();
      await r.updateWorker(w.id, { state: 'stopped', stoppedAt: now, updatedAt: now });
      const p = this.#projects.get(w.projectId)?.settings;
      // a worker that died before it was ready, or soon after, counts as a failed launch (a crash loop backs
      // off); one that ran for a while shows the pool is healthy again
      const stable = !!w.readyAt && now - w.readyAt >= STABLE_WORKER_MS;
      if (!exit.expected && !stable && !(w.readyAt && exit.whileAway))
        this.#launchFailed(w.projectId, w.region, w.id, !!w.readyAt);
      else if (stable) this.#launchBackoff.delete(poolKey(w.projectId, w.region));
      if (w.sessionId) {
        const s = await r.getSession(w.sessionId, { lock: true });
        if (s && s.workerId === w.id) {
          if (s.state === 'ending') {
            await this.#finishEnding(r, fx, s, exit.expected ? 'worker:stopped' : 'worker:exit');
          } else if (s.state === 'connecting' && s.restarts === 0) {
            await this.#end(r, fx, s, w.readyAt ? 'worker_lost' : 'launch_failed', 'worker:exit');
          } else if (s.state === 'connecting' || LIVE_STATES.includes(s.state)) {
            // live, or on its way back from an earlier crash (auto-restart): a crash either way
            const what = exit.error ?? (exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`);
            await this.#workerCrashed(r, fx, p, s, what);
          }
        }
      }
      if (p?.enabled) await this.#dispatch(r, fx, p, w.region);
    });
    // a draining server starts no workers: another server refills the pool and seats the queue
    if (freed && this.#draining && this.o.bus.shared) this.o.bus.send({ kind: 'dispatch', ...freed });
  }

  /**
   * The worker of a live session died, or the fresh worker auto-restart gave it: `session.error` AGENT_CRASHED,
   * then another fresh worker while restarts are left (auto-restart), or the end: 4006, or 4007 when the viewer
   * was away (its reconnection cannot succeed: it is to start a fresh session).
   */
  async #workerCrashed(
    r: Repo,
    fx: Effects,
    p: ProjectSettings | undefined,
    s: SessionRecord,
    what: string,
  ): Promise<void> {
    // a fresh worker: a ready one, or one this server may start (external workers are not started, and a
    // draining server starts none)
    const allowed = !!p && p.autoRestart.enabled && s.restarts < p.autoRestart.maxRestarts;
    const ready = allowed ? (await r.readyWorkers(s.projectId, s.region, 1))[0] : undefined;
    const recoverable = allowed && (!!ready || (p?.worker?.driver !== 'external' && !this.#draining));
    this.#event(fx, s.id, {
      type: 'session.error',
      code: 'AGENT_CRASHED',
      message: `the worker of session "${s.id}" died (${what})`,
      recoverable,
    });
    if (recoverable && p) return this.#restartOnFreshWorker(r, fx, p, s, ready);
    const away = !s.viewerAttached && (await r.getTimer(s.id, TimerKind.Reconnect)) !== undefined;
    await this.#end(r, fx, s, away ? 'reconnect_failed' : 'worker_crashed', 'worker:crashed');
  }

  /**
   * Auto-restart: a crashed live session goes back to `connecting` on a fresh worker with its saved state (one
   * that was on its way there already stays `connecting`, on another). A paused one keeps its paused deadline,
   * and is paused again once the fresh worker has it (#begin).
   */
  async #restartOnFreshWorker(
    r: Repo,
    fx: Effects,
    p: ProjectSettings,
    s: SessionRecord,
    ready: WorkerRecord | undefined,
  ): Promise<void> {
    const now = this.clock.now();
    // the crashed agent is gone from the room; the fresh one joins once it has started the session
    const crashed = s.workerId;
    if (crashed && s.workerStarted) fx.after(() => this.rooms.leftEverywhere(s.id, crashed));
    const livekit = this.liveKitFor(s.projectId);
    if (crashed && livekit) fx.after(() => livekit.removeAgent(s.id, crashed));
    const pausedUntil = s.state === 'paused' ? (await r.getTimer(s.id, TimerKind.Paused))?.dueAt : undefined;
    const w = ready ?? (await this.#startWorker(r, fx, p, s.region, s.id));
    const fields = { workerId: w.id, workerStarted: false, restarts: s.restarts + 1 };
    let next: SessionRecord;
    if (s.state === 'connecting') {
      // no transition clears what the crashed worker left: a seat hold (it had started the session while the
      // viewer was away) goes, and the connecting timeout starts again below
      next = { ...s, ...fields, updatedAt: now };
      await r.updateSession(s.id, { ...fields, updatedAt: now });
      await r.clearTimer(s.id, TimerKind.SeatHold);
      fx.after(() => this.rooms.forgetWorker(s.id));
    } else next = await this.#transition(r, fx, s, 'connecting', 'worker:crashed:auto-restart', fields);
    if (pausedUntil !== undefined) await this.#setTimer(r, fx, s.id, TimerKind.Paused, pausedUntil);
    await this.#setTimer(r, fx, s.id, TimerKind.Connecting, now + p.timeouts.connectingMs);
    if (w.state === 'ready') {
      await r.updateWorker(w.id, { state: 'reserved', sessionId: s.id, updatedAt: now });
      await this.#sendAssignment(fx, next, w.id);
    }
  }

  async listWorkers(filter: { projectId?: string } = {}): Promise<WorkerRecord[]> {
    return this.store.read.listWorkers({
      ...filter,
      states: ['starting', 'ready', 'reserved', 'busy', 'stopping'],
    });
  }

  /** Draining: the worker takes no new session; an idle one is stopped now, a busy one after its session. */
  async drainWorker(id: string): Promise<WorkerRecord> {
    return this.#tx(async (r, fx) => {
      const w = await r.getWorker(id, { lock: true });
      if (!w || w.state === 'stopped') throw new UsherError('NOT_FOUND', `no live worker "${id}"`);
      const now = this.clock.now();
      await r.updateWorker(id, { draining: true, updatedAt: now });
      if (w.state === 'ready' || (w.state === 'starting' && !w.sessionId)) {
        await r.updateWorker(id, { state: 'stopping', updatedAt: now });
        this.#stopWorkerAfterCommit(fx, w, 0);
      }
      return { ...w, draining: true };
    });
  }

  get draining(): boolean {
    return this.#draining;
  }

  /**
   * The server is closing, and the workers it started whose driver stops them on close (its child processes)
   * go with it: each is recorded as stopped now, while the engine still runs, so that no other server seats a
   * session on a worker that is gone (a closing server leaves the registry, so nobody would adopt them). Idle
   * ones go first; a live session on one ends with 4006 (or restarts elsewhere, with auto-restart), and the other
   * servers refill the pools.
   */
  async retireOwnWorkers(): Promise<void> {
    if (this.#closed) return;
    this.#draining = true;
    const own = (
      await this.store.read.listWorkers({ states: ['starting', 'ready', 'reserved', 'busy', 'stopping'] })
    ).filter((w) => w.serverId === this.o.serverId && this.o.drivers[w.driver]?.closeStopsWorkers);
    own.sort((a, b) => Number(a.sessionId !== null) - Number(b.sessionId !== null));
    for (const w of own)
      await this.onWorkerExit({
        workerId: w.id,
        code: null,
        signal: null,
        expected: true,
        error: `its server ${this.o.serverId} stopped`,
      }).catch((err) => this.o.log.error({ err, workerId: w.id }, 'recording a worker as stopped failed'));
  }

  /**
   * Draining this server: it takes no new sessions and starts no workers; the workers it started (process
   * driver) take no new session either and stop once their session is over. Resolves when they are all gone,
   * or after `timeoutMs`, with how many are left.
   */
  async drainServer(timeoutMs: number): Promise<{ remaining: number }> {
    this.#draining = true;
    const live = ['starting', 'ready', 'reserved', 'busy', 'stopping'] as const;
    const mine = (await this.store.read.listWorkers({ states: [...live] })).filter(
      (w) => w.serverId === this.o.serverId && w.driver === 'process',
    );
    for (const w of mine) await this.drainWorker(w.id).catch(() => {});
    const ids = new Set(mine.map((w) => w.id));
    const remaining = async () =>
      (await this.store.read.listWorkers({ states: [...live] })).filter((w) => ids.has(w.id)).length;
    return new Promise((resolve) => {
      let done = false;
      const finish = (n: number) => {
        if (done) return;
        done = true;
        off();
        clearTimeout(timer);
        resolve({ remaining: n });
      };
      const check = async () => {
        const n = await remaining().catch(() => -1);
        if (n === 0) finish(0);
      };
      // every worker change is a chance that the last one stopped
      const off = this.hub.subscribeWorkers((w) => {
        if (ids.has(w.id)) void check();
      });
      const timer = setTimeout(() => void remaining().then(finish, () => finish(-1)), timeoutMs);
      timer.unref();
      void check();
    });
  }

  isWorkerConnected(id: string): boolean {
    return this.#links.has(id);
  }
}

/** Live workers of a pool, from poolCounts (whose `startingUnbound` is a subset of `starting`). */
function poolTotal(counts: Record<string, number>): number {
  let total = 0;
  for (const [key, n] of Object.entries(counts)) if (key !== 'startingUnbound') total += n;
  return total;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
