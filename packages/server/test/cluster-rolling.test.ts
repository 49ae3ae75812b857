// A rolling restart of three servers on one PostgreSQL behind a TCP balancer (SPEC §5 draining, §10): each in
// turn is drained (readiness 503, no new sessions), stopped and started again. External workers and viewers
// reconnect through the balancer; no session is lost, and messages still flow both ways afterwards.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openStore, type UsherServerOptions } from '@usher/server';
import {
  agentProject,
  createTestDatabase,
  databaseKinds,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  TestServer,
  TestSocket,
} from '@usher/testing';
import { UsherWorker } from '@usher/worker';
import { newWorkerRecord } from '../src/storage/records.ts';
import { eventually } from './fixtures/processes.ts';
import { adminApi, type Child, freePort, startServer } from './fixtures/server-child.ts';
import { TcpBalancer } from './fixtures/tcp-balancer.ts';

const call = adminApi;
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

interface WorkerView {
  id: string;
  sessionId: string | null;
  connected: boolean;
}

describe('a rolling restart of three servers', { skip: !databaseKinds().includes('postgres') }, () => {
  test('each server drained and restarted in turn: no session is lost', async (c) => {
    const db = await createTestDatabase('postgres');
    const ports = [await freePort(), await freePort(), await freePort()];
    const balancer = await TcpBalancer.start(ports);
    const children: Child[] = [];
    const workers: UsherWorker[] = [];
    c.after(async () => {
      for (const w of workers) await w.close().catch(() => {});
      for (const ch of children)
        if (ch.proc.exitCode === null && ch.proc.signalCode === null) ch.proc.kill('SIGKILL');
      await balancer.close();
      await db.drop();
    });
    const options = (i: number): UsherServerOptions => ({
      storage: db.storage,
      port: ports[i]!,
      serverId: `rolling-${i}`,
      publicUrl: balancer.url,
      adminKeys: [TEST_ADMIN_KEY],
      secret: TEST_SECRET,
      // no server adopts a stopped one during the test (each comes back under its id): the viewers and agents
      // that reconnect are never taken for gone, however long the machine takes, and no departure is announced
      serverHeartbeatMs: 120_000,
    });
    for (let i = 0; i < 3; i++) children.push(await startServer(options(i)));
    const direct = (i: number) => children[i]!.url;

    const project = await call(direct(0), 'POST', '/projects', {
      ...agentProject('roll', { min: 0, max: 3 }),
      worker: { driver: 'external' },
      timeouts: { reconnectWindowMs: 120_000 },
    });
    assert.equal(project.status, 201, JSON.stringify(project.body));
    // three agents started by hand with a pool token; they dial the balancer and echo what they hear
    const pool = await call<{ token: string; workerUrl: string }>(
      balancer.url,
      'POST',
      '/projects/roll/pool-tokens',
      {},
    );
    for (let i = 0; i < 3; i++) {
      const w: UsherWorker = new UsherWorker({
        url: pool.body.workerUrl,
        token: pool.body.token,
        logger: quiet,
        reconnect: { initialDelayMs: 50, maxDelayMs: 300, multiplier: 2, jitter: 0, maxAttempts: 100 },
        onMessage: (m) => w.send('echo', m.data),
      });
      workers.push(w);
      await w.start();
    }
    const connectedWorkers = async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const r = await call<{ workers: WorkerView[] }>(direct(i), 'GET', '/workers?projectId=roll').catch(
          () => null,
        );
        for (const w of r?.body.workers ?? []) if (w.connected) seen.add(w.id);
      }
      return seen;
    };
    await eventually('three agents connected', async () => (await connectedWorkers()).size === 3);

    const sessions: { id: string; token: string; url: string }[] = [];
    const viewers = new Map<string, TestSocket>();
    for (let i = 0; i < 3; i++) {
      const s = await call<{ id: string; token: string; url: string }>(balancer.url, 'POST', '/sessions', {
        projectId: 'roll',
      });
      assert.equal(s.status, 201, JSON.stringify(s.body));
      sessions.push(s.body);
      const v = new TestSocket(`${s.body.url}?token=${s.body.token}`);
      viewers.set(s.body.id, v);
      await v.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active');
    }
    const workerIds = new Set(
      (await call<{ workers: WorkerView[] }>(direct(0), 'GET', '/workers?projectId=roll')).body.workers.map(
        (w) => w.id,
      ),
    );

    for (let i = 0; i < 3; i++) {
      const drained = await call<{ draining: boolean }>(direct(i), 'POST', `/servers/rolling-${i}/drain`);
      assert.equal(drained.status, 202, JSON.stringify(drained.body));
      assert.equal((await call(direct(i), 'GET', '/readyz')).status, 503, 'a draining server is not ready');
      const refused = await call<{ error: { code: string } }>(direct(i), 'POST', '/sessions', {
        projectId: 'roll',
      });
      assert.equal(refused.body.error.code, 'UNAVAILABLE', 'a draining server takes no new sessions');
      balancer.remove(ports[i]!);
      children[i]!.proc.kill('SIGTERM');
      assert.deepEqual(await children[i]!.exited, { code: 0, signal: null });
      children[i] = await startServer(options(i));
      balancer.add(ports[i]!);
      // viewers whose socket was on the stopped server were told 1012: they come back, as the SDK does
      for (const s of sessions) {
        const v = viewers.get(s.id)!;
        // a ping answers on a live server; a socket that was on the stopped one closes instead
        v.send({ type: 'ping', id: `roll-${i}` });
        const alive = await Promise.race([v.next('pong').then(() => null), v.closed]);
        if (!alive) continue;
        assert.equal(alive.code, 1012, 'told that the server is restarting');
        const again = new TestSocket(`${s.url}?token=${s.token}`);
        viewers.set(s.id, again);
        const snap = await again.waitFor((e) => e.type === 'session.status_changed');
        assert.equal(snap.type === 'session.status_changed' && snap.status, 'active');
      }
      await eventually('the agents back', async () => {
        const seen = await connectedWorkers();
        return seen.size === 3 && [...seen].every((id) => workerIds.has(id));
      });
    }

    // every session is still the one it was, live on the same agent, and messages flow both ways
    for (const s of sessions) {
      const now = await call<{ state: string; endCode: number | null; restarts: number }>(
        balancer.url,
        'GET',
        `/sessions/${s.id}`,
      );
      assert.equal(now.body.state, 'active');
      assert.equal(now.body.endCode, null);
      const v = viewers.get(s.id)!;
      v.send({ type: 'message', messageType: 'user_text', data: { text: `hi ${s.id}` } });
      await v.waitFor((e) => e.type === 'session.message' && e.message.type === 'echo');
      // nobody was seen to leave: the viewers whose server stopped came back through another (a stopping server
      // with peers hands its rooms over rather than announce departures)
      const page = await call<{ messages: { type: string; from: { identity: string } }[] }>(
        balancer.url,
        'GET',
        `/sessions/${s.id}/messages?limit=100`,
      );
      assert.deepEqual(
        page.body.messages.filter((m) => m.type === 'participant_left').map((m) => m.from.identity),
        [],
        `no departure in the transcript of ${s.id}`,
      );
    }
  });
});

describe('start-up among running servers', { skip: !databaseKinds().includes('postgres') }, () => {
  test('a server that starts leaves alone a worker another running server is still launching', async (c) => {
    const db = await createTestDatabase('postgres');
    const store = await openStore(db.storage);
    let b: TestServer | undefined;
    c.after(async () => {
      await b?.close();
      await store.close();
      await db.drop();
    });
    // server A runs, and has asked its driver (Kubernetes, say) for a pod that has not connected yet
    const now = Date.now();
    await store.db.run(
      `INSERT INTO servers (id, url, version, started_at, seen_at, draining) VALUES ('server-a', 'http://a', '0', ?, ?, 0)`,
      [now, now],
    );
    await store.read.insertWorker(
      newWorkerRecord(
        {
          id: 'w_launching',
          projectId: 'elsewhere',
          region: 'default',
          driver: 'kubernetes',
          sessionId: null,
          handle: null,
          serverId: 'server-a',
        },
        now,
      ),
    );
    b = await new TestServer({ storage: db.storage, serverId: 'server-b' }).start();
    await b.settled();
    assert.equal((await store.read.getWorker('w_launching'))?.state, 'starting', "A's launch goes on");
  });
});
