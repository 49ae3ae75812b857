// The store: a database plus its migrations and repository. `openStore` picks the back-end from a URL.
import type { Db } from './db.ts';
import { MessageLog } from './messages.ts';
import { migrate } from './migrations.ts';
import { PoolTokenStore } from './pool-tokens.ts';
import { PostgresDb } from './postgres.ts';
import { poolLockKey, Repo } from './repo.ts';
import { SqliteDb } from './sqlite.ts';

export type StorageOptions =
  | { type: 'sqlite'; path: string }
  | { type: 'postgres'; url: string; schema?: string; poolSize?: number };

/** With `pool`, the transaction begins holding that pool's lock (Repo.lockPool), taken with BEGIN. */
export interface StoreTxOptions {
  pool?: { projectId: string; region: string };
}

export class Store {
  readonly db: Db;
  /** reads and single statements outside any transaction */
  readonly read: Repo;
  /** recorded room messages: written in batches outside the engine's transactions */
  readonly messages: MessageLog;
  /** the pool tokens made, to refuse revoked ones */
  readonly poolTokens: PoolTokenStore;

  constructor(db: Db) {
    this.db = db;
    this.read = new Repo(db);
    this.messages = new MessageLog(db);
    this.poolTokens = new PoolTokenStore(db);
  }

  get dialect() {
    return this.db.dialect;
  }

  /**
   * Runs fn in one transaction; rows the repository held back are written before the commit. With `pool`, the
   * transaction begins holding that pool's lock (Repo.lockPool), taken with BEGIN.
   */
  tx<T>(fn: (r: Repo) => Promise<T>, options: StoreTxOptions = {}): Promise<T> {
    const lock = options.pool && poolLockKey(options.pool.projectId, options.pool.region);
    return this.db.tx(
      async (q) => {
        const r = new Repo(q, true, lock);
        const result = await fn(r);
        await r.flush();
        return result;
      },
      lock === undefined ? {} : { lock },
    );
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** Opens the database and brings its schema up to date. */
export async function openStore(options: StorageOptions, now: () => number = Date.now): Promise<Store> {
  let db: Db;
  if (options.type === 'sqlite') {
    db = new SqliteDb({ path: options.path });
  } else {
    const pg = new PostgresDb(options);
    try {
      await pg.ensureSchema();
    } catch (err) {
      await pg.close();
      throw new Error(schemaError(err, options.url, pg.schema));
    }
    db = pg;
  }
  await migrate(db, now);
  return new Store(db);
}

/** Why the schema could not be made ready: PostgreSQL out of reach, or a refusal from it. */
function schemaError(err: unknown, url: string, schema: string): string {
  const { message, code } = err as { message: string; code?: string };
  if (code === '42501')
    return `PostgreSQL at ${redact(url)} refused to create the schema "${schema}": ${message}. Create it once as a role that may (CREATE SCHEMA ${schema} AUTHORIZATION <this server's role>), or grant this role CREATE on the database.`;
  // no SQLSTATE, or one of the classes of connecting and logging in (08, 28, 3D, 57): not connected
  if (code === undefined || !/^[0-9A-Z]{5}$/.test(code) || /^(08|28|3D|57)/.test(code))
    return `cannot reach PostgreSQL at ${redact(url)}: ${message}. Check storage.postgres.url (env USHER_DATABASE_URL) and that the server is running.`;
  return `PostgreSQL at ${redact(url)} refused to prepare the schema "${schema}": ${message} (SQLSTATE ${code}).`;
}

/** A connection string without its password, for messages and logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable url>';
  }
}
