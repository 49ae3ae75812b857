// Queries behind the operator's views, written once for both dialects: every queue in line order, and session
// statistics over a time window (sessions per state, queue waits, endings, close codes) from the transitions.
import { OPEN_STATES, type SessionState } from '@usher/protocol';
import type { Queryable } from './db.ts';

export interface QueuedSession {
  id: string;
  projectId: string;
  region: string;
  queuedAt: number;
}

/**
 * Every queued session, pool by pool (project, then region), each pool in the order the engine seats it:
 * (queued_at, id). Read through the partial index sessions_queue.
 */
export async function queuedSessions(q: Queryable, projectId?: string): Promise<QueuedSession[]> {
  const rows = await q.all<{ id: string; project_id: string; region: string; queued_at: number }>(
    `SELECT id, project_id, region, queued_at FROM sessions WHERE state = 'queued'${projectId === undefined ? '' : ' AND project_id = ?'}
     ORDER BY project_id, region, queued_at, id`,
    projectId === undefined ? [] : [projectId],
  );
  return rows.map((r) => ({
    id: r.id,
    projectId: r.project_id,
    region: r.region,
    queuedAt: Number(r.queued_at),
  }));
}

export interface StatsWindow {
  /** start of the first bucket (epoch ms) */
  from: number;
  /** end of the window, inclusive: the last bucket ends here (now) */
  to: number;
  bucketMs: number;
  projectId?: string;
}

export interface StatsBucket {
  /** the bucket's start (epoch ms) */
  at: number;
  /** sessions in each live state at the bucket's end */
  states: Record<Exclude<SessionState, 'ended'>, number>;
  /** how many sessions left the queue during the bucket, and their time in it */
  left: number;
  waitMsAvg: number | null;
  waitMsMax: number | null;
  /** sessions that ended during the bucket */
  ended: number;
}

export interface CloseCodeCount {
  code: number;
  reason: string;
  count: number;
}

export interface SessionStats {
  buckets: StatsBucket[];
  /** sessions that ended in the window by code and reason, most frequent first */
  closeCodes: CloseCodeCount[];
}

/** What one bucket's transitions add up to: all the statistics need, and what the cache keeps. */
interface BucketFacts {
  /** per state: sessions that entered it minus those that left it */
  delta: Map<string, number>;
  ended: number;
  left: { count: number; sum: number; max: number | null };
  codes: Map<string, CloseCodeCount>;
}

/** Buckets that ended longer ago than this are taken as final (a transition is stamped just before its commit). */
export const SETTLED_MS = 5 * 60_000;
/** Buckets kept by the cache (each a handful of numbers); the oldest used go first. */
const CACHE_BUCKETS = 10_000;

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Session statistics over a window cut into buckets, read through the index transitions_at. PostgreSQL reads
 * the buckets it has not cached in one query per kind; SQLite, which answers on the event loop's thread, one
 * bucket at a time with a turn of the loop between them, so the engine's work runs meanwhile. Settled buckets are
 * cached: a dashboard asking again reads only the newest ones.
 */
export class StatsReader {
  readonly #q: Queryable;
  readonly #cache = new Map<string, BucketFacts>();

  constructor(q: Queryable) {
    this.#q = q;
  }

  /**
   * Bucket i covers [from + i·bucketMs, the next start); the last one ends at `to`, inclusive. The states at each
   * bucket's end are the current counts (sessions table) minus the transitions after it.
   */
  async read(w: StatsWindow): Promise<SessionStats> {
    const n = Math.max(1, Math.ceil((w.to - w.from) / w.bucketMs));
    const scope = w.projectId === undefined ? '*' : `project:${w.projectId}`;
    const keyOf = (i: number) => `${scope}\n${w.bucketMs}\n${w.from + i * w.bucketMs}`;
    const settled = (i: number) => w.from + (i + 1) * w.bucketMs <= w.to - SETTLED_MS;
    const facts = new Array<BucketFacts>(n);
    const missing: number[] = [];
    for (let i = 0; i < n; i++) {
      const key = keyOf(i);
      const cached = settled(i) ? this.#cache.get(key) : undefined;
      if (cached) {
        // most recently used last
        this.#cache.delete(key);
        this.#cache.set(key, cached);
        facts[i] = cached;
      } else missing.push(i);
    }
    // runs of buckets to read: one bucket each on SQLite, every contiguous stretch at once on PostgreSQL
    const runs: number[][] = [];
    for (const i of missing) {
      const run = runs[runs.length - 1];
      if (run && this.#q.dialect === 'postgres' && run[run.length - 1] === i - 1) run.push(i);
      else runs.push([i]);
    }
    for (const [k, run] of runs.entries()) {
      if (k > 0 && this.#q.dialect === 'sqlite') await turn();
      const first = run[0]!;
      const last = run[run.length - 1]!;
      // the last bucket takes a transition at exactly `to` (times are whole milliseconds)
      const hi = last === n - 1 ? w.to + 1 : w.from + (last + 1) * w.bucketMs;
      const read = await this.#read(w.from + first * w.bucketMs, hi, w.bucketMs, run.length, w.projectId);
      for (const [j, f] of read.entries()) {
        const i = first + j;
        facts[i] = f;
        if (!settled(i)) continue;
        this.#cache.set(keyOf(i), f);
        if (this.#cache.size > CACHE_BUCKETS) this.#cache.delete(this.#cache.keys().next().value!);
      }
    }
    // written since `to` was chosen: taken back from the current counts
    const [late] = await this.#read(
      w.to + 1,
      Number.MAX_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
      1,
      w.projectId,
    );
    const project = w.projectId === undefined ? [] : [w.projectId];
    const current = await this.#q.all<{ state: string; n: number }>(
      `SELECT state, COUNT(*) AS n FROM sessions
       WHERE state IN (${OPEN_STATES.map(() => '?').join(', ')})${project.length ? ' AND project_id = ?' : ''}
       GROUP BY state`,
      [...OPEN_STATES, ...project],
    );
    const counts = new Map<string, number>(current.map((r) => [r.state, Number(r.n)]));
    const undo = (d: Map<string, number>) => {
      for (const [state, change] of d) counts.set(state, (counts.get(state) ?? 0) - change);
    };
    // walking back from now: the counts at a bucket's end are those at the next one's end without its changes
    undo(late!.delta);
    const buckets = new Array<StatsBucket>(n);
    const codes = new Map<string, CloseCodeCount>();
    for (let i = n - 1; i >= 0; i--) {
      const f = facts[i]!;
      buckets[i] = {
        at: w.from + i * w.bucketMs,
        states: Object.fromEntries(OPEN_STATES.map((s) => [s, counts.get(s) ?? 0])) as StatsBucket['states'],
        left: f.left.count,
        waitMsAvg: f.left.count === 0 ? null : Math.round(f.left.sum / f.left.count),
        waitMsMax: f.left.max,
        ended: f.ended,
      };
      undo(f.delta);
      for (const [key, c] of f.codes) {
        const sum = codes.get(key);
        if (sum) sum.count += c.count;
        else codes.set(key, { ...c });
      }
    }
    const closeCodes = [...codes.values()].sort(
      (a, b) =>
        b.count - a.count || a.code - b.code || (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0),
    );
    return { buckets, closeCodes };
  }

  /** The facts of `count` buckets of `bucketMs` from `lo`, the last one ending at `hi` (exclusive). */
  async #read(
    lo: number,
    hi: number,
    bucketMs: number,
    count: number,
    projectId: string | undefined,
  ): Promise<BucketFacts[]> {
    const q = this.#q;
    const facts = Array.from(
      { length: count },
      (): BucketFacts => ({
        delta: new Map(),
        ended: 0,
        left: { count: 0, sum: 0, max: null },
        codes: new Map(),
      }),
    );
    const at = (b: number) => facts[Math.min(Number(b), count - 1)]!;
    const bucket = '(t.at - CAST(? AS BIGINT)) / CAST(? AS BIGINT) AS b';
    // transitions first, by time; with a project, each one's session (CROSS JOIN keeps SQLite from starting
    // with every session the project ever had)
    const scope = projectId === undefined ? '' : ' CROSS JOIN sessions p';
    const where = `t.at >= ? AND t.at < ?${projectId === undefined ? '' : ' AND p.id = t.session_id AND p.project_id = ?'}`;
    const params = [lo, bucketMs, lo, hi, ...(projectId === undefined ? [] : [projectId])];

    const changes = await q.all<{ b: number; from_state: string | null; to_state: string; n: number }>(
      `SELECT ${bucket}, t.from_state, t.to_state, COUNT(*) AS n FROM transitions t${scope}
       WHERE ${where} GROUP BY 1, t.from_state, t.to_state`,
      params,
    );
    let ended = 0;
    let leftQueue = 0;
    for (const r of changes) {
      const f = at(r.b);
      const n = Number(r.n);
      f.delta.set(r.to_state, (f.delta.get(r.to_state) ?? 0) + n);
      if (r.from_state !== null) f.delta.set(r.from_state, (f.delta.get(r.from_state) ?? 0) - n);
      if (r.to_state === 'ended') {
        f.ended += n;
        ended += n;
      }
      if (r.from_state === 'queued') leftQueue += n;
    }

    if (leftQueue > 0) {
      // each session that left the queue, and its time in it: since it entered (once: only from `requesting`)
      const waits = await q.all<{ b: number; n: number; total: number; longest: number }>(
        `WITH leaving AS MATERIALIZED (
           SELECT ${bucket}, t.at - (SELECT MAX(e.at) FROM transitions e
                                    WHERE e.session_id = t.session_id AND e.to_state = 'queued' AND e.id < t.id) AS wait
           FROM transitions t${scope}
           WHERE ${where} AND t.from_state = 'queued'
         )
         SELECT b, COUNT(wait) AS n, SUM(wait) AS total, MAX(wait) AS longest FROM leaving
         WHERE wait IS NOT NULL GROUP BY b`,
        params,
      );
      for (const r of waits) {
        const l = at(r.b).left;
        l.count += Number(r.n);
        l.sum += Number(r.total);
        l.max = Math.max(l.max ?? 0, Number(r.longest));
      }
    }

    if (ended > 0) {
      const codes = await q.all<{ b: number; code: number; reason: string; n: number }>(
        `SELECT ${bucket}, s.end_code AS code, s.end_reason AS reason, COUNT(*) AS n
         FROM transitions t${scope} CROSS JOIN sessions s
         WHERE ${where} AND t.to_state = 'ended' AND s.id = t.session_id
         GROUP BY 1, s.end_code, s.end_reason`,
        params,
      );
      for (const r of codes) {
        const f = at(r.b);
        const key = `${r.code}\n${r.reason}`;
        const c = f.codes.get(key);
        if (c) c.count += Number(r.n);
        else f.codes.set(key, { code: Number(r.code), reason: r.reason, count: Number(r.n) });
      }
    }
    return facts;
  }
}
