// Storage conformance: the same suite on SQLite and PostgreSQL (migrations, sessions, queue, workers, timers,
// settings, transactions and pool locks), so both back-ends behave alike.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyProjectInput } from '@usher/protocol';
import {
  createTestDatabase,
  databaseKinds,
  TEST_POSTGRES_URL,
  type TestDatabase,
  useTestStore,
} from '@usher/testing';
import { newId } from '../engine/ids.ts';
import type { Db, Queryable, SqlParam } from './db.ts';
import { MIGRATIONS, migrate } from './migrations.ts';
import { PostgresDb } from './postgres.ts';
import { newSessionRecord, type SessionRecord, type TransitionRecord, type WorkerRecord } from './records.ts';
import { Repo } from './repo.ts';
import { SqliteDb } from './sqlite.ts';
import { openStore, type Store } from './store.ts';

const T = Date.UTC(2026, 0, 1); // 1_767_225_600_000: well past 2^31, so times need 64-bit columns
const MAX_DATE_MS = 8_640_000_000_000_000; // the latest time a Date can hold, still below 2^53

function session(id: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return {
    ...newSessionRecord({ id, projectId: 'p', region: 'eu', agentType: null, config: {} }, T),
    ...over,
  };
}

function worker(id: string, over: Partial<WorkerRecord> = {}): WorkerRecord {
  return {
    id,
    projectId: 'p',
    region: 'eu',
    driver: 'process',
    state: 'starting',
    sessionId: null,
    handle: null,
    serverId: null,
    attachedTo: null,
    draining: false,
    createdAt: T,
    readyAt: null,
    updatedAt: T,
    stoppedAt: null,
    ...over,
  };
}

/** A raw database on test storage, without migrations. */
async function rawDb(db: TestDatabase): Promise<Db> {
  if (db.storage.type === 'sqlite') return new SqliteDb({ path: db.storage.path });
  const pg = new PostgresDb(db.storage);
  await pg.ensureSchema();
  return pg;
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const turn = () => new Promise<void>((r) => setImmediate(r));

for (const kind of databaseKinds()) {
  describe(`storage conformance (${kind})`, () => {
    const { store } = useTestStore(kind);

    // ---------------------------------------------------------------- migrations

    test('migrations apply once: a second run, or a second open, applies nothing', async () => {
      const fresh = await createTestDatabase(kind);
      const raw = await rawDb(fresh);
      try {
        assert.deepEqual(
          await migrate(raw, () => 111),
          MIGRATIONS.map((m) => m.version),
        );
        assert.deepEqual(await migrate(raw, () => 222), []);
        const reopened = await openStore(fresh.storage, () => 333);
        await reopened.close();
        const rows = await raw.all<{ version: number; applied_at: number }>(
          'SELECT version, applied_at FROM usher_migrations ORDER BY version',
        );
        assert.deepEqual(
          rows.map((r) => [Number(r.version), Number(r.applied_at)]),
          MIGRATIONS.map((m) => [m.version, 111]),
        );
      } finally {
        await raw.close();
        await fresh.drop();
      }
    });

    if (kind === 'postgres') {
      test('two servers migrating one fresh database at once apply each migration exactly once', async () => {
        const fresh = await createTestDatabase(kind);
        const a = await rawDb(fresh);
        const b = await rawDb(fresh);
        try {
          const results = await Promise.all([migrate(a), migrate(b)]);
          const all = MIGRATIONS.map((m) => m.version);
          assert.deepEqual(
            results.map((r) => r.length).sort(),
            [0, all.length],
            `one applies all, the other none: ${JSON.stringify(results)}`,
          );
          const n = await a.get<{ n: number }>('SELECT COUNT(*) AS n FROM usher_migrations');
          assert.equal(Number(n!.n), all.length);
        } finally {
          await a.close();
          await b.close();
          await fresh.drop();
        }
      });
    }

    test('the store works after migrations: the schema holds every table', async () => {
      for (const table of ['projects', 'sessions', 'transitions', 'workers', 'timers', 'settings']) {
        const r = await store.db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`);
        assert.ok(r, table);
      }
    });

    // ---------------------------------------------------------------- projects

    test('projects: the first insert wins, update replaces settings, list is by id', async () => {
      const a = applyProjectInput(null, { id: 'proj-b', name: 'B', kind: 'agent', agentTypes: ['x'] });
      assert.equal(await store.read.insertProject({ settings: a, createdAt: T, updatedAt: T }), true);
      const dup = { ...a, name: 'not me' };
      assert.equal(
        await store.read.insertProject({ settings: dup, createdAt: T + 1, updatedAt: T + 1 }),
        false,
      );
      assert.deepEqual(await store.read.getProject('proj-b'), { settings: a, createdAt: T, updatedAt: T });
      await store.read.insertProject({
        settings: applyProjectInput(null, { id: 'proj-a' }),
        createdAt: T,
        updatedAt: T,
      });
      const changed = { ...a, enabled: false, timeouts: { ...a.timeouts, pendingMs: 5 } };
      await store.read.updateProject(changed, MAX_DATE_MS);
      assert.deepEqual(await store.read.getProject('proj-b'), {
        settings: changed,
        createdAt: T,
        updatedAt: MAX_DATE_MS,
      });
      const ids = (await store.read.listProjects())
        .map((p) => p.settings.id)
        .filter((id) => id.startsWith('proj-'));
      assert.deepEqual(ids, ['proj-a', 'proj-b']);
      assert.equal(await store.read.getProject('nope'), undefined);
    });

    // ---------------------------------------------------------------- sessions

    test('a session with every field set round-trips exactly', async () => {
      const full = session('s-full', {
        projectId: 'rt',
        region: 'us-east',
        agentType: 'stella',
        config: {
          nested: { list: [1, 'two', null, true, { deep: [] }], n: -1.5 },
          unicode: 'ключ ✓ 日本',
          quotes: `it's "quoted" with a ? and a $1`,
          empty: {},
        },
        state: 'ended',
        workerId: 'w-1',
        queuedAt: T + 1,
        restarts: 7,
        savedState: { step: 3, history: ['a', 'b'], flag: false, nothing: null },
        viewerAttached: true,
        workerStarted: true,
        pendingEnd: { code: 4006, reason: 'worker_crashed', cause: 'driver:exit' },
        createdAt: T,
        updatedAt: T + 2,
        activeAt: T + 3,
        endedAt: MAX_DATE_MS,
        endCode: 4006,
        endReason: 'worker_crashed',
        outcome: 'failed',
      });
      await store.read.insertSession(full);
      assert.deepEqual(await store.read.getSession('s-full'), full);
    });

    test('a session with every optional field null and flags false round-trips exactly', async () => {
      const bare = session('s-bare', { projectId: 'rt' });
      await store.read.insertSession(bare);
      const got = await store.read.getSession('s-bare');
      assert.deepEqual(got, bare);
      assert.strictEqual(got!.viewerAttached, false);
      assert.strictEqual(got!.savedState, null);
      assert.equal(await store.read.getSession('s-missing'), undefined);
    });

    test('updateSession changes only the fields patched, JSON and flags included', async () => {
      const base = session('s-upd', {
        projectId: 'rt',
        config: { keep: true },
        savedState: { old: 1 },
        pendingEnd: { code: 1000, reason: 'completed', cause: 'api' },
        viewerAttached: true,
      });
      await store.read.insertSession(base);
      const patch: Partial<SessionRecord> = {
        state: 'ending',
        viewerAttached: false,
        workerStarted: true,
        savedState: null,
        pendingEnd: null,
        restarts: 2,
        endedAt: MAX_DATE_MS,
        updatedAt: T + 99,
      };
      await store.read.updateSession('s-upd', patch);
      assert.deepEqual(await store.read.getSession('s-upd'), { ...base, ...patch });
      // saved state can be any JSON value
      for (const savedState of ['text', 0, false, [1, [2]], { a: { b: null } }]) {
        await store.read.updateSession('s-upd', { savedState });
        assert.deepEqual(
          (await store.read.getSession('s-upd'))!.savedState,
          savedState,
          JSON.stringify(savedState),
        );
      }
      // the id in a patch is never written
      await store.read.updateSession('s-upd', { id: 's-other', restarts: 3 } as Partial<SessionRecord>);
      assert.equal((await store.read.getSession('s-upd'))!.restarts, 3);
      assert.equal(await store.read.getSession('s-other'), undefined);
    });

    test('the queue is ordered by (queued_at, id), stable for equal timestamps, per pool', async () => {
      const q = (id: string, queuedAt: number, over: Partial<SessionRecord> = {}) =>
        session(id, { projectId: 'qp', state: 'queued', queuedAt, ...over });
      const sameMs = Array.from({ length: 6 }, () => newId('s', T + 300));
      const rows = [
        q('s_c', T + 200),
        q('s_b', T + 100),
        q('s_a', T + 200),
        q('s_d', T + 100),
        q('s_0', T + 400),
        ...[...sameMs].reverse().map((id) => q(id, T + 300)), // inserted newest first
        q('s_not_queued', T + 50, { state: 'connecting' }),
        q('s_other_region', T + 1, { region: 'us' }),
        q('s_other_project', T + 1, { projectId: 'qp2' }),
      ];
      await store.tx(async (r) => {
        for (const s of rows) await r.insertSession(s);
      });
      const expected = ['s_b', 's_d', 's_a', 's_c', ...sameMs, 's_0'];
      assert.deepEqual(await store.read.queuedSessionIds('qp', 'eu'), expected);
      assert.deepEqual(await store.read.queuedSessionIds('qp', 'eu'), expected, 'the same order every time');
      assert.deepEqual(await store.read.queuedSessionIds('qp', 'eu', 3), expected.slice(0, 3));
      assert.deepEqual(await store.read.queuedSessionIds('qp', 'us'), ['s_other_region']);
      // each session's position agrees with the order
      for (const [i, id] of expected.entries()) {
        const s = (await store.read.getSession(id))!;
        assert.equal(await store.read.countQueuedAhead('qp', 'eu', s.queuedAt!, s.id), i, id);
      }
      // leaving the queue closes the gap
      await store.read.updateSession('s_d', { state: 'connecting', queuedAt: null });
      assert.deepEqual(
        await store.read.queuedSessionIds('qp', 'eu'),
        expected.filter((id) => id !== 's_d'),
      );
    });

    test('countQueued counts only queued sessions of the pool', async () => {
      await store.tx(async (r) => {
        for (let i = 0; i < 4; i++)
          await r.insertSession(session(`cq-${i}`, { projectId: 'cq', state: 'queued', queuedAt: T + i }));
        await r.insertSession(session('cq-x', { projectId: 'cq', state: 'active' }));
        await r.insertSession(session('cq-y', { projectId: 'cq', state: 'ended' }));
        await r.insertSession(
          session('cq-z', { projectId: 'cq', region: 'us', state: 'queued', queuedAt: T }),
        );
      });
      assert.equal(await store.read.countQueued('cq', 'eu'), 4);
      assert.equal(await store.read.countQueued('cq', 'us'), 1);
      assert.equal(await store.read.countQueued('cq', 'ap'), 0);
      assert.equal(await store.read.countQueued('nobody', 'eu'), 0);
    });

    test('listSessions filters by project and states, newest first, with a limit (default 100)', async () => {
      await store.tx(async (r) => {
        await r.insertSession(session('ls-1', { projectId: 'ls', createdAt: T + 100, state: 'queued' }));
        await r.insertSession(session('ls-2', { projectId: 'ls', createdAt: T + 300, state: 'active' }));
        await r.insertSession(session('ls-3', { projectId: 'ls', createdAt: T + 300, state: 'ended' }));
        await r.insertSession(session('ls-4', { projectId: 'ls', createdAt: T + 200, state: 'active' }));
        await r.insertSession(
          session('ls-5', { projectId: 'ls-other', createdAt: T + 500, state: 'active' }),
        );
        for (let i = 0; i < 105; i++)
          await r.insertSession(
            session(`many-${String(i).padStart(3, '0')}`, { projectId: 'many', createdAt: T + i }),
          );
      });
      const ids = async (f: Parameters<Store['read']['listSessions']>[0]) =>
        (await store.read.listSessions(f)).map((s) => s.id);
      assert.deepEqual(await ids({ projectId: 'ls' }), ['ls-3', 'ls-2', 'ls-4', 'ls-1']);
      assert.deepEqual(await ids({ projectId: 'ls', states: ['active'] }), ['ls-2', 'ls-4']);
      assert.deepEqual(await ids({ projectId: 'ls', states: ['active', 'queued'] }), [
        'ls-2',
        'ls-4',
        'ls-1',
      ]);
      assert.deepEqual(await ids({ projectId: 'ls', states: ['paused'] }), []);
      assert.deepEqual(await ids({ projectId: 'ls', limit: 2 }), ['ls-3', 'ls-2']);
      assert.deepEqual(
        await ids({ projectId: 'ls', states: [] }),
        ['ls-3', 'ls-2', 'ls-4', 'ls-1'],
        'no states: all',
      );
      const many = await ids({ projectId: 'many' });
      assert.equal(many.length, 100);
      assert.equal(many[0], 'many-104');
      assert.equal((await ids({ projectId: 'many', limit: 1000 })).length, 105);
      assert.ok(
        (await ids({ states: ['active'], limit: 1000 })).includes('ls-5'),
        'no project: every project',
      );
    });

    test('meanSessionDurationMs averages active→ended of the most recent sessions of the pool', async () => {
      const done = (
        id: string,
        activeAt: number | null,
        endedAt: number | null,
        over: Partial<SessionRecord> = {},
      ) => session(id, { projectId: 'md', state: 'ended', activeAt, endedAt, ...over });
      assert.equal(await store.read.meanSessionDurationMs('md', 'eu'), null, 'no history');
      await store.tx(async (r) => {
        await r.insertSession(done('md-1', T, T + 1_000)); // 1000, oldest
        await r.insertSession(done('md-2', T + 5_000, T + 7_001)); // 2001
        await r.insertSession(done('md-3', T + 10_000, T + 13_000)); // 3000, newest
        await r.insertSession(done('md-never-active', null, T + 20_000));
        await r.insertSession(done('md-live', T, null, { state: 'active' }));
        await r.insertSession(done('md-us', T, T + 99_000, { region: 'us' }));
      });
      assert.equal(await store.read.meanSessionDurationMs('md', 'eu'), 6_001 / 3);
      assert.equal(await store.read.meanSessionDurationMs('md', 'eu', 2), 2_500.5, 'the two most recent');
      assert.equal(await store.read.meanSessionDurationMs('md', 'us'), 99_000);
    });

    // ---------------------------------------------------------------- transitions

    test('the timeline lists a session transitions in the order they were recorded', async () => {
      const tl: TransitionRecord[] = [
        { from: null, to: 'requesting', at: T + 100, cause: 'api:create' },
        { from: 'requesting', to: 'queued', at: T + 100, cause: 'admission' },
        { from: 'queued', to: 'connecting', at: T + 90, cause: 'dispatch' }, // a clock step back keeps order
        { from: 'connecting', to: 'active', at: MAX_DATE_MS, cause: 'worker:started' },
      ];
      for (const [i, t] of tl.entries()) {
        await store.read.addTransition('tl-1', t);
        await store.read.addTransition(`tl-2`, {
          from: null,
          to: 'requesting',
          at: T + i,
          cause: `other ${i}`,
        });
      }
      assert.deepEqual(await store.read.timeline('tl-1'), tl);
      assert.equal((await store.read.timeline('tl-2')).length, 4);
      assert.deepEqual(await store.read.timeline('tl-none'), []);
    });

    // ---------------------------------------------------------------- workers

    test('workers round-trip, update in part and list by filter', async () => {
      const full = worker('w-full', {
        projectId: 'wr',
        region: 'us',
        driver: 'kubernetes',
        state: 'busy',
        sessionId: 's-1',
        handle: 'pod/usher-w-full',
        serverId: 'server-a',
        draining: true,
        createdAt: T,
        readyAt: T + 1,
        updatedAt: T + 2,
        stoppedAt: MAX_DATE_MS,
      });
      const bare = worker('w-bare', { projectId: 'wr', createdAt: T + 1 });
      const changed = await store.tx(async (r) => {
        await r.insertWorker(full);
        await r.insertWorker(bare);
        return [...r.changedWorkers].sort();
      });
      assert.deepEqual(changed, ['w-bare', 'w-full'], 'the repo remembers the workers it changed');
      assert.deepEqual(await store.read.getWorker('w-full'), full);
      assert.deepEqual(await store.read.getWorker('w-bare'), bare);
      assert.strictEqual((await store.read.getWorker('w-bare'))!.draining, false);
      await store.read.updateWorker('w-full', { draining: false, handle: null, state: 'stopping' });
      assert.deepEqual(await store.read.getWorker('w-full'), {
        ...full,
        draining: false,
        handle: null,
        state: 'stopping',
      });
      assert.equal(await store.read.getWorker('w-missing'), undefined);
      const list = async (f: Parameters<Store['read']['listWorkers']>[0]) =>
        (await store.read.listWorkers(f)).map((w) => w.id);
      assert.deepEqual(await list({ projectId: 'wr' }), ['w-full', 'w-bare'], 'oldest first');
      assert.deepEqual(await list({ projectId: 'wr', region: 'eu' }), ['w-bare']);
      assert.deepEqual(await list({ projectId: 'wr', states: ['stopping'] }), ['w-full']);
      assert.deepEqual(await list({ projectId: 'wr', states: ['ready'] }), []);
    });

    test('readyWorkers: ready and undrained workers of the pool, longest ready first', async () => {
      await store.tx(async (r) => {
        const w = (id: string, over: Partial<WorkerRecord>) =>
          r.insertWorker(worker(id, { projectId: 'rw', state: 'ready', ...over }));
        await w('w-late', { readyAt: T + 300 });
        await w('w-tie-b', { readyAt: T + 200 });
        await w('w-early', { readyAt: T + 100 });
        await w('w-tie-a', { readyAt: T + 200 });
        await w('w-draining', { readyAt: T + 1, draining: true });
        await w('w-busy', { readyAt: T + 2, state: 'busy' });
        await w('w-reserved', { readyAt: T + 3, state: 'reserved' });
        await w('w-starting', { state: 'starting' });
        await w('w-us', { readyAt: T + 4, region: 'us' });
        await w('w-other', { readyAt: T + 5, projectId: 'rw2' });
      });
      const ids = async (limit: number) =>
        (await store.read.readyWorkers('rw', 'eu', limit)).map((w) => w.id);
      assert.deepEqual(await ids(10), ['w-early', 'w-tie-a', 'w-tie-b', 'w-late']);
      assert.deepEqual(await ids(2), ['w-early', 'w-tie-a']);
      await store.read.updateWorker('w-early', { draining: true });
      assert.deepEqual(await ids(10), ['w-tie-a', 'w-tie-b', 'w-late'], 'a drained worker takes no session');
    });

    test('a seat decision takes the longest-ready workers from the pool index, without sorting the pool', async () => {
      // a new database whose pool has just been filled: no statistics yet. Two indexes that began alike once let
      // PostgreSQL pick the wrong one and sort the whole pool for every seat decision (seen in the admission
      // benchmark, 6 ms per admission with 5,000 workers; which one it picks depends on cost ties this test
      // does not reproduce): one index serves seat decisions, in order
      const fresh = await createTestDatabase(kind);
      const own = await openStore(fresh.storage);
      try {
        await own.tx(async (r) => {
          for (let i = 0; i < 2_000; i++) await r.insertWorker(worker(`si-${i}`));
        });
        await own.tx(async (r) => {
          for (let i = 0; i < 2_000; i++)
            await r.updateWorker(`si-${i}`, { state: 'ready', readyAt: T + ((i * 7) % 2_000) });
        });
        // the statement seatingView runs, with its parameters
        const ran: { sql: string; params: readonly SqlParam[] }[] = [];
        const recorder: Queryable = {
          dialect: own.db.dialect,
          all: (sql, params = [], o) => {
            ran.push({ sql, params });
            return own.db.all(sql, params, o);
          },
          get: (sql, params, o) => own.db.get(sql, params, o),
          run: (sql, params, o) => own.db.run(sql, params, o),
        };
        const view = await new Repo(recorder).seatingView('p', 'eu', 3);
        assert.deepEqual(
          view.ready.map((w) => w.readyAt),
          [T, T + 1, T + 2],
        );
        const { sql, params } = ran[0]!;
        const plan = await own.db.tx(async (q) => {
          if (q.dialect === 'sqlite') {
            const rows = await q.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, params);
            return rows.map((r) => r.detail).join('\n');
          }
          const rows = await q.all<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params);
          return rows.map((r) => r['QUERY PLAN']).join('\n');
        });
        assert.doesNotMatch(plan, /\bSort\b|TEMP B-TREE/, plan);
        assert.match(plan, /workers_by_pool/);
      } finally {
        await own.close();
        await fresh.drop();
      }
    });

    test('poolCounts counts workers by state, draining apart, stopped left out, plus startingUnbound', async () => {
      assert.deepEqual(await store.read.poolCounts('pc', 'eu'), {});
      await store.tx(async (r) => {
        const w = (id: string, over: Partial<WorkerRecord>) =>
          r.insertWorker(worker(id, { projectId: 'pc', ...over }));
        await w('pc-1', { state: 'starting' });
        await w('pc-1b', { state: 'starting', sessionId: 's0' });
        await w('pc-2', { state: 'starting', draining: true });
        await w('pc-3', { state: 'ready' });
        await w('pc-4', { state: 'ready' });
        await w('pc-5', { state: 'ready', draining: true });
        await w('pc-6', { state: 'busy', sessionId: 's' });
        await w('pc-7', { state: 'reserved', sessionId: 's2' });
        await w('pc-8', { state: 'stopping' });
        await w('pc-9', { state: 'stopped' });
        await w('pc-10', { state: 'stopped', draining: true });
        await w('pc-us', { state: 'ready', region: 'us' });
      });
      assert.deepEqual(await store.read.poolCounts('pc', 'eu'), {
        starting: 2,
        startingUnbound: 1, // being started for no session yet: counts as warm
        ready: 2,
        busy: 1,
        reserved: 1,
        stopping: 1,
        draining: 2,
      });
      assert.deepEqual(await store.read.poolCounts('pc', 'us'), { ready: 1 });
    });

    test('unbound starting workers: oldest first, bound and drained ones left out', async () => {
      await store.tx(async (r) => {
        const w = (id: string, over: Partial<WorkerRecord>) =>
          r.insertWorker(worker(id, { projectId: 'ub', state: 'starting', ...over }));
        await w('ub-2', { createdAt: T + 2 });
        await w('ub-1', { createdAt: T + 1 });
        await w('ub-bound', { createdAt: T, sessionId: 's' });
        await w('ub-drained', { createdAt: T, draining: true });
        await w('ub-ready', { createdAt: T, state: 'ready' });
      });
      assert.deepEqual(
        (await store.read.unboundStartingWorkers('ub', 'eu', 10)).map((w) => w.id),
        ['ub-1', 'ub-2'],
      );
      assert.deepEqual(
        (await store.read.unboundStartingWorkers('ub', 'eu', 1)).map((w) => w.id),
        ['ub-1'],
      );
      assert.equal((await store.read.poolCounts('ub', 'eu')).startingUnbound, 2);
    });

    // ---------------------------------------------------------------- timers

    test('timers: one per (session, kind), set again moves it, clear removes it', async () => {
      await store.db.run('DELETE FROM timers');
      await store.read.setTimer('tm-1', 'pending', T + 500);
      await store.read.setTimer('tm-1', 'pending', T + 900); // upsert, not a second row
      await store.read.setTimer('tm-1', 'max_runtime', MAX_DATE_MS);
      await store.read.setTimer('tm-1', 'idle', T + 100);
      await store.read.setTimer('tm-2', 'pending', T + 1);
      assert.deepEqual(await store.read.getTimer('tm-1', 'pending'), {
        sessionId: 'tm-1',
        kind: 'pending',
        dueAt: T + 900,
      });
      assert.deepEqual(await store.read.timersForSession('tm-1'), [
        { sessionId: 'tm-1', kind: 'idle', dueAt: T + 100 },
        { sessionId: 'tm-1', kind: 'pending', dueAt: T + 900 },
        { sessionId: 'tm-1', kind: 'max_runtime', dueAt: MAX_DATE_MS },
      ]);
      await store.read.clearTimer('tm-1', 'pending');
      assert.equal(await store.read.getTimer('tm-1', 'pending'), undefined);
      await store.read.clearTimer('tm-1', 'pending'); // clearing twice is harmless
      await store.read.clearTimers('tm-1', []);
      assert.equal((await store.read.timersForSession('tm-1')).length, 2, 'no kinds: nothing cleared');
      await store.read.setTimer('tm-1', 'paused', T + 5);
      await store.read.clearTimers('tm-1', ['idle', 'paused']);
      assert.deepEqual(
        (await store.read.timersForSession('tm-1')).map((t) => t.kind),
        ['max_runtime'],
      );
      await store.read.clearTimers('tm-1');
      assert.deepEqual(await store.read.timersForSession('tm-1'), []);
      assert.equal((await store.read.timersForSession('tm-2')).length, 1, "another session's timers stay");
      await store.db.run('DELETE FROM timers');
    });

    test('dueTimers: due at or before the time, earliest first (ties by session), limited; nextTimerDue', async () => {
      await store.db.run('DELETE FROM timers');
      assert.equal(await store.read.nextTimerDue(), null);
      await store.read.setTimer('dt-c', 'pending', T + 200);
      await store.read.setTimer('dt-a', 'pending', T + 300);
      await store.read.setTimer('dt-b', 'idle', T + 200);
      await store.read.setTimer('dt-d', 'paused', T + 100);
      await store.read.setTimer('dt-e', 'pending', MAX_DATE_MS);
      assert.equal(await store.read.nextTimerDue(), T + 100);
      const due = async (at: number, limit = 100) =>
        (await store.read.dueTimers(at, limit)).map((t) => `${t.sessionId}/${t.kind}@${t.dueAt - T}`);
      assert.deepEqual(await due(T + 99), []);
      assert.deepEqual(await due(T + 100), ['dt-d/paused@100'], 'due exactly now counts');
      assert.deepEqual(await due(T + 250), ['dt-d/paused@100', 'dt-b/idle@200', 'dt-c/pending@200']);
      assert.deepEqual(await due(T + 1_000, 2), ['dt-d/paused@100', 'dt-b/idle@200']);
      assert.equal((await store.read.dueTimers(MAX_DATE_MS, 100)).length, 5);
      await store.read.clearTimer('dt-d', 'paused');
      assert.equal(await store.read.nextTimerDue(), T + 200);
      await store.db.run('DELETE FROM timers');
      assert.equal(await store.read.nextTimerDue(), null);
    });

    // ---------------------------------------------------------------- writes held in a transaction

    test('in a transaction every read sees the writes made before it, and the commit keeps them all', async () => {
      await store.read.insertWorker(worker('hw-w1', { projectId: 'hw', state: 'ready', readyAt: T }));
      await store.read.insertWorker(worker('hw-w2', { projectId: 'hw', state: 'ready', readyAt: T + 1 }));
      const seen = await store.tx(async (r) => {
        await r.insertSession(session('hw-s1', { projectId: 'hw' }));
        await r.addTransition('hw-s1', { from: null, to: 'requesting', at: T, cause: 'one' });
        await r.updateSession('hw-s1', { state: 'queued', queuedAt: T + 5, config: { a: [1] } });
        await r.addTransition('hw-s1', { from: 'requesting', to: 'queued', at: T + 5, cause: 'two' });
        await r.setTimer('hw-s1', 'pending', T + 60);
        await r.updateWorker('hw-w1', { state: 'reserved', sessionId: 'hw-s1', updatedAt: T + 5 });
        return {
          session: await r.getSession('hw-s1', { lock: true }),
          queue: await r.queuedSessionIds('hw', 'eu'),
          ready: (await r.readyWorkers('hw', 'eu', 10)).map((w) => w.id),
          counts: await r.poolCounts('hw', 'eu'),
          timers: await r.timersForSession('hw-s1'),
          timeline: (await r.timeline('hw-s1')).map((t) => t.cause),
        };
      });
      const expected = session('hw-s1', {
        projectId: 'hw',
        state: 'queued',
        queuedAt: T + 5,
        config: { a: [1] },
      });
      assert.deepEqual(seen.session, expected);
      assert.deepEqual(seen.queue, ['hw-s1']);
      assert.deepEqual(seen.ready, ['hw-w2'], 'the worker reserved in the transaction is no longer ready');
      assert.deepEqual(seen.counts, { ready: 1, reserved: 1 });
      assert.deepEqual(seen.timers, [{ sessionId: 'hw-s1', kind: 'pending', dueAt: T + 60 }]);
      assert.deepEqual(seen.timeline, ['one', 'two']);
      assert.deepEqual(await store.read.getSession('hw-s1'), expected);
      assert.equal((await store.read.getWorker('hw-w1'))!.sessionId, 'hw-s1');
      assert.deepEqual(await store.read.timersForSession('hw-s1'), seen.timers);
    });

    test('timers changed several times in a transaction end as the last change said', async () => {
      await store.read.insertSession(session('ht-old', { projectId: 'ht' }));
      for (const kind of ['pending', 'idle', 'paused', 'reconnect'] as const)
        await store.read.setTimer('ht-old', kind, T + 1);
      await store.read.setTimer('ht-other', 'idle', T + 1);
      await store.tx(async (r) => {
        // a stored session: one kind cleared, all cleared, some set again, one of them cleared again
        await r.clearTimer('ht-old', 'pending');
        await r.clearTimers('ht-old');
        await r.setTimer('ht-old', 'idle', T + 2);
        await r.setTimer('ht-old', 'max_runtime', T + 3);
        await r.setTimer('ht-old', 'ending', T + 4);
        await r.clearTimers('ht-old', ['ending']);
        // a new session: set, cleared, set again
        await r.insertSession(session('ht-new', { projectId: 'ht' }));
        await r.setTimer('ht-new', 'pending', T + 5);
        await r.clearTimers('ht-new');
        await r.setTimer('ht-new', 'connecting', T + 6);
        await r.setTimer('ht-new', 'seat_hold', T + 7);
        await r.clearTimer('ht-new', 'seat_hold');
        // one kind of another stored session cleared
        await r.clearTimers('ht-other', ['idle', 'paused']);
      });
      const kinds = async (id: string) =>
        (await store.read.timersForSession(id)).map((t) => `${t.kind}@${t.dueAt - T}`);
      assert.deepEqual(await kinds('ht-old'), ['idle@2', 'max_runtime@3']);
      assert.deepEqual(await kinds('ht-new'), ['connecting@6']);
      assert.deepEqual(await kinds('ht-other'), []);
    });

    test('thousands of timer changes held in one transaction are all written', async () => {
      const ids = Array.from({ length: 1_500 }, (_, i) => `hx-${String(i).padStart(4, '0')}`);
      await store.tx(async (r) => {
        for (const id of ids)
          for (const kind of ['pending', 'idle', 'paused'] as const) await r.setTimer(id, kind, T);
      });
      await store.tx(async (r) => {
        for (const [i, id] of ids.entries()) {
          if (i % 3 === 0) await r.clearTimer(id, 'pending');
          else if (i % 3 === 1) await r.clearTimers(id);
          else {
            await r.clearTimers(id);
            await r.setTimer(id, 'idle', T + 1);
          }
        }
      });
      const left = await store.tx(async (r) => {
        const out = new Map<string, string[]>();
        for (const id of ids)
          out.set(
            id,
            (await r.timersForSession(id)).map((t) => `${t.kind}@${t.dueAt - T}`),
          );
        return out;
      });
      for (const [i, id] of ids.entries()) {
        const expected = [['idle@0', 'paused@0'], [], ['idle@1']][i % 3];
        assert.deepEqual(left.get(id)?.sort(), expected, id);
      }
      await store.db.run('DELETE FROM timers');
    });

    test('many sessions, workers and transitions in one transaction round-trip exactly, in the order recorded', async () => {
      const n = 150;
      const workers = Array.from({ length: n }, (_, i) =>
        worker(`hm-w${String(i).padStart(3, '0')}`, { projectId: 'hm', state: 'ready', readyAt: T + i }),
      );
      await store.tx(async (r) => {
        for (const w of workers) await r.insertWorker(w);
      });
      const sessions = Array.from({ length: n }, (_, i) =>
        session(`hm-s${String(i).padStart(3, '0')}`, {
          projectId: 'hm',
          agentType: i % 2 ? `it's "${i}"` : null,
          config: { i, text: 'ключ ✓ ? $1', list: [i, null, true] },
        }),
      );
      await store.tx(async (r) => {
        for (const [i, s] of sessions.entries()) {
          await r.insertSession(s);
          await r.addTransition(s.id, { from: null, to: 'requesting', at: T, cause: `create ${i}` });
          await r.updateSession(s.id, { state: 'connecting', workerId: workers[i]!.id, updatedAt: T + i });
          await r.addTransition(s.id, {
            from: 'requesting',
            to: 'connecting',
            at: T + i,
            cause: `seat ${i}`,
          });
          // two groups of workers, each changing other fields
          if (i % 2)
            await r.updateWorker(workers[i]!.id, { state: 'reserved', sessionId: s.id, updatedAt: T + i });
          else
            await r.updateWorker(workers[i]!.id, {
              state: 'busy',
              sessionId: s.id,
              draining: true,
              handle: null,
            });
        }
      });
      for (const [i, s] of sessions.entries()) {
        assert.deepEqual(await store.read.getSession(s.id), {
          ...s,
          state: 'connecting',
          workerId: workers[i]!.id,
          updatedAt: T + i,
        });
        const w = await store.read.getWorker(workers[i]!.id);
        assert.deepEqual(
          w,
          i % 2
            ? { ...workers[i], state: 'reserved', sessionId: s.id, updatedAt: T + i }
            : { ...workers[i], state: 'busy', sessionId: s.id, draining: true, handle: null },
        );
        assert.deepEqual(
          (await store.read.timeline(s.id)).map((t) => t.cause),
          [`create ${i}`, `seat ${i}`],
        );
      }
    });

    test('seatingView: ready workers when nobody is queued, else how many are queued and no worker', async () => {
      await store.tx(async (r) => {
        await r.insertWorker(worker('sv-late', { projectId: 'sv', state: 'ready', readyAt: T + 2 }));
        await r.insertWorker(worker('sv-early', { projectId: 'sv', state: 'ready', readyAt: T + 1 }));
        await r.insertWorker(worker('sv-busy', { projectId: 'sv', state: 'busy' }));
      });
      const view = async (limit: number) => {
        const v = await store.tx((r) => r.seatingView('sv', 'eu', limit));
        return { waiting: v.waiting, ready: v.ready.map((w) => w.id) };
      };
      assert.deepEqual(await view(5), { waiting: 0, ready: ['sv-early', 'sv-late'] });
      assert.deepEqual(await view(1), { waiting: 0, ready: ['sv-early'] });
      assert.deepEqual(await store.tx((r) => r.seatingView('sv', 'us', 5)), { waiting: 0, ready: [] });
      await store.read.insertSession(session('sv-q1', { projectId: 'sv', state: 'queued', queuedAt: T }));
      await store.read.insertSession(session('sv-q2', { projectId: 'sv', state: 'queued', queuedAt: T }));
      await store.read.insertSession(session('sv-q3', { projectId: 'sv', state: 'queued', region: 'us' }));
      assert.deepEqual(await view(5), { waiting: 2, ready: [] });
    });

    test('assignments: workers by id with their sessions; workers with no session left out', async () => {
      const s1 = session('as-s1', { projectId: 'as', state: 'connecting', workerId: 'as-w1' });
      const s2 = session('as-s2', { projectId: 'as', state: 'connecting', workerId: 'as-w2' });
      const w1 = worker('as-w1', { projectId: 'as', state: 'reserved', sessionId: 'as-s1' });
      const w2 = worker('as-w2', { projectId: 'as', state: 'reserved', sessionId: 'as-s2' });
      const w3 = worker('as-w3', { projectId: 'as', state: 'ready' });
      await store.tx(async (r) => {
        for (const s of [s1, s2]) await r.insertSession(s);
        for (const w of [w1, w2, w3]) await r.insertWorker(w);
      });
      const got = await store.tx((r) =>
        r.assignments(['as-w2', 'as-w3', 'as-w1', 'as-missing', 'as-w2'], { lock: true }),
      );
      assert.deepEqual([...got.keys()], ['as-w1', 'as-w2'], 'in worker id order, each once');
      assert.deepEqual(got.get('as-w1'), { worker: w1, session: s1 });
      assert.deepEqual(got.get('as-w2'), { worker: w2, session: s2 });
      assert.deepEqual(await store.tx((r) => r.assignments([])), new Map());
    });

    // ---------------------------------------------------------------- settings

    test('getOrInitSetting: the first writer wins, also when several race', async () => {
      assert.equal(await store.read.getOrInitSetting('secret-a', 'first'), 'first');
      assert.equal(await store.read.getOrInitSetting('secret-a', 'second'), 'first');
      const values = Array.from({ length: 8 }, (_, i) => `racer-${i}`);
      const got = await Promise.all(values.map((v) => store.tx((r) => r.getOrInitSetting('secret-race', v))));
      assert.equal(new Set(got).size, 1, `everyone sees one value: ${got.join(', ')}`);
      assert.ok(values.includes(got[0]!));
      assert.equal(await store.read.getOrInitSetting('secret-race', 'late'), got[0]);
    });

    // ---------------------------------------------------------------- transactions

    test('a transaction that throws leaves nothing behind', async () => {
      const boom = new Error('boom');
      await store.read.insertSession(session('tx-keep', { projectId: 'tx' }));
      await assert.rejects(
        store.tx(async (r) => {
          await r.insertProject({
            settings: applyProjectInput(null, { id: 'tx-project' }),
            createdAt: T,
            updatedAt: T,
          });
          await r.insertSession(session('tx-s', { projectId: 'tx' }));
          await r.addTransition('tx-s', { from: null, to: 'requesting', at: T, cause: 'test' });
          await r.insertWorker(worker('tx-w', { projectId: 'tx' }));
          await r.setTimer('tx-s', 'pending', T);
          await r.getOrInitSetting('tx-setting', 'v');
          await r.updateSession('tx-keep', { restarts: 42 });
          throw boom;
        }),
        (err) => err === boom,
      );
      assert.equal(await store.read.getProject('tx-project'), undefined);
      assert.equal(await store.read.getSession('tx-s'), undefined);
      assert.deepEqual(await store.read.timeline('tx-s'), []);
      assert.equal(await store.read.getWorker('tx-w'), undefined);
      assert.deepEqual(await store.read.timersForSession('tx-s'), []);
      assert.equal((await store.read.getSession('tx-keep'))!.restarts, 0, 'the update was undone');
      assert.equal(await store.read.getOrInitSetting('tx-setting', 'after'), 'after');
    });

    test('a statement failing halfway through a transaction undoes the statements before it', async () => {
      await store.read.insertSession(session('tx-dup', { projectId: 'tx' }));
      await assert.rejects(
        store.tx(async (r) => {
          await r.insertSession(session('tx-first', { projectId: 'tx' }));
          await r.updateSession('tx-dup', { state: 'queued', queuedAt: T });
          await r.insertSession(session('tx-dup', { projectId: 'tx' })); // primary key taken
        }),
      );
      assert.equal(await store.read.getSession('tx-first'), undefined);
      assert.equal((await store.read.getSession('tx-dup'))!.state, 'requesting');
      // and the database is usable afterwards
      await store.tx((r) => r.insertSession(session('tx-after', { projectId: 'tx' })));
      assert.ok(await store.read.getSession('tx-after'));
    });

    test('a write outside a transaction never joins one that is open and later fails', async () => {
      const inside = deferred();
      const gate = deferred();
      const failing = store.tx(async (r) => {
        await r.insertSession(session('tx-inside', { projectId: 'tx' }));
        inside.resolve();
        await gate.promise;
        throw new Error('rolled back');
      });
      await inside.promise;
      const outside = store.read.insertSession(session('tx-outside', { projectId: 'tx' }));
      await turn();
      gate.resolve();
      await assert.rejects(failing, /rolled back/);
      await outside;
      assert.equal(await store.read.getSession('tx-inside'), undefined);
      assert.ok(await store.read.getSession('tx-outside'), 'the outside write stands');
    });

    test('transactions on the same pool are serialized: the second waits for the first to commit', async () => {
      const order: string[] = [];
      const aHolds = deferred();
      const releaseA = deferred();
      // A takes the pool's lock as it begins (with BEGIN, on PostgreSQL); B takes it on its way
      const a = store.tx(
        async (r) => {
          await r.lockPool('lk', 'eu'); // held already: nothing to wait for
          order.push('A locked');
          aHolds.resolve();
          await releaseA.promise;
          await r.insertSession(session('lk-a', { projectId: 'lk' }));
          order.push('A commits');
        },
        { pool: { projectId: 'lk', region: 'eu' } },
      );
      await aHolds.promise;

      const bPid = deferred<number>();
      let seenByB: SessionRecord | undefined;
      const b = store.tx(async (r) => {
        order.push('B started');
        if (kind === 'postgres')
          bPid.resolve(Number((await r.q.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid));
        await r.lockPool('lk', 'eu');
        order.push('B locked');
        seenByB = await r.getSession('lk-a');
      });

      try {
        if (kind === 'postgres') {
          // B is really waiting for A's lock (PostgreSQL says so), not merely not scheduled yet
          const pid = await bPid.promise;
          for (;;) {
            if (order.includes('B locked')) assert.fail('B took the pool lock while A held it');
            const waiting = await store.read.q.get(
              "SELECT 1 AS x FROM pg_locks WHERE pid = ? AND locktype = 'advisory' AND NOT granted",
              [pid],
            );
            if (waiting) break;
            await turn();
          }
          order.push('B waits');
          // another pool is not held up by A
          await store.tx((r) => r.lockPool('lk', 'us'));
          order.push('other pool locked');
        } else {
          // SQLite runs one transaction at a time: B does not even start while A is open
          await turn();
          await turn();
          order.push('A still open');
        }
      } finally {
        releaseA.resolve();
        await Promise.allSettled([a, b]);
      }
      await Promise.all([a, b]);

      assert.ok(seenByB, "B sees A's committed write: it ran after A's commit");
      if (kind === 'postgres') {
        assert.deepEqual(order, [
          'A locked',
          'B started',
          'B waits',
          'other pool locked',
          'A commits',
          'B locked',
        ]);
      } else {
        assert.deepEqual(order, ['A locked', 'A still open', 'A commits', 'B started', 'B locked']);
      }
    });
  });
}

describe('PostgreSQL: a connection lost mid-transaction', {
  skip: !databaseKinds().includes('postgres'),
}, () => {
  test('fails that transaction, not the process; the pool goes on with a new connection', async (c) => {
    const db = await createTestDatabase('postgres');
    if (db.storage.type !== 'postgres') throw new Error('a PostgreSQL test database was asked for');
    const pg = new PostgresDb(db.storage);
    c.after(async () => {
      await pg.close();
      await db.drop();
    });
    await pg.ensureSchema();
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    c.after(() => process.off('uncaughtException', onUncaught));
    const killer = new PostgresDb(db.storage);
    c.after(() => killer.close());

    const inside = deferred<number>();
    const failed = pg.tx(async (q) => {
      const row = await q.get<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      inside.resolve(Number(row!.pid));
      // the backend is killed while this transaction waits
      await q.get('SELECT pg_sleep(5)');
    });
    const pid = await inside.promise;
    await killer.get('SELECT pg_terminate_backend(?)', [pid]);
    await assert.rejects(failed, 'the transaction fails');
    await turn();
    assert.deepEqual(uncaught, [], 'nothing reached the process as an uncaught error');
    const again = await pg.tx((q) => q.get<{ one: number }>('SELECT 1 AS one'));
    assert.equal(Number(again?.one), 1, 'the next transaction runs on a healthy connection');
  });
});

describe('PostgreSQL: preparing the schema', { skip: !databaseKinds().includes('postgres') }, () => {
  test('servers starting at once on a new schema all open it, and it is migrated once', async (c) => {
    const db = await createTestDatabase('postgres');
    c.after(() => db.drop());
    const stores = await Promise.all(Array.from({ length: 6 }, () => openStore(db.storage)));
    c.after(() => Promise.all(stores.map((s) => s.close())));
    const versions = await stores[0]!.db.all<{ version: number }>('SELECT version FROM usher_migrations');
    assert.equal(versions.length, MIGRATIONS.length);
  });

  test('a role that may not create schemas uses one made for it, and is told what to do when there is none', async () => {
    const db = await createTestDatabase('postgres');
    if (db.storage.type !== 'postgres') throw new Error('a PostgreSQL test database was asked for');
    const admin = new PostgresDb(db.storage);
    // a login role of its own (trust auth on the test server)
    const role = `usher_${newId('role', Date.now()).replace(/\W/g, '_').toLowerCase()}`.slice(0, 60);
    await admin.run(`CREATE ROLE ${role} LOGIN`);
    const url = new URL(TEST_POSTGRES_URL);
    url.username = role;
    url.password = '';
    let store: Store | undefined;
    try {
      const missing = `${db.storage.schema}_missing`;
      await assert.rejects(
        openStore({ ...db.storage, url: url.toString(), schema: missing }),
        (err: Error) => {
          assert.match(err.message, /refused to create the schema "t_\w+_missing"/);
          assert.match(err.message, /CREATE SCHEMA t_\w+_missing AUTHORIZATION/);
          assert.doesNotMatch(err.message, /cannot reach/);
          return true;
        },
      );
      await admin.run(`CREATE SCHEMA ${db.storage.schema} AUTHORIZATION ${role}`);
      store = await openStore({ ...db.storage, url: url.toString() });
      const versions = await store.db.all<{ version: number }>('SELECT version FROM usher_migrations');
      assert.equal(versions.length, MIGRATIONS.length);
    } finally {
      await store?.close();
      await db.drop();
      await admin.run(`DROP OWNED BY ${role} CASCADE`);
      await admin.run(`DROP ROLE ${role}`);
      await admin.close();
    }
  });
});
