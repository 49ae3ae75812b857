// Schema migrations, written once for both SQLite and PostgreSQL; `{{id}}` is each dialect's auto id and
// `{{clustered}}` makes a table clustered by its primary key where the dialect can.
import type { Db, Dialect } from './db.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'core: projects, sessions, transitions, workers, timers, settings',
    sql: `
CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  settings TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  region TEXT NOT NULL,
  agent_type TEXT,
  config TEXT NOT NULL,
  state TEXT NOT NULL,
  worker_id TEXT,
  queued_at BIGINT,
  restarts INTEGER NOT NULL DEFAULT 0,
  saved_state TEXT,
  viewer_attached INTEGER NOT NULL DEFAULT 0,
  worker_started INTEGER NOT NULL DEFAULT 0,
  pending_end TEXT,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  active_at BIGINT,
  ended_at BIGINT,
  end_code INTEGER,
  end_reason TEXT,
  outcome TEXT
);
CREATE INDEX sessions_queue ON sessions (project_id, region, queued_at, id) WHERE state = 'queued';
CREATE INDEX sessions_state ON sessions (state, project_id);
CREATE INDEX sessions_created ON sessions (project_id, created_at);
CREATE INDEX sessions_ended ON sessions (project_id, region, ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE transitions (
  id {{id}},
  session_id TEXT NOT NULL,
  from_state TEXT,
  to_state TEXT NOT NULL,
  at BIGINT NOT NULL,
  cause TEXT NOT NULL
);
CREATE INDEX transitions_session ON transitions (session_id, id);
CREATE TABLE workers (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  region TEXT NOT NULL,
  driver TEXT NOT NULL,
  state TEXT NOT NULL,
  session_id TEXT,
  handle TEXT,
  server_id TEXT,
  draining INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  ready_at BIGINT,
  updated_at BIGINT NOT NULL,
  stopped_at BIGINT
);
CREATE INDEX workers_pool ON workers (project_id, region, state, ready_at);
CREATE TABLE timers (
  session_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  due_at BIGINT NOT NULL,
  PRIMARY KEY (session_id, kind)
);
CREATE INDEX timers_due ON timers (due_at);
CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'workers: covering indexes for seat decisions and pool counts',
    sql: `
DROP INDEX workers_pool;
CREATE INDEX workers_ready ON workers (project_id, region, state, draining, ready_at, id);
CREATE INDEX workers_counts ON workers (project_id, region, state, draining, session_id);
`,
  },
  {
    version: 3,
    name: 'messages: the recorded room messages of every session',
    sql: `
CREATE TABLE messages (
  session_id TEXT NOT NULL,
  at BIGINT NOT NULL,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  from_identity TEXT NOT NULL,
  from_kind TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (session_id, at, id)
){{clustered}};
`,
  },
  {
    version: 4,
    name: 'bus: payloads too large for a PostgreSQL notification',
    sql: `
CREATE TABLE bus_payloads (
  id {{id}},
  payload TEXT NOT NULL,
  at BIGINT NOT NULL
);
`,
  },
  {
    version: 5,
    name: 'servers: the Usher servers that share the database',
    sql: `
CREATE TABLE servers (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  version TEXT NOT NULL,
  started_at BIGINT NOT NULL,
  seen_at BIGINT NOT NULL,
  draining INTEGER NOT NULL DEFAULT 0
);
`,
  },
  {
    version: 6,
    name: 'the server a viewer and a worker are connected to',
    sql: `
ALTER TABLE sessions ADD COLUMN viewer_server TEXT;
ALTER TABLE workers ADD COLUMN attached_to TEXT;
`,
  },
  {
    version: 7,
    name: 'admin keys: hashed at rest, revocable (docs/security.md)',
    sql: `
CREATE TABLE admin_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  last_used_at BIGINT,
  revoked_at BIGINT
);
`,
  },
  {
    version: 8,
    name: 'webhooks: the delivery log of signed session events (docs/webhooks.md)',
    sql: `
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  endpoint_url TEXT NOT NULL,
  event_type TEXT NOT NULL,
  session_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL,
  last_status INTEGER,
  last_error TEXT,
  last_attempt_at BIGINT,
  claimed_by TEXT,
  claim TEXT,
  lease_until BIGINT,
  created_at BIGINT NOT NULL,
  delivered_at BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_url, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at, id);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, created_at, id);
CREATE INDEX webhook_deliveries_session ON webhook_deliveries (session_id, created_at, id);
CREATE INDEX webhook_deliveries_project ON webhook_deliveries (project_id, created_at, id);
CREATE INDEX webhook_deliveries_claim ON webhook_deliveries (claim) WHERE claim IS NOT NULL;
CREATE INDEX webhook_deliveries_claimed_by ON webhook_deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
`,
  },
  {
    version: 9,
    name: 'transitions: by time, for the operator statistics (GET /stats)',
    sql: `
CREATE INDEX transitions_at ON transitions (at, from_state, to_state, session_id);
`,
  },
  {
    version: 10,
    // Two indexes that began with the same columns let PostgreSQL, with statistics taken while a pool was
    // still small, pick the pool-count one for seat decisions and sort every ready worker of the pool for
    // each one (6 ms per admission with 5,000 warm workers). One index serves both, and costs one index
    // update less per worker change.
    name: 'workers: one index for seat decisions and pool counts',
    sql: `
DROP INDEX workers_ready;
DROP INDEX workers_counts;
CREATE INDEX workers_by_pool ON workers (project_id, region, state, draining, ready_at, id, session_id);
`,
  },
  {
    version: 11,
    name: 'pool tokens: kept by id, so that one can be revoked',
    sql: `
CREATE TABLE pool_tokens (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL,
  region TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE INDEX pool_tokens_project ON pool_tokens (project_id, created_at, id);
`,
  },
];

const AUTO_ID: Record<Dialect, string> = {
  sqlite: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  postgres: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY',
};

/** SQLite keeps such a table's rows in its primary key's order, so a page is one range of one b-tree. */
const CLUSTERED: Record<Dialect, string> = { sqlite: ' WITHOUT ROWID', postgres: '' };

export function migrationSql(m: Migration, dialect: Dialect): string {
  return m.sql.replaceAll('{{id}}', AUTO_ID[dialect]).replaceAll('{{clustered}}', CLUSTERED[dialect]);
}

/** Applies every migration not applied yet; safe to run from several servers at once on PostgreSQL. */
export async function migrate(db: Db, now: () => number = Date.now): Promise<number[]> {
  return db.tx(async (q) => {
    if (q.dialect === 'postgres') await q.run("SELECT pg_advisory_xact_lock(hashtext('usher_migrations'))");
    await q.run(
      'CREATE TABLE IF NOT EXISTS usher_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
    );
    const done = new Set(
      (await q.all<{ version: number }>('SELECT version FROM usher_migrations')).map((r) => r.version),
    );
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      for (const statement of splitStatements(migrationSql(m, q.dialect))) await q.run(statement);
      await q.run('INSERT INTO usher_migrations (version, name, applied_at) VALUES (?, ?, ?)', [
        m.version,
        m.name,
        now(),
      ]);
      applied.push(m.version);
    }
    return applied;
  });
}

function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
