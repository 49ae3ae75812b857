// Servers on one PostgreSQL whose clocks disagree: one server runs in a process of its own whose clock is 40 s
// ahead (Date.now, which its registry and engine read). Liveness is read on the database's clock, so each sees
// the other alive, neither adopts the other, and frames cross: a session asked for on the server ahead is seated
// on a worker connected to the other and becomes active.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { systemClock, type UsherServerOptions } from '@usher/server';
import {
  createTestDatabase,
  databaseKinds,
  lastingExternalProject,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  TestServer,
} from '@usher/testing';
import { adminOk } from './fixtures/server-child.ts';
import { waitUntil } from './helpers.ts';

const SERVE = fileURLToPath(new URL('./fixtures/serve.ts', import.meta.url));
const SKEW_MS = 40_000;

/** The server fixture in a child process whose Date.now runs `skewMs` ahead of this one's. */
async function startSkewed(
  options: UsherServerOptions,
  skewMs: number,
): Promise<{ proc: ChildProcess; url: string }> {
  const shift = `const now = Date.now; Date.now = () => now() + ${skewMs};`;
  const proc = spawn(
    process.execPath,
    ['--import', `data:text/javascript,${encodeURIComponent(shift)}`, SERVE],
    {
      env: { ...process.env, USHER_SERVE_OPTIONS: JSON.stringify(options) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const stderr: string[] = [];
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  const exited = once(proc, 'exit');
  const first = await Promise.race([
    once(createInterface({ input: proc.stdout! }), 'line').then(([line]) => line as string),
    exited.then((e) => {
      throw new Error(`the server exited (${JSON.stringify(e)}): ${stderr.join('')}`);
    }),
  ]);
  return { proc, url: (JSON.parse(first) as { url: string }).url };
}

interface ServerView {
  id: string;
  alive: boolean;
}

describe('servers whose clocks disagree', { skip: !databaseKinds().includes('postgres') }, () => {
  test('a server 40 s ahead and one on time see each other alive, and a session crosses between them', async (c) => {
    const db = await createTestDatabase('postgres');
    let ahead: { proc: ChildProcess; url: string } | undefined;
    // the server on time: its clock is this process's, as the other's is its own
    const onTime = new TestServer({
      storage: db.storage,
      clock: systemClock,
      serverId: 'on-time',
      server: { serverHeartbeatMs: 1_000 },
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

    ahead = await startSkewed(
      {
        storage: db.storage,
        serverId: 'ahead',
        adminKeys: [TEST_ADMIN_KEY],
        secret: TEST_SECRET,
        serverHeartbeatMs: 1_000,
      },
      SKEW_MS,
    );
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
    const assigned = await w.waitFor((f) => f.type === 'assign');
    assert.equal((assigned.assignment as { sessionId: string }).sessionId, s.id);
    w.send({ type: 'session_started', sessionId: s.id });
    await onTime.waitForState(s.id, 'active');
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
