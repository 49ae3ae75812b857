// Real worker processes (the process driver running examples/echo-worker) on both databases: warm pools,
// credentials in the environment, crashes, auto-restart, launch failures, recycling, and no orphans.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ProjectInput, SessionEvent } from '@usher/protocol';
import { ManualClock, systemClock, TokenIssuer } from '@usher/server';
import {
  agentProject,
  createTestDatabase,
  databaseKinds,
  FrameSocket,
  lastingExternalProject,
  streamProject,
  TEST_SECRET,
  type TestDatabase,
  TestServer,
  type TestServerOptions,
  TestStreamer,
  workersWhere,
} from '@usher/testing';
import { ECHO_COMMAND, environOf, isGone, WatchedProcessDriver } from './fixtures/processes.ts';
import { assertError } from './helpers.ts';

interface Ctx {
  t: TestServer;
  driver: WatchedProcessDriver;
  db: TestDatabase;
}

/** An agent project whose workers are echo-worker processes. */
function echoProject(id: string, pool: { min: number; max: number }, extra: Partial<ProjectInput> = {}) {
  return agentProject(id, pool, {
    worker: { driver: 'process', command: ECHO_COMMAND },
    ...extra,
  });
}

/** A server on a fresh database with a real process driver and the real clock; closed when the test ends. */
async function setup(
  kind: 'sqlite' | 'postgres',
  ctx: { after: (fn: () => Promise<void>) => void },
  options: Partial<TestServerOptions> = {},
): Promise<Ctx> {
  const db = await createTestDatabase(kind);
  const driver = new WatchedProcessDriver();
  const t = await new TestServer({
    storage: db.storage,
    clock: systemClock,
    processDriver: driver,
    ...options,
  }).start();
  ctx.after(async () => {
    await t.close();
    await db.drop();
  });
  return { t, driver, db };
}

/**
 * A server on a fresh database with the FakeDriver and the manual clocks (sessions' and, returned, the liveness
 * clock's, which the launch backoff and worker loss run on); closed when the test ends.
 */
async function fakeSetup(
  kind: 'sqlite' | 'postgres',
  ctx: { after: (fn: () => Promise<void>) => void },
  engine: TestServerOptions['engine'] = {},
): Promise<{ t: TestServer; liveness: ManualClock }> {
  const liveness = new ManualClock(Date.now());
  const db = await createTestDatabase(kind);
  const t = await new TestServer({
    storage: db.storage,
    engine: { livenessClock: liveness, ...engine },
  }).start();
  ctx.after(async () => {
    await t.close();
    await db.drop();
  });
  return { t, liveness };
}

/** Closes the server, then checks that every process its driver started is gone. */
async function closeWithoutOrphans({ t, driver }: Ctx): Promise<void> {
  await t.close();
  assert.ok(driver.pids.size > 0, 'the test started worker processes');
  const left = [...driver.pids].filter(([, pid]) => !isGone(pid));
  assert.deepEqual(left, [], 'no worker process outlives server.close()');
}

/** Every event of a session from now on, in order. */
function record(t: TestServer, sessionId: string): SessionEvent[] {
  const events: SessionEvent[] = [];
  t.server.hub.subscribe(sessionId, (e) => events.push(e));
  return events;
}

const statuses = (events: SessionEvent[]) =>
  events.flatMap((e) => (e.type === 'session.status_changed' ? [e.status] : []));

const tokens = new TokenIssuer(TEST_SECRET, () => Date.now());

for (const kind of databaseKinds()) {
  describe(`worker processes (${kind})`, () => {
    test('a warm pool starts min real workers; a session is seated on a ready one at once and goes active', async (c) => {
      const x = await setup(kind, c);
      const { t, driver } = x;
      await t.createProject(echoProject('warm', { min: 2, max: 3 }));
      const ready = await t.workersWhere('warm', (ws) => ws.filter((w) => w.state === 'ready').length === 2);
      assert.equal(driver.started.length, 2, 'exactly min workers were started');
      for (const w of ready) {
        assert.equal(isGone(driver.pid(w.id)), false, `worker ${w.id} runs as a process`);
        assert.equal(t.engine.isWorkerConnected(w.id), true, `worker ${w.id} is registered`);
        await driver.line(w.id, `registered as ${w.id}; ready`);
      }
      // GET /workers says where each runs: the process to look for (or kill)
      const listed = await t.api<{ workers: { id: string; where: string | null }[] }>(
        'GET',
        '/workers?projectId=warm',
      );
      for (const w of ready)
        assert.equal(
          listed.body.workers.find((x) => x.id === w.id)?.where,
          `pid ${driver.pid(w.id)} on server test-server`,
        );

      const s = await t.createSession('warm');
      assert.equal(s.state, 'connecting', 'seated at once');
      assert.ok(
        ready.some((w) => w.id === s.workerId),
        'on one of the ready workers',
      );
      const active = await t.waitForState(s.id, 'active');
      assert.equal(active.workerId, s.workerId);
      const causes = (active.timeline as { to: string; cause: string }[]).map((e) => `${e.to}:${e.cause}`);
      assert.deepEqual(causes, [
        'requesting:api:create',
        'connecting:admission:ready-worker',
        'active:worker:started',
      ]);
      await driver.line(s.workerId!, `session ${s.id} assigned (restarts=0, count=0)`);
      const busy = await t.engine.listWorkers({ projectId: 'warm' });
      assert.equal(busy.find((w) => w.id === s.workerId)?.state, 'busy');
      await t.settled();
      assert.equal(driver.started.length, 3, 'one more worker keeps min ready');
      assert.ok(
        [...driver.launches.values()].every((l) => l.env.USHER_SESSION_ID === undefined),
        'a ready worker was used, none was started for the session',
      );

      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      await closeWithoutOrphans(x);
    });

    test('a worker process gets its credentials in its environment, and its session ones when started for a session', async (c) => {
      const x = await setup(kind, c);
      const { t, driver } = x;
      await t.createProject(
        echoProject(
          'creds',
          { min: 1, max: 1 },
          {
            worker: { driver: 'process', command: ECHO_COMMAND, env: { ECHO_MARK: 'from-project' } },
          },
        ),
      );
      const [warm] = await t.workersWhere('creds', (ws) => ws.some((w) => w.state === 'ready'));
      const env = environOf(driver.pid(warm!.id));
      assert.equal(env.USHER_WORKER_URL, `${t.url.replace(/^http/, 'ws')}/workers/ws`);
      assert.equal(env.USHER_WORKER_ID, warm!.id);
      assert.equal(env.USHER_PROJECT_ID, 'creds');
      assert.equal(env.USHER_REGION, 'default');
      assert.equal(env.ECHO_MARK, 'from-project', "the project's worker.env reaches the process");
      const claims = await tokens.verify(env.USHER_WORKER_TOKEN ?? '');
      assert.equal(claims.role, 'worker');
      assert.equal(claims.wid, warm!.id);
      assert.equal(env.USHER_SESSION_ID, undefined, 'a warm worker has no session yet');
      assert.equal(env.USHER_SESSION_TOKEN, undefined);

      // no warm worker: the session gets a worker started for it, with the session's credentials too
      await t.createProject(echoProject('cold', { min: 0, max: 1 }));
      const s = await t.createSession('cold');
      assert.equal(s.state, 'connecting');
      await t.waitForState(s.id, 'active');
      const env2 = environOf(driver.pid(s.workerId!));
      assert.equal(env2.USHER_WORKER_ID, s.workerId);
      assert.equal(env2.USHER_PROJECT_ID, 'cold');
      assert.equal(env2.USHER_SESSION_ID, s.id);
      const sessionClaims = await tokens.verify(env2.USHER_SESSION_TOKEN ?? '');
      assert.equal(sessionClaims.role, 'agent');
      assert.equal(sessionClaims.sid, s.id);
      assert.equal((await tokens.verify(env2.USHER_WORKER_TOKEN ?? '')).wid, s.workerId);
      await closeWithoutOrphans(x);
    });

    test('a worker that dies while its session is active: session.error AGENT_CRASHED, then 4006 worker_crashed; the pool refills', async (c) => {
      const x = await setup(kind, c);
      const { t, driver } = x;
      await t.createProject(echoProject('crash', { min: 1, max: 1 }));
      await t.readyWorkers('crash', 1);
      const s = await t.createSession('crash');
      await t.waitForState(s.id, 'active');
      const events = record(t, s.id);
      const crashed = s.workerId!;

      process.kill(driver.pid(crashed), 'SIGKILL');
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 4006);
      assert.equal(ended.endReason, 'worker_crashed');
      assert.equal(ended.outcome, 'failed');
      const error = events.findIndex((e) => e.type === 'session.error');
      assert.ok(error >= 0, 'a session.error event was sent');
      assert.deepEqual(
        { ...events[error], at: undefined, message: undefined },
        {
          type: 'session.error',
          sessionId: s.id,
          at: undefined,
          code: 'AGENT_CRASHED',
          message: undefined,
          recoverable: false,
        },
      );
      assert.match((events[error] as { message: string }).message, /signal SIGKILL/);
      const end = events.findIndex((e) => e.type === 'session.status_changed' && e.status === 'ended');
      assert.ok(error < end, 'the error comes before the end');
      assert.deepEqual(statuses(events), ['ending', 'ended']);
      assert.deepEqual(await driver.exit(crashed), {
        workerId: crashed,
        code: null,
        signal: 'SIGKILL',
        expected: false,
      });

      const [fresh] = await t.workersWhere('crash', (ws) => ws.some((w) => w.state === 'ready'));
      assert.notEqual(fresh!.id, crashed, 'a new worker refills the warm pool');
      assert.equal(isGone(driver.pid(fresh!.id)), false);
      await closeWithoutOrphans(x);
    });

    test('auto-restart: a crash sends the session back to connecting on a fresh worker with its saved state; the next crash ends it 4006', async (c) => {
      const x = await setup(kind, c);
      const { t, driver } = x;
      await t.createProject(
        echoProject('restart', { min: 1, max: 2 }, { autoRestart: { enabled: true, maxRestarts: 1 } }),
      );
      await t.readyWorkers('restart', 1);
      const s = await t.createSession('restart');
      await t.waitForState(s.id, 'active');
      const events = record(t, s.id);
      const first = s.workerId!;
      // The frame the echo worker sends after echoing a message (saveState({count})). Room messages are not
      // relayed to workers yet, so the test sends it on the worker's behalf, through the same engine entry.
      await t.engine.workerFrame(first, { type: 'save_state', sessionId: s.id, state: { count: 3 } });

      process.kill(driver.pid(first), 'SIGKILL');
      const restarted = await t.nextEvent(
        s.id,
        (e) => e.type === 'session.status_changed' && e.status === 'active',
      );
      assert.equal(restarted.type, 'session.status_changed');
      const again = await t.session(s.id);
      assert.equal(again.restarts, 1);
      const second = again.workerId as string;
      assert.notEqual(second, first, 'a fresh worker');
      await driver.line(second, `session ${s.id} assigned (restarts=1, count=3)`);
      const firstError = events.find((e) => e.type === 'session.error');
      assert.equal(firstError?.type === 'session.error' && firstError.recoverable, true);
      assert.equal(firstError?.type === 'session.error' && firstError.code, 'AGENT_CRASHED');
      const timeline = (again.timeline as { to: string; cause: string }[]).slice(-2);
      assert.deepEqual(timeline, [
        { ...timeline[0]!, to: 'connecting', cause: 'worker:crashed:auto-restart' },
        { ...timeline[1]!, to: 'active', cause: 'worker:started' },
      ]);

      process.kill(driver.pid(second), 'SIGKILL');
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 4006);
      assert.equal(ended.endReason, 'worker_crashed');
      assert.equal(ended.restarts, 1);
      const errors = events.flatMap((e) => (e.type === 'session.error' ? [e.recoverable] : []));
      assert.deepEqual(errors, [true, false], 'the second crash is not recoverable (maxRestarts 1)');
      assert.deepEqual(statuses(events), ['connecting', 'active', 'ending', 'ended']);
      await closeWithoutOrphans(x);
    });

    test('a worker command that does not exist: its session ends 4003 launch_failed, and the pool backs off instead of respawning', async (c) => {
      // the launch backoff runs on the liveness clock: a manual one makes it deterministic here
      const liveness = new ManualClock(Date.now());
      const x = await setup(kind, c, { engine: { livenessClock: liveness } });
      const { t, driver } = x;
      await t.createProject(
        agentProject(
          'nocmd',
          { min: 1, max: 1 },
          {
            worker: { driver: 'process', command: ['/nonexistent/usher-no-such-worker'] },
          },
        ),
      );
      // the warm worker fails to launch: the pool is now in backoff (1 s)
      await t.settled();
      const firstExit = await driver.exit(driver.started[0]!);
      assert.match(firstExit.error ?? '', /not found: \/nonexistent\/usher-no-such-worker/);
      await t.workersWhere('nocmd', (ws) => ws.length === 0);
      await t.settled();
      assert.equal(driver.started.length, 1);

      // a session asked for during the backoff waits in the queue instead of starting a worker
      const s = await t.createSession('nocmd');
      assert.equal(s.state, 'queued');
      assert.equal(s.queuePosition, 1);
      await liveness.advance(999);
      await t.settled();
      assert.equal(driver.started.length, 1, 'nothing is started before the backoff is over');
      assert.equal((await t.session(s.id)).state, 'queued');

      await liveness.advance(1);
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 4003);
      assert.equal(ended.endReason, 'launch_failed');
      assert.equal(ended.outcome, 'failed');
      assert.equal(driver.started.length, 2, 'one worker was started for the session');
      assert.equal(driver.launches.get(driver.started[1]!)?.env.USHER_SESSION_ID, s.id);

      // two failures in a row: the warm refill now waits 2 s
      await t.settled();
      await liveness.advance(1999);
      await t.settled();
      assert.equal(driver.started.length, 2, 'no hot loop: the backoff doubled');
      await liveness.advance(1);
      await t.settled();
      await driver.exit(driver.started[2]!);
      await t.workersWhere('nocmd', (ws) => ws.length === 0);
      await t.settled();
      assert.equal(driver.started.length, 3);
      await t.close();
      assert.equal(driver.pids.size, 0, 'no process was ever started');
    });

    test('a queue held back by the launch backoff is seated when it ends, even if a worker became ready meanwhile', async (c) => {
      const { t, liveness } = await fakeSetup(kind, c);
      let launches = 0;
      // the first worker takes its time to say ready; the others say it at once
      t.fake.behaviour = () => (launches++ === 0 ? { ready: false } : {});
      await t.createProject(agentProject('held', { min: 0, max: 4 }));
      const slow = await t.createSession('held');
      const crash = async () => {
        const s = await t.createSession('held');
        await t.waitForState(s.id, 'active');
        t.fake.crash(s.workerId!);
        await t.waitForState(s.id, 'ended');
        await t.settled();
      };
      // two workers die right after they were ready: the pool backs off for a second
      await crash();
      await crash();
      const held = await t.createSession('held');
      assert.equal(held.state, 'queued', 'no worker is started during the backoff');
      // the slow worker says ready now: its own session goes on; the queue still waits for the backoff's end
      await t.fake.workers.get(slow.workerId!)!.sdk.ready();
      await t.waitForState(slow.id, 'active');
      await liveness.advance(1_000);
      await t.waitForState(held.id, 'connecting');
    });

    test('auto-restart: a fresh worker that dies before it takes the session is a crash too: another one while restarts are left, then 4006', async (c) => {
      const { t } = await fakeSetup(kind, c);
      await t.createProject(
        agentProject('relapse', { min: 0, max: 3 }, { autoRestart: { enabled: true, maxRestarts: 2 } }),
      );
      const s = await t.createSession('relapse');
      await t.waitForState(s.id, 'active');
      const events = record(t, s.id);
      const first = (await t.session(s.id)).workerId as string;
      // the next worker never says ready: it dies while the session waits for it
      t.fake.behaviour = () => ({ ready: false });
      const second = t.fake.nextStart();
      t.fake.crash(first);
      const w2 = await second;
      await t.settled();
      const waiting = await t.session(s.id);
      assert.deepEqual([waiting.state, waiting.restarts, waiting.workerId], ['connecting', 1, w2.id]);
      t.fake.behaviour = () => ({});
      const third = t.fake.nextStart();
      const active = t.nextEvent(s.id, (e) => e.type === 'session.status_changed' && e.status === 'active');
      t.fake.crash(w2.id);
      const w3 = await third;
      await active;
      const back = await t.session(s.id);
      assert.deepEqual([back.restarts, back.workerId], [2, w3.id]);
      assert.equal(w3.assignments[0]?.sessionId, s.id);
      t.fake.crash(w3.id);
      const ended = await t.waitForState(s.id, 'ended');
      assert.deepEqual([ended.endCode, ended.endReason, ended.restarts], [4006, 'worker_crashed', 2]);
      const errors = events.flatMap((e) => (e.type === 'session.error' ? [[e.code, e.recoverable]] : []));
      assert.deepEqual(errors, [
        ['AGENT_CRASHED', true],
        ['AGENT_CRASHED', true],
        ['AGENT_CRASHED', false],
      ]);
      // the second crash found the session connecting already: it stayed so, on another worker
      assert.deepEqual(statuses(events), ['connecting', 'active', 'ending', 'ended']);
    });

    test('auto-restart with no worker to take the session (an external pool): it ends 4006 at once, not recoverable', async (c) => {
      const { t, liveness } = await fakeSetup(kind, c, { workerLossMs: 1_000 });
      await t.createProject(
        agentProject(
          'by-hand',
          { min: 0, max: 2 },
          { worker: { driver: 'external' }, autoRestart: { enabled: true, maxRestarts: 3 } },
        ),
      );
      const pool = await t.api<{ token: string; workerUrl: string }>(
        'POST',
        '/projects/by-hand/pool-tokens',
        {},
      );
      const w = new FrameSocket(pool.body.workerUrl);
      await w.opened;
      w.send({ type: 'register', token: pool.body.token });
      await w.waitFor((f) => f.type === 'registered');
      w.send({ type: 'ready' });
      await t.readyWorkers('by-hand', 1);
      const s = await t.createSession('by-hand');
      await w.waitFor((f) => f.type === 'assign');
      w.send({ type: 'session_started', sessionId: s.id });
      await t.waitForState(s.id, 'active');
      const crashed = t.nextEvent(s.id, (e) => e.type === 'session.error');
      // the worker's connection is gone for good: lost after the worker-loss time
      w.ws.terminate();
      await w.closed;
      await t.settled();
      await liveness.advance(1_000);
      const error = await crashed;
      assert.ok(error.type === 'session.error' && error.code === 'AGENT_CRASHED');
      assert.equal(error.recoverable, false, 'nobody can take the session: it cannot be restarted');
      const ended = await t.waitForState(s.id, 'ended');
      assert.deepEqual([ended.endCode, ended.endReason], [4006, 'worker_crashed']);
      assert.deepEqual(
        await t.server.engine.listWorkers({ projectId: 'by-hand' }),
        [],
        'no worker was made up for it',
      );
    });

    test('a worker that comes back while its session is ending is sent the shutdown it missed', async (c) => {
      const { t } = await fakeSetup(kind, c);
      await t.createProject(agentProject('missed', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
      const { w, ownToken, workerUrl } = await t.poolWorker('missed');
      const s = await t.createSession('missed');
      await w.waitFor((f) => f.type === 'assign');
      w.send({ type: 'session_started', sessionId: s.id });
      await t.waitForState(s.id, 'active');
      // its connection drops; the session is ended meanwhile, and the shutdown goes nowhere
      w.ws.terminate();
      await w.closed;
      await t.settled();
      await t.api('POST', `/sessions/${s.id}/end`);
      assert.equal((await t.session(s.id)).state, 'ending');
      const back = new FrameSocket(workerUrl);
      await back.opened;
      back.send({ type: 'register', token: ownToken });
      assert.equal((await back.waitFor((f) => f.type === 'registered')).sessionId, s.id);
      const shutdown = await back.waitFor((f) => f.type === 'shutdown');
      assert.deepEqual([shutdown.sessionId, shutdown.reason, shutdown.reuse], [s.id, 'completed', true]);
      back.send({ type: 'stopped' });
      await t.waitForState(s.id, 'ended');
      await back.close();
    });

    test('a streamer that closes while it registers is gone at once, not left ready until it is found lost', async (c) => {
      // liveness never moves here: only the streamer's own leaving can stop its worker
      const { t } = await fakeSetup(kind, c);
      await t.createProject(streamProject('brief', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
      const pool = await t.api<{ signallingUrl: string }>('POST', '/projects/brief/pool-tokens', {});
      // the server registers the streamer only once its socket has closed
      const engine = t.server.engine as unknown as {
        workerRegistered: (...args: unknown[]) => Promise<unknown>;
      };
      const register = engine.workerRegistered;
      engine.workerRegistered = async function (this: unknown, ...args: unknown[]) {
        const sockets = [...t.server.app.websocketServer.clients];
        await Promise.all(
          sockets.map((w) => w.readyState === w.CLOSED || new Promise((resolve) => w.once('close', resolve))),
        );
        return register.apply(this, args);
      };
      const s = new TestStreamer(pool.body.signallingUrl, { identify: false });
      await s.next('identify');
      // endpointId, then a goodbye before the server has confirmed it
      s.send({ type: 'endpointId', id: 'ue' });
      s.ws.close(1000);
      await s.closed;
      // every worker of the project, the stopped ones too: the one it registered as, once stopped
      const everyWorker = {
        engine: { listWorkers: (f: { projectId: string }) => t.server.engine.store.read.listWorkers(f) },
        hub: t.server.hub,
      };
      await workersWhere(everyWorker, 'brief', (ws) => ws.length === 1 && ws[0]!.state === 'stopped');
    });

    test('a worker that says stopped and closes cleanly has left: it is stopped at once, and its live session goes as after a crash', async (c) => {
      // liveness never moves here: only the worker's own leaving can stop it
      const { t } = await fakeSetup(kind, c);
      await t.createProject(agentProject('leaving', { min: 0, max: 2 }, { worker: { driver: 'external' } }));
      const connect = async () => {
        const { w, workerId } = await t.poolWorker('leaving');
        return { w, id: workerId };
      };
      const busy = await connect();
      await t.readyWorkers('leaving', 1);
      const s = await t.createSession('leaving');
      await busy.w.waitFor((f) => f.type === 'assign');
      busy.w.send({ type: 'session_started', sessionId: s.id });
      await t.waitForState(s.id, 'active');
      const idle = await connect();
      await t.readyWorkers('leaving', 1);

      // an operator stops the idle one (Ctrl-C): the SDK sends stopped and closes with 1000
      idle.w.send({ type: 'stopped' });
      idle.w.ws.close(1000);
      await idle.w.closed;
      const crashed = t.nextEvent(s.id, (e) => e.type === 'session.error');
      busy.w.send({ type: 'stopped' });
      busy.w.ws.close(1000);
      const error = await crashed;
      assert.ok(error.type === 'session.error' && error.code === 'AGENT_CRASHED');
      const ended = await t.waitForState(s.id, 'ended');
      assert.deepEqual([ended.endCode, ended.endReason], [4006, 'worker_crashed']);
      await t.settled();
      const left = (await t.server.engine.listWorkers({ projectId: 'leaving' })).filter(
        (w) => w.id === idle.id || w.id === busy.id,
      );
      assert.deepEqual(left, [], 'neither is counted as a worker any more');
    });

    test('credentials past half their life are renewed with a heartbeat: the old ones expire, the new ones work', async (c) => {
      const HOUR = 3_600_000;
      const { t } = await fakeSetup(kind, c, { sessionTokenTtlMs: HOUR, workerTokenTtlMs: 4 * HOUR });
      await t.createProject(lastingExternalProject('renew', { min: 0, max: 1 }));
      const pool = await t.poolWorker('renew', { ttlSeconds: 90 * 24 * 3600 });
      const { w } = pool;
      await t.readyWorkers('renew', 1);
      const s = await t.createSession('renew');
      const assign = await w.waitFor((f) => f.type === 'assign');
      const first = (assign.assignment as { token: string }).token;
      w.send({ type: 'session_started', sessionId: s.id });
      await t.waitForState(s.id, 'active');
      const transcript = (token: string) => t.api('GET', `/sessions/${s.id}/messages`, undefined, token);

      // before half its life, a heartbeat brings nothing
      await t.advance(HOUR / 2 - 1_000);
      w.send({ type: 'heartbeat' });
      const marker = w.frames.length;
      await t.advance(2_000);
      w.send({ type: 'heartbeat' });
      const renewed = await w.waitFor((f) => f.type === 'token');
      assert.equal(w.frames.indexOf(renewed) >= marker, true);
      assert.equal(renewed.worker, undefined, "the worker token's half life is still ahead");
      const session = renewed.session as { sessionId: string; token: string };
      assert.equal(session.sessionId, s.id);
      await t.advance(HOUR / 2 + 1_000);
      assertError(await transcript(first), 401, 'UNAUTHORIZED');
      assert.equal(
        (await transcript(session.token)).status,
        200,
        'the renewed agent token reads the transcript',
      );

      // past the worker token's half life, a fresh one; the first has expired when the worker comes back
      await t.advance(HOUR);
      w.send({ type: 'heartbeat' });
      const next = await w.waitFor((f) => f.type === 'token' && typeof f.worker === 'string');
      await t.advance(2 * HOUR);
      w.ws.terminate();
      await w.closed;
      const again = async (token: string) => {
        const socket = new FrameSocket(pool.workerUrl);
        await socket.opened;
        socket.send({ type: 'register', token });
        return socket;
      };
      const stale = await again(pool.ownToken);
      assert.equal((await stale.closed).code, 1008, 'the token given at registration has expired');
      const fresh = await again(String(next.worker));
      const back = await fresh.waitFor((f) => f.type === 'registered');
      assert.equal(back.workerId, pool.workerId, 'the same worker, with its session');
      fresh.ws.close(1000);
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('a session that ends before its worker is ready ends as soon as the worker says ready', async (c) => {
      const { t } = await fakeSetup(kind, c);
      await t.createProject(agentProject('slow', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
      const pool = await t.api<{ token: string; workerUrl: string }>(
        'POST',
        '/projects/slow/pool-tokens',
        {},
      );
      const w = new FrameSocket(pool.body.workerUrl);
      c.after(() => w.ws.terminate());
      await w.opened;
      w.send({ type: 'register', token: pool.body.token });
      const workerId = String((await w.waitFor((f) => f.type === 'registered')).workerId);
      // registered, not ready yet: a session is seated on it, and ended at once
      const s = await t.createSession('slow');
      assert.equal(s.workerId, workerId);
      assert.equal((await t.api('POST', `/sessions/${s.id}/end`)).status, 200);
      assert.equal((await t.session(s.id)).state, 'ending');
      // the worker comes up with nothing of the session (a reconnecting worker says ready instead of stopped
      // too): the session need not wait out the ending limit, and the worker takes the next one
      w.send({ type: 'ready' });
      const ended = await t.waitForState(s.id, 'ended');
      assert.deepEqual([ended.endCode, ended.endReason], [1000, 'completed']);
      await t.workersWhere('slow', (ws) => ws.some((x) => x.id === workerId && x.state === 'ready'));
    });

    test('workers that crash soon after they are ready back off like failed launches; one that ran a while resets it', async (c) => {
      const { t, liveness } = await fakeSetup(kind, c);
      await t.createProject(agentProject('flaky', { min: 1, max: 1 }));
      const readyOne = async () => {
        await t.readyWorkers('flaky', 1);
        return t.fake.started.at(-1)!;
      };
      const crashed = async (id: string) => {
        t.fake.crash(id);
        await t.workersWhere('flaky', (ws) => ws.every((w) => w.id !== id));
        await t.settled();
      };
      // crashed right after it was ready: replaced at once the first time, then after 1 s, then 2 s
      await crashed(await readyOne());
      await crashed(await readyOne());
      assert.equal(t.fake.started.length, 2);
      await liveness.advance(999);
      await t.settled();
      assert.equal(t.fake.started.length, 2, 'no respawn before the backoff is over');
      await liveness.advance(1);
      await crashed(await readyOne());
      await liveness.advance(1_999);
      await t.settled();
      assert.equal(t.fake.started.length, 3, 'the backoff doubled: no crash loop');
      await liveness.advance(1);
      const steady = await readyOne();
      assert.equal(t.fake.started.length, 4);
      // this one runs for a while before it crashes: the pool is healthy again, and refills at once
      await t.advance(30_000);
      await crashed(steady);
      await readyOne();
      assert.equal(t.fake.started.length, 5);
    });

    test('recycle: when a session ends its worker process exits, and a new one keeps the pool at min', async (c) => {
      const x = await setup(kind, c);
      const { t, driver } = x;
      await t.createProject(echoProject('recycle', { min: 1, max: 1 }));
      await t.readyWorkers('recycle', 1);
      const s = await t.createSession('recycle');
      await t.waitForState(s.id, 'active');
      const used = s.workerId!;
      const pid = driver.pid(used);

      const r = await t.api('POST', `/sessions/${s.id}/end`);
      assert.equal(r.status, 200);
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 1000);
      assert.equal(ended.endReason, 'completed');
      assert.equal(ended.outcome, 'disconnected');
      await driver.line(used, 'shutdown: completed');
      const exit = await driver.exit(used);
      assert.equal(exit.code, 0, 'the echo worker stopped cleanly');
      assert.equal(isGone(pid), true, 'the worker process is gone');

      const [next] = await t.workersWhere('recycle', (ws) => ws.some((w) => w.state === 'ready'));
      assert.notEqual(next!.id, used, 'a new worker replaces it');
      assert.notEqual(driver.pid(next!.id), pid);
      assert.equal(isGone(driver.pid(next!.id)), false);
      await closeWithoutOrphans(x);
    });
  });
}
