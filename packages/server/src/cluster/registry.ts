// The servers that share the database: each one writes its row at start, refreshes it while it runs, marks it
// when it drains and removes it when it stops. A row not refreshed for a while is a server that died.
import type { Db } from '../storage/db.ts';

/** How often a server refreshes its row (real time). */
export const SERVER_HEARTBEAT_MS = 5_000;
/** A row this old belongs to a server that is gone (killed, or cut off from the database). */
export const SERVER_GONE_AFTER_MS = 3 * SERVER_HEARTBEAT_MS;

export interface ServerInfo {
  id: string;
  url: string;
  version: string;
  startedAt: number;
  seenAt: number;
  draining: boolean;
  /** seen within SERVER_GONE_AFTER_MS */
  alive: boolean;
}

interface Row {
  id: string;
  url: string;
  version: string;
  started_at: number;
  seen_at: number;
  draining: number;
}

export class ServerRegistry {
  readonly #db: Db;
  readonly #id: string;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | null = null;

  constructor(db: Db, serverId: string, now: () => number = Date.now) {
    this.#db = db;
    this.#id = serverId;
    this.#now = now;
  }

  /** Writes this server's row (a restart under the same id replaces it) and keeps it fresh. */
  async start(url: string, version: string): Promise<void> {
    const now = this.#now();
    await this.#db.run(
      `INSERT INTO servers (id, url, version, started_at, seen_at, draining) VALUES (?, ?, ?, ?, ?, 0)
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, version = excluded.version,
         started_at = excluded.started_at, seen_at = excluded.seen_at, draining = 0`,
      [this.#id, url, version, now, now],
    );
    this.#timer = setInterval(() => {
      void this.#db
        .run('UPDATE servers SET seen_at = ? WHERE id = ?', [this.#now(), this.#id])
        .catch(() => {});
    }, SERVER_HEARTBEAT_MS);
    this.#timer.unref();
  }

  async markDraining(): Promise<void> {
    await this.#db.run('UPDATE servers SET draining = 1, seen_at = ? WHERE id = ?', [this.#now(), this.#id]);
  }

  async list(): Promise<ServerInfo[]> {
    const now = this.#now();
    const rows = await this.#db.all<Row>(
      'SELECT id, url, version, started_at, seen_at, draining FROM servers ORDER BY id',
    );
    return rows.map((r) => ({
      id: r.id,
      url: r.url,
      version: r.version,
      startedAt: Number(r.started_at),
      seenAt: Number(r.seen_at),
      draining: r.draining === 1,
      alive: now - Number(r.seen_at) < SERVER_GONE_AFTER_MS,
    }));
  }

  /** The server stopped cleanly: its row goes. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#db.run('DELETE FROM servers WHERE id = ?', [this.#id]).catch(() => {});
  }
}
