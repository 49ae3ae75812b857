// The alternative the admission benchmark measures beside Usher: the least an admission does, written plainly.
// A Fastify server whose `POST /sessions` checks the bearer key and the JSON body, then in one transaction of
// its own takes a ready worker, stores the session and its two transitions and marks the worker busy, and
// answers 201 `{id, state: 'connecting'}`. No events, no timers, no tokens, no worker sockets, no metrics, no
// batching of requests. On SQLite through node:sqlite (one connection), on PostgreSQL through a pg pool of 10
// (the server's default). Run by bench/admission.ts in a process of its own.
import { randomUUID } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import type { StorageOptions } from '@usher/server';
import Fastify from 'fastify';
import pg from 'pg';

export interface BareAdmissionConfig {
  storage: StorageOptions;
  adminKey: string;
  workers: number;
}

const config = JSON.parse(process.env.BENCH_BARE_ADMISSION ?? 'null') as BareAdmissionConfig | null;
if (!config) throw new Error('BENCH_BARE_ADMISSION (the configuration, JSON) is not set');

const SCHEMA = `
CREATE TABLE bare_workers (id TEXT PRIMARY KEY, state TEXT NOT NULL, session_id TEXT);
CREATE INDEX bare_workers_ready ON bare_workers (state);
CREATE TABLE bare_sessions (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, state TEXT NOT NULL,
  worker_id TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE bare_transitions (session_id TEXT NOT NULL, to_state TEXT NOT NULL, at BIGINT NOT NULL);
`;

/** Seats a new session on a ready worker; null when none is ready. */
type Admit = (projectId: string) => Promise<string | null>;

async function sqliteAdmit(path: string, workers: number): Promise<Admit> {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
  db.exec(SCHEMA);
  const add = db.prepare("INSERT INTO bare_workers (id, state) VALUES (?, 'ready')");
  db.exec('BEGIN');
  for (let i = 0; i < workers; i++) add.run(`w_${i}`);
  db.exec('COMMIT');
  const ready = db.prepare("SELECT id FROM bare_workers WHERE state = 'ready' LIMIT 1");
  const insert = db.prepare(
    "INSERT INTO bare_sessions (id, project_id, state, worker_id, created_at) VALUES (?, ?, 'connecting', ?, ?)",
  );
  const transition = db.prepare('INSERT INTO bare_transitions (session_id, to_state, at) VALUES (?, ?, ?)');
  const busy = db.prepare("UPDATE bare_workers SET state = 'busy', session_id = ? WHERE id = ?");
  return async (projectId) => {
    db.exec('BEGIN IMMEDIATE');
    try {
      const w = ready.get() as { id: string } | undefined;
      if (!w) {
        db.exec('ROLLBACK');
        return null;
      }
      const id = randomUUID();
      const now = Date.now();
      insert.run(id, projectId, w.id, now);
      transition.run(id, 'requesting', now);
      transition.run(id, 'connecting', now);
      busy.run(id, w.id);
      db.exec('COMMIT');
      return id;
    } catch (err) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw err;
    }
  };
}

async function postgresAdmit(url: string, schema: string, workers: number): Promise<Admit> {
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await setup.query(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path = ${schema}; ${SCHEMA}`);
  await setup.query(
    "INSERT INTO bare_workers (id, state) SELECT 'w_' || i, 'ready' FROM generate_series(1, $1) AS i",
    [workers],
  );
  await setup.query('ANALYZE');
  await setup.end();
  const pool = new pg.Pool({ connectionString: url, max: 10, options: `-c search_path=${schema}` });
  return async (projectId) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const id = randomUUID();
      const now = Date.now();
      const w = await client.query<{ id: string }>({
        name: 'take',
        text: `UPDATE bare_workers SET state = 'busy', session_id = $1 WHERE id =
          (SELECT id FROM bare_workers WHERE state = 'ready' LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id`,
        values: [id],
      });
      const worker = w.rows[0]?.id;
      if (!worker) {
        await client.query('ROLLBACK');
        return null;
      }
      await client.query({
        name: 'insert',
        text: `INSERT INTO bare_sessions (id, project_id, state, worker_id, created_at) VALUES ($1, $2, 'connecting', $3, $4)`,
        values: [id, projectId, worker, now],
      });
      await client.query({
        name: 'transitions',
        text: `INSERT INTO bare_transitions (session_id, to_state, at) VALUES ($1, 'requesting', $2), ($1, 'connecting', $2)`,
        values: [id, now],
      });
      await client.query('COMMIT');
      return id;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  };
}

const { storage } = config;
const admit =
  storage.type === 'sqlite'
    ? await sqliteAdmit(storage.path, config.workers)
    : await postgresAdmit(storage.url, storage.schema ?? 'public', config.workers);

const app = Fastify({ logger: false });
const bearer = `Bearer ${config.adminKey}`;
app.post<{ Body: { projectId: string } }>(
  '/sessions',
  {
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['projectId'],
        properties: { projectId: { type: 'string', minLength: 1, maxLength: 64 } },
      },
    },
  },
  async (req, reply) => {
    if (req.headers.authorization !== bearer)
      return reply.code(401).send({ error: { code: 'UNAUTHORIZED' } });
    const id = await admit(req.body.projectId);
    if (!id) return reply.code(503).send({ error: { code: 'NO_WORKER' } });
    return reply.code(201).send({ id, projectId: req.body.projectId, state: 'connecting' });
  },
);
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.send?.({ t: 'listening', url: address });
process.on('message', (m: { t: string; id: number }) => {
  if (m.t === 'cpu') process.send?.({ t: 'reply', id: m.id, value: process.cpuUsage() });
});
process.on('disconnect', () => process.exit(0));
