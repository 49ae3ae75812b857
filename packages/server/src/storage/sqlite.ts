// SQLite through Node's built-in node:sqlite: the embedded default, one file, nothing to install.
import { closeSync, openSync } from 'node:fs';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import type { Db, Queryable, SqlParam, SqlValue, TxOptions } from './db.ts';

export interface SqliteOptions {
  /** a file path, or ':memory:' */
  path: string;
}

/** Prepared statements kept at most (the oldest is dropped first). */
const MAX_STATEMENTS = 1000;

/**
 * After this many commits a database file gets its checkpointer thread (a short-lived or idle database does
 * not need one). From then on the server's connection checkpoints only when the log outgrows
 * WAL_LIMIT_PAGES, which the checkpointer keeps from happening unless it falls behind.
 */
const CHECKPOINTER_AFTER_COMMITS = 1_000;
const WAL_LIMIT_PAGES = 10_000;
/** SQLite's own default */
const DEFAULT_WAL_LIMIT_PAGES = 1_000;

export class SqliteDb implements Db {
  readonly dialect = 'sqlite' as const;
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  /** tail of the chain of transactions waiting for the single connection */
  #lock: Promise<void> = Promise.resolve();
  #locked = false;
  #closed = false;
  readonly #direct: Queryable;
  readonly #path: string;
  #commits = 0;
  #checkpointer: Worker | null = null;

  constructor(options: SqliteOptions) {
    this.#path = options.path;
    // the file holds the token secret and admin keys' hashes: readable by its owner only (made so here if it is
    // new; SQLite gives its -wal and -shm files the database file's permissions)
    if (options.path !== ':memory:' && !options.path.startsWith('file:'))
      closeSync(openSync(options.path, 'a', 0o600));
    this.#db = new DatabaseSync(options.path);
    this.#db.exec(
      'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;',
    );
    const self = this;
    // every statement is kept prepared (options.prepare changes nothing here); arrays are PostgreSQL's only
    this.#direct = {
      dialect: 'sqlite',
      async all<T>(sql: string, params: readonly SqlParam[] = []) {
        return self.#stmt(sql).all(...(params as SqlValue[])) as T[];
      },
      async get<T>(sql: string, params: readonly SqlParam[] = []) {
        return self.#stmt(sql).get(...(params as SqlValue[])) as T | undefined;
      },
      async run(sql: string, params: readonly SqlParam[] = []) {
        const changes = Number(self.#stmt(sql).run(...(params as SqlValue[])).changes);
        // outside a transaction the statement commits on its own (the message log's batches do)
        if (!self.#db.isTransaction) self.#committed();
        return changes;
      },
    };
  }

  #stmt(sql: string): StatementSync {
    let s = this.#statements.get(sql);
    if (!s) {
      // many-row statements vary with their row count: keep the most recent ones only
      if (this.#statements.size >= MAX_STATEMENTS)
        this.#statements.delete(this.#statements.keys().next().value!);
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  /** Statements outside a transaction wait for any open one, so they never join it by accident. */
  async #outside<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    this.#open();
    if (!this.#locked) return fn(this.#direct);
    return this.tx(fn);
  }

  all<T>(sql: string, params?: readonly SqlParam[]): Promise<T[]> {
    return this.#outside((q) => q.all<T>(sql, params));
  }
  get<T>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined> {
    return this.#outside((q) => q.get<T>(sql, params));
  }
  run(sql: string, params?: readonly SqlParam[]): Promise<number> {
    return this.#outside((q) => q.run(sql, params));
  }

  /** Work that arrives once close() has begun is refused, with its caller's stack. */
  #open(): void {
    if (this.#closed)
      throw new Error(
        `the SQLite database ${this.#path} is closed: nothing is read or written after close()`,
      );
  }

  /** Transactions run one at a time (BEGIN IMMEDIATE): a lock (TxOptions) has nothing to add. */
  async tx<T>(fn: (q: Queryable) => Promise<T>, _options?: TxOptions): Promise<T> {
    this.#open();
    const previous = this.#lock;
    let release!: () => void;
    this.#lock = new Promise<void>((r) => {
      release = r;
    });
    await previous;
    this.#locked = true;
    try {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(this.#direct);
        this.#db.exec('COMMIT');
        this.#committed();
        return result;
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    } finally {
      this.#locked = false;
      release();
    }
  }

  #committed(): void {
    if (++this.#commits === CHECKPOINTER_AFTER_COMMITS && this.#path !== ':memory:')
      this.#startCheckpointer();
  }

  /** Moves checkpoints to a thread of their own (sqlite-checkpointer.ts). */
  #startCheckpointer(): void {
    const worker = new Worker(new URL('./sqlite-checkpointer.ts', import.meta.url), {
      workerData: { path: this.#path },
    });
    worker.unref();
    this.#db.exec(`PRAGMA wal_autocheckpoint = ${WAL_LIMIT_PAGES}`);
    // should the thread fail, checkpoints go back to this connection
    const fallBack = () => {
      if (this.#checkpointer !== worker) return;
      this.#checkpointer = null;
      if (!this.#closed) this.#db.exec(`PRAGMA wal_autocheckpoint = ${DEFAULT_WAL_LIMIT_PAGES}`);
    };
    worker.on('error', fallBack);
    worker.on('exit', fallBack);
    this.#checkpointer = worker;
  }

  async exec(sql: string): Promise<void> {
    await this.#outside(async () => {
      this.#db.exec(sql);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#lock;
    const checkpointer = this.#checkpointer;
    if (checkpointer) {
      this.#checkpointer = null;
      const exited = new Promise((r) => checkpointer.once('exit', r));
      checkpointer.ref(); // keeps the process up until the thread is gone
      checkpointer.postMessage('close');
      await exited;
    }
    this.#statements.clear();
    // the last connection to close copies what is left of the log back and removes it
    this.#db.close();
  }
}
