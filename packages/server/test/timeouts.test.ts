// Every timeout path of SPEC §3 on both databases, driven by the manual clock: close code, end reason,
// outcome, the events a session socket saw, the timeline, and cleanup (worker recycled, no timers left).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ProjectInput, SessionEvent, Timeouts } from '@usher/protocol';
import {
  agentProject,
  type CreatedSession,
  databaseKinds,
  type LiveWorker,
  streamProject,
  type TestSocket,
  useTestServer,
} from '@usher/testing';

interface Entry {
  from: string | null;
  to: string;
  at: string;
  cause: string;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Lifecycle events only: participants joining and leaving are covered in participants.test.ts. */
const lifecycle = (e: SessionEvent) => !e.type.startsWith('session.participant_');

/** An event in short form, so a whole sequence reads as one line. */
function short(e: SessionEvent): string {
  switch (e.type) {
    case 'session.status_changed':
      return e.status === 'ended' ? `ended ${e.endCode} ${e.endReason} ${e.outcome}` : e.status;
    case 'session.afk_warning':
      return `afk_warning ${e.remainingMs}`;
    case 'session.queue_position':
      return `position ${e.position}`;
    default:
      return e.type;
  }
}

for (const kind of databaseKinds()) {
  describe(`timeouts (${kind})`, () => {
    const { t } = useTestServer(kind);
    let n = 0;
    /** projects persist in the suite's database: every test gets a fresh id */
    const fresh = (name: string) => `${name}-${++n}`;

    // ---------------------------------------------------------------- helpers

    const now = () => t.clock.now();

    async function timeline(id: string): Promise<Entry[]> {
      return (await t.session(id)).timeline as Entry[];
    }

    async function timers(id: string): Promise<{ kind: string; dueAt: number }[]> {
      return (await t.engine.store.read.timersForSession(id)).map(({ kind, dueAt }) => ({ kind, dueAt }));
    }

    async function state(id: string): Promise<string> {
      return (await t.session(id)).state;
    }

    /** The worker has taken the session (`session_started`): it is busy with it. */
    const started = (projectId: string, sessionId: string) =>
      t.workersWhere(projectId, (ws) => ws.some((w) => w.sessionId === sessionId && w.state === 'busy'));

    /** Resolves when the engine has finished handling the next call of one of its socket-driven methods. */
    function handled(method: 'recordInput' | 'viewerAttached' | 'viewerDetached'): Promise<void> {
      const engine = t.engine as unknown as Record<string, (...args: unknown[]) => Promise<void>>;
      const original = engine[method]!;
      return new Promise((resolve, reject) => {
        engine[method] = function (this: unknown, ...args: unknown[]) {
          delete engine[method];
          const p = original.apply(this, args);
          p.then(() => resolve(), reject);
          return p;
        };
      });
    }

    /** Opens a session socket and waits for its snapshot, so every later event is one the test caused. */
    async function connect(session: { id: string; token?: string }, token?: string): Promise<TestSocket> {
      const socket = await t.connect(session, token);
      await socket.waitFor((e) => e.type === 'session.status_changed');
      return socket;
    }

    /** An observer's socket: sees every event without being the viewer (so it attaches no one). */
    async function observe(id: string): Promise<TestSocket> {
      return connect({ id }, (await t.joinToken({ id }, { role: 'observer' })).token);
    }

    /** The session ended as expected: state, code, reason and outcome in the API and on the socket. */
    async function assertEnded(
      id: string,
      socket: TestSocket,
      code: number,
      reason: string,
      outcome: 'disconnected' | 'failed',
    ): Promise<void> {
      const s = await t.waitForState(id, 'ended');
      assert.equal(s.endCode, code);
      assert.equal(s.endReason, reason);
      assert.equal(s.outcome, outcome);
      const closed = await socket.closed;
      assert.deepEqual(closed, { code, reason });
      const last = await socket.state('ended');
      assert.equal(short(last), `ended ${code} ${reason} ${outcome}`);
    }

    /**
     * Cleanup after an end: no timers left for the session, its worker stopped (gone from the driver and
     * from GET /workers) and, for a pool with `min` warm workers, a replacement started and ready.
     */
    async function assertCleanedUp(
      projectId: string,
      sessionId: string,
      workerId: string,
      min: number,
    ): Promise<void> {
      assert.deepEqual(await timers(sessionId), []);
      await t.workersWhere(
        projectId,
        (ws) => !ws.some((w) => w.id === workerId) && ws.filter((w) => w.state === 'ready').length >= min,
      );
      assert.equal(t.fake.workers.has(workerId), false, 'the worker is stopped');
      const listed = await t.api<{ workers: LiveWorker[] }>('GET', `/workers?projectId=${projectId}`);
      assert.equal(
        listed.body.workers.some((w) => w.id === workerId),
        false,
      );
      const ready = listed.body.workers.filter((w) => w.state === 'ready');
      assert.equal(ready.length, min);
      for (const w of ready) {
        assert.ok(
          t.fake.started.indexOf(w.id) > t.fake.started.indexOf(workerId),
          'a fresh worker replaced it',
        );
      }
    }

    /** A project with explicit timeouts (and no max runtime unless asked). */
    function withTimeouts(
      base: (id: string, pool: { min: number; max: number }, extra?: Partial<ProjectInput>) => ProjectInput,
      id: string,
      pool: { min: number; max: number },
      timeouts: Partial<Timeouts>,
      extra: Partial<ProjectInput> = {},
    ): ProjectInput {
      return base(id, pool, { timeouts: { maxRuntimeMs: 0, ...timeouts }, ...extra });
    }

    /** A streaming session seated on a ready worker, the worker started, then the viewer connected: active. */
    async function liveStream(
      projectId: string,
    ): Promise<{ s: CreatedSession; v: TestSocket; workerId: string }> {
      await t.readyWorkers(projectId, 1);
      const s = await t.createSession(projectId);
      assert.equal(s.state, 'connecting');
      await started(projectId, s.id);
      const attached = handled('viewerAttached');
      const v = await connect(s);
      await attached;
      await v.state('active');
      return { s, v, workerId: s.workerId! };
    }

    /** An agent session seated on a ready worker and started by it: active without any viewer. */
    async function liveAgent(projectId: string): Promise<{ s: CreatedSession; workerId: string }> {
      await t.readyWorkers(projectId, 1);
      const s = await t.createSession(projectId);
      await t.waitForState(s.id, 'active');
      return { s, workerId: s.workerId! };
    }

    /** An active agent session (as liveAgent) with a socket that has read its snapshot. */
    async function watchedAgent(
      projectId: string,
    ): Promise<{ s: CreatedSession; v: TestSocket; workerId: string }> {
      const { s, workerId } = await liveAgent(projectId);
      return { s, v: await connect(s), workerId };
    }

    /** The timeline of a session seated on a ready worker at t0 and made active by `cause`. */
    const seatedTimeline = (t0: number, activeCause: string | null): Entry[] => [
      { from: null, to: 'requesting', at: iso(t0), cause: 'api:create' },
      { from: 'requesting', to: 'connecting', at: iso(t0), cause: 'admission:ready-worker' },
      ...(activeCause ? [{ from: 'connecting', to: 'active', at: iso(t0), cause: activeCause }] : []),
    ];

    /** The lifecycle events a socket saw, in short form. */
    const seen = (socket: TestSocket) => socket.events.filter(lifecycle).map(short);

    /** A fresh project of `base` with explicit timeouts, created; returns its id. */
    async function timedProject(
      base: (id: string, pool: { min: number; max: number }, extra?: Partial<ProjectInput>) => ProjectInput,
      name: string,
      timeouts: Partial<Timeouts>,
      extra: Partial<ProjectInput> = {},
      pool = { min: 1, max: 1 },
    ): Promise<string> {
      const pid = fresh(name);
      await t.createProject(withTimeouts(base, pid, pool, timeouts, extra));
      return pid;
    }

    /** Moves the clock `ms` on: one ms short, the session is still `before`; the last ms fires its timer. */
    async function passDeadline(id: string, ms: number, before: string): Promise<void> {
      await t.advance(ms - 1);
      assert.equal(await state(id), before);
      await t.advance(1);
    }

    /** Ends a session through the API and waits until it has ended. */
    async function endNow(id: string): Promise<void> {
      await t.api('POST', `/sessions/${id}/end`);
      await t.waitForState(id, 'ended');
    }

    /** The timeline's last two entries when `cause` ends a session at `at`: ending, then ended (worker stopped). */
    const endedBy = (from: string, at: number, cause: string): Entry[] => [
      { from, to: 'ending', at: iso(at), cause },
      { from: 'ending', to: 'ended', at: iso(at), cause: 'worker:stopped' },
    ];

    // ---------------------------------------------------------------- 1. pending

    test('pending: a queued session ends 4001 pending_timeout after pendingMs', async () => {
      const pid = await timedProject(agentProject, 'pending', { pendingMs: 5_000 }, {}, { min: 0, max: 1 });
      const busy = await t.createSession(pid);
      await t.waitForState(busy.id, 'active');
      const startedBefore = t.fake.started.length;
      const t0 = now();
      const q = await t.createSession(pid);
      assert.equal(q.state, 'queued');
      assert.equal(q.queuePosition, 1);
      const v = await connect(q);
      await v.waitFor((e) => e.type === 'session.queue_position');
      assert.deepEqual(await timers(q.id), [{ kind: 'pending', dueAt: t0 + 5_000 }]);

      await passDeadline(q.id, 5_000, 'queued');
      await assertEnded(q.id, v, 4001, 'pending_timeout', 'failed');
      assert.deepEqual(seen(v), ['queued', 'position 1', 'ended 4001 pending_timeout failed']);
      assert.deepEqual(await timeline(q.id), [
        { from: null, to: 'requesting', at: iso(t0), cause: 'api:create' },
        { from: 'requesting', to: 'queued', at: iso(t0), cause: 'admission' },
        { from: 'queued', to: 'ended', at: iso(t0 + 5_000), cause: 'timer:pending' },
      ]);
      // it never held a worker: nothing was started for it, the busy session keeps its own
      assert.equal((await t.session(q.id)).workerId, null);
      assert.deepEqual(await timers(q.id), []);
      assert.equal(t.fake.started.length, startedBefore);
      assert.equal(await state(busy.id), 'active');
      await endNow(busy.id);
    });

    test("pending: the agent seed's YAML shape is accepted verbatim (seconds) and applied", async () => {
      const pid = fresh('seed');
      const created = await t.createProject({
        ...agentProject(pid, { min: 0, max: 1 }),
        session: { timeouts: { pending: 300, connecting: 45, idle: 600, paused: 120 } },
      });
      const expected = { pendingMs: 300_000, connectingMs: 45_000, idleMs: 600_000, pausedMs: 120_000 };
      const read = await t.api<{ timeouts: Timeouts }>('GET', `/projects/${pid}`);
      for (const p of [created as { timeouts: Timeouts }, read.body]) {
        const { pendingMs, connectingMs, idleMs, pausedMs } = p.timeouts;
        assert.deepEqual({ pendingMs, connectingMs, idleMs, pausedMs }, expected);
      }
      const busy = await t.createSession(pid);
      await t.waitForState(busy.id, 'active');
      const q = await t.createSession(pid);
      const v = await connect(q);
      await passDeadline(q.id, 300_000, 'queued');
      await assertEnded(q.id, v, 4001, 'pending_timeout', 'failed');
      await endNow(busy.id);
    });

    // ---------------------------------------------------------------- 2. connecting

    test('connecting: a worker that never says ready ends the session 4003 connecting_timeout', async () => {
      const pid = fresh('connecting');
      t.fake.behaviour = (launch) => (launch.projectId === pid ? { ready: false } : {});
      await t.createProject(withTimeouts(agentProject, pid, { min: 1, max: 1 }, { connectingMs: 30_000 }));
      const [warm] = await t.workersWhere(pid, (ws) => ws.length === 1);
      const t0 = now();
      const s = await t.createSession(pid);
      assert.equal(s.state, 'connecting');
      assert.equal(s.workerId, warm!.id);
      const v = await connect(s);
      assert.deepEqual(await timers(s.id), [{ kind: 'connecting', dueAt: t0 + 30_000 }]);
      // the replacement worker may say ready
      t.fake.behaviour = () => ({});

      await passDeadline(s.id, 30_000, 'connecting');
      await assertEnded(s.id, v, 4003, 'connecting_timeout', 'failed');
      assert.deepEqual(seen(v), ['connecting', 'ending', 'ended 4003 connecting_timeout failed']);
      assert.deepEqual(await timeline(s.id), [
        { from: null, to: 'requesting', at: iso(t0), cause: 'api:create' },
        { from: 'requesting', to: 'connecting', at: iso(t0), cause: 'admission:starting-worker' },
        ...endedBy('connecting', t0 + 30_000, 'timer:connecting'),
      ]);
      await assertCleanedUp(pid, s.id, warm!.id, 1);
    });

    // ---------------------------------------------------------------- 3. seat hold

    test('seat hold: the worker takes the session but no viewer comes: 4005 seat_expired', async () => {
      const pid = await timedProject(streamProject, 'seat', { seatHoldMs: 20_000 });
      await t.readyWorkers(pid, 1);
      const t0 = now();
      const s = await t.createSession(pid);
      const o = await observe(s.id);
      await started(pid, s.id);
      // the connecting timeout gave way to the seat hold
      assert.deepEqual(await timers(s.id), [{ kind: 'seat_hold', dueAt: t0 + 20_000 }]);

      await passDeadline(s.id, 20_000, 'connecting');
      await assertEnded(s.id, o, 4005, 'seat_expired', 'failed');
      assert.deepEqual(seen(o), ['connecting', 'ending', 'ended 4005 seat_expired failed']);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, null),
        ...endedBy('connecting', t0 + 20_000, 'timer:seat_hold'),
      ]);
      await assertCleanedUp(pid, s.id, s.workerId!, 1);
    });

    // ---------------------------------------------------------------- 4. AFK

    const afk = { afkWarningMs: 10_000, afkDisconnectMs: 3_000 };

    test('AFK: no input → idle with a warning after afkWarningMs, then 4004 afk_timeout', async () => {
      const pid = await timedProject(streamProject, 'afk', afk);
      const t0 = now();
      const { s, v, workerId } = await liveStream(pid);
      assert.deepEqual(await timers(s.id), [{ kind: 'afk_warning', dueAt: t0 + 10_000 }]);

      await passDeadline(s.id, 10_000, 'active');
      const warning = await v.waitFor((e) => e.type === 'session.afk_warning');
      assert.equal(warning.type === 'session.afk_warning' && warning.remainingMs, 3_000);
      assert.equal(warning.type === 'session.afk_warning' && warning.disconnectAt, iso(t0 + 13_000));
      assert.equal(await state(s.id), 'idle');
      assert.deepEqual(await timers(s.id), [{ kind: 'afk_disconnect', dueAt: t0 + 13_000 }]);
      // a socket opened during the warning (the viewer's page reconnecting) is warned too, with what is left
      await t.advance(1_000);
      const late = await connect(s);
      const again = await late.waitFor((e) => e.type === 'session.afk_warning');
      assert.deepEqual(again.type === 'session.afk_warning' && [again.remainingMs, again.disconnectAt], [
        2_000,
        iso(t0 + 13_000),
      ]);
      assert.deepEqual(seen(late), ['idle', 'afk_warning 2000']);

      await passDeadline(s.id, 2_000, 'idle');
      await assertEnded(s.id, v, 4004, 'afk_timeout', 'disconnected');
      assert.deepEqual(seen(v), [
        'connecting',
        'active',
        'idle',
        'afk_warning 3000',
        'ending',
        'ended 4004 afk_timeout disconnected',
      ]);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'viewer:attached'),
        { from: 'active', to: 'idle', at: iso(t0 + 10_000), cause: 'timer:afk_warning' },
        ...endedBy('idle', t0 + 13_000, 'timer:afk_disconnect'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('AFK: input while idle returns to active and re-arms the warning', async () => {
      const pid = await timedProject(streamProject, 'afk-back', afk);
      const t0 = now();
      const { s, v, workerId } = await liveStream(pid);
      await t.advance(10_000);
      await v.waitFor((e) => e.type === 'session.afk_warning');
      await t.advance(2_000);
      v.send({ type: 'input' });
      await v.waitFor(() => v.states.filter((x) => x === 'active').length === 2);
      assert.deepEqual(await timers(s.id), [{ kind: 'afk_warning', dueAt: t0 + 22_000 }]);

      // the disconnect that was due at t0 + 13 s is gone; the new warning comes 10 s after the input
      await passDeadline(s.id, 10_000, 'active');
      await v.waitFor((e) => e.type === 'session.afk_warning' && e.disconnectAt === iso(t0 + 25_000));
      assert.equal(await state(s.id), 'idle');
      await t.advance(3_000);
      await assertEnded(s.id, v, 4004, 'afk_timeout', 'disconnected');
      assert.deepEqual(seen(v), [
        'connecting',
        'active',
        'idle',
        'afk_warning 3000',
        'active',
        'idle',
        'afk_warning 3000',
        'ending',
        'ended 4004 afk_timeout disconnected',
      ]);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'viewer:attached'),
        { from: 'active', to: 'idle', at: iso(t0 + 10_000), cause: 'timer:afk_warning' },
        { from: 'idle', to: 'active', at: iso(t0 + 12_000), cause: 'viewer:input' },
        { from: 'active', to: 'idle', at: iso(t0 + 22_000), cause: 'timer:afk_warning' },
        ...endedBy('idle', t0 + 25_000, 'timer:afk_disconnect'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('AFK: input while active pushes the warning back', async () => {
      const pid = await timedProject(streamProject, 'afk-push', afk);
      const t0 = now();
      const { s, v } = await liveStream(pid);
      // input every 6 s: 30 s pass, three times the warning threshold, without going idle
      for (let i = 1; i <= 5; i++) {
        await t.advance(6_000);
        assert.equal(await state(s.id), 'active', `after ${i * 6} s`);
        const input = handled('recordInput');
        v.send({ type: 'input' });
        await input;
        assert.deepEqual(await timers(s.id), [{ kind: 'afk_warning', dueAt: t0 + i * 6_000 + 10_000 }]);
      }
      await passDeadline(s.id, 10_000, 'active');
      await v.state('idle');
      assert.equal(
        (await timeline(s.id))
          .filter((e) => e.to === 'idle')
          .map((e) => e.at)
          .join(),
        iso(t0 + 40_000),
      );
      assert.deepEqual(seen(v), ['connecting', 'active', 'idle', 'afk_warning 3000']);
      await endNow(s.id);
    });

    test('AFK disabled: the session never goes idle', async () => {
      const pid = await timedProject(streamProject, 'afk-off', afk, { afkEnabled: false });
      const { s, v, workerId } = await liveStream(pid);
      assert.deepEqual(await timers(s.id), []);
      await t.advance(10 * afk.afkWarningMs);
      assert.equal(await state(s.id), 'active');
      assert.deepEqual(await timers(s.id), []);
      await t.api('POST', `/sessions/${s.id}/end`);
      await assertEnded(s.id, v, 1000, 'completed', 'disconnected');
      assert.deepEqual(seen(v), ['connecting', 'active', 'ending', 'ended 1000 completed disconnected']);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    // ---------------------------------------------------------------- 5. idle (agent)

    test('idle: an agent session with no activity ends 4004 idle_timeout', async () => {
      const pid = await timedProject(agentProject, 'idle', { idleMs: 50_000 });
      const t0 = now();
      const { s, v, workerId } = await watchedAgent(pid);
      assert.deepEqual(await timers(s.id), [{ kind: 'idle', dueAt: t0 + 50_000 }]);
      await passDeadline(s.id, 50_000, 'active');
      await assertEnded(s.id, v, 4004, 'idle_timeout', 'disconnected');
      assert.deepEqual(seen(v), ['active', 'ending', 'ended 4004 idle_timeout disconnected']);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'worker:started'),
        ...endedBy('active', t0 + 50_000, 'timer:idle'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('a socket that opens while a timeout fires sees each state once, in timeline order', async () => {
      const pid = await timedProject(agentProject, 'race', { idleMs: 1_000 });
      for (let i = 0; i < 5; i++) {
        const { s } = await liveAgent(pid);
        // no wait for the snapshot: the timeout commits while the socket reads it
        const v = await t.connect(s);
        await t.advance(1_000);
        assert.equal((await v.closed).code, 4004);
        const states = (await timeline(s.id)).map((e) => e.to);
        assert.deepEqual(v.states, states.slice(states.length - v.states.length));
        await t.readyWorkers(pid, 1);
      }
    });

    // ---------------------------------------------------------------- 6. paused

    const pausing = { pausedMs: 40_000, idleMs: 3_600_000 };

    test('paused: a paused session ends 4004 paused_timeout after pausedMs', async () => {
      const pid = await timedProject(agentProject, 'paused', pausing);
      const t0 = now();
      const { s, v, workerId } = await watchedAgent(pid);
      await t.advance(5_000);
      const paused = await t.api('POST', `/sessions/${s.id}/pause`);
      assert.equal(paused.status, 200);
      assert.equal(paused.body.state, 'paused');
      assert.deepEqual(await timers(s.id), [{ kind: 'paused', dueAt: t0 + 45_000 }]);
      await passDeadline(s.id, 40_000, 'paused');
      await assertEnded(s.id, v, 4004, 'paused_timeout', 'disconnected');
      assert.deepEqual(seen(v), ['active', 'paused', 'ending', 'ended 4004 paused_timeout disconnected']);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'worker:started'),
        { from: 'active', to: 'paused', at: iso(t0 + 5_000), cause: 'api:pause' },
        ...endedBy('paused', t0 + 45_000, 'timer:paused'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('paused: resuming before expiry returns to active and clears the paused timer', async () => {
      const pid = await timedProject(agentProject, 'resume', pausing);
      const t0 = now();
      const { s, v, workerId } = await watchedAgent(pid);
      await t.api('POST', `/sessions/${s.id}/pause`);
      await t.advance(39_999);
      const resumed = await t.api('POST', `/sessions/${s.id}/resume`);
      assert.equal(resumed.status, 200);
      assert.equal(resumed.body.state, 'active');
      assert.deepEqual(await timers(s.id), [{ kind: 'idle', dueAt: t0 + 39_999 + 3_600_000 }]);
      await t.advance(2 * pausing.pausedMs);
      assert.equal(await state(s.id), 'active');
      await t.api('POST', `/sessions/${s.id}/end`);
      await assertEnded(s.id, v, 1000, 'completed', 'disconnected');
      assert.deepEqual(seen(v), [
        'active',
        'paused',
        'active',
        'ending',
        'ended 1000 completed disconnected',
      ]);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'worker:started'),
        { from: 'active', to: 'paused', at: iso(t0), cause: 'api:pause' },
        { from: 'paused', to: 'active', at: iso(t0 + 39_999), cause: 'api:resume' },
        ...endedBy('active', t0 + 119_999, 'api:end'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('paused: a session paused when its worker crashes is paused again on the fresh worker, its deadline kept (auto-restart)', async () => {
      const restart = { autoRestart: { enabled: true, maxRestarts: 1 } };
      const pid = await timedProject(agentProject, 'paused-crash', pausing, restart, { min: 1, max: 2 });
      const t0 = now();
      const { s, v, workerId } = await watchedAgent(pid);
      await t.readyWorkers(pid, 1); // the warm worker that takes over
      await t.advance(5_000);
      await t.api('POST', `/sessions/${s.id}/pause`);
      await v.state('paused');
      const pausedAgain = t.nextEvent(
        s.id,
        (e) => e.type === 'session.status_changed' && e.status === 'paused',
      );
      t.fake.crash(workerId);
      await pausedAgain;
      const again = await t.session(s.id);
      assert.equal(again.restarts, 1);
      const fresh = t.fake.workers.get(again.workerId as string)!;
      assert.notEqual(fresh.id, workerId);
      assert.deepEqual(
        await timers(s.id),
        [{ kind: 'paused', dueAt: t0 + 45_000 }],
        'the deadline of the pause',
      );
      // the fresh agent is told the session is paused, as the crashed one was
      if (fresh.sessionStates.length === 0)
        await new Promise((resolve) => fresh.sdk.once('sessionState', resolve));
      assert.deepEqual(fresh.sessionStates, [{ sessionId: s.id, state: 'paused' }]);
      await passDeadline(s.id, 40_000, 'paused');
      await assertEnded(s.id, v, 4004, 'paused_timeout', 'disconnected');
      assert.deepEqual(seen(v), [
        'active',
        'paused',
        'session.error',
        'connecting',
        'paused',
        'ending',
        'ended 4004 paused_timeout disconnected',
      ]);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'worker:started'),
        { from: 'active', to: 'paused', at: iso(t0 + 5_000), cause: 'api:pause' },
        { from: 'paused', to: 'connecting', at: iso(t0 + 5_000), cause: 'worker:crashed:auto-restart' },
        { from: 'connecting', to: 'paused', at: iso(t0 + 5_000), cause: 'worker:started' },
        ...endedBy('paused', t0 + 45_000, 'timer:paused'),
      ]);
    });

    test('paused: the deadline of a pause runs on while auto-restart waits for a fresh worker: 4004 paused_timeout', async () => {
      const restart = { autoRestart: { enabled: true, maxRestarts: 1 } };
      // one worker at most: no warm one waits to take over
      const pid = await timedProject(agentProject, 'paused-wait', pausing, restart);
      const t0 = now();
      const { s, v, workerId } = await watchedAgent(pid);
      await t.api('POST', `/sessions/${s.id}/pause`);
      // the fresh worker never becomes ready
      t.fake.behaviour = () => ({ ready: false });
      try {
        const restarting = t.nextEvent(
          s.id,
          (e) => e.type === 'session.status_changed' && e.status === 'connecting',
        );
        t.fake.crash(workerId);
        await restarting;
        assert.deepEqual(
          (await timers(s.id)).sort((a, b) => a.kind.localeCompare(b.kind)),
          [
            { kind: 'connecting', dueAt: t0 + 120_000 },
            { kind: 'paused', dueAt: t0 + 40_000 },
          ],
        );
        await passDeadline(s.id, 40_000, 'connecting');
        await assertEnded(s.id, v, 4004, 'paused_timeout', 'disconnected');
        assert.deepEqual(
          (await timeline(s.id)).slice(-3).map((e) => `${e.from} → ${e.to} ${e.cause}`),
          [
            'paused → connecting worker:crashed:auto-restart',
            'connecting → ending timer:paused',
            'ending → ended worker:stopped',
          ],
        );
      } finally {
        t.fake.behaviour = () => ({});
      }
    });

    // ---------------------------------------------------------------- 7. max runtime

    test('max runtime: 4004 max_runtime counted from first active, through a pause and resume', async () => {
      const pid = await timedProject(agentProject, 'maxrt', { ...pausing, maxRuntimeMs: 30_000 });
      const t0 = now();
      const { s, v, workerId } = await watchedAgent(pid);
      assert.deepEqual(
        (await timers(s.id)).find((x) => x.kind === 'max_runtime'),
        { kind: 'max_runtime', dueAt: t0 + 30_000 },
      );
      await t.advance(10_000);
      await t.api('POST', `/sessions/${s.id}/pause`);
      await t.advance(10_000);
      await t.api('POST', `/sessions/${s.id}/resume`);
      // resuming did not restart the deadline
      assert.deepEqual(
        (await timers(s.id)).find((x) => x.kind === 'max_runtime'),
        { kind: 'max_runtime', dueAt: t0 + 30_000 },
      );
      await passDeadline(s.id, 10_000, 'active');
      await assertEnded(s.id, v, 4004, 'max_runtime', 'disconnected');
      assert.deepEqual(seen(v), [
        'active',
        'paused',
        'active',
        'ending',
        'ended 4004 max_runtime disconnected',
      ]);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'worker:started'),
        { from: 'active', to: 'paused', at: iso(t0 + 10_000), cause: 'api:pause' },
        { from: 'paused', to: 'active', at: iso(t0 + 20_000), cause: 'api:resume' },
        ...endedBy('active', t0 + 30_000, 'timer:max_runtime'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('max runtime: 0 means none', async () => {
      const pid = await timedProject(agentProject, 'maxrt-none', { idleMs: 100_000_000 });
      assert.equal(t.engine.getProject(pid).settings.timeouts.maxRuntimeMs, 0);
      const { s } = await liveAgent(pid);
      assert.deepEqual(
        (await timers(s.id)).map((x) => x.kind),
        ['idle'],
      );
      await t.advance(10 * 1_800_000);
      assert.equal(await state(s.id), 'active');
      await endNow(s.id);
    });

    // ---------------------------------------------------------------- 8. reconnect window

    const reconnect = { reconnectWindowMs: 15_000, afkWarningMs: 3_600_000 };

    test('reconnect window: a dropped viewer that does not come back ends 4007 reconnect_failed', async () => {
      const pid = await timedProject(streamProject, 'reconnect', reconnect);
      const t0 = now();
      const { s, v, workerId } = await liveStream(pid);
      const o = await observe(s.id);
      await t.advance(1_000);
      const detached = handled('viewerDetached');
      await v.drop();
      await detached;
      assert.equal(await state(s.id), 'active');
      assert.deepEqual(
        (await timers(s.id)).find((x) => x.kind === 'reconnect'),
        { kind: 'reconnect', dueAt: t0 + 16_000 },
      );
      await passDeadline(s.id, 15_000, 'active');
      await assertEnded(s.id, o, 4007, 'reconnect_failed', 'failed');
      assert.deepEqual(seen(v), ['connecting', 'active']);
      assert.deepEqual(seen(o), ['active', 'ending', 'ended 4007 reconnect_failed failed']);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'viewer:attached'),
        ...endedBy('active', t0 + 16_000, 'timer:reconnect'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('reconnect window: a viewer back within the window keeps the session', async () => {
      const pid = await timedProject(streamProject, 'rejoin', reconnect);
      const t0 = now();
      const { s, v, workerId } = await liveStream(pid);
      const detached = handled('viewerDetached');
      await v.drop();
      await detached;
      await t.advance(10_000);
      const attached = handled('viewerAttached');
      const back = await connect(s);
      await attached;
      assert.deepEqual(await timers(s.id), [{ kind: 'afk_warning', dueAt: t0 + 3_600_000 }]);
      await t.advance(10_000);
      assert.equal(await state(s.id), 'active');
      await back.close(1000);
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endCode, 1000);
      assert.equal(ended.endReason, 'completed');
      assert.deepEqual(seen(back), ['active']);
      assert.deepEqual(await timeline(s.id), [
        ...seatedTimeline(t0, 'viewer:attached'),
        ...endedBy('active', t0 + 20_000, 'viewer:closed:1000'),
      ]);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    test('reconnect window: a crash while the viewer is away, with auto-restart, leaves no seat hold of the crashed worker behind', async () => {
      const restart = { autoRestart: { enabled: true, maxRestarts: 2 } };
      // no warm workers: each restart starts one
      const pid = await timedProject(streamProject, 'away-crash', reconnect, restart, { min: 0, max: 3 });
      const s = await t.createSession(pid);
      await started(pid, s.id);
      const v = await connect(s);
      await v.state('active');
      const workerId = (await t.session(s.id)).workerId as string;
      const detached = handled('viewerDetached');
      await v.drop();
      await detached;
      // the fresh worker takes the session while the viewer is away: a seat hold waits for the viewer
      const second = t.fake.nextStart();
      t.fake.crash(workerId);
      const fresh = await second;
      await t.workersWhere(pid, (ws) => ws.some((w) => w.id === fresh.id && w.state === 'busy'));
      await t.settled();
      assert.ok((await timers(s.id)).some((x) => x.kind === 'seat_hold'));
      // it crashes too, before the viewer is back; the next one is slow to start
      t.fake.behaviour = () => ({ ready: false });
      try {
        const third = t.fake.nextStart();
        t.fake.crash(fresh.id);
        await third;
        await t.settled();
        const left = (await timers(s.id)).map((x) => x.kind).sort();
        assert.deepEqual(left, ['connecting', 'reconnect'], 'the seat hold went with the worker that set it');
        assert.equal(await state(s.id), 'connecting');
      } finally {
        t.fake.behaviour = () => ({});
      }
      await endNow(s.id);
    });

    test('reconnect window: a worker lost while its viewer is away ends 4007, so that the viewer starts a fresh session', async () => {
      const pid = await timedProject(streamProject, 'lost-away', reconnect);
      const { s, v, workerId } = await liveStream(pid);
      const o = await observe(s.id);
      const detached = handled('viewerDetached');
      await v.drop();
      await detached;
      t.fake.crash(workerId);
      await assertEnded(s.id, o, 4007, 'reconnect_failed', 'failed');
      assert.deepEqual(seen(o), ['active', 'session.error', 'ending', 'ended 4007 reconnect_failed failed']);
      await assertCleanedUp(pid, s.id, workerId, 1);
    });

    // ---------------------------------------------------------------- 9. ending limit

    const endings = [
      { how: 'an API end', code: 1000, reason: 'completed', outcome: 'disconnected', cause: 'api:end' },
      {
        how: 'an idle timeout',
        code: 4004,
        reason: 'idle_timeout',
        outcome: 'disconnected',
        cause: 'timer:idle',
      },
    ] as const;
    for (const c of endings) {
      test(`ending: after ${c.how}, a worker that never answers shutdown is force-stopped after 60 s`, async () => {
        const pid = fresh('ending');
        t.fake.behaviour = (launch) => (launch.projectId === pid ? { stopOnShutdown: false } : {});
        // the shutdown grace runs on real time: the longest one keeps it out of the way of the manual clock
        await t.createProject(
          withTimeouts(agentProject, pid, { min: 1, max: 1 }, { shutdownGraceMs: 60_000, idleMs: 1_000 }),
        );
        const t0 = now();
        const { s, v, workerId } = await watchedAgent(pid);
        if (c.code === 1000) {
          const end = await t.api('POST', `/sessions/${s.id}/end`);
          assert.equal(end.status, 200);
          assert.equal(end.body.state, 'ending');
        } else {
          await t.advance(999);
          assert.equal(await state(s.id), 'active');
        }
        await t.advance(1_000 - (now() - t0));
        await v.state('ending');
        assert.equal(await state(s.id), 'ending');
        const endingAt = t0 + (c.code === 1000 ? 0 : 1_000);
        assert.deepEqual(await timers(s.id), [{ kind: 'ending', dueAt: endingAt + 60_000 }]);

        // the limit is not configurable: 60 s, whatever the project says
        await t.advance(endingAt + 59_999 - now());
        assert.equal(await state(s.id), 'ending');
        assert.equal(t.fake.workers.has(workerId), true, 'the worker is still running');
        await t.advance(1);
        await assertEnded(s.id, v, c.code, c.reason, c.outcome);
        assert.deepEqual(seen(v), ['active', 'ending', `ended ${c.code} ${c.reason} ${c.outcome}`]);
        assert.deepEqual(await timeline(s.id), [
          ...seatedTimeline(t0, 'worker:started'),
          { from: 'active', to: 'ending', at: iso(endingAt), cause: c.cause },
          { from: 'ending', to: 'ended', at: iso(endingAt + 60_000), cause: 'timer:ending' },
        ]);
        await assertCleanedUp(pid, s.id, workerId, 1);
        t.fake.behaviour = () => ({});
      });
    }
  });
}
