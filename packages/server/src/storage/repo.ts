// Every query the engine makes, written once for both dialects, over one connection or transaction.
import {
  ENDING_TIMEOUT_MS,
  MAX_TIMEOUT_MS,
  type SessionState,
  type Timeouts,
  WorkerState,
} from '@usher/protocol';
import { advisoryLockSql, type Queryable, type QueryOptions, type SqlParam, type SqlValue } from './db.ts';
import { heldStatements } from './held-sql.ts';
import { HeldWrites } from './held-writes.ts';
import type {
  ProjectRecord,
  ProjectSettings,
  SessionRecord,
  TimerKind,
  TimerRecord,
  TransitionRecord,
  WorkerRecord,
} from './records.ts';
import {
  type Columns,
  insertRows,
  MAX_PARAMS,
  SESSION_COLUMNS,
  type Statement,
  updateRow,
  WORKER_COLUMNS,
} from './tables.ts';

/** Every column of a table, named: prepared statements must not read `*`, whose columns could change. */
const SESSION_SELECT = Object.values(SESSION_COLUMNS)
  .map((c) => c.name)
  .join(', ');
const WORKER_SELECT = Object.values(WORKER_COLUMNS)
  .map((c) => c.name)
  .join(', ');

/** A worker and its session in one row, their columns prefixed `w_` and `s_`. */
const ASSIGNMENT_SELECT = [
  ...Object.values(WORKER_COLUMNS).map((c) => `w.${c.name} AS w_${c.name}`),
  ...Object.values(SESSION_COLUMNS).map((c) => `s.${c.name} AS s_${c.name}`),
].join(', ');

type Row = Record<string, unknown>;

/**
 * Stored settings, with what later versions added filled in for settings stored before them, and timeouts
 * stored before they had bounds brought within them (the longest a timeout may be; a shutdown grace within the
 * ending limit, as the engine always held it), so that such a project can still be changed.
 */
function projectSettings(json: string): ProjectSettings {
  const s = JSON.parse(json) as ProjectSettings;
  s.rooms ??= 'builtin';
  for (const [k, v] of Object.entries(s.timeouts) as [keyof Timeouts, number][])
    s.timeouts[k] = Math.min(v, k === 'shutdownGraceMs' ? ENDING_TIMEOUT_MS : MAX_TIMEOUT_MS);
  return s;
}

/** Takes the columns of one table (prefixed in the row) out of a joined row. */
function columnsOf<T>(row: Row, prefix: string, columns: Columns): T {
  const out: Row = {};
  for (const c of Object.values(columns)) out[c.name] = row[prefix + c.name];
  return out as T;
}

/** A statement run on every admission or start: kept prepared on PostgreSQL. */
const HOT: QueryOptions = { prepare: true };

interface SessionRow {
  id: string;
  project_id: string;
  region: string;
  agent_type: string | null;
  config: string;
  state: string;
  worker_id: string | null;
  queued_at: number | null;
  restarts: number;
  saved_state: string | null;
  viewer_attached: number;
  viewer_server: string | null;
  worker_started: number;
  pending_end: string | null;
  created_at: number;
  updated_at: number;
  active_at: number | null;
  ended_at: number | null;
  end_code: number | null;
  end_reason: string | null;
  outcome: string | null;
}

interface WorkerRow {
  id: string;
  project_id: string;
  region: string;
  driver: string;
  state: string;
  session_id: string | null;
  handle: string | null;
  server_id: string | null;
  attached_to: string | null;
  draining: number;
  created_at: number;
  ready_at: number | null;
  updated_at: number;
  stopped_at: number | null;
}

function sessionFromRow(r: SessionRow): SessionRecord {
  return {
    id: r.id,
    projectId: r.project_id,
    region: r.region,
    agentType: r.agent_type,
    config: JSON.parse(r.config),
    state: r.state as SessionState,
    workerId: r.worker_id,
    queuedAt: r.queued_at,
    restarts: r.restarts,
    savedState: r.saved_state === null ? null : JSON.parse(r.saved_state),
    viewerAttached: r.viewer_attached === 1,
    viewerServer: r.viewer_server,
    workerStarted: r.worker_started === 1,
    pendingEnd: r.pending_end === null ? null : JSON.parse(r.pending_end),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    activeAt: r.active_at,
    endedAt: r.ended_at,
    endCode: r.end_code as SessionRecord['endCode'],
    endReason: r.end_reason as SessionRecord['endReason'],
    outcome: r.outcome as SessionRecord['outcome'],
  };
}

function workerFromRow(r: WorkerRow): WorkerRecord {
  return {
    id: r.id,
    projectId: r.project_id,
    region: r.region,
    driver: r.driver,
    state: r.state as WorkerState,
    sessionId: r.session_id,
    handle: r.handle,
    serverId: r.server_id,
    attachedTo: r.attached_to,
    draining: r.draining === 1,
    createdAt: r.created_at,
    readyAt: r.ready_at,
    updatedAt: r.updated_at,
    stoppedAt: r.stopped_at,
  };
}

/** Every worker state but `stopped`, as SQL literals. */
const LIVE_WORKER_STATES = Object.values(WorkerState)
  .filter((s) => s !== 'stopped')
  .map((s) => `'${s}'`)
  .join(', ');

export interface SessionFilter {
  projectId?: string;
  states?: readonly SessionState[];
  limit?: number;
}

export interface WorkerFilter {
  projectId?: string;
  region?: string;
  states?: readonly WorkerState[];
}

/** The key of a pool's lock (PostgreSQL): one seat decision at a time per pool, across servers. */
export function poolLockKey(projectId: string, region: string): string {
  return `pool:${projectId}:${region}`;
}

export class Repo {
  readonly q: Queryable;
  /** workers inserted or updated through this repo (the engine announces them after commit) */
  readonly changedWorkers = new Set<string>();
  readonly #forUpdate: string;

  /** writes held until the next read or the commit (in a transaction only) */
  readonly #held: HeldWrites | null;
  /** pool locks this transaction holds already */
  readonly #poolLocks = new Set<string>();

  /**
   * @param holdWrites  this repository is one transaction's: hold writes until flush() or the next read, and
   *   take each pool lock once
   * @param lockedPool  the pool lock (poolLockKey) its transaction took as it began
   */
  constructor(q: Queryable, holdWrites = false, lockedPool?: string) {
    this.q = q;
    this.#held = holdWrites ? new HeldWrites() : null;
    if (lockedPool !== undefined) this.#poolLocks.add(lockedPool);
    this.#forUpdate = q.dialect === 'postgres' ? ' FOR UPDATE' : '';
  }

  /** Writes what is held. Reads call it first, so they see every write made before them. */
  async flush(): Promise<void> {
    if (!this.#held || this.#held.empty) return;
    for (const st of heldStatements(this.#held.take(), this.q.dialect))
      await this.q.run(st.sql, st.params, HOT);
  }

  async #all<T>(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<T[]> {
    await this.flush();
    return this.q.all<T>(sql, params, options);
  }

  async #get<T>(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<T | undefined> {
    await this.flush();
    return this.q.get<T>(sql, params, options);
  }

  /**
   * Rows of a table by id (PostgreSQL takes the ids as one array); locked in id order, so that two
   * transactions locking some of the same rows never wait for each other.
   */
  async #byIds<T>(
    from: string,
    idColumn: string,
    columns: string,
    ids: readonly string[],
    lock = false,
  ): Promise<T[]> {
    if (ids.length === 0) return [];
    const tail = ` ORDER BY ${idColumn}${lock ? this.#forUpdate : ''}`;
    if (this.q.dialect === 'postgres') {
      const sql = `SELECT ${columns} FROM ${from} WHERE ${idColumn} = ANY(CAST(? AS TEXT[]))${tail}`;
      return this.#all<T>(sql, [ids], HOT);
    }
    const rows: T[] = [];
    for (let i = 0; i < ids.length; i += MAX_PARAMS) {
      const chunk = ids.slice(i, i + MAX_PARAMS);
      const sql = `SELECT ${columns} FROM ${from} WHERE ${idColumn} IN (${chunk.map(() => '?').join(', ')})${tail}`;
      rows.push(...(await this.#all<T>(sql, chunk)));
    }
    return rows;
  }

  async #write(statements: readonly Statement[]): Promise<void> {
    for (const st of statements) await this.q.run(st.sql, st.params);
  }

  // ---- locks (no-ops on SQLite, whose transactions are already exclusive)

  /** Serializes dispatch for one pool across every server sharing the database. */
  async lockPool(projectId: string, region: string): Promise<void> {
    if (this.q.dialect !== 'postgres') return;
    const key = poolLockKey(projectId, region);
    if (this.#poolLocks.has(key)) return;
    await this.q.get(advisoryLockSql('?'), [key], HOT);
    if (this.#held) this.#poolLocks.add(key);
  }

  // ---- projects

  /** A project; with `lock`, its row is locked for the transaction (PostgreSQL), so changes to it queue. */
  async getProject(id: string, o: { lock?: boolean } = {}): Promise<ProjectRecord | undefined> {
    const r = await this.#get<{ settings: string; created_at: number; updated_at: number }>(
      `SELECT settings, created_at, updated_at FROM projects WHERE id = ?${o.lock ? this.#forUpdate : ''}`,
      [id],
    );
    return r && { settings: projectSettings(r.settings), createdAt: r.created_at, updatedAt: r.updated_at };
  }

  async listProjects(): Promise<ProjectRecord[]> {
    const rows = await this.q.all<{ settings: string; created_at: number; updated_at: number }>(
      'SELECT settings, created_at, updated_at FROM projects ORDER BY id',
    );
    return rows.map((r) => ({
      settings: projectSettings(r.settings),
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    }));
  }

  async insertProject(p: ProjectRecord): Promise<boolean> {
    const n = await this.q.run(
      'INSERT INTO projects (id, settings, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      [p.settings.id, JSON.stringify(p.settings), p.createdAt, p.updatedAt],
    );
    return n === 1;
  }

  async updateProject(settings: ProjectSettings, updatedAt: number): Promise<void> {
    await this.q.run('UPDATE projects SET settings = ?, updated_at = ? WHERE id = ?', [
      JSON.stringify(settings),
      updatedAt,
      settings.id,
    ]);
  }

  // ---- sessions

  async insertSession(s: SessionRecord): Promise<void> {
    if (this.#held) this.#held.insertSession(s);
    else await this.#write(insertRows('sessions', SESSION_COLUMNS, [s]));
  }

  async getSession(id: string, options: { lock?: boolean } = {}): Promise<SessionRecord | undefined> {
    // a session inserted in this transaction is seen by no one else: no need to write it to read or lock it
    const created = this.#held?.newSession(id);
    if (created) return created;
    const r = await this.#get<SessionRow>(
      `SELECT ${SESSION_SELECT} FROM sessions WHERE id = ?${options.lock ? this.#forUpdate : ''}`,
      [id],
      HOT,
    );
    return r && sessionFromRow(r);
  }

  async updateSession(id: string, patch: Partial<SessionRecord>): Promise<void> {
    if (this.#held) this.#held.updateSession(id, patch);
    else await this.#write([updateRow('sessions', SESSION_COLUMNS, id, patch)]);
  }

  async listSessions(filter: SessionFilter = {}): Promise<SessionRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (filter.projectId) {
      where.push('project_id = ?');
      params.push(filter.projectId);
    }
    if (filter.states?.length) {
      where.push(`state IN (${filter.states.map(() => '?').join(', ')})`);
      params.push(...filter.states);
    }
    params.push(filter.limit ?? 100);
    const rows = await this.#all<SessionRow>(
      `SELECT ${SESSION_SELECT} FROM sessions${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ?`,
      params,
    );
    return rows.map(sessionFromRow);
  }

  /** The queue of one pool, first in line first. */
  async queuedSessionIds(projectId: string, region: string, limit = 1_000_000): Promise<string[]> {
    const rows = await this.#all<{ id: string }>(
      "SELECT id FROM sessions WHERE state = 'queued' AND project_id = ? AND region = ? ORDER BY queued_at, id LIMIT ?",
      [projectId, region, limit],
      HOT,
    );
    return rows.map((r) => r.id);
  }

  async countQueued(projectId: string, region: string): Promise<number> {
    const r = await this.#get<{ n: number }>(
      "SELECT COUNT(*) AS n FROM sessions WHERE state = 'queued' AND project_id = ? AND region = ?",
      [projectId, region],
      HOT,
    );
    return Number(r?.n ?? 0);
  }

  /** How many sessions are ahead of one in its queue (its position is this plus one). */
  async countQueuedAhead(projectId: string, region: string, queuedAt: number, id: string): Promise<number> {
    const r = await this.#get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM sessions WHERE state = 'queued' AND project_id = ? AND region = ?
         AND (queued_at < ? OR (queued_at = ? AND id < ?))`,
      [projectId, region, queuedAt, queuedAt, id],
    );
    return Number(r?.n ?? 0);
  }

  /** Mean time from active to ended of the last `limit` sessions of a pool, or null without history. */
  async meanSessionDurationMs(projectId: string, region: string, limit = 50): Promise<number | null> {
    const r = await this.#get<{ mean: number | null }>(
      `SELECT AVG(d) AS mean FROM (SELECT ended_at - active_at AS d FROM sessions
         WHERE project_id = ? AND region = ? AND ended_at IS NOT NULL AND active_at IS NOT NULL
         ORDER BY ended_at DESC LIMIT ?) recent`,
      [projectId, region, limit],
    );
    return r?.mean == null ? null : Number(r.mean);
  }

  // ---- transitions

  /** Records a transition (held until the next read or the commit, in a transaction). */
  async addTransition(sessionId: string, t: TransitionRecord): Promise<void> {
    const row = [sessionId, t.from, t.to, t.at, t.cause];
    if (this.#held) this.#held.addTransition(row);
    else
      await this.q.run(
        'INSERT INTO transitions (session_id, from_state, to_state, at, cause) VALUES (?, ?, ?, ?, ?)',
        row,
      );
  }

  async timeline(sessionId: string): Promise<TransitionRecord[]> {
    const rows = await this.#all<{ from_state: string | null; to_state: string; at: number; cause: string }>(
      'SELECT from_state, to_state, at, cause FROM transitions WHERE session_id = ? ORDER BY id',
      [sessionId],
    );
    return rows.map((r) => ({
      from: r.from_state as SessionState | null,
      to: r.to_state as SessionState,
      at: r.at,
      cause: r.cause,
    }));
  }

  // ---- workers

  async insertWorker(w: WorkerRecord): Promise<void> {
    await this.#write(insertRows('workers', WORKER_COLUMNS, [w]));
    this.changedWorkers.add(w.id);
  }

  async getWorker(id: string, options: { lock?: boolean } = {}): Promise<WorkerRecord | undefined> {
    const r = await this.#get<WorkerRow>(
      `SELECT ${WORKER_SELECT} FROM workers WHERE id = ?${options.lock ? this.#forUpdate : ''}`,
      [id],
      HOT,
    );
    return r && workerFromRow(r);
  }

  /**
   * Workers by id with the session each is assigned (workers with none are left out), read and locked in one
   * statement, in worker id order.
   */
  async assignments(
    workerIds: readonly string[],
    options: { lock?: boolean } = {},
  ): Promise<Map<string, { worker: WorkerRecord; session: SessionRecord }>> {
    const found = new Map<string, { worker: WorkerRecord; session: SessionRecord }>();
    const from = 'workers w JOIN sessions s ON s.id = w.session_id';
    const ids = [...new Set(workerIds)];
    for (const row of await this.#byIds<Row>(from, 'w.id', ASSIGNMENT_SELECT, ids, options.lock)) {
      const worker = workerFromRow(columnsOf<WorkerRow>(row, 'w_', WORKER_COLUMNS));
      found.set(worker.id, {
        worker,
        session: sessionFromRow(columnsOf<SessionRow>(row, 's_', SESSION_COLUMNS)),
      });
    }
    return found;
  }

  async updateWorker(id: string, patch: Partial<WorkerRecord>): Promise<void> {
    if (this.#held) this.#held.updateWorker(id, patch);
    else await this.#write([updateRow('workers', WORKER_COLUMNS, id, patch)]);
    this.changedWorkers.add(id);
  }

  /** The worker's socket on `serverId` closed: it is attached nowhere, unless it is on another server already. */
  async detachWorker(id: string, serverId: string): Promise<void> {
    await this.q.run('UPDATE workers SET attached_to = NULL WHERE id = ? AND attached_to = ?', [
      id,
      serverId,
    ]);
  }

  async listWorkers(filter: WorkerFilter = {}): Promise<WorkerRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (filter.projectId) {
      where.push('project_id = ?');
      params.push(filter.projectId);
    }
    if (filter.region) {
      where.push('region = ?');
      params.push(filter.region);
    }
    if (filter.states?.length) {
      where.push(`state IN (${filter.states.map(() => '?').join(', ')})`);
      params.push(...filter.states);
    }
    const rows = await this.#all<WorkerRow>(
      `SELECT ${WORKER_SELECT} FROM workers${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id`,
      params,
    );
    return rows.map(workerFromRow);
  }

  /** Ready, undrained workers of a pool, longest ready first. */
  async readyWorkers(projectId: string, region: string, limit: number): Promise<WorkerRecord[]> {
    // dispatch holds the pool's lock, so no other seat decision runs; FOR UPDATE only waits out a row's
    // short updates (never SKIP LOCKED, which would pass over a ready worker whose handle is being written)
    const skip = this.q.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const rows = await this.#all<WorkerRow>(
      `SELECT ${WORKER_SELECT} FROM workers WHERE project_id = ? AND region = ? AND state = 'ready' AND draining = 0
       ORDER BY ready_at, id LIMIT ?${skip}`,
      [projectId, region, limit],
      HOT,
    );
    return rows.map(workerFromRow);
  }

  /**
   * What an admission batch starts from, in one statement when nobody is queued: how many sessions of the pool
   * are queued, and, only when none is, up to `limit` ready workers to seat on (as readyWorkers).
   */
  async seatingView(
    projectId: string,
    region: string,
    limit: number,
  ): Promise<{ waiting: number; ready: WorkerRecord[] }> {
    const rows = await this.#all<WorkerRow>(
      `SELECT ${WORKER_SELECT} FROM workers WHERE project_id = ? AND region = ? AND state = 'ready' AND draining = 0
         AND NOT EXISTS (SELECT 1 FROM sessions WHERE state = 'queued' AND project_id = ? AND region = ?)
       ORDER BY ready_at, id LIMIT ?${this.#forUpdate}`,
      [projectId, region, projectId, region, limit],
      HOT,
    );
    if (rows.length > 0) return { waiting: 0, ready: rows.map(workerFromRow) };
    const waiting = await this.countQueued(projectId, region);
    return { waiting, ready: [] };
  }

  /** Workers of a pool being started for no session yet, oldest first. */
  async unboundStartingWorkers(projectId: string, region: string, limit: number): Promise<WorkerRecord[]> {
    // dispatch holds the pool's lock, so no other seat decision runs; FOR UPDATE only waits out a row's
    // short updates (never SKIP LOCKED, which would pass over a ready worker whose handle is being written)
    const skip = this.q.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const rows = await this.#all<WorkerRow>(
      `SELECT ${WORKER_SELECT} FROM workers WHERE project_id = ? AND region = ? AND state = 'starting' AND session_id IS NULL AND draining = 0
       ORDER BY created_at, id LIMIT ?${skip}`,
      [projectId, region, limit],
      HOT,
    );
    return rows.map(workerFromRow);
  }

  /** Workers of a pool by state (draining ones under `draining`), stopped ones excluded, plus `startingUnbound`. */
  async poolCounts(projectId: string, region: string): Promise<Record<string, number>> {
    // grouped in the order of the workers_by_pool index, so nothing is sorted; stopped workers (which pile up
    // over time) are not even read
    const rows = await this.#all<{ state: string; draining: number; n: number; bound: number }>(
      `SELECT state, draining, COUNT(*) AS n, COUNT(session_id) AS bound FROM workers
       WHERE project_id = ? AND region = ? AND state IN (${LIVE_WORKER_STATES}) GROUP BY state, draining`,
      [projectId, region],
      HOT,
    );
    const counts: Record<string, number> = {};
    for (const r of rows) {
      const key = r.draining === 1 ? 'draining' : r.state;
      counts[key] = (counts[key] ?? 0) + Number(r.n);
      // workers on their way for no session yet: they count as warm
      const unbound = Number(r.n) - Number(r.bound);
      if (r.state === 'starting' && r.draining === 0 && unbound > 0) {
        counts.startingUnbound = (counts.startingUnbound ?? 0) + unbound;
      }
    }
    return counts;
  }

  // ---- timers

  async setTimer(sessionId: string, kind: TimerKind, dueAt: number): Promise<void> {
    if (this.#held) return this.#held.setTimer(sessionId, kind, dueAt);
    await this.q.run(
      'INSERT INTO timers (session_id, kind, due_at) VALUES (?, ?, ?) ON CONFLICT (session_id, kind) DO UPDATE SET due_at = excluded.due_at',
      [sessionId, kind, dueAt],
    );
  }

  /** Moves a timer from one due time to another; one that was moved or cleared meanwhile is left as it is. */
  async postponeTimer(sessionId: string, kind: TimerKind, from: number, to: number): Promise<void> {
    await this.q.run('UPDATE timers SET due_at = ? WHERE session_id = ? AND kind = ? AND due_at = ?', [
      to,
      sessionId,
      kind,
      from,
    ]);
  }

  async getTimer(sessionId: string, kind: TimerKind): Promise<TimerRecord | undefined> {
    const r = await this.#get<{ due_at: number }>(
      'SELECT due_at FROM timers WHERE session_id = ? AND kind = ?',
      [sessionId, kind],
    );
    return r && { sessionId, kind, dueAt: r.due_at };
  }

  async clearTimer(sessionId: string, kind: TimerKind): Promise<void> {
    if (this.#held) return this.#held.clearTimers(sessionId, [kind]);
    await this.q.run('DELETE FROM timers WHERE session_id = ? AND kind = ?', [sessionId, kind]);
  }

  async clearTimers(sessionId: string, kinds?: readonly TimerKind[]): Promise<void> {
    if (this.#held) return this.#held.clearTimers(sessionId, kinds);
    if (!kinds) {
      await this.q.run('DELETE FROM timers WHERE session_id = ?', [sessionId]);
      return;
    }
    if (kinds.length === 0) return;
    await this.q.run(
      `DELETE FROM timers WHERE session_id = ? AND kind IN (${kinds.map(() => '?').join(', ')})`,
      [sessionId, ...kinds],
    );
  }

  async timersForSession(sessionId: string): Promise<TimerRecord[]> {
    const rows = await this.#all<{ kind: string; due_at: number }>(
      'SELECT kind, due_at FROM timers WHERE session_id = ? ORDER BY due_at',
      [sessionId],
    );
    return rows.map((r) => ({ sessionId, kind: r.kind as TimerKind, dueAt: r.due_at }));
  }

  /** Timers due at or before `at`, earliest first. */
  async dueTimers(at: number, limit: number): Promise<TimerRecord[]> {
    const rows = await this.#all<{ session_id: string; kind: string; due_at: number }>(
      'SELECT session_id, kind, due_at FROM timers WHERE due_at <= ? ORDER BY due_at, session_id LIMIT ?',
      [at, limit],
    );
    return rows.map((r) => ({ sessionId: r.session_id, kind: r.kind as TimerKind, dueAt: r.due_at }));
  }

  async nextTimerDue(): Promise<number | null> {
    const r = await this.#get<{ due: number | null }>('SELECT MIN(due_at) AS due FROM timers');
    return r?.due == null ? null : Number(r.due);
  }

  // ---- settings shared by every server (e.g. the token signing secret)

  /** Returns the stored value, storing `value` first if the key is new (the first writer wins). */
  async getOrInitSetting(key: string, value: string): Promise<string> {
    await this.q.run('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING', [
      key,
      value,
    ]);
    const r = await this.q.get<{ value: string }>('SELECT value FROM settings WHERE key = ?', [key]);
    return r!.value;
  }
}
