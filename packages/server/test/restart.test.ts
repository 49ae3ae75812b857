// SIGKILL restart, on both databases: the server runs in a child process with echo-worker processes; it is
// killed and started again on the same database, and must pick up exactly where it was.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openStore, type Store, type UsherServerOptions } from '@usher/server';
import {
  createTestDatabase,
  databaseKinds,
  streamProject,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  type TestDatabase,
  TestSocket,
} from '@usher/testing';
import { ECHO_COMMAND, eventually, gone, isGone } from './fixtures/processes.ts';
import { adminApi, type Child, freePort, startServer } from './fixtures/server-child.ts';

const SERVER_ID = 'restart-test-server';
const LONG = 3_600_000;

const api = adminApi;

interface SessionView {
  id: string;
  state: string;
  workerId: string | null;
  queuePosition: number | null;
  restarts: number;
  endCode: number | null;
  endReason: string | null;
  outcome: string | null;
  timeline: { from: string | null; to: string; at: string; cause: string }[];
  token?: string;
  url?: string;
}

interface WorkerView {
  id: string;
  state: string;
  sessionId: string | null;
  connected: boolean;
}

const sessionOf = async (base: string, id: string) => {
  const r = await api<SessionView>(base, 'GET', `/sessions/${id}`);
  assert.equal(r.status, 200);
  return r.body;
};
const workersOf = async (base: string) =>
  (await api<{ workers: WorkerView[] }>(base, 'GET', '/workers?projectId=rs')).body.workers;

/** What a restart must keep: state, worker, queue position, restarts and the timeline. */
const kept = (s: SessionView) => ({
  id: s.id,
  state: s.state,
  workerId: s.workerId,
  queuePosition: s.queuePosition,
  restarts: s.restarts,
  timeline: s.timeline,
});

const pidOf = (handle: string | null) => (handle ? (JSON.parse(handle) as { pid: number | null }).pid : null);

interface Scene {
  db: TestDatabase;
  store: Store;
  options: UsherServerOptions;
  run1: Child;
  /** active (viewer attached), seated (worker started, no viewer yet), queued at 1, queued at 2 */
  ids: { active: string; seated: string; first: string; second: string };
  viewer: TestSocket;
  viewerToken: string;
  before: Map<string, SessionView>;
  workersBefore: WorkerView[];
  pids: Map<string, number>;
}

/** Every worker pid the database knows of, for the orphan check and for cleanup. */
async function allPids(store: Store): Promise<Map<string, number>> {
  const pids = new Map<string, number>();
  for (const w of await store.read.listWorkers({})) {
    const pid = pidOf(w.handle);
    if (pid !== null) pids.set(w.id, pid);
  }
  return pids;
}

/**
 * A streaming project with echo workers (min 1, max 2) on a server child: one session active with its viewer
 * connected, one seated (its worker started, waiting for its viewer), two queued.
 */
async function scene(
  kind: 'sqlite' | 'postgres',
  c: { after: (fn: () => Promise<void>) => void },
): Promise<Scene> {
  const db = await createTestDatabase(kind);
  const options: UsherServerOptions = {
    storage: db.storage,
    port: await freePort(),
    serverId: SERVER_ID,
    adminKeys: [TEST_ADMIN_KEY],
    secret: TEST_SECRET,
    engine: { positionIntervalMs: 0 },
  };
  const run1 = await startServer(options);
  const store = await openStore(db.storage);
  const children: Child[] = [run1];
  c.after(async () => {
    // whatever happened, leave no server or worker behind
    for (const ch of children)
      if (ch.proc.exitCode === null && ch.proc.signalCode === null) ch.proc.kill('SIGKILL');
    for (const pid of (await allPids(store)).values()) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {}
    }
    await store.close();
    await db.drop();
  });
  const base = run1.url;
  const created = await api(base, 'POST', '/projects', {
    ...streamProject('rs', { min: 1, max: 2 }),
    worker: { driver: 'process', command: ECHO_COMMAND },
    timeouts: {
      pendingMs: LONG,
      connectingMs: LONG,
      seatHoldMs: LONG,
      afkWarningMs: LONG,
      maxRuntimeMs: LONG,
      reconnectWindowMs: LONG,
    },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await eventually('a warm worker', async () => (await workersOf(base)).some((w) => w.state === 'ready'));

  const create = async () => {
    const r = await api<SessionView & { token: string; url: string }>(base, 'POST', '/sessions', {
      projectId: 'rs',
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
  };
  const active = await create();
  assert.equal(active.state, 'connecting');
  const viewer = new TestSocket(`${active.url}?token=${encodeURIComponent(active.token)}`);
  await viewer.opened;
  await viewer.state('active');

  // the warm refill is the second worker: the next session is seated on it and its worker starts it
  const seated = await create();
  assert.equal(seated.state, 'connecting');
  await eventually('the seated session to be started by its worker', async () => {
    return (await store.read.getSession(seated.id))?.workerStarted;
  });
  const first = await create();
  const second = await create();
  assert.equal(first.state, 'queued');
  assert.equal(second.state, 'queued');

  const ids = { active: active.id, seated: seated.id, first: first.id, second: second.id };
  const before = new Map<string, SessionView>();
  for (const id of Object.values(ids)) before.set(id, await sessionOf(base, id));
  assert.equal(before.get(ids.active)!.state, 'active');
  assert.equal(before.get(ids.seated)!.state, 'connecting');
  assert.equal(before.get(ids.first)!.queuePosition, 1);
  assert.equal(before.get(ids.second)!.queuePosition, 2);
  const workersBefore = await workersOf(base);
  assert.equal(workersBefore.length, 2);
  assert.ok(workersBefore.every((w) => w.connected && w.state === 'busy'));
  const pids = await allPids(store);
  assert.equal(pids.size, 2);
  for (const pid of pids.values()) assert.equal(isGone(pid), false);
  return {
    db,
    store,
    options,
    run1,
    ids,
    viewer,
    viewerToken: active.token,
    before,
    workersBefore,
    pids,
  };
}

/** The timers of the scene's sessions, as rows. */
async function timersOf(store: Store, ids: readonly string[]) {
  const rows = [];
  for (const id of ids) rows.push(...(await store.read.timersForSession(id)));
  return rows.sort((a, b) => a.sessionId.localeCompare(b.sessionId) || a.kind.localeCompare(b.kind));
}

/** SIGKILLs the first run; its viewer socket drops. */
async function kill(s: Scene): Promise<number> {
  const killedAt = Date.now();
  s.run1.proc.kill('SIGKILL');
  assert.deepEqual(await s.run1.exited, { code: null, signal: 'SIGKILL' });
  assert.equal((await s.viewer.closed).code, 1006);
  return killedAt;
}

/** Stops a server child the orderly way (SIGTERM → server.close()). */
async function stop(child: Child): Promise<void> {
  child.proc.kill('SIGTERM');
  const exit = await child.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, child.stderr.join(''));
}

for (const kind of databaseKinds()) {
  describe(`SIGKILL restart (${kind})`, () => {
    test('a new server on the same database keeps states, seats, queue positions and deadlines; workers re-attach', async (c) => {
      const s = await scene(kind, c);
      const ids = Object.values(s.ids);
      const timersBefore = await timersOf(s.store, ids);
      assert.ok(
        timersBefore.every((t) => t.kind !== 'reconnect'),
        'no reconnect window while the viewer is connected',
      );
      assert.deepEqual(
        timersBefore
          .map(
            (t) =>
              `${t.sessionId === s.ids.active ? 'active' : t.sessionId === s.ids.seated ? 'seated' : 'queued'}:${t.kind}`,
          )
          .sort(),
        ['active:afk_warning', 'active:max_runtime', 'queued:pending', 'queued:pending', 'seated:seat_hold'],
      );

      const killedAt = await kill(s);
      for (const [id, pid] of s.pids) assert.equal(isGone(pid), false, `worker ${id} outlives the server`);

      // missed heartbeats cannot end anything during this test: only the driver can notice an exit
      const run2 = await startServer({ ...s.options, engine: { ...s.options.engine, workerLossMs: LONG } });
      c.after(async () => {
        if (run2.proc.exitCode === null) run2.proc.kill('SIGKILL');
      });
      const base = run2.url;
      for (const [id, pid] of s.pids)
        assert.equal(isGone(pid), false, `worker ${id} outlived the server's death`);

      // the workers dial the same address again and re-attach with their own ids
      const workersAfter = await eventually(
        'every worker to re-attach',
        async () => {
          const ws = await workersOf(base);
          return ws.length === 2 && ws.every((w) => w.connected) ? ws : null;
        },
        20_000,
      );
      assert.deepEqual(workersAfter, s.workersBefore);
      assert.deepEqual(await allPids(s.store), s.pids, 'the same processes (no worker was started)');
      for (const [id, pid] of s.pids) assert.equal(isGone(pid), false, `worker ${id} still runs`);

      for (const id of ids) {
        assert.deepEqual(
          kept(await sessionOf(base, id)),
          kept(s.before.get(id)!),
          `session ${id} is unchanged`,
        );
      }

      // deadlines are not restarted; the viewer that was connected gets a reconnect window
      const timersAfter = await timersOf(s.store, ids);
      assert.deepEqual(
        timersAfter.filter((t) => t.kind !== 'reconnect'),
        timersBefore,
      );
      const reconnect = timersAfter.filter((t) => t.kind === 'reconnect');
      assert.equal(reconnect.length, 1);
      assert.equal(reconnect[0]!.sessionId, s.ids.active);
      assert.ok(reconnect[0]!.dueAt >= killedAt + LONG, 'the window starts with the new run');
      assert.equal((await s.store.read.getSession(s.ids.active))?.viewerAttached, false);

      // the viewer comes back within the window: the session is still active and the window closes
      const back = new TestSocket(
        `${base.replace(/^http/, 'ws')}/sessions/${s.ids.active}/ws?token=${encodeURIComponent(s.viewerToken)}`,
      );
      await back.opened;
      await back.state('active');
      await eventually('the reconnect window to close', async () => {
        const timers = await s.store.read.timersForSession(s.ids.active);
        return timers.every((t) => t.kind !== 'reconnect');
      });
      assert.equal((await sessionOf(base, s.ids.active)).state, 'active');
      back.ws.terminate();

      // an adopted worker that dies is noticed by the new run's driver: its seated session ends 4005
      const seatedWorker = s.before.get(s.ids.seated)!.workerId!;
      process.kill(s.pids.get(seatedWorker)!, 'SIGKILL');
      const lost = await eventually('the seated session to end', async () => {
        const v = await sessionOf(base, s.ids.seated);
        return v.state === 'ended' ? v : null;
      });
      assert.equal(lost.endCode, 4005);
      assert.equal(lost.endReason, 'worker_lost');
      // the freed seat goes to the head of the queue (a worker is started for it, after the launch backoff
      // when the workers this test killed count as crashes soon after they were ready)
      await eventually('the head of the queue to be seated', async () =>
        (await sessionOf(base, s.ids.first)).state === 'connecting' ? true : null,
      );
      assert.equal((await sessionOf(base, s.ids.second)).queuePosition, 1);

      // ending the session of an adopted worker stops that process and frees its seat
      const activeWorker = s.before.get(s.ids.active)!.workerId!;
      assert.equal((await api(base, 'POST', `/sessions/${s.ids.active}/end`)).status, 200);
      const done = await eventually('the active session to end', async () => {
        const v = await sessionOf(base, s.ids.active);
        return v.state === 'ended' ? v : null;
      });
      assert.equal(done.endCode, 1000);
      await eventually('the adopted worker to be gone', async () =>
        (await workersOf(base)).every((w) => w.id !== activeWorker),
      );
      assert.equal(await gone(s.pids.get(activeWorker)!), true);
      // the seat goes to the next in line; a new worker is started for it (after the launch backoff, when the
      // workers this test killed count as crashes soon after they were ready)
      await eventually('the next in line to be seated', async () =>
        (await sessionOf(base, s.ids.second)).state === 'connecting' ? true : null,
      );

      await stop(run2);
      const left = [...(await allPids(s.store))].filter(([, pid]) => !isGone(pid));
      assert.deepEqual(left, [], 'no worker process outlives the server');
    });

    test('workers that died or hang while the server was down are reaped: 4007 for a live session whose viewer is away, 4005 for a seated one', async (c) => {
      const s = await scene(kind, c);
      const byId = new Map(s.workersBefore.map((w) => [w.sessionId, w.id]));
      const activeWorker = byId.get(s.ids.active)!;
      const seatedWorker = byId.get(s.ids.seated)!;

      await kill(s);
      // while the server is down: one worker dies, the other hangs (it cannot re-attach)
      process.kill(s.pids.get(activeWorker)!, 'SIGKILL');
      assert.equal(await gone(s.pids.get(activeWorker)!), true);
      process.kill(s.pids.get(seatedWorker)!, 'SIGSTOP');

      // long enough to look at the seats before the reaper runs, even on a busy machine
      const run2 = await startServer({ ...s.options, engine: { ...s.options.engine, reattachMs: 5_000 } });
      c.after(async () => {
        if (run2.proc.exitCode === null) run2.proc.kill('SIGKILL');
      });
      const base = run2.url;

      // the dead worker was found at start-up: its live session ended, the queue head got a new worker. Its
      // viewer's socket went with the first run (a reconnect window is open), so it cannot resume the session:
      // 4007, and its SDK starts a fresh one
      const crashed = await sessionOf(base, s.ids.active);
      assert.equal(crashed.state, 'ended');
      assert.equal(crashed.endCode, 4007);
      assert.equal(crashed.endReason, 'reconnect_failed');
      assert.equal(crashed.outcome, 'failed');
      const first = await sessionOf(base, s.ids.first);
      assert.equal(first.state, 'connecting');
      assert.ok(first.workerId && first.workerId !== activeWorker && first.workerId !== seatedWorker);
      assert.equal(
        (await sessionOf(base, s.ids.second)).queuePosition,
        1,
        'the hung worker still holds its seat',
      );

      // the hung one did not re-attach in time: reaped, and its seated session ended 4005
      const lost = await eventually('the seated session to end', async () => {
        const v = await sessionOf(base, s.ids.seated);
        return v.state === 'ended' ? v : null;
      });
      assert.equal(lost.endCode, 4005);
      assert.equal(lost.endReason, 'worker_lost');
      assert.equal(isGone(s.pids.get(seatedWorker)!), true, 'the hung worker was killed');
      await eventually('the freed seat to go to the next in line', async () =>
        (await sessionOf(base, s.ids.second)).state === 'connecting' ? true : null,
      );

      await stop(run2);
      const pids = await allPids(s.store);
      assert.equal(pids.size, 4);
      const left = [...pids].filter(([, pid]) => !isGone(pid));
      assert.deepEqual(left, [], 'no worker process outlives the server');
    });

    test('a worker the previous run was stopping, found alive, is stopped at start-up, not given time to re-attach', async (c) => {
      const s = await scene(kind, c);
      const seatedWorker = s.workersBefore.find((w) => w.sessionId === s.ids.seated)!.id;
      await kill(s);
      // the previous run had asked it to stop (its session over) when it was killed: the stop died with it
      await s.store.read.updateWorker(seatedWorker, { state: 'stopping', updatedAt: Date.now() });
      const run2 = await startServer({ ...s.options, engine: { ...s.options.engine, reattachMs: LONG } });
      c.after(async () => {
        if (run2.proc.exitCode === null) run2.proc.kill('SIGKILL');
      });
      assert.equal(isGone(s.pids.get(seatedWorker)!), true, 'stopped before the server was up');
      assert.equal((await s.store.read.getWorker(seatedWorker))?.state, 'stopped');
      await stop(run2);
    });
  });
}
