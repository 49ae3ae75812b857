// Several Usher servers on one PostgreSQL (SPEC §10): three servers on loopback share a schema; a project made
// on one is known to all; a session asked for on one is seated on a worker connected to another, and its
// viewer, on the third, sees every event and talks with the agent; under concurrent admission and release
// through all three, no worker ever has two sessions and no session two workers. Then the parts underneath: the
// bus finds out that its listening connection was cut off without a word, and the registry retries a failed
// adoption of a dead server.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { SessionEvent } from '@usher/protocol';
import { type Logger, ManualClock, openStore, TokenIssuer } from '@usher/server';
import {
  agentProject,
  createTestDatabase,
  databaseKinds,
  FrameSocket,
  lastingExternalProject,
  streamProject,
  TEST_ADMIN_KEY,
  TEST_POSTGRES_URL,
  TEST_SECRET,
  type TestDatabase,
  TestServer,
  TestStreamer,
} from '@usher/testing';
import { type BusMessage, PostgresBus } from '../src/cluster/bus.ts';
import { ServerRegistry } from '../src/cluster/registry.ts';
import { PostgresDb } from '../src/storage/postgres.ts';
import { waitUntil } from './helpers.ts';

const says = (e: SessionEvent) =>
  e.type === 'session.message' ? `${e.message.from.kind}:${(e.message.data as { text: string }).text}` : null;

describe('three servers on one PostgreSQL', { skip: !databaseKinds().includes('postgres') }, () => {
  let db: TestDatabase;
  const servers: TestServer[] = [];
  const clock = new ManualClock();

  before(async () => {
    db = await createTestDatabase('postgres');
    for (const name of ['a', 'b', 'c'])
      servers.push(await new TestServer({ storage: db.storage, clock, serverId: `server-${name}` }).start());
  });
  after(async () => {
    for (const s of servers) await s.close();
    await db?.drop();
  });

  test('a session asked for on B, seated on a worker of A, watched from C: events and messages cross servers', async () => {
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    await a.createProject(agentProject('shared', { min: 1, max: 1 }));
    await a.readyWorkers('shared', 1);
    const worker = [...a.fake.workers.values()][0]!;
    // B learns of the project through the bus
    await waitUntil(async () => (await b.api('GET', '/projects/shared')).status === 200);
    const created = await b.api<{ id: string; token: string; state: string; workerId: string }>(
      'POST',
      '/sessions',
      { projectId: 'shared' },
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const s = created.body;
    assert.equal(s.workerId, worker.id, "seated on A's warm worker");
    const viewer = await c.connect(s);
    await viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active');
    assert.equal(worker.assignments[0]?.sessionId, s.id, "A's worker got the assignment B decided");

    // a user joins on B: B's snapshot lists who is in the room through A (the agent) and C (the viewer)
    const join = await a.api<{ token: string }>(
      'POST',
      `/sessions/${s.id}/join`,
      { identity: 'bea' },
      s.token,
    );
    const user = await b.connect(s, join.body.token);
    await user.waitFor((e) => e.type === 'session.participant_joined' && e.participant.identity === 'bea');
    const listed = user.events.flatMap((e) =>
      e.type === 'session.participant_joined' ? [e.participant.kind] : [],
    );
    assert.deepEqual(listed.sort(), ['agent', 'user', 'viewer']);
    await viewer.waitFor((e) => e.type === 'session.participant_joined' && e.participant.identity === 'bea');

    const heard: string[] = [];
    worker.sdk.on('message', (m) => heard.push(`${m.from.kind}:${(m.data as { text: string }).text}`));
    worker.sdk.send('agent_text', { text: 'hello from A' });
    await viewer.waitFor((e) => says(e) === 'agent:hello from A');
    viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'hello from C' }, ref: 'c1' });
    assert.equal((await viewer.next('message_ack')).recorded, true);
    await waitUntil(async () => heard.includes('viewer:hello from C'));

    // the transcript reads the same on every server
    for (const server of servers) {
      const page = await server.api<{ messages: { type: string }[] }>('GET', `/sessions/${s.id}/messages`);
      assert.deepEqual(
        page.body.messages.filter((m) => m.type.endsWith('_text')).map((m) => m.type),
        ['agent_text', 'user_text'],
      );
    }
    // ended through A: C's viewer gets the end and its socket closes with the code
    await a.api('POST', `/sessions/${s.id}/end`);
    const closed = await viewer.closed;
    assert.equal(closed.code, 1000);
    assert.deepEqual(viewer.states.slice(-2), ['ending', 'ended']);
  });

  test('a participant whose connection moves to another server is not seen to leave; the last socket closing is one departure', async () => {
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    await a.createProject(agentProject('moving', { min: 1, max: 1 }));
    await a.readyWorkers('moving', 1);
    for (const other of [b, c])
      await waitUntil(async () => (await other.api('GET', '/projects/moving')).status === 200);
    const s = await a.createSession('moving');
    const viewer = await c.connect(s);
    await viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active');
    const alice = await a.joinToken(s, { identity: 'alice' });
    const about = (what: string) => (e: SessionEvent) =>
      e.type === `session.participant_${what}` && 'participant' in e && e.participant.identity === 'alice';
    const onA = await a.connect(s, alice.token);
    await viewer.waitFor(about('joined'));
    const holders = (t: TestServer) => t.server.engine.rooms.holders(s.id, 'alice');
    await waitUntil(async () => holders(b).includes('server-a'));

    // her connection moves to B (a reconnect through the balancer) while A still holds the old one
    const onB = await b.connect(s, alice.token);
    await waitUntil(async () => holders(a).includes('server-b'));
    await onA.close(1000);
    await waitUntil(async () => !holders(b).includes('server-a'));
    // a message through A after her socket there closed: anything A said of her reached C before it
    const bob = await a.join(s, { identity: 'bob' });
    bob.send({ type: 'message', messageType: 'user_text', data: { text: 'still here?' } });
    await viewer.waitFor((e) => says(e) === 'user:still here?');
    assert.equal(viewer.events.filter(about('left')).length, 0, 'nobody was told she left');
    assert.equal(viewer.events.filter(about('joined')).length, 1, 'nor that she came again');

    // a millisecond on, so that her departure is stamped after her arrival, whichever server stamps it
    await clock.advance(1);
    await onB.close(1000);
    await viewer.waitFor(about('left'));
    // read where the departure was recorded (a page waits for its server's own recording batch)
    const page = await b.api<{ messages: { type: string; from: { identity: string } }[] }>(
      'GET',
      `/sessions/${s.id}/messages?limit=100`,
    );
    const hers = page.body.messages.filter((m) => m.from.identity === 'alice').map((m) => m.type);
    assert.deepEqual(
      hers,
      ['participant_joined', 'participant_left'],
      'the transcript: one arrival, one departure',
    );
    await bob.close(1000);
    await a.api('POST', `/sessions/${s.id}/end`);
    await viewer.closed;
  });

  test('an agent token is renewed by the server its worker is connected to, whichever server seated it', async () => {
    const [a, b] = servers as [TestServer, TestServer, TestServer];
    await a.createProject(lastingExternalProject('renew-x', { min: 0, max: 1 }));
    await waitUntil(async () => (await b.api('GET', '/projects/renew-x')).status === 200);
    const { w } = await a.poolWorker('renew-x');
    await a.readyWorkers('renew-x', 1);
    // seated by B: the assignment reaches the worker through A
    const s = await b.createSession('renew-x');
    await w.waitFor((f) => f.type === 'assign');
    w.send({ type: 'session_started', sessionId: s.id });
    await b.waitForState(s.id, 'active');
    await clock.advance(31 * 60_000);
    w.send({ type: 'heartbeat' });
    const renewed = await w.waitFor((f) => f.type === 'token' && f.session !== undefined);
    assert.equal((renewed.session as { sessionId: string }).sessionId, s.id);
    w.ws.close(1000);
    await b.api('POST', `/sessions/${s.id}/end`);
  });

  test("an operator feed on C shows the changes of A's workers, while it is open", async () => {
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    const feed = new FrameSocket(`${c.url.replace(/^http/, 'ws')}/events/ws`, {
      headers: { authorization: `Bearer ${TEST_ADMIN_KEY}` },
    });
    await feed.waitFor((f) => f.type === 'hello');
    // the other servers hear that C watches (the bus is asynchronous)
    await waitUntil(async () => a.server.hub.hasWorkerListeners && b.server.hub.hasWorkerListeners);
    await a.createProject(agentProject('watched', { min: 1, max: 1 }));
    const ready = await feed.waitFor(
      (f) =>
        f.type === 'worker.changed' &&
        (f.worker as { projectId: string; state: string }).projectId === 'watched' &&
        (f.worker as { state: string }).state === 'ready',
    );
    const w = ready.worker as { id: string; connected: boolean };
    assert.ok(a.fake.workers.has(w.id), 'a worker A started');
    assert.equal(w.connected, false, 'its socket is on A, not on C');
    await feed.close();
    await waitUntil(async () => !a.server.hub.hasWorkerListeners, 'A to stop sending worker changes');
  });

  test('Pixel Streaming across servers: a streamer on A, its viewer on C; offers, answers and candidates cross', async () => {
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    await a.createProject(
      streamProject('ps', { min: 0, max: 1 }, { worker: { driver: 'external' }, reuseWorkers: true }),
    );
    for (const server of servers)
      await waitUntil(async () => (await server.api('GET', '/projects/ps')).status === 200);
    const pool = await a.api<{ signallingUrl: string }>('POST', '/projects/ps/pool-tokens', {});
    const streamer = new TestStreamer(pool.body.signallingUrl);
    const workerId = await streamer.registered;
    let again: TestStreamer | undefined;
    try {
      const session = await b.createSession('ps');
      const viewer = await c.connect(session);
      viewer.send({ type: 'listStreamers' });
      assert.deepEqual((await viewer.next('streamerList')).ids, [workerId]);
      viewer.send({ type: 'subscribe', streamerId: workerId });
      const connected = await streamer.next('playerConnected');
      const playerId = String(connected.playerId);
      assert.equal(connected.sessionId, session.id);
      // the streamer's candidate before its offer is held, as on one server
      streamer.send({ type: 'iceCandidate', playerId, candidate: { candidate: 'early', sdpMid: '0' } });
      streamer.send({ type: 'offer', playerId, sdp: 'v=0 offer' });
      assert.equal((await viewer.next('offer')).sdp, 'v=0 offer');
      assert.deepEqual((await viewer.next('iceCandidate')).candidate, { candidate: 'early', sdpMid: '0' });
      viewer.send({ type: 'answer', sdp: 'v=0 answer' });
      const answer = await streamer.next('answer');
      assert.deepEqual([answer.sdp, answer.playerId], ['v=0 answer', playerId]);
      viewer.send({ type: 'iceCandidate', candidate: { candidate: 'viewer', sdpMid: '0' } });
      assert.equal(
        ((await streamer.next('iceCandidate')).candidate as { candidate: string }).candidate,
        'viewer',
      );
      await viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active');

      // the streamer's signalling drops and it dials A again as the same worker: the viewer on C hears of it
      const token = await new TokenIssuer(TEST_SECRET, () => clock.now()).sign(
        { role: 'worker', wid: workerId, pid: 'ps' },
        60_000,
      );
      again = new TestStreamer(pool.body.signallingUrl.replace(/token=.*/, `token=${token}`));
      assert.equal(await again.registered, workerId);
      assert.deepEqual((await viewer.next('streamerList')).ids, [workerId]);
      viewer.send({ type: 'subscribe', streamerId: workerId });
      const reconnected = await again.next('playerConnected');
      assert.equal(reconnected.sessionId, session.id);
      again.send({ type: 'offer', playerId: reconnected.playerId, sdp: 'v=0 again' });
      assert.equal((await viewer.next('offer')).sdp, 'v=0 again');
      await viewer.close(1000);
      assert.equal((await again.next('playerDisconnected')).playerId, reconnected.playerId);
    } finally {
      await streamer.close();
      await again?.close();
    }
  });

  test('a queue that moves on A: a queued viewer on C is told its new position', async () => {
    const [a, , c] = servers as [TestServer, TestServer, TestServer];
    await a.createProject(agentProject('line', { min: 0, max: 1 }));
    for (const server of servers)
      await waitUntil(async () => (await server.api('GET', '/projects/line')).status === 200);
    const first = await a.createSession('line');
    const second = await a.createSession('line');
    const third = await a.createSession('line');
    assert.deepEqual([second.state, third.state, third.queuePosition], ['queued', 'queued', 2]);
    const viewer = await c.connect(third);
    await viewer.waitFor((e) => e.type === 'session.queue_position' && e.position === 2);
    // the one ahead leaves the line through A: C hears that the queue moved, and tells its socket
    assert.equal((await a.api('POST', `/sessions/${second.id}/end`)).status, 200);
    const moved = await viewer.waitFor((e) => e.type === 'session.queue_position' && e.position === 1);
    assert.equal(moved.type === 'session.queue_position' && moved.queueLength, 1);
    await viewer.close(1000);
    await a.api('POST', `/sessions/${first.id}/end`);
  });

  test('a server that stops cleanly leaves no worker of its own behind as ready: the others refill the pool', async () => {
    const [a] = servers as [TestServer, TestServer, TestServer];
    const d = await new TestServer({ storage: db.storage, clock, serverId: 'server-d' }).start();
    try {
      await d.createProject(agentProject('left', { min: 1, max: 1 }));
      await d.readyWorkers('left', 1);
      const [mine] = [...d.fake.workers.keys()];
      for (const server of servers)
        await waitUntil(async () => (await server.api('GET', '/projects/left')).status === 200);
      await d.close();
      const after = await a.server.engine.store.read.getWorker(mine!);
      assert.equal(after?.state, 'stopped', "D's worker process stopped with D, and its row says so");
      // another server hears that D freed a seat of the pool and starts a worker in its place
      await waitUntil(async () =>
        (await a.server.engine.listWorkers({ projectId: 'left' })).some(
          (w) => w.id !== mine && w.state === 'ready',
        ),
      );
      const created = await a.api<{ workerId: string; state: string }>('POST', '/sessions', {
        projectId: 'left',
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.notEqual(created.body.workerId, mine, 'not seated on the worker that went with D');
    } finally {
      await d.close();
    }
  });

  test('thousands of admissions and releases through all three: one session per worker, one worker per session', async () => {
    const [a] = servers as [TestServer, TestServer, TestServer];
    await a.createProject(
      agentProject('busy', { min: 8, max: 8 }, { maxQueueLength: 10_000, reuseWorkers: true }),
    );
    await a.readyWorkers('busy', 8);
    for (const server of servers)
      await waitUntil(async () => (await server.api('GET', '/projects/busy')).status === 200);
    const ids: string[] = [];
    let operations = 0;
    const admit = async (n: number) => {
      const made = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          servers[i % 3]!.api<{ id: string }>('POST', '/sessions', { projectId: 'busy' }),
        ),
      );
      for (const m of made) assert.equal(m.status, 201, JSON.stringify(m.body));
      ids.push(...made.map((m) => m.body.id));
      operations += n;
    };
    await admit(100);
    await invariants(db, 'busy');
    // each round ends what is seated and a few of those waiting, through a server other than the one that
    // made them, while the next admissions arrive, then checks the invariants
    for (let k = 0; k < 12; k++) {
      const open = (await listSessions(a, 'busy')).filter((s) => s.state !== 'ended' && s.state !== 'ending');
      const releasing = [
        ...open.filter((s) => s.workerId),
        ...open.filter((s) => s.state === 'queued').slice(0, 60),
      ];
      await Promise.all([
        ...releasing.map((s, i) => servers[(i + 1) % 3]!.api('POST', `/sessions/${s.id}/end`)),
        admit(80),
      ]);
      operations += releasing.length;
      await invariants(db, 'busy');
    }
    assert.ok(operations >= 1_000, `${operations} operations`);
    // every session asked for is accounted for: queued, seated, or ended
    const store = await openStore(db.storage);
    try {
      const all = await store.read.listSessions({ projectId: 'busy', limit: 100_000 });
      assert.deepEqual(all.map((x) => x.id).sort(), [...ids].sort());
    } finally {
      await store.close();
    }
  });
});

describe('a server that stops cleanly, with a worker that does not come back', {
  skip: !databaseKinds().includes('postgres'),
}, () => {
  test('another server watches the worker it held, and handles it as lost once its re-attach window is over', async (c) => {
    const db = await createTestDatabase('postgres');
    const clock = new ManualClock();
    // the survivor's liveness runs on a clock the test moves
    const liveness = new ManualClock(Date.now());
    const survivor = await new TestServer({
      storage: db.storage,
      clock,
      serverId: 'survivor',
      engine: { livenessClock: liveness },
      // it sweeps the registry every beat: the stopped server is adopted at the next one
      server: { serverHeartbeatMs: 500 },
    }).start();
    const leaving = await new TestServer({ storage: db.storage, clock, serverId: 'leaving' }).start();
    c.after(async () => {
      await leaving.close();
      await survivor.close();
      await db.drop();
    });
    await leaving.createProject(lastingExternalProject('stays-away', { min: 0, max: 1 }));
    const { w } = await leaving.poolWorker('stays-away');
    await leaving.readyWorkers('stays-away', 1);
    const s = await leaving.createSession('stays-away');
    await w.waitFor((f) => f.type === 'assign');
    w.send({ type: 'session_started', sessionId: s.id });
    await leaving.waitForState(s.id, 'active');

    // the worker's socket closes with its server (1012), and the worker never dials another
    await leaving.close();
    await w.closed;
    await waitUntil(
      async () => {
        await liveness.advance(5_000);
        return (await survivor.session(s.id)).state === 'ended';
      },
      'the session of the worker that stayed away to end',
      30_000,
    );
    const ended = await survivor.session(s.id);
    assert.deepEqual([ended.endCode, ended.endReason], [4006, 'worker_crashed']);
    const worker = await survivor.server.engine.store.read.getWorker(s.workerId!);
    assert.equal(worker?.state, 'stopped');
  });
});

describe('the server bus, its listening connection cut off without a word', {
  skip: !databaseKinds().includes('postgres'),
}, () => {
  test('a ping not heard back: the bus warns, listens on a new connection, and hears the others again', {
    timeout: 30_000,
  }, async (c) => {
    const target = new URL(TEST_POSTGRES_URL);
    const proxy = await SilentProxy.start(target.hostname, Number(target.port || 5432));
    const through = new URL(TEST_POSTGRES_URL);
    through.host = `127.0.0.1:${proxy.port}`;
    const schema = `t_${randomBytes(6).toString('hex')}`;
    // server A listens through the proxy (and sends straight); server B does everything straight
    const dbA = new PostgresDb({ url: TEST_POSTGRES_URL, schema, listenUrl: through.href, poolSize: 2 });
    const dbB = new PostgresDb({ url: TEST_POSTGRES_URL, schema, poolSize: 2 });
    let cut = false;
    let deaf!: () => void;
    const warned = new Promise<void>((resolve) => {
      deaf = resolve;
    });
    let back!: () => void;
    const listening = new Promise<void>((resolve) => {
      back = resolve;
    });
    // what the bus says once the connection is cut (a busy machine may have it reconnect once before: that
    // changes nothing here)
    const log = logTo((level, msg) => {
      if (!cut) return;
      if (level === 'warn' && msg.includes('heard nothing back')) deaf();
      if (level === 'info' && msg.includes('listens again')) back();
    });
    const a = await PostgresBus.open(dbA, 'a', log, { pingMs: 50, pingTimeoutMs: 1_000, reconnectMs: 50 });
    const b = await PostgresBus.open(
      dbB,
      'b',
      logTo(() => {}),
    );
    c.after(async () => {
      await a.close();
      await b.close();
      proxy.close();
      await dbA.close();
      await dbB.close();
    });
    a.setPeers(true);
    b.setPeers(true);
    const heard = (projectId: string) =>
      new Promise<void>((resolve) =>
        a.onMessage((m: BusMessage) => {
          if (m.kind === 'project' && m.projectId === projectId) resolve();
        }),
      );
    const first = heard('first');
    b.send({ kind: 'project', projectId: 'first' });
    await first;
    assert.ok(proxy.connections >= 1, "A's listening connection goes through the proxy");

    // the connection stays open, and nothing crosses it any more: no FIN, no RST, as a dead NAT entry
    const before = proxy.connections;
    cut = true;
    proxy.silence();
    await warned;
    await listening;
    assert.ok(proxy.connections > before, 'A listens on a new connection');
    const again = heard('again');
    b.send({ kind: 'project', projectId: 'again' });
    await again;
  });
});

describe('a dead server whose adoption fails', () => {
  for (const kind of databaseKinds()) {
    test(`${kind}: the adoption is tried again at a later sweep, its row kept until it succeeds; stop() waits for it`, {
      timeout: 30_000,
    }, async (c) => {
      const db = await createTestDatabase(kind);
      const store = await openStore(db.storage);
      const errors: string[] = [];
      const registry = new ServerRegistry(store.db, 'survivor', {
        heartbeatMs: 50,
        log: logTo((level, msg, obj) => {
          if (level === 'error') errors.push(`${(obj as { server?: string }).server}: ${msg}`);
        }),
      });
      // the second adoption lasts until the test lets it end
      let finish!: () => void;
      const finishing = new Promise<void>((resolve) => {
        finish = resolve;
      });
      c.after(async () => {
        // a failed assertion leaves the adoption waiting: it ends, so that stop() and the store's close do too
        finish();
        await registry.stop();
        await store.close();
        await db.drop();
      });
      // a server whose row was last refreshed long ago
      await store.db.run(
        `INSERT INTO servers (id, url, version, started_at, seen_at, draining) VALUES ('gone', 'http://gone', '0', 1, 1, 0)`,
      );
      const rowOf = async (id: string) =>
        store.db.get<{ id: string }>('SELECT id FROM servers WHERE id = ?', [id]);
      let adoptions = 0;
      let retried!: () => void;
      const second = new Promise<void>((resolve) => {
        retried = resolve;
      });
      registry.onDeadServer(async (id) => {
        assert.equal(id, 'gone');
        if (++adoptions === 1) throw new Error('the database went away mid-adoption');
        retried();
        await finishing;
      });
      await registry.start('http://survivor', '0');
      await second;
      assert.equal(adoptions, 2);
      assert.deepEqual(errors, ['gone: adopting a dead server failed; a later sweep tries again']);
      assert.ok(await rowOf('gone'), 'the row stays while its adoption is under way');

      // stopping while the adoption runs: stop() waits for it, then marks its own row as stopped (a stop() that
      // did not wait would write its row before it returned)
      const marks: unknown[] = [];
      const run = store.db.run.bind(store.db);
      store.db.run = ((
        sql: string,
        ...rest: Parameters<typeof run> extends [string, ...infer R] ? R : never
      ) => {
        if (sql.startsWith('UPDATE servers SET seen_at = 0')) marks.push(rest[0]?.[0]);
        return run(sql, ...rest);
      }) as typeof store.db.run;
      const stopping = registry.stop();
      assert.deepEqual(marks, [], 'stop() waits for the adoption under way');
      finish();
      await stopping;
      assert.deepEqual(marks, ['survivor'], 'then marks its row as stopped');
      assert.equal(await rowOf('gone'), undefined, 'adopted, then removed');
      const own = await store.db.get<{ seen_at: number }>('SELECT seen_at FROM servers WHERE id = ?', [
        'survivor',
      ]);
      assert.equal(Number(own?.seen_at), 0, 'a stopped server leaves its row for another to adopt');
      assert.equal(adoptions, 2);
    });
  }
});

/** A logger that hands each line to `line`. */
function logTo(line: (level: string, msg: string, obj: object) => void): Logger {
  const log: Logger = {
    debug: (obj, msg = '') => line('debug', msg, obj),
    info: (obj, msg = '') => line('info', msg, obj),
    warn: (obj, msg = '') => line('warn', msg, obj),
    error: (obj, msg = '') => line('error', msg, obj),
    child: () => log,
  };
  return log;
}

/**
 * A TCP proxy to PostgreSQL that can go silent: the connections open at that moment stay open and forward
 * nothing more (as a connection a NAT or firewall forgot, or a network cut); later ones are forwarded.
 */
class SilentProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #live = new Set<{ on: boolean }>();
  connections = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(host: string, port: number): Promise<SilentProxy> {
    const server = createServer();
    const proxy = new SilentProxy(server);
    server.on('connection', (client) => proxy.#forward(client, host, port));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  #forward(client: Socket, host: string, port: number): void {
    this.connections++;
    const upstream = connect(port, host);
    const pair = { on: true };
    this.#live.add(pair);
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on('error', () => {});
    }
    // data is dropped, not left unread, once silent: neither end sees a full window either
    client.on('data', (d) => pair.on && upstream.write(d));
    upstream.on('data', (d) => pair.on && client.write(d));
    client.on('close', () => pair.on && upstream.destroy());
    upstream.on('close', () => pair.on && client.destroy());
  }

  /** The connections open now forward nothing more, and are not closed. */
  silence(): void {
    for (const pair of this.#live) pair.on = false;
    this.#live.clear();
  }

  close(): void {
    this.#server.close();
    for (const s of this.#sockets) s.destroy();
  }
}

interface Listed {
  id: string;
  state: string;
  workerId: string | null;
  queuePosition: number | null;
}

async function listSessions(t: TestServer, projectId: string): Promise<Listed[]> {
  const res = await t.api<{ sessions: Listed[] }>('GET', `/sessions?projectId=${projectId}&limit=1000`);
  return res.body.sessions;
}

/** No live worker holds two sessions and no live session two workers, as the database sees it. */
async function invariants(db: TestDatabase, projectId: string): Promise<void> {
  const store = await openStore(db.storage);
  try {
    const workers = await store.read.listWorkers({ projectId });
    assert.ok(
      workers.filter((w) => w.state !== 'stopped').length <= 8,
      'never more workers than the pool max',
    );
    const live = workers.filter((w) => w.state !== 'stopped' && w.sessionId);
    const bySession = new Map<string, string[]>();
    for (const w of live) bySession.set(w.sessionId!, [...(bySession.get(w.sessionId!) ?? []), w.id]);
    for (const [sid, ws] of bySession)
      assert.equal(ws.length, 1, `session ${sid} has workers ${ws.join(', ')}`);
    const sessions = await store.read.listSessions({ projectId, limit: 100_000 });
    const seated = sessions.filter((s) => s.workerId && !['ended', 'queued', 'requesting'].includes(s.state));
    const byWorker = new Map<string, string[]>();
    for (const s of seated) byWorker.set(s.workerId!, [...(byWorker.get(s.workerId!) ?? []), s.id]);
    for (const [wid, ss] of byWorker)
      assert.equal(ss.length, 1, `worker ${wid} has sessions ${ss.join(', ')}`);
    assert.ok(seated.length <= 8, `${seated.length} sessions seated on a pool of 8`);
  } finally {
    await store.close();
  }
}
