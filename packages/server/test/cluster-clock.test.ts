// Servers on one PostgreSQL whose clocks disagree: one server runs in a process of its own whose clock is 40 s
// ahead (Date.now, which its registry and engine read). Liveness is read on the database's clock, so each sees
// the other alive, neither adopts the other, and frames cross: a session asked for on the server ahead is seated
// on a worker connected to the other and becomes active.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { systemClock } from '@usher/server';
import {
  createTestDatabase,
  databaseKinds,
  lastingExternalProject,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  TestServer,
} from '@usher/testing';
import { adminOk, type Child, startServer, step } from './fixtures/server-child.ts';
import { waitUntil } from './helpers.ts';

const SKEW_MS = 40_000;
/**
 * The servers' heartbeat: short, for two beats of each in the test, but not so short that a busy test process
 * (the whole suite shares two cores) misses three of them and looks dead (its peer then drops frames to it)
 */
const HEARTBEAT_MS = 3_000;
/** Node's flag for a process whose Date.now runs SKEW_MS ahead of this one's */
const AHEAD = [
  '--import',
  `data:text/javascript,${encodeURIComponent(`const now = Date.now; Date.now = () => now() + ${SKEW_MS};`)}`,
];

interface ServerView {
  id: string;
  alive: boolean;
}

describe('servers whose clocks disagree', { skip: !databaseKinds().includes('postgres') }, () => {
  test('a server 40 s ahead and one on time see each other alive, and a session crosses between them', async (c) => {
    const db = await createTestDatabase('postgres');
    let ahead: Child | undefined;
    // the server on time: its clock is this process's, as the other's is its own
    const onTime = new TestServer({
      storage: db.storage,
      clock: systemClock,
      serverId: 'on-time',
      server: { serverHeartbeatMs: HEARTBEAT_MS },
      // the test's worker sends no heartbeats: on a loaded machine the steps below outlast the default 15 s,
      // after which it would be taken for lost (and its session with it)
      engine: { workerLossMs: 600_000 },
    });
    c.after(async () => {
      if (ahead && ahead.proc.exitCode === null && ahead.proc.signalCode === null) {
        ahead.proc.kill('SIGTERM');
        await once(ahead.proc, 'exit');
      }
      await onTime.close();
      await db.drop();
    });
    await onTime.start();
    await onTime.createProject(lastingExternalProject('skew', { min: 0, max: 1 }));
    const { w } = await onTime.poolWorker('skew');
    await onTime.readyWorkers('skew', 1);

    ahead = await startServer(
      {
        storage: db.storage,
        serverId: 'ahead',
        adminKeys: [TEST_ADMIN_KEY],
        secret: TEST_SECRET,
        serverHeartbeatMs: HEARTBEAT_MS,
      },
      AHEAD,
    );
    const child = ahead;
    const { servers: seenAhead } = await adminOk<{ servers: ServerView[] }>(ahead.url, 'GET', '/servers');
    const { servers: seenOnTime } = (await onTime.api<{ servers: ServerView[] }>('GET', '/servers')).body;
    for (const seen of [seenAhead, seenOnTime])
      assert.deepEqual(
        seen.map((s) => [s.id, s.alive]),
        [
          ['ahead', true],
          ['on-time', true],
        ],
      );

    // asked for on the server ahead, seated on the worker whose socket is on the other: the assignment crosses
    const s = await adminOk<{ id: string; workerId: string }>(ahead.url, 'POST', '/sessions', {
      projectId: 'skew',
    });
    const assigned = await step(
      'the assignment, through the bus',
      child,
      w.waitFor((f) => f.type === 'assign'),
    ).catch(async (err: Error) => {
      // what each server saw, for a failure that only a loaded machine shows
      const seen = async (base: string) => ({
        servers: await adminOk(base, 'GET', '/servers').catch((e: Error) => e.message),
        session: await adminOk(base, 'GET', `/sessions/${s.id}`).catch((e: Error) => e.message),
        workers: await adminOk(base, 'GET', '/workers').catch((e: Error) => e.message),
      });
      const views = { onTime: await seen(onTime.url), ahead: await seen(child.url) };
      throw new Error(`${err.message}\n${JSON.stringify(views)}`);
    });
    assert.equal((assigned.assignment as { sessionId: string }).sessionId, s.id);
    w.send({ type: 'session_started', sessionId: s.id });
    await step('the session active', child, onTime.waitForState(s.id, 'active'));
    const there = await adminOk<{ state: string }>(ahead.url, 'GET', `/sessions/${s.id}`);
    assert.equal(there.state, 'active');

    // two heartbeats of each later (a sweep of each ran in between), neither took the other for dead: a server
    // adopted would have its row removed, and written again with a new start
    const rows = async (base: string) =>
      (
        await adminOk<{ servers: (ServerView & { startedAt: string; seenAt: string })[] }>(
          base,
          'GET',
          '/servers',
        )
      ).servers;
    const before = await rows(onTime.url);
    const refreshed = (now: typeof before, then: typeof before) =>
      now.length === 2 && now.every((x, i) => Date.parse(x.seenAt) > Date.parse(then[i]!.seenAt));
    let then = before;
    for (let beat = 0; beat < 2; beat++) {
      const since = then;
      await waitUntil(
        async () => {
          then = await rows(onTime.url);
          return refreshed(then, since);
        },
        'a heartbeat of each server',
        30_000,
      );
    }
    for (const base of [onTime.url, ahead.url])
      assert.deepEqual(
        (await rows(base)).map((x) => [x.id, x.alive, x.startedAt]),
        before.map((x) => [x.id, true, x.startedAt]),
      );
    w.ws.close(1000);
  });
});
