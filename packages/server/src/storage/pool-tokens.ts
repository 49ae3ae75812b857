// The pool tokens an admin made (POST /projects/{id}/pool-tokens): each token carries its id (`jti`), and a
// registration with it is refused once it is revoked. The token itself is never stored. Written once for SQLite
// and PostgreSQL.
import type { Db } from './db.ts';

export interface PoolTokenRecord {
  id: string;
  projectId: string;
  region: string;
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

interface Row {
  id: string;
  project_id: string;
  region: string;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
}

const COLUMNS = 'id, project_id, region, created_at, expires_at, revoked_at';
/** How long an expired token stays listed (and kept) after it expired. */
const KEPT_AFTER_EXPIRY_MS = 24 * 3_600_000;

const record = (r: Row): PoolTokenRecord => ({
  id: r.id,
  projectId: r.project_id,
  region: r.region,
  createdAt: Number(r.created_at),
  expiresAt: Number(r.expires_at),
  revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
});

export class PoolTokenStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Keeps a new token; those expired over a day ago go (a token no longer registers anyone once expired). */
  async insert(t: Omit<PoolTokenRecord, 'revokedAt'>): Promise<PoolTokenRecord> {
    await this.#db.run('DELETE FROM pool_tokens WHERE expires_at < ?', [t.createdAt - KEPT_AFTER_EXPIRY_MS]);
    await this.#db.run(
      'INSERT INTO pool_tokens (id, project_id, region, created_at, expires_at) VALUES (?, ?, ?, ?, ?)',
      [t.id, t.projectId, t.region, t.createdAt, t.expiresAt],
    );
    return { ...t, revokedAt: null };
  }

  async get(id: string): Promise<PoolTokenRecord | undefined> {
    const r = await this.#db.get<Row>(`SELECT ${COLUMNS} FROM pool_tokens WHERE id = ?`, [id]);
    return r && record(r);
  }

  /** A project's tokens, newest first; expired ones are kept out once `now` is past them by a day. */
  async list(projectId: string, now: number): Promise<PoolTokenRecord[]> {
    const rows = await this.#db.all<Row>(
      `SELECT ${COLUMNS} FROM pool_tokens WHERE project_id = ? AND expires_at > ? ORDER BY created_at DESC, id DESC`,
      [projectId, now - KEPT_AFTER_EXPIRY_MS],
    );
    return rows.map(record);
  }

  /** Revokes the project's token (again is no error); undefined when the project has no such token. */
  async revoke(projectId: string, id: string, now: number): Promise<PoolTokenRecord | undefined> {
    await this.#db.run(
      'UPDATE pool_tokens SET revoked_at = ? WHERE id = ? AND project_id = ? AND revoked_at IS NULL',
      [now, id, projectId],
    );
    const r = await this.get(id);
    return r?.projectId === projectId ? r : undefined;
  }
}
