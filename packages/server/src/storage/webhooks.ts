// The webhook delivery log: one row per session event and endpoint, queued in batches, claimed by one server
// at a time under a lease (servers sharing PostgreSQL never send the same row at once), marked delivered or
// scheduled again, and read back newest first for the delivery log API. Written once for both dialects.
import type { Db, QueryOptions, SqlValue } from './db.ts';

export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** A delivery to queue: the payload is the exact body that is signed and sent. */
export interface NewDelivery {
  id: string;
  endpointUrl: string;
  eventType: string;
  sessionId: string;
  projectId: string;
  payload: string;
  /** when it was queued; its first attempt is due then */
  createdAt: number;
}

export interface DeliveryRecord {
  id: string;
  endpointUrl: string;
  eventType: string;
  sessionId: string;
  projectId: string;
  status: DeliveryStatus;
  /** attempts made since the delivery was last queued */
  attempts: number;
  /** when a pending delivery is due (or was last due) */
  nextAttemptAt: number;
  /** the HTTP status of the last attempt; null when it got no answer (or none was made) */
  lastStatus: number | null;
  lastError: string | null;
  lastAttemptAt: number | null;
  createdAt: number;
  deliveredAt: number | null;
}

export interface DeliveryWithPayload extends DeliveryRecord {
  payload: string;
}

/** A row a server claimed: it alone may send it until its lease ends. */
export interface ClaimedDelivery extends DeliveryWithPayload {
  claim: string;
}

export interface DeliveryFilter {
  status?: DeliveryStatus;
  sessionId?: string;
  projectId?: string;
  /** only deliveries older than this one (the cursor of the previous page) */
  before?: { createdAt: number; id: string };
  limit: number;
}

/** What an attempt that did not end in a 2xx did. */
export interface FailedAttempt {
  at: number;
  status: number | null;
  error: string;
  /** the next attempt's time, or null when no attempt is left (the delivery is failed) */
  nextAttemptAt: number | null;
}

const HOT: QueryOptions = { prepare: true };

const SUMMARY = `id, endpoint_url, event_type, session_id, project_id, status, attempts, next_attempt_at, last_status,
  last_error, last_attempt_at, created_at, delivered_at`;
const FULL = `${SUMMARY}, payload`;

const INSERT_COLUMNS =
  'id, endpoint_url, event_type, session_id, project_id, payload, status, attempts, next_attempt_at, created_at';
const INSERT: Record<Db['dialect'], string> = {
  // the rows travel as one JSON array (SQLite) or one array per column (PostgreSQL): one statement a batch
  // a delivery already queued (a write retried after its answer was lost) is skipped (`WHERE true` lets SQLite
  // parse the ON CONFLICT after a SELECT)
  sqlite: `INSERT INTO webhook_deliveries (${INSERT_COLUMNS})
    SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, 'pending', 0, value->>6, value->>6
    FROM json_each(?) WHERE true
    ON CONFLICT (id) DO NOTHING`,
  postgres: `INSERT INTO webhook_deliveries (${INSERT_COLUMNS})
    SELECT id, url, type, sid, pid, payload, 'pending', 0, t, t
    FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[])
      AS u(id, url, type, sid, pid, payload, t)
    ON CONFLICT (id) DO NOTHING`,
};

/** Claimable: pending, due, and not under another claim's lease. */
const CLAIMABLE = `status = 'pending' AND endpoint_url = ? AND next_attempt_at <= ?
  AND (lease_until IS NULL OR lease_until <= ?)`;
const CLAIM: Record<Db['dialect'], string> = {
  sqlite: `UPDATE webhook_deliveries SET claimed_by = ?, claim = ?, lease_until = ?
    WHERE id IN (SELECT id FROM webhook_deliveries WHERE ${CLAIMABLE} ORDER BY next_attempt_at, id LIMIT ?)
    RETURNING ${FULL}, claim`,
  // SKIP LOCKED: a row another server is claiming right now is left to it. The rows are picked once (a
  // materialized CTE: a subquery under IN could be run again and return more than LIMIT), and the outer
  // conditions are checked again on each row as it is once locked
  postgres: `WITH picked AS MATERIALIZED (
      SELECT id FROM webhook_deliveries WHERE ${CLAIMABLE} ORDER BY next_attempt_at, id LIMIT ? FOR UPDATE SKIP LOCKED)
    UPDATE webhook_deliveries d SET claimed_by = ?, claim = ?, lease_until = ?
    FROM picked WHERE d.id = picked.id AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until <= ?)
    RETURNING ${FULL.replace(/(\w+)/g, 'd.$1')}, d.claim`,
};

const UNCLAIM = 'claimed_by = NULL, claim = NULL, lease_until = NULL';
/**
 * Giving back one claim's rows, or every claim of a server: read through the partial indexes on claim and
 * claimed_by, which hold only the rows under a claim (exported for the test of their plans).
 */
export const RELEASE_CLAIM = `UPDATE webhook_deliveries SET ${UNCLAIM} WHERE claim = ?`;
export const RELEASE_SERVER = `UPDATE webhook_deliveries SET ${UNCLAIM} WHERE claimed_by = ? AND status = 'pending'`;

interface Row {
  id: string;
  endpoint_url: string;
  event_type: string;
  session_id: string;
  project_id: string;
  status: string;
  attempts: number;
  next_attempt_at: number;
  last_status: number | null;
  last_error: string | null;
  last_attempt_at: number | null;
  created_at: number;
  delivered_at: number | null;
  payload?: string;
  claim?: string;
}

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

function record(r: Row): DeliveryRecord {
  return {
    id: r.id,
    endpointUrl: r.endpoint_url,
    eventType: r.event_type,
    sessionId: r.session_id,
    projectId: r.project_id,
    status: r.status as DeliveryStatus,
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    lastStatus: num(r.last_status),
    lastError: r.last_error,
    lastAttemptAt: num(r.last_attempt_at),
    createdAt: Number(r.created_at),
    deliveredAt: num(r.delivered_at),
  };
}

export class WebhookLog {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Queues the deliveries in one statement. */
  async enqueue(batch: readonly NewDelivery[]): Promise<void> {
    if (batch.length === 0) return;
    const rows = batch.map((d) => [
      d.id,
      d.endpointUrl,
      d.eventType,
      d.sessionId,
      d.projectId,
      d.payload,
      d.createdAt,
    ]);
    if (this.#db.dialect === 'sqlite') {
      await this.#db.run(INSERT.sqlite, [JSON.stringify(rows)]);
      return;
    }
    const columns = rows[0]!.map((_, i) => rows.map((r) => r[i]!) as SqlValue[]);
    await this.#db.run(INSERT.postgres, columns, HOT);
  }

  /**
   * Claims up to `limit` due deliveries of one endpoint for `serverId` until `leaseUntil`, most overdue first;
   * returns them in the order they were queued. Two servers never claim the same row while its lease runs.
   */
  async claim(o: {
    endpointUrl: string;
    serverId: string;
    claim: string;
    now: number;
    leaseUntil: number;
    limit: number;
  }): Promise<ClaimedDelivery[]> {
    const params: SqlValue[] =
      this.#db.dialect === 'sqlite'
        ? [o.serverId, o.claim, o.leaseUntil, o.endpointUrl, o.now, o.now, o.limit]
        : [o.endpointUrl, o.now, o.now, o.limit, o.serverId, o.claim, o.leaseUntil, o.now];
    const rows = await this.#db.all<Row>(CLAIM[this.#db.dialect], params, HOT);
    return rows
      .map((r) => ({ ...record(r), payload: r.payload!, claim: r.claim! }))
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Marks a claimed delivery delivered; false when the claim was lost (re-queued, or the lease taken over). */
  async delivered(id: string, claim: string, at: number, status: number): Promise<boolean> {
    const n = await this.#db.run(
      `UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_status = ?, last_error = NULL,
        last_attempt_at = ?, delivered_at = ?, ${UNCLAIM} WHERE id = ? AND claim = ?`,
      [status, at, at, id, claim],
      HOT,
    );
    return n > 0;
  }

  /** Records a failed attempt of a claimed delivery: due again later, or failed for good. */
  async attemptFailed(id: string, claim: string, a: FailedAttempt): Promise<boolean> {
    const n = await this.#db.run(
      `UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_status = ?, last_error = ?,
        last_attempt_at = ?, next_attempt_at = COALESCE(?, next_attempt_at), ${UNCLAIM}
        WHERE id = ? AND claim = ?`,
      [a.nextAttemptAt === null ? 'failed' : 'pending', a.status, a.error, a.at, a.nextAttemptAt, id, claim],
      HOT,
    );
    return n > 0;
  }

  /** Gives back what a claim holds and was not attempted (shutdown), so any server may send it at once. */
  async release(claim: string): Promise<number> {
    return this.#db.run(RELEASE_CLAIM, [claim]);
  }

  /** Gives back every claim a server holds: at its start, those of its previous run, which was killed. */
  async releaseServer(serverId: string): Promise<number> {
    return this.#db.run(RELEASE_SERVER, [serverId]);
  }

  /** When the endpoint's next pending delivery becomes claimable (its due time, or its lease's end), if any. */
  async nextDue(endpointUrl: string): Promise<number | null> {
    const row = await this.#db.get<{ due: number | null }>(
      `SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at THEN lease_until
        ELSE next_attempt_at END) AS due
        FROM webhook_deliveries WHERE status = 'pending' AND endpoint_url = ?`,
      [endpointUrl],
      HOT,
    );
    return num(row?.due);
  }

  /** A page of the log, newest first. */
  async list(f: DeliveryFilter): Promise<DeliveryRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (f.status) {
      where.push('status = ?');
      params.push(f.status);
    }
    if (f.sessionId) {
      where.push('session_id = ?');
      params.push(f.sessionId);
    }
    if (f.projectId) {
      where.push('project_id = ?');
      params.push(f.projectId);
    }
    if (f.before) {
      where.push('(created_at, id) < (?, ?)');
      params.push(f.before.createdAt, f.before.id);
    }
    params.push(f.limit);
    const rows = await this.#db.all<Row>(
      `SELECT ${SUMMARY} FROM webhook_deliveries ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY created_at DESC, id DESC LIMIT ?`,
      params,
    );
    return rows.map(record);
  }

  async get(id: string): Promise<DeliveryWithPayload | undefined> {
    const r = await this.#db.get<Row>(`SELECT ${FULL} FROM webhook_deliveries WHERE id = ?`, [id]);
    return r ? { ...record(r), payload: r.payload! } : undefined;
  }

  /**
   * Queues a delivery again, due at `now`, whatever its status: a delivered or failed one starts its attempts
   * afresh; a pending one keeps its count. A claim in flight is dropped (its outcome is not recorded, and the
   * delivery is sent again). Returns the delivery, or undefined when there is none with this id.
   */
  async retry(id: string, now: number): Promise<DeliveryWithPayload | undefined> {
    await this.#db.run(
      `UPDATE webhook_deliveries SET attempts = CASE WHEN status = 'pending' THEN attempts ELSE 0 END,
        status = 'pending', next_attempt_at = ?, delivered_at = NULL, ${UNCLAIM} WHERE id = ?`,
      [now, id],
    );
    return this.get(id);
  }

  /** Deletes delivered and failed deliveries queued before `before`; returns how many. */
  async prune(before: number): Promise<number> {
    return this.#db.run(`DELETE FROM webhook_deliveries WHERE created_at < ? AND status <> 'pending'`, [
      before,
    ]);
  }
}
