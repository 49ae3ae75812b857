// The admin keys made through the API (and the bootstrap key): only each key's SHA-256 hash and a short prefix
// for display are stored, never the key. Written once for SQLite and PostgreSQL.
import type { Db, Queryable, QueryOptions } from './db.ts';

export interface AdminKeyRecord {
  id: string;
  name: string;
  /** the first characters of the key, to tell keys apart in a list (not enough to guess the rest) */
  prefix: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

export interface NewAdminKey {
  id: string;
  name: string;
  /** hex SHA-256 of the key */
  hash: string;
  prefix: string;
  createdAt: number;
}

/** Why a key was not revoked. */
export type RevokeRefusal = 'not_found' | 'last_key';

interface Row {
  id: string;
  name: string;
  prefix: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

const COLUMNS = 'id, name, prefix, created_at, last_used_at, revoked_at';
const HOT: QueryOptions = { prepare: true };

const record = (r: Row): AdminKeyRecord => ({
  id: r.id,
  name: r.name,
  prefix: r.prefix,
  createdAt: Number(r.created_at),
  lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at),
  revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
});

export class AdminKeyStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Every key, revoked ones too, oldest first. */
  async list(): Promise<AdminKeyRecord[]> {
    const rows = await this.#db.all<Row>(`SELECT ${COLUMNS} FROM admin_keys ORDER BY created_at, id`);
    return rows.map(record);
  }

  async get(id: string): Promise<AdminKeyRecord | undefined> {
    const r = await this.#db.get<Row>(`SELECT ${COLUMNS} FROM admin_keys WHERE id = ?`, [id]);
    return r && record(r);
  }

  async insert(k: NewAdminKey): Promise<AdminKeyRecord> {
    await this.#db.run('INSERT INTO admin_keys (id, name, hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)', [
      k.id,
      k.name,
      k.hash,
      k.prefix,
      k.createdAt,
    ]);
    return {
      id: k.id,
      name: k.name,
      prefix: k.prefix,
      createdAt: k.createdAt,
      lastUsedAt: null,
      revokedAt: null,
    };
  }

  /**
   * The key with this hash, if it is not revoked; stamps its last use when it is found. A hash that matches
   * nothing costs one indexed read and no write (a flood of different bad keys each reach the database); the
   * caller caches the answer, so a key in use is stamped at most once per cache period on each server.
   */
  async use(hash: string, now: number): Promise<{ id: string } | undefined> {
    const r = await this.#db.get<{ id: string }>(
      'SELECT id FROM admin_keys WHERE hash = ? AND revoked_at IS NULL',
      [hash],
      HOT,
    );
    if (!r) return undefined;
    await this.#db.run('UPDATE admin_keys SET last_used_at = ? WHERE id = ?', [now, r.id], HOT);
    return { id: r.id };
  }

  /**
   * Inserts the key only if no key is active (first start): true when it was. Servers that start together on
   * one PostgreSQL agree: only one of them inserts.
   */
  async insertIfNoneActive(k: NewAdminKey): Promise<boolean> {
    return this.#db.tx(async (q) => {
      await lock(q);
      if ((await activeCount(q)) > 0) return false;
      await q.run('INSERT INTO admin_keys (id, name, hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)', [
        k.id,
        k.name,
        k.hash,
        k.prefix,
        k.createdAt,
      ]);
      return true;
    });
  }

  /**
   * Revokes a key. With `keepOne`, the last active key is not revoked (nobody could get in again): two
   * revocations at once cannot both pass that check. A key already revoked is returned as it is.
   */
  async revoke(id: string, now: number, keepOne: boolean): Promise<AdminKeyRecord | RevokeRefusal> {
    return this.#db.tx(async (q) => {
      await lock(q);
      const r = await q.get<Row>(`SELECT ${COLUMNS} FROM admin_keys WHERE id = ?`, [id]);
      if (!r) return 'not_found';
      if (r.revoked_at !== null) return record(r);
      if (keepOne && (await activeCount(q)) <= 1) return 'last_key';
      await q.run('UPDATE admin_keys SET revoked_at = ? WHERE id = ?', [now, id]);
      return { ...record(r), revokedAt: now };
    });
  }
}

async function activeCount(q: Queryable): Promise<number> {
  const r = await q.get<{ n: number }>('SELECT COUNT(*) AS n FROM admin_keys WHERE revoked_at IS NULL');
  return Number(r?.n ?? 0);
}

/** Serializes the transactions that count active keys (SQLite's transactions already are). */
async function lock(q: Queryable): Promise<void> {
  if (q.dialect === 'postgres') await q.run("SELECT pg_advisory_xact_lock(hashtext('usher_admin_keys'))");
}
