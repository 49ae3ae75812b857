// Queries behind metrics and logs, written once for both dialects: live sessions per pool and state (read at
// each scrape), and the pool and times of sessions by id (what an event, which names only its session, is about).
import { OPEN_STATES, type SessionState } from '@usher/protocol';
import type { Queryable } from './db.ts';
import { MAX_PARAMS } from './tables.ts';

export interface PoolStateCount {
  projectId: string;
  region: string;
  state: Exclude<SessionState, 'ended'>;
  count: number;
}

/**
 * How many sessions are in each state but `ended`, per project and region (pools and states without any are
 * left out). One statement, read through the index on state: ended sessions, which pile up, are not read.
 */
export async function sessionCountsByPool(q: Queryable): Promise<PoolStateCount[]> {
  const rows = await q.all<{ project_id: string; region: string; state: string; n: number }>(
    `SELECT project_id, region, state, COUNT(*) AS n FROM sessions
     WHERE state IN (${OPEN_STATES.map(() => '?').join(', ')})
     GROUP BY project_id, region, state ORDER BY project_id, region, state`,
    OPEN_STATES,
  );
  return rows.map((r) => ({
    projectId: r.project_id,
    region: r.region,
    state: r.state as PoolStateCount['state'],
    count: Number(r.n),
  }));
}

/** What an event about a session needs to be counted and logged: its pool and its times (epoch ms). */
export interface SessionKey {
  projectId: string;
  region: string;
  createdAt: number;
  /** when it entered the queue, while it is queued */
  queuedAt: number | null;
  /** when it first became active */
  activeAt: number | null;
  /** when it ended */
  endedAt: number | null;
}

/** The keys of sessions by id, in one statement (a few on SQLite for very many ids); unknown ids are left out. */
export async function sessionKeys(q: Queryable, ids: readonly string[]): Promise<Map<string, SessionKey>> {
  type Row = {
    id: string;
    project_id: string;
    region: string;
    created_at: number;
    queued_at: number | null;
    active_at: number | null;
    ended_at: number | null;
  };
  const columns = 'id, project_id, region, created_at, queued_at, active_at, ended_at';
  const rows: Row[] = [];
  const unique = [...new Set(ids)];
  if (unique.length === 0) return new Map();
  if (q.dialect === 'postgres') {
    rows.push(
      ...(await q.all<Row>(`SELECT ${columns} FROM sessions WHERE id = ANY(CAST(? AS TEXT[]))`, [unique], {
        prepare: true,
      })),
    );
  } else {
    for (let i = 0; i < unique.length; i += MAX_PARAMS) {
      const chunk = unique.slice(i, i + MAX_PARAMS);
      rows.push(
        ...(await q.all<Row>(
          `SELECT ${columns} FROM sessions WHERE id IN (${chunk.map(() => '?').join(', ')})`,
          chunk,
        )),
      );
    }
  }
  const out = new Map<string, SessionKey>();
  for (const r of rows)
    out.set(r.id, {
      projectId: r.project_id,
      region: r.region,
      createdAt: Number(r.created_at),
      queuedAt: r.queued_at === null ? null : Number(r.queued_at),
      activeAt: r.active_at === null ? null : Number(r.active_at),
      endedAt: r.ended_at === null ? null : Number(r.ended_at),
    });
  return out;
}
