// PostgreSQL through `pg`: for production and for several servers sharing one database.
import pg from 'pg';
import { type Db, type Queryable, type SqlValue, toPgPlaceholders } from './db.ts';

export interface PostgresOptions {
  /** a connection string, e.g. postgres://user@127.0.0.1:5432/usher */
  url: string;
  /** a schema to use (created if missing); default `public` */
  schema?: string;
  /** connections in the pool; default 10 */
  poolSize?: number;
}

const int8AsNumber = (value: string) => Number(value);
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20) return int8AsNumber; // BIGINT: times in ms and counts fit in a double
    return pg.types.getTypeParser(oid, format);
  },
};

/** Errors worth retrying a whole transaction for: serialization failure and deadlock. */
const RETRYABLE = new Set(['40001', '40P01']);

export class PostgresDb implements Db {
  readonly dialect = 'postgres' as const;
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly #sqlCache = new Map<string, string>();
  #closed = false;

  constructor(options: PostgresOptions) {
    this.schema = options.schema ?? 'public';
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(this.schema)) {
      throw new Error(`storage.postgres.schema "${this.schema}" must be a lower-case SQL identifier`);
    }
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      types,
      options: `-c search_path=${this.schema}`,
    });
    // an idle client that errors (e.g. the server restarted) must not crash the process
    this.pool.on('error', () => {});
  }

  #sql(sql: string): string {
    let s = this.#sqlCache.get(sql);
    if (s === undefined) {
      s = toPgPlaceholders(sql);
      this.#sqlCache.set(sql, s);
    }
    return s;
  }

  #queryable(client: pg.Pool | pg.PoolClient): Queryable {
    const sqlOf = (s: string) => this.#sql(s);
    return {
      dialect: 'postgres',
      async all<T>(sql: string, params: readonly SqlValue[] = []) {
        return (await client.query(sqlOf(sql), params as SqlValue[])).rows as T[];
      },
      async get<T>(sql: string, params: readonly SqlValue[] = []) {
        return (await client.query(sqlOf(sql), params as SqlValue[])).rows[0] as T | undefined;
      },
      async run(sql: string, params: readonly SqlValue[] = []) {
        return (await client.query(sqlOf(sql), params as SqlValue[])).rowCount ?? 0;
      },
    };
  }

  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.#queryable(this.pool).all<T>(sql, params);
  }
  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.#queryable(this.pool).get<T>(sql, params);
  }
  run(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.#queryable(this.pool).run(sql, params);
  }

  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(this.#queryable(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        const code = (err as { code?: string }).code;
        if (code && RETRYABLE.has(code) && attempt < 5) continue;
        throw err;
      } finally {
        client.release();
      }
    }
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  /** Creates the schema if needed (before migrations). */
  async ensureSchema(): Promise<void> {
    await this.pool.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pool.end();
  }
}
