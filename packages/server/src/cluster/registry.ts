// The servers that share the database: each one writes its row at start, refreshes it while it runs, marks it
// when it drains and removes it when it stops. A row not refreshed for a while is a server that died: the first
// running server to notice claims it (by deleting the row) and adopts what the dead one held.
import type { Db } from '../storage/db.ts';

/** How often a server refreshes its row (real time), by default; a row three times as old is a dead server's. */
export const SERVER_HEARTBEAT_MS = 5_000;

export interface ServerInfo {
  id: string;
  url: string;
  version: string;
  startedAt: number;
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
}

export class ServerRegistry {
  readonly #db: Db;
  readonly #id: string;
  readonly #now: () => number;
  readonly #heartbeatMs: number;
  #timer: NodeJS.Timeout | null = null;
  #onDead: (serverId: string) => Promise<void> = async () => {};
  #onBeat: (alive: Set<string>) => void = () => {};
  #onReclaimed: () => Promise<void> = async () => {};
  #row: { url: string; version: string } | null = null;

  constructor(db: Db, serverId: string, options: { heartbeatMs?: number; now?: () => number } = {}) {
    this.#db = db;
    this.#id = serverId;
    this.#heartbeatMs = options.heartbeatMs ?? SERVER_HEARTBEAT_MS;
    this.#now = options.now ?? Date.now;
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

  /** What to do with a dead server that this one claimed. */
  onDeadServer(handler: (serverId: string) => Promise<void>): void {
    this.#onDead = handler;
  }

  /** Writes this server's row (a restart under the same id replaces it) and keeps it fresh. */
  async start(url: string, version: string): Promise<void> {
    this.#row = { url, version };
    await this.#upsert();
    this.#timer = setInterval(() => void this.#beat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  async #upsert(): Promise<void> {
    const { url, version } = this.#row!;
    const now = this.#now();
    await this.#db.run(
      `INSERT INTO servers (id, url, version, started_at, seen_at, draining) VALUES (?, ?, ?, ?, ?, 0)
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, version = excluded.version,
         started_at = excluded.started_at, seen_at = excluded.seen_at, draining = 0`,
      [this.#id, url, version, now, now],
    );
  }

  async #beat(): Promise<void> {
    try {
      const n = await this.#db.run('UPDATE servers SET seen_at = ? WHERE id = ?', [this.#now(), this.#id]);
      if (n === 0) {
        await this.#upsert();
        await this.#onReclaimed();
      }
      await this.sweep();
      this.#onBeat(await this.alive());
    } catch {
      // the database is away: the next beat tries again
    }
  }

  /** Claims the rows of dead servers, one at a time, and adopts each; returns the ids it claimed. */
  async sweep(): Promise<string[]> {
    const before = this.#now() - this.goneAfterMs;
    const stale = await this.#db.all<{ id: string }>('SELECT id FROM servers WHERE seen_at < ? AND id <> ?', [
      before,
      this.#id,
    ]);
    const claimed: string[] = [];
    for (const { id } of stale) {
      // only one server deletes the row: that one adopts
      const n = await this.#db.run('DELETE FROM servers WHERE id = ? AND seen_at < ?', [id, before]);
      if (n !== 1) continue;
      claimed.push(id);
      await this.#onDead(id);
    }
    return claimed;
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
      alive: now - Number(r.seen_at) < this.goneAfterMs,
    }));
  }

  /** The ids of the servers that run now (this one included). */
  async alive(): Promise<Set<string>> {
    return new Set((await this.list()).filter((s) => s.alive).map((s) => s.id));
  }

  /** The server stopped cleanly: its row goes. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#db.run('DELETE FROM servers WHERE id = ?', [this.#id]).catch(() => {});
  }
}
