// The servers that share the database: each one writes its row at start, refreshes it while it runs, marks it
// when it drains and removes it when it stops. A row not refreshed for a while is a server that died: the first
// running server to notice claims it, adopts what the dead one held, and only then removes the row.
//
// Ages are read on the database's clock (PostgreSQL): each server's row is stamped and compared there, so servers
// whose own clocks disagree (10 s, a minute) still see each other alive. SQLite has one server, and its clock.
import type { Db, SqlValue } from '../storage/db.ts';
import { PG_NOW_MS } from '../storage/postgres.ts';
import { type Logger, silentLogger } from '../util/logger.ts';

/** `seen_at` of the row of a server that stopped cleanly (ServerRegistry.stop) */
const STOPPED = 0;

/** How often a server refreshes its row (real time), by default; a row three times as old is a dead server's. */
export const SERVER_HEARTBEAT_MS = 5_000;

export interface ServerInfo {
  id: string;
  url: string;
  version: string;
  /** on the database's clock (PostgreSQL) */
  startedAt: number;
  /** on the database's clock (PostgreSQL) */
  seenAt: number;
  draining: boolean;
  /** seen within three heartbeats */
  alive: boolean;
}

interface Row {
  id: string;
  url: string;
  version: string;
  started_at: number;
  seen_at: number;
  draining: number;
  /** the clock the ages are read on, at the time of the read */
  now: number;
}

export class ServerRegistry {
  readonly #db: Db;
  readonly #id: string;
  readonly #now: () => number;
  readonly #heartbeatMs: number;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | null = null;
  /** the beat running now: the next one waits its turn (skipped), and stop() waits for it */
  #beating: Promise<void> | null = null;
  #onDead: (serverId: string, how: 'died' | 'stopped') => Promise<void> = async () => {};
  /** draining or closing: it adopts no other server (it would take the watches with it as it goes) */
  #draining = false;
  #onBeat: (alive: Set<string>) => void = () => {};
  #onReclaimed: () => Promise<void> = async () => {};
  #row: { url: string; version: string } | null = null;

  constructor(
    db: Db,
    serverId: string,
    options: {
      heartbeatMs?: number;
      /** SQLite's clock (one server); PostgreSQL's rows are stamped and aged on the database's */
      now?: () => number;
      log?: Logger;
    } = {},
  ) {
    this.#db = db;
    this.#id = serverId;
    this.#heartbeatMs = options.heartbeatMs ?? SERVER_HEARTBEAT_MS;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? silentLogger;
  }

  /** A row older than this belongs to a server that is gone (killed, or cut off from the database). */
  get goneAfterMs(): number {
    return 3 * this.#heartbeatMs;
  }

  /** Told after every heartbeat which servers run (this one included). */
  onBeat(handler: (alive: Set<string>) => void): void {
    this.#onBeat = handler;
  }

  /**
   * This server's row was gone: another server took it for dead (it was cut off from the database for a
   * while) and adopted what it held. The row is back; the handler takes its viewers and workers back.
   */
  onReclaimed(handler: () => Promise<void>): void {
    this.#onReclaimed = handler;
  }

  /**
   * What to do with a server that this one claimed: one that died, or stopped cleanly (its row marked so by
   * stop()). A failure leaves the row, for a later sweep.
   */
  onDeadServer(handler: (serverId: string, how: 'died' | 'stopped') => Promise<void>): void {
    this.#onDead = handler;
  }

  /**
   * "Now" in SQL, and its parameters: on PostgreSQL the database's clock, the one every server's row is stamped
   * and aged on (a server whose own clock is off would otherwise look dead to the others, or them to it); on
   * SQLite, with one server, this server's clock.
   */
  #clock(): { now: string; params: SqlValue[] } {
    return this.#db.dialect === 'postgres'
      ? { now: PG_NOW_MS, params: [] }
      : { now: '?', params: [this.#now()] };
  }

  /** Writes this server's row (a restart under the same id replaces it) and keeps it fresh. */
  async start(url: string, version: string): Promise<void> {
    this.#row = { url, version };
    await this.#upsert();
    this.#timer = setInterval(() => {
      // a beat slower than the heartbeat (a long adoption) is not run twice at once
      this.#beating ??= this.#beat().finally(() => {
        this.#beating = null;
      });
    }, this.#heartbeatMs);
    this.#timer.unref();
  }

  async #upsert(): Promise<void> {
    const { url, version } = this.#row!;
    const { now, params } = this.#clock();
    await this.#db.run(
      `INSERT INTO servers (id, url, version, started_at, seen_at, draining) VALUES (?, ?, ?, ${now}, ${now}, 0)
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, version = excluded.version,
         started_at = excluded.started_at, seen_at = excluded.seen_at, draining = 0`,
      [this.#id, url, version, ...params, ...params],
    );
  }

  async #beat(): Promise<void> {
    try {
      const { now, params } = this.#clock();
      const n = await this.#db.run(`UPDATE servers SET seen_at = ${now} WHERE id = ?`, [...params, this.#id]);
      if (n === 0) {
        await this.#upsert();
        await this.#onReclaimed();
      }
      if (!this.#draining) await this.sweep();
      this.#onBeat(await this.alive());
    } catch (err) {
      // the database is away: the next beat tries again
      this.#log.warn({ err }, 'the server heartbeat failed; trying again at the next beat');
    }
  }

  /**
   * Adopts what dead servers held, one at a time, and removes each one's row once that is done; returns the ids
   * it adopted. A row stays while its adoption fails, so that a later sweep (of this server or another) tries
   * again.
   */
  async sweep(): Promise<string[]> {
    const { now, params } = this.#clock();
    const stale = await this.#db.all<{ id: string; seen_at: number }>(
      `SELECT id, seen_at FROM servers WHERE seen_at < ${now} - ? AND id <> ?`,
      [...params, this.goneAfterMs, this.#id],
    );
    const adopted: string[] = [];
    for (const { id, seen_at } of stale) {
      try {
        if (await this.#adopt(id, Number(seen_at) === STOPPED ? 'stopped' : 'died')) adopted.push(id);
      } catch (err) {
        this.#log.error({ err, server: id }, 'adopting a dead server failed; a later sweep tries again');
      }
    }
    return adopted;
  }

  /** Adopts one dead server and removes its row; false if another server has it, or it came back. */
  async #adopt(id: string, how: 'died' | 'stopped'): Promise<boolean> {
    if (this.#db.dialect !== 'postgres') {
      // one server on SQLite: no other claims the row (and a transaction there would hold the whole database)
      await this.#onDead(id, how);
      await this.#db.run('DELETE FROM servers WHERE id = ?', [id]);
      return true;
    }
    // The row stays locked while its server is adopted: another sweeping server skips it (one adopter), and
    // the dead server, should it come back, waits on its refresh until the row is gone, then finds it gone and
    // takes back what it held (onReclaimed). A failed adoption rolls back: the row stays, stale, for a retry.
    return this.#db.tx(async (q) => {
      const row = await q.get<{ id: string }>(
        `SELECT id FROM servers WHERE id = ? AND seen_at < ${PG_NOW_MS} - ? FOR UPDATE SKIP LOCKED`,
        [id, this.goneAfterMs],
      );
      if (!row) return false;
      await this.#onDead(id, how);
      await q.run('DELETE FROM servers WHERE id = ?', [id]);
      return true;
    });
  }

  /** This server adopts no other from now on (it drains or closes: it would take the watches with it). */
  stopAdopting(): void {
    this.#draining = true;
  }

  async markDraining(): Promise<void> {
    this.#draining = true;
    const { now, params } = this.#clock();
    await this.#db.run(`UPDATE servers SET draining = 1, seen_at = ${now} WHERE id = ?`, [
      ...params,
      this.#id,
    ]);
  }

  async list(): Promise<ServerInfo[]> {
    const { now, params } = this.#clock();
    const rows = await this.#db.all<Row>(
      `SELECT id, url, version, started_at, seen_at, draining, ${now} AS now FROM servers ORDER BY id`,
      params,
    );
    return rows.map((r) => ({
      id: r.id,
      url: r.url,
      version: r.version,
      startedAt: Number(r.started_at),
      seenAt: Number(r.seen_at),
      draining: Number(r.draining) === 1,
      alive: Number(r.now) - Number(r.seen_at) < this.goneAfterMs,
    }));
  }

  /** The ids of the servers that run now (this one included). */
  async alive(): Promise<Set<string>> {
    return new Set((await this.list()).filter((s) => s.alive).map((s) => s.id));
  }

  /**
   * The server stopped cleanly, once a beat under way (an adoption, say) is done: its row is marked as stopped
   * (seen at 0, stale at once), so that the next running server to sweep adopts it as it would a dead one,
   * under the row's lock: it watches the workers that were connected here until they come back to a server.
   * A restart under the same id writes the row anew.
   */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#draining = true;
    await this.#beating;
    await this.#db.run(`UPDATE servers SET seen_at = ${STOPPED} WHERE id = ?`, [this.#id]).catch(() => {});
  }
}
