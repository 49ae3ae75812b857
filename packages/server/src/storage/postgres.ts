// PostgreSQL through `pg`: for production and for several servers sharing one database.
import { createHash } from 'node:crypto';
import pg from 'pg';
import {
  advisoryLockSql,
  type Db,
  type Queryable,
  type QueryOptions,
  type SqlParam,
  type TxOptions,
  toPgPlaceholders,
} from './db.ts';

export interface PostgresOptions {
  /** a connection string, e.g. postgres://user@127.0.0.1:5432/usher */
  url: string;
  /** a schema to use (created if missing); default `public` */
  schema?: string;
  /** connections in the pool; default 10 */
  poolSize?: number;
  /**
   * the connection string of the connection that LISTENs (the server bus), if not `url`: e.g. straight to
   * PostgreSQL where `url` goes through a pooler in transaction mode, which cannot LISTEN
   */
  listenUrl?: string;
}

/**
 * The database's clock, in ms since the epoch, as SQL: what servers whose own clocks disagree compare times on
 * (clock_timestamp(), not now(): within a transaction that waited on a lock, the time it is, not when it began).
 */
export const PG_NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** How long a LISTEN connection may take to connect and to LISTEN before the attempt is given up. */
const LISTEN_CONNECT_MS = 10_000;
/** How long a LISTEN connection that is closed may take to say goodbye before its socket is cut. */
const LISTEN_END_MS = 2_000;

/** The LISTEN connection of PostgresDb.listen. */
export interface Listening {
  /** Ends the connection; one that does not answer (cut off without a word) is cut after a bound. */
  close(): Promise<void>;
  /** Cuts the connection at once, without a goodbye: for one found deaf. Its errors are not reported. */
  destroy(): void;
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
  readonly #statements = new Map<string, { text: string; name: string }>();
  readonly #url: string;
  readonly #listenUrl: string;
  #closed = false;

  constructor(options: PostgresOptions) {
    this.#url = options.url;
    this.#listenUrl = options.listenUrl ?? options.url;
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

  /** A statement's text with `$n` placeholders, and the name it is prepared under when asked to be. */
  #statement(sql: string, params: readonly SqlParam[], options?: QueryOptions): pg.QueryConfig {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      const text = toPgPlaceholders(sql);
      s = { text, name: `usher_${createHash('sha256').update(text).digest('base64url').slice(0, 24)}` };
      this.#statements.set(sql, s);
    }
    const values = params as unknown[];
    return options?.prepare ? { name: s.name, text: s.text, values } : { text: s.text, values };
  }

  #queryable(client: pg.Pool | pg.PoolClient): Queryable {
    const statement = (sql: string, params: readonly SqlParam[], o?: QueryOptions) =>
      this.#statement(sql, params, o);
    return {
      dialect: 'postgres',
      async all<T>(sql: string, params: readonly SqlParam[] = [], o?: QueryOptions) {
        return (await client.query(statement(sql, params, o))).rows as T[];
      },
      async get<T>(sql: string, params: readonly SqlParam[] = [], o?: QueryOptions) {
        return (await client.query(statement(sql, params, o))).rows[0] as T | undefined;
      },
      async run(sql: string, params: readonly SqlParam[] = [], o?: QueryOptions) {
        return (await client.query(statement(sql, params, o))).rowCount ?? 0;
      },
    };
  }

  all<T>(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<T[]> {
    return this.#queryable(this.pool).all<T>(sql, params, options);
  }
  get<T>(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<T | undefined> {
    return this.#queryable(this.pool).get<T>(sql, params, options);
  }
  run(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<number> {
    return this.#queryable(this.pool).run(sql, params, options);
  }

  async tx<T>(fn: (q: Queryable) => Promise<T>, options: TxOptions = {}): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      // a checked-out client has no listener of the pool's: a connection lost mid-transaction (a restart, a
      // failover, a killed backend) would be an uncaught 'error' and end the process. It fails the query
      // instead, and the broken client is destroyed rather than returned to the pool
      let broken: Error | undefined;
      const onError = (err: Error) => {
        broken = err;
      };
      client.on('error', onError);
      try {
        // the lock goes with BEGIN, as a second statement of the same simple query: one round trip for both
        await client.query(
          options.lock === undefined
            ? 'BEGIN'
            : `BEGIN; ${advisoryLockSql(client.escapeLiteral(options.lock))}`,
        );
        const result = await fn(this.#queryable(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        const code = (err as { code?: string }).code;
        if (code && RETRYABLE.has(code) && attempt < 5) continue;
        throw err;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    }
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  /**
   * A connection of its own that LISTENs on `channel` (outside the pool, which it would otherwise hold). Its
   * errors go to onError; the caller reconnects. TCP keepalive is on, so that a peer gone without a word is
   * found out by the kernel in the end; the caller's pings find it out sooner (PostgresBus).
   */
  async listen(
    channel: string,
    onNotify: (payload: string) => void,
    onError: (err: Error) => void,
  ): Promise<Listening> {
    const client = new pg.Client({
      connectionString: this.#listenUrl,
      types,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // a database that does not answer (a black hole, not a refusal) fails the attempt: the caller tries again
      connectionTimeoutMillis: LISTEN_CONNECT_MS,
      query_timeout: LISTEN_CONNECT_MS,
    });
    let cut = false;
    client.on('error', (err) => {
      if (!cut) onError(err);
    });
    client.on('notification', (n) => {
      if (!cut && n.channel === channel && n.payload !== undefined) onNotify(n.payload);
    });
    const destroy = () => {
      cut = true;
      client.connection.stream.destroy();
    };
    try {
      await client.connect();
      await client.query(`LISTEN "${channel}"`);
    } catch (err) {
      destroy();
      throw err;
    }
    return {
      close: async () => {
        // end() waits for the server's goodbye, which a connection cut off without a word never brings
        const late = setTimeout(destroy, LISTEN_END_MS);
        try {
          await client.end();
        } finally {
          clearTimeout(late);
        }
      },
      destroy,
    };
  }

  /**
   * Creates the schema if it is missing (before migrations). A schema that exists is left alone, so a role
   * without CREATE on the database can use one made for it; servers starting together may race to create
   * it, and the loser finds it made.
   */
  async ensureSchema(): Promise<void> {
    const exists = async () =>
      (await this.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.schema])).rowCount! > 0;
    if (await exists()) return;
    try {
      await this.pool.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
    } catch (err) {
      // 23505 and 42P06: another server created it at the same moment
      const code = (err as { code?: string }).code;
      if ((code === '23505' || code === '42P06') && (await exists())) return;
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.pool.end();
  }
}
