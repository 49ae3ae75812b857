// Every query the engine makes, written once for both dialects, over one connection or transaction.
import type { SessionState, WorkerState } from '@usher/protocol';
import type { Queryable, SqlValue } from './db.ts';
import type {
  ProjectRecord,
  ProjectSettings,
  SessionRecord,
  TimerKind,
  TimerRecord,
  TransitionRecord,
  WorkerRecord,
} from './records.ts';

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
  draining: number;
  created_at: number;
  ready_at: number | null;
  updated_at: number;
  stopped_at: number | null;
}

const SESSION_COLUMNS: Record<keyof SessionRecord, string> = {
  id: 'id',
  projectId: 'project_id',
  region: 'region',
  agentType: 'agent_type',
  config: 'config',
  state: 'state',
  workerId: 'worker_id',
  queuedAt: 'queued_at',
  restarts: 'restarts',
  savedState: 'saved_state',
  viewerAttached: 'viewer_attached',
  workerStarted: 'worker_started',
  pendingEnd: 'pending_end',
  createdAt: 'created_at',
  updatedAt: 'updated_at',
  activeAt: 'active_at',
  endedAt: 'ended_at',
  endCode: 'end_code',
  endReason: 'end_reason',
  outcome: 'outcome',
};

const WORKER_COLUMNS: Record<keyof WorkerRecord, string> = {
  id: 'id',
  projectId: 'project_id',
  region: 'region',
  driver: 'driver',
  state: 'state',
  sessionId: 'session_id',
  handle: 'handle',
  serverId: 'server_id',
  draining: 'draining',
  createdAt: 'created_at',
  readyAt: 'ready_at',
  updatedAt: 'updated_at',
  stoppedAt: 'stopped_at',
};

const JSON_FIELDS = new Set(['config', 'savedState', 'pendingEnd']);

function toSql(field: string, value: unknown): SqlValue {
  if (JSON_FIELDS.has(field)) return value === null || value === undefined ? null : JSON.stringify(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  return (value ?? null) as SqlValue;
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
    draining: r.draining === 1,
    createdAt: r.created_at,
    readyAt: r.ready_at,
    updatedAt: r.updated_at,
    stoppedAt: r.stopped_at,
  };
}

function insertSql(table: string, columns: Record<string, string>, record: object): [string, SqlValue[]] {
  const keys = Object.keys(columns);
  const sql = `INSERT INTO ${table} (${keys.map((k) => columns[k]).join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`;
  return [sql, keys.map((k) => toSql(k, (record as Record<string, unknown>)[k]))];
}

function updateSql(
  table: string,
  columns: Record<string, string>,
  id: string,
  patch: object,
): [string, SqlValue[]] {
  const keys = Object.keys(patch).filter((k) => k in columns && k !== 'id');
  const sql = `UPDATE ${table} SET ${keys.map((k) => `${columns[k]} = ?`).join(', ')} WHERE id = ?`;
  return [sql, [...keys.map((k) => toSql(k, (patch as Record<string, unknown>)[k])), id]];
}

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

export class Repo {
  readonly q: Queryable;
  /** workers inserted or updated through this repo (the engine announces them after commit) */
  readonly changedWorkers = new Set<string>();
  readonly #forUpdate: string;

  readonly #holdWrites: boolean;
  readonly #heldTransitions: SqlValue[][] = [];

  /** @param holdWrites  hold transition rows until flush() (inside a transaction only) */
  constructor(q: Queryable, holdWrites = false) {
    this.q = q;
    this.#holdWrites = holdWrites;
    this.#forUpdate = q.dialect === 'postgres' ? ' FOR UPDATE' : '';
  }

  // ---- locks (no-ops on SQLite, whose transactions are already exclusive)

  /** Serializes dispatch for one pool across every server sharing the database. */
  async lockPool(projectId: string, region: string): Promise<void> {
    if (this.q.dialect === 'postgres') {
      await this.q.get('SELECT pg_advisory_xact_lock(hashtextextended(?, 0))', [
        `pool:${projectId}:${region}`,
      ]);
    }
  }

  // ---- projects

  async getProject(id: string): Promise<ProjectRecord | undefined> {
    const r = await this.q.get<{ settings: string; created_at: number; updated_at: number }>(
      'SELECT settings, created_at, updated_at FROM projects WHERE id = ?',
      [id],
    );
    return r && { settings: JSON.parse(r.settings), createdAt: r.created_at, updatedAt: r.updated_at };
  }

  async listProjects(): Promise<ProjectRecord[]> {
    const rows = await this.q.all<{ settings: string; created_at: number; updated_at: number }>(
      'SELECT settings, created_at, updated_at FROM projects ORDER BY id',
    );
    return rows.map((r) => ({
      settings: JSON.parse(r.settings),
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
    const [sql, params] = insertSql('sessions', SESSION_COLUMNS, s);
    await this.q.run(sql, params);
  }

  async getSession(id: string, options: { lock?: boolean } = {}): Promise<SessionRecord | undefined> {
    const r = await this.q.get<SessionRow>(
      `SELECT * FROM sessions WHERE id = ?${options.lock ? this.#forUpdate : ''}`,
      [id],
    );
    return r && sessionFromRow(r);
  }

  async updateSession(id: string, patch: Partial<SessionRecord>): Promise<void> {
    const [sql, params] = updateSql('sessions', SESSION_COLUMNS, id, patch);
    await this.q.run(sql, params);
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
    const rows = await this.q.all<SessionRow>(
      `SELECT * FROM sessions${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ?`,
      params,
    );
    return rows.map(sessionFromRow);
  }

  /** The queue of one pool, first in line first. */
  async queuedSessionIds(projectId: string, region: string, limit = 1_000_000): Promise<string[]> {
    const rows = await this.q.all<{ id: string }>(
      "SELECT id FROM sessions WHERE state = 'queued' AND project_id = ? AND region = ? ORDER BY queued_at, id LIMIT ?",
      [projectId, region, limit],
    );
    return rows.map((r) => r.id);
  }

  async countQueued(projectId: string, region: string): Promise<number> {
    const r = await this.q.get<{ n: number }>(
      "SELECT COUNT(*) AS n FROM sessions WHERE state = 'queued' AND project_id = ? AND region = ?",
      [projectId, region],
    );
    return Number(r?.n ?? 0);
  }

  /** How many sessions are ahead of one in its queue (its position is this plus one). */
  async countQueuedAhead(projectId: string, region: string, queuedAt: number, id: string): Promise<number> {
    const r = await this.q.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM sessions WHERE state = 'queued' AND project_id = ? AND region = ?
         AND (queued_at < ? OR (queued_at = ? AND id < ?))`,
      [projectId, region, queuedAt, queuedAt, id],
    );
    return Number(r?.n ?? 0);
  }

  /** Mean time from active to ended of the last `limit` sessions of a pool, or null without history. */
  async meanSessionDurationMs(projectId: string, region: string, limit = 50): Promise<number | null> {
    const r = await this.q.get<{ mean: number | null }>(
      `SELECT AVG(d) AS mean FROM (SELECT ended_at - active_at AS d FROM sessions
         WHERE project_id = ? AND region = ? AND ended_at IS NOT NULL AND active_at IS NOT NULL
         ORDER BY ended_at DESC LIMIT ?) recent`,
      [projectId, region, limit],
    );
    return r?.mean == null ? null : Number(r.mean);
  }

  // ---- transitions

  /**
   * Records a transition. In a transaction the rows are held and written together by flush() (one
   * multi-row INSERT before the commit); outside one they are written at once.
   */
  async addTransition(sessionId: string, t: TransitionRecord): Promise<void> {
    this.#heldTransitions.push([sessionId, t.from, t.to, t.at, t.cause]);
    if (!this.#holdWrites) await this.flush();
  }

  /** Writes what is held (transitions), in the order it was recorded. */
  async flush(): Promise<void> {
    while (this.#heldTransitions.length > 0) {
      const rows = this.#heldTransitions.splice(0, 500);
      await this.q.run(
        `INSERT INTO transitions (session_id, from_state, to_state, at, cause) VALUES ${rows.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
        rows.flat(),
      );
    }
  }

  async timeline(sessionId: string): Promise<TransitionRecord[]> {
    await this.flush();
    const rows = await this.q.all<{ from_state: string | null; to_state: string; at: number; cause: string }>(
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
    const [sql, params] = insertSql('workers', WORKER_COLUMNS, w);
    await this.q.run(sql, params);
    this.changedWorkers.add(w.id);
  }

  async getWorker(id: string, options: { lock?: boolean } = {}): Promise<WorkerRecord | undefined> {
    const r = await this.q.get<WorkerRow>(
      `SELECT * FROM workers WHERE id = ?${options.lock ? this.#forUpdate : ''}`,
      [id],
    );
    return r && workerFromRow(r);
  }

  async updateWorker(id: string, patch: Partial<WorkerRecord>): Promise<void> {
    const [sql, params] = updateSql('workers', WORKER_COLUMNS, id, patch);
    await this.q.run(sql, params);
    this.changedWorkers.add(id);
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
    const rows = await this.q.all<WorkerRow>(
      `SELECT * FROM workers${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id`,
      params,
    );
    return rows.map(workerFromRow);
  }

  /** Ready, undrained workers of a pool, longest ready first. */
  async readyWorkers(projectId: string, region: string, limit: number): Promise<WorkerRecord[]> {
    // dispatch holds the pool's lock, so no other seat decision runs; FOR UPDATE only waits out a row's
    // short updates (never SKIP LOCKED, which would pass over a ready worker whose handle is being written)
    const skip = this.q.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const rows = await this.q.all<WorkerRow>(
      `SELECT * FROM workers WHERE project_id = ? AND region = ? AND state = 'ready' AND draining = 0
       ORDER BY ready_at, id LIMIT ?${skip}`,
      [projectId, region, limit],
    );
    return rows.map(workerFromRow);
  }

  /** Workers of a pool being started for no session yet, oldest first. */
  async unboundStartingWorkers(projectId: string, region: string, limit: number): Promise<WorkerRecord[]> {
    // dispatch holds the pool's lock, so no other seat decision runs; FOR UPDATE only waits out a row's
    // short updates (never SKIP LOCKED, which would pass over a ready worker whose handle is being written)
    const skip = this.q.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const rows = await this.q.all<WorkerRow>(
      `SELECT * FROM workers WHERE project_id = ? AND region = ? AND state = 'starting' AND session_id IS NULL AND draining = 0
       ORDER BY created_at, id LIMIT ?${skip}`,
      [projectId, region, limit],
    );
    return rows.map(workerFromRow);
  }

  /** Workers of a pool by state (draining ones under `draining`), stopped ones excluded, plus `startingUnbound`. */
  async poolCounts(projectId: string, region: string): Promise<Record<string, number>> {
    const rows = await this.q.all<{ state: string; draining: number; unbound: number; n: number }>(
      `SELECT state, draining, CASE WHEN session_id IS NULL THEN 1 ELSE 0 END AS unbound, COUNT(*) AS n FROM workers
       WHERE project_id = ? AND region = ? AND state <> 'stopped' GROUP BY state, draining, unbound`,
      [projectId, region],
    );
    const counts: Record<string, number> = {};
    for (const r of rows) {
      const key = r.draining === 1 ? 'draining' : r.state;
      counts[key] = (counts[key] ?? 0) + Number(r.n);
      // workers on their way for no session yet: they count as warm
      if (r.state === 'starting' && r.draining === 0 && r.unbound === 1) {
        counts.startingUnbound = (counts.startingUnbound ?? 0) + Number(r.n);
      }
    }
    return counts;
  }

  // ---- timers

  async setTimer(sessionId: string, kind: TimerKind, dueAt: number): Promise<void> {
    await this.q.run(
      'INSERT INTO timers (session_id, kind, due_at) VALUES (?, ?, ?) ON CONFLICT (session_id, kind) DO UPDATE SET due_at = excluded.due_at',
      [sessionId, kind, dueAt],
    );
  }

  async getTimer(sessionId: string, kind: TimerKind): Promise<TimerRecord | undefined> {
    const r = await this.q.get<{ due_at: number }>(
      'SELECT due_at FROM timers WHERE session_id = ? AND kind = ?',
      [sessionId, kind],
    );
    return r && { sessionId, kind, dueAt: r.due_at };
  }

  async clearTimer(sessionId: string, kind: TimerKind): Promise<void> {
    await this.q.run('DELETE FROM timers WHERE session_id = ? AND kind = ?', [sessionId, kind]);
  }

  async clearTimers(sessionId: string, kinds?: readonly TimerKind[]): Promise<void> {
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
    const rows = await this.q.all<{ kind: string; due_at: number }>(
      'SELECT kind, due_at FROM timers WHERE session_id = ? ORDER BY due_at',
      [sessionId],
    );
    return rows.map((r) => ({ sessionId, kind: r.kind as TimerKind, dueAt: r.due_at }));
  }

  /** Timers due at or before `at`, earliest first. */
  async dueTimers(at: number, limit: number): Promise<TimerRecord[]> {
    const rows = await this.q.all<{ session_id: string; kind: string; due_at: number }>(
      'SELECT session_id, kind, due_at FROM timers WHERE due_at <= ? ORDER BY due_at, session_id LIMIT ?',
      [at, limit],
    );
    return rows.map((r) => ({ sessionId: r.session_id, kind: r.kind as TimerKind, dueAt: r.due_at }));
  }

  async nextTimerDue(): Promise<number | null> {
    const r = await this.q.get<{ due: number | null }>('SELECT MIN(due_at) AS due FROM timers');
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
