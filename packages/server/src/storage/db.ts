// The thin database adapter both storage back-ends implement: run SQL written once with `?` placeholders.

export type Dialect = 'sqlite' | 'postgres';
export type SqlValue = string | number | null;
/** A statement's parameter: a value, or (PostgreSQL only) an array of values, for `= ANY(?)` or `unnest(?)`. */
export type SqlParam = SqlValue | readonly SqlValue[];

export interface QueryOptions {
  /**
   * A statement run often, whose text does not vary: PostgreSQL keeps it prepared on each connection, so it is
   * parsed and planned once (SQLite keeps every statement prepared anyway). Only for statements that name
   * their result columns (no `SELECT *`): a prepared statement's result columns cannot change.
   */
  prepare?: boolean;
}

export interface TxOptions {
  /**
   * PostgreSQL: a transaction-scoped advisory lock on this key (hashed as `hashtextextended(key, 0)`), taken
   * with BEGIN in the same round trip. SQLite's transactions hold the whole database, so it needs none.
   */
  lock?: string;
}

/** PostgreSQL: the statement that takes a transaction-scoped advisory lock on a key (a literal, or `?`). */
export function advisoryLockSql(key: string): string {
  return `SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0)) AS locked`;
}

export interface Queryable {
  readonly dialect: Dialect;
  all<T>(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<T[]>;
  get<T>(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<T | undefined>;
  run(sql: string, params?: readonly SqlParam[], options?: QueryOptions): Promise<number>;
}

export interface Db extends Queryable {
  /** Runs fn in one transaction; on SQLite transactions are serialized, on PostgreSQL they run in parallel. */
  tx<T>(fn: (q: Queryable) => Promise<T>, options?: TxOptions): Promise<T>;
  /** Runs a script of several statements (migrations). */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}

/** Rewrites `?` placeholders to PostgreSQL's `$1, $2, …` (no `?` may appear inside SQL string literals). */
export function toPgPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}
