// The operator's API on both databases, through a real server: the event socket (order, projectId, messages
// on request, refusals, slow readers), the queues, the statistics and a session's participants.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { SocketCloseCode } from '@usher/protocol';
import {
  agentProject,
  databaseKinds,
  type Frame,
  FrameSocket,
  streamProject,
  TEST_ADMIN_KEY,
  type TestServer,
  useTestServer,
} from '@usher/testing';
import type WebSocket from 'ws';
import { assertError } from './helpers.ts';

/** The operator's event feed, as a dashboard opens it. */
function feed(t: TestServer, query = `token=${TEST_ADMIN_KEY}`, headers: Record<string, string> = {}) {
  return new FrameSocket(`${t.url.replace(/^http/, 'ws')}/events/ws${query ? `?${query}` : ''}`, { headers });
}

/** Opens the feed and waits for its hello. */
async function openFeed(t: TestServer, query?: string): Promise<FrameSocket> {
  const s = feed(t, query);
  await s.waitFor((f) => f.type === 'hello');
  return s;
}

const statusOf = (sessionId: string) => (f: Frame) =>
  f.type === 'session.status_changed' && f.sessionId === sessionId ? (f.status as string) : null;
/** One frame of the feed, or one publication of the hub, as a comparable line. */
const keyOf = (f: Record<string, unknown>) =>
  f.type === 'worker.changed'
    ? `worker ${(f.worker as { id: string }).id} ${(f.worker as { state: string }).state}`
    : `${f.type} ${f.sessionId} ${f.status ?? (f.participant as { identity?: string } | undefined)?.identity ?? ''}`;
const WORKER_LIFE = ['starting', 'ready', 'reserved', 'busy', 'stopping', 'stopped'];
const rank = (f: Frame) => WORKER_LIFE.indexOf((f.worker as { state: string }).state);

for (const kind of databaseKinds()) {
  describe(`operator API (${kind})`, () => {
    const { t } = useTestServer(kind);

    // ------------------------------------------------------------------ GET /events/ws

    test('events: hello first, then the session’s status changes with its projectId and its worker’s changes, in order', async () => {
      await t.createProject(streamProject('ev', { min: 0, max: 1 }));
      const feed = await openFeed(t);
      assert.equal(feed.frames[0]!.type, 'hello');
      assert.equal(feed.frames[0]!.serverId, 'test-server');
      assert.equal(feed.frames[0]!.at, new Date(t.clock.now()).toISOString());
      // what the hub publishes from now on, in its order
      const published: string[] = [];
      const offEvents = t.server.hub.subscribeAll((e) => {
        if (e.type !== 'session.message') published.push(keyOf({ ...e }));
      });
      const offWorkers = t.server.hub.subscribeWorkers((w) =>
        published.push(keyOf({ type: 'worker.changed', worker: { id: w.id, state: w.state } })),
      );

      const s = await t.createSession('ev');
      const viewer = await t.connect(s);
      await viewer.state('active');
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      const worker = s.workerId as string;
      await feed.waitFor(
        (f) => f.type === 'worker.changed' && (f.worker as { id: string; state: string }).state === 'stopped',
      );

      const statuses = feed.frames.map(statusOf(s.id)).filter(Boolean);
      assert.deepEqual(statuses, ['requesting', 'connecting', 'active', 'ending', 'ended']);
      const ofSession = feed.frames.filter((f) => f.sessionId === s.id);
      assert.ok(ofSession.length >= 5);
      for (const f of ofSession) assert.equal(f.projectId, 'ev', `${f.type} carries its project`);

      const changes = feed.frames.filter(
        (f) => f.type === 'worker.changed' && (f.worker as { id: string }).id === worker,
      );
      // what GET /workers says of a worker, at each change, in the order of its life
      for (const f of changes) {
        assert.equal(typeof f.at, 'string');
        assert.deepEqual(Object.keys(f.worker as object).sort(), [
          'connected',
          'createdAt',
          'draining',
          'driver',
          'id',
          'projectId',
          'readyAt',
          'region',
          'sessionId',
          'state',
          'where',
        ]);
      }
      // the socket has exactly what the hub published, in the same order
      offEvents();
      offWorkers();
      assert.deepEqual(feed.frames.slice(1).map(keyOf), published.slice(0, feed.frames.length - 1));
      // a worker change is announced with the worker as it is then: states may be skipped, never go back
      const ranks = changes.map(rank);
      assert.deepEqual(
        ranks,
        [...ranks].sort((a, b) => a - b),
        `worker states in order: ${changes.map((f) => (f.worker as { state: string }).state)}`,
      );
      assert.equal(ranks[ranks.length - 1], WORKER_LIFE.indexOf('stopped'));
      // each change comes after the session's change that caused it
      const at = (pred: (f: Frame) => boolean) => feed.frames.findIndex(pred);
      const isStatus = (status: string) => (f: Frame) => statusOf(s.id)(f) === status;
      const isWorkerAt = (state: string) => (f: Frame) =>
        f.type === 'worker.changed' &&
        (f.worker as { id: string }).id === worker &&
        rank(f) >= WORKER_LIFE.indexOf(state);
      assert.ok(at(isStatus('connecting')) < at(isWorkerAt('starting')));
      assert.ok(at(isStatus('ending')) < at(isWorkerAt('stopping')));
      assert.ok(at(isStatus('ended')) < at(isWorkerAt('stopped')));
      // room messages were not asked for
      assert.equal(
        feed.frames.some((f) => f.type === 'session.message'),
        false,
      );
      await feed.close();
    });

    test('events: session.message only on sockets that asked with ?messages=1', async () => {
      await t.createProject(agentProject('ev-msg', { min: 1, max: 1 }));
      await t.readyWorkers('ev-msg', 1);
      const s = await t.createSession('ev-msg');
      await t.waitForState(s.id, 'active');
      const plain = await openFeed(t);
      const chatty = await openFeed(t, `messages=1&token=${TEST_ADMIN_KEY}`);
      assert.equal(chatty.frames[0]!.messages, true);
      const viewer = await t.connect(s);
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'hello' } });
      const m = await chatty.waitFor((f) => f.type === 'session.message' && f.sessionId === s.id);
      assert.equal(m.projectId, 'ev-msg');
      assert.deepEqual((m.message as { data: unknown }).data, { text: 'hello' });
      await t.api('POST', `/sessions/${s.id}/end`);
      // both sockets get the end; only the one that asked got the message before it
      for (const feed of [plain, chatty]) await feed.waitFor((f) => statusOf(s.id)(f) === 'ended');
      assert.equal(
        plain.frames.some((f) => f.type === 'session.message'),
        false,
      );
      const ended = chatty.frames.findIndex((f) => statusOf(s.id)(f) === 'ended');
      assert.ok(chatty.frames.indexOf(m) < ended);
      await plain.close();
      await chatty.close();
    });

    test('events: no key, a wrong key, a session token are refused with an error frame and close 1008', async () => {
      await t.createProject(streamProject('ev-auth', { min: 0, max: 1 }));
      const s = await t.createSession('ev-auth');
      const cases: [string, string, Record<string, string>][] = [
        ['', 'UNAUTHORIZED', {}],
        ['token=not-the-key', 'UNAUTHORIZED', {}],
        [`token=${encodeURIComponent(s.token)}`, 'FORBIDDEN', {}],
        ['', 'UNAUTHORIZED', { authorization: 'Basic abc' }],
      ];
      for (const [query, code, headers] of cases) {
        const refused = feed(t, query, headers);
        const closed = await refused.closed;
        assert.equal(closed.code, SocketCloseCode.PolicyViolation, `${query || JSON.stringify(headers)}`);
        assert.equal(refused.frames.length, 1);
        assert.equal(refused.frames[0]!.type, 'error');
        assert.equal(refused.frames[0]!.code, code);
      }
      // the key in the Authorization header works as well
      const byHeader = feed(t, '', { authorization: `Bearer ${TEST_ADMIN_KEY}` });
      assert.equal((await byHeader.waitFor(() => true)).type, 'hello');
      // a ping is answered; anything else is refused without closing
      byHeader.ws.send(JSON.stringify({ type: 'ping', id: 7 }));
      assert.equal((await byHeader.waitFor((f) => f.type === 'pong')).id, 7);
      // an id that is not a string or a number is not echoed (a deep one would not even be read)
      byHeader.ws.send(`{"type":"ping","id":${'['.repeat(5_000)}${']'.repeat(5_000)}}`);
      assert.equal((await byHeader.waitFor((f) => f.type === 'error')).code, 'BAD_REQUEST');
      byHeader.ws.send(JSON.stringify({ type: 'ping', id: { deep: [1] } }));
      const pongs = () => byHeader.frames.filter((f) => f.type === 'pong');
      await byHeader.waitFor(() => pongs().length === 2);
      assert.equal(pongs()[1]!.id, null);
      byHeader.ws.send(JSON.stringify({ type: 'subscribe' }));
      const errors = () => byHeader.frames.filter((f) => f.type === 'error');
      await byHeader.waitFor(() => errors().length === 2);
      assert.equal(errors()[1]!.code, 'BAD_REQUEST');
      await byHeader.close();
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('events: a key the server cannot check (its database away) closes the feed with 1011, try again, not 1008', async () => {
      const db = t.engine.store.db;
      const get = db.get;
      db.get = () => Promise.reject(new Error('connection terminated'));
      try {
        // a stored key would be looked up in the database: any key that is not configured is
        const failed = feed(t, 'token=a-key-the-database-holds-0123456789');
        assert.equal((await failed.closed).code, SocketCloseCode.InternalError);
        assert.deepEqual(
          failed.frames.map((f) => f.code),
          ['INTERNAL'],
        );
      } finally {
        db.get = get;
      }
      // with its database back, the same key is looked up, and refused as it should be
      const refused = feed(t, 'token=a-key-the-database-holds-0123456789');
      assert.equal((await refused.closed).code, SocketCloseCode.PolicyViolation);
    });
    // ------------------------------------------------------------------ GET /queues

    test('queues: every non-empty queue with positions and the estimates the sessions are told', async () => {
      const one = { min: 0, max: 1 };
      await t.createProject(streamProject('qa', one, { afkEnabled: false }));
      await t.createProject(streamProject('qb', one));
      // a session of 60 s gives qa a history: a wait is then estimated at 60 s per place in line
      const first = await t.createSession('qa');
      const v = await t.connect(first);
      await v.state('active');
      await t.advance(60_000);
      await t.api('POST', `/sessions/${first.id}/end`);
      await t.waitForState(first.id, 'ended');
      await v.closed;

      const seated = await t.createSession('qa');
      const q1 = await t.createSession('qa');
      const q2 = await t.createSession('qa');
      const b0 = await t.createSession('qb');
      const b1 = await t.createSession('qb');
      assert.deepEqual(
        [seated.state, q1.state, q2.state, b0.state, b1.state],
        ['connecting', 'queued', 'queued', 'connecting', 'queued'],
      );
      const r = await t.api<{ queues: Record<string, unknown>[] }>('GET', '/queues');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const queuedAt = new Date(t.clock.now()).toISOString();
      const ours = r.body.queues.filter((q) => q.projectId === 'qa' || q.projectId === 'qb');
      assert.deepEqual(ours, [
        {
          projectId: 'qa',
          region: 'default',
          length: 2,
          estimatedWaitMs: 120_000,
          sessions: [
            { id: q1.id, position: 1, queuedAt, estimatedWaitMs: 60_000 },
            { id: q2.id, position: 2, queuedAt, estimatedWaitMs: 120_000 },
          ],
        },
        {
          projectId: 'qb',
          region: 'default',
          length: 1,
          estimatedWaitMs: null,
          sessions: [{ id: b1.id, position: 1, queuedAt, estimatedWaitMs: null }],
        },
      ]);
      // the same estimate as the session itself shows
      const q2Now = await t.session(q2.id);
      assert.equal(q2Now.queuePosition, 2);
      assert.equal(q2Now.estimatedWaitMs, 120_000);

      const onlyB = await t.api<{ queues: { projectId: string }[] }>('GET', '/queues?projectId=qb');
      assert.deepEqual(
        onlyB.body.queues.map((q) => q.projectId),
        ['qb'],
      );
      // the queue moves: q1 is seated when the seated session ends
      await t.api('POST', `/sessions/${seated.id}/end`);
      await t.waitForState(q1.id, 'connecting');
      const after = await t.api<{ queues: { projectId: string; sessions: { id: string }[] }[] }>(
        'GET',
        '/queues?projectId=qa',
      );
      assert.deepEqual(
        after.body.queues.map((q) => q.sessions.map((s) => s.id)),
        [[q2.id]],
      );

      assertError(await t.api('GET', '/queues', undefined, null), 401, 'UNAUTHORIZED');
      assertError(await t.api('GET', '/queues', undefined, q2.token), 403, 'FORBIDDEN');
      assertError(await t.api('GET', '/queues?region=x'), 400, 'BAD_PARAMETER');
      for (const s of [q1, q2, b0, b1]) await t.api('POST', `/sessions/${s.id}/end`);
    });

    // ------------------------------------------------------------------ GET /stats

    test('stats: states at each bucket’s end, the wait of who left the queue, endings and close codes', async () => {
      await t.createProject(streamProject('st-api', { min: 0, max: 1 }, { afkEnabled: false }));
      // start on a whole hour, so the buckets of the answer fall on known times
      const H = 3_600_000;
      const MIN = 60_000;
      await t.advance(H - (t.clock.now() % H));
      const t0 = t.clock.now();
      const a = await t.createSession('st-api');
      const b = await t.createSession('st-api');
      assert.equal(b.state, 'queued');
      const va = await t.connect(a);
      await va.state('active');
      await t.advance(4 * MIN);
      await t.api('POST', `/sessions/${a.id}/end`);
      await t.waitForState(b.id, 'connecting');
      const vb = await t.connect(b);
      await vb.state('active');
      await t.advance(6 * MIN);

      const r = await t.api<{
        from: string;
        to: string;
        bucketMs: number;
        series: Record<string, unknown>[];
        closeCodes: unknown[];
      }>('GET', '/stats?hours=1&bucketMinutes=5&projectId=st-api');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.bucketMs, 5 * MIN);
      assert.equal(r.body.from, new Date(t0 - 50 * MIN).toISOString());
      assert.equal(r.body.to, new Date(t0 + 10 * MIN).toISOString());
      assert.equal(r.body.series.length, 12);
      const zero = { requesting: 0, queued: 0, connecting: 0, active: 0, idle: 0, paused: 0, ending: 0 };
      const quiet = {
        leftQueue: 0,
        waitMsAvg: null as number | null,
        waitMsMax: null as number | null,
        ended: 0,
      };
      const expected = Array.from({ length: 12 }, (_, i) => ({
        at: new Date(t0 + (i - 10) * 5 * MIN).toISOString(),
        states: zero,
        queueLength: 0,
        ...quiet,
      }));
      // [t0, t0+5m): both asked at t0, b waited 4 minutes for a's worker; a ended
      expected[10] = {
        ...expected[10]!,
        states: { ...zero, active: 1 },
        leftQueue: 1,
        waitMsAvg: 4 * MIN,
        waitMsMax: 4 * MIN,
        ended: 1,
      };
      expected[11] = { ...expected[11]!, states: { ...zero, active: 1 } };
      assert.deepEqual(r.body.series, expected);
      assert.deepEqual(r.body.closeCodes, [{ code: 1000, reason: 'completed', count: 1 }]);

      // the default bucket size gives 48–96 buckets (one more when now is not on a bucket's start)
      for (const hours of [1, 2, 5, 24, 100, 168]) {
        const d = await t.api<{ series: unknown[]; bucketMs: number }>('GET', `/stats?hours=${hours}`);
        assert.equal(d.status, 200);
        const whole = (hours * H) / d.body.bucketMs;
        assert.ok(whole >= 48 && whole <= 96, `${hours} h in buckets of ${d.body.bucketMs} ms: ${whole}`);
        assert.ok(d.body.series.length >= whole && d.body.series.length <= whole + 1);
      }
      await t.api('POST', `/sessions/${b.id}/end`);
    });

    test('stats: bad parameters get 400 naming the parameter; admins only', async () => {
      const bad: [string, string][] = [
        ['hours=0', 'hours'],
        ['hours=169', 'hours'],
        ['hours=abc', 'hours'],
        ['bucketMinutes=0', 'bucketMinutes'],
        ['hours=1&bucketMinutes=61', 'bucketMinutes'],
        ['hours=168&bucketMinutes=1', 'bucketMinutes'],
        ['window=3', 'window'],
      ];
      for (const [query, name] of bad) {
        const e = assertError(await t.api('GET', `/stats?${query}`), 400, 'BAD_PARAMETER');
        assert.match(e.message, new RegExp(name), `${query}: ${e.message}`);
      }
      assertError(await t.api('GET', '/stats', undefined, null), 401, 'UNAUTHORIZED');
    });

    // ------------------------------------------------------------------ GET /sessions/{id}/participants

    test('participants: each stay in the room from the recorded joins and departures, after the end too', async () => {
      await t.createProject(agentProject('pt', { min: 1, max: 1 }));
      await t.readyWorkers('pt', 1);
      const s = await t.createSession('pt');
      await t.waitForState(s.id, 'active');
      const t0 = t.clock.now();
      const viewer = await t.connect(s);
      await t.advance(1000);
      const alice = await t.join(s, { identity: 'alice' });
      await t.advance(1000);
      const left = t.nextEvent(
        s.id,
        (e) => e.type === 'session.participant_left' && e.participant.identity === 'alice',
      );
      await alice.close(1000);
      await left;

      type Stay = { identity: string; kind: string; joinedAt: string; leftAt: string | null };
      const live = await t.api<{ participants: Stay[] }>(
        'GET',
        `/sessions/${s.id}/participants`,
        undefined,
        s.token,
      );
      assert.equal(live.status, 200, JSON.stringify(live.body));
      const ms = (iso: string | null) => (iso === null ? null : Date.parse(iso));
      const shape = (p: Stay) => [
        p.kind,
        ms(p.joinedAt)! - t0,
        p.leftAt === null ? null : ms(p.leftAt)! - t0,
      ];
      assert.deepEqual(live.body.participants.map(shape), [
        ['agent', 0, null],
        ['viewer', 0, null],
        ['user', 1000, 2000],
      ]);
      assert.equal(live.body.participants[0]!.identity, s.workerId);
      assert.equal(live.body.participants[2]!.identity, 'alice');

      await t.advance(1000);
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      await viewer.closed;
      const ended = await t.api<{ participants: Stay[] }>('GET', `/sessions/${s.id}/participants`);
      assert.deepEqual(ended.body.participants.map(shape), [
        ['agent', 0, 3000],
        ['viewer', 0, 3000],
        ['user', 1000, 2000],
      ]);

      const other = await t.createSession('pt');
      assertError(
        await t.api('GET', `/sessions/${s.id}/participants`, undefined, other.token),
        403,
        'FORBIDDEN',
      );
      assertError(await t.api('GET', `/sessions/${s.id}/participants`, undefined, null), 401, 'UNAUTHORIZED');
      assertError(await t.api('GET', '/sessions/s_nope/participants'), 404, 'NOT_FOUND');
      await t.api('POST', `/sessions/${other.id}/end`);
    });

    test('the OpenAPI document lists the operator routes and the event socket', async () => {
      const r = await t.api<{ paths: Record<string, Record<string, unknown>> }>(
        'GET',
        '/openapi.json',
        undefined,
        null,
      );
      for (const path of ['/queues', '/stats', '/sessions/{id}/participants', '/events/ws'])
        assert.ok(r.body.paths[path]?.get, `${path} is documented`);
    });
  });

  describe(`operator event socket and slow readers (${kind})`, () => {
    const MAX = 256 * 1024;
    const { t } = useTestServer(kind, { server: { eventsSocketMaxBufferedBytes: MAX } });

    test('a socket that does not read is closed with 4101 once too much waits for it; the others go on', async () => {
      await t.createProject(agentProject('slow', { min: 1, max: 1 }));
      await t.readyWorkers('slow', 1);
      const s = await t.createSession('slow');
      await t.waitForState(s.id, 'active');
      const slow = await openFeed(t, `messages=1&token=${TEST_ADMIN_KEY}`);
      const fine = await openFeed(t, `messages=1&token=${TEST_ADMIN_KEY}`);
      // the slow dashboard stops reading: its TCP buffers fill, then the server's
      const slowTcp = (slow.ws as unknown as { _socket: Socket })._socket;
      slowTcp.pause();
      const server = t.server.app.websocketServer as { clients: Set<WebSocket> };
      const serverSide = [...server.clients].find(
        (c) => (c as unknown as { _socket: Socket })._socket.remotePort === slowTcp.localPort,
      );
      assert.ok(serverSide, 'the slow socket’s server side');
      const nOf = (f: Frame) => (f.message as { data: { n: number } }).data.n;
      const chunk = 'x'.repeat(64 * 1024);
      let sent = 0;
      // one message at a time, each once the reader that keeps up has it: that one never falls behind; at most
      // 128 MiB, far more than loopback buffers hold
      while (serverSide.readyState === serverSide.OPEN && sent < 2048) {
        await t.engine.rooms.relayMessage(s.id, { identity: 'load', kind: 'user' }, 'chunk', {
          n: sent,
          chunk,
        });
        const n = sent++;
        await fine.waitFor((f) => f.type === 'session.message' && nOf(f) === n);
      }
      assert.equal(serverSide.readyState, serverSide.CLOSING, `closed after ${sent} messages`);
      slowTcp.resume();
      const closed = await slow.closed;
      assert.equal(closed.code, SocketCloseCode.SlowConsumer);
      assert.match(closed.reason, /bytes of events/);
      // the reader that kept up has every message, in order, and still gets what follows
      assert.deepEqual(
        fine.frames.flatMap((f) => (f.type === 'session.message' ? [nOf(f)] : [])),
        Array.from({ length: sent }, (_, i) => i),
      );
      await t.api('POST', `/sessions/${s.id}/end`);
      await fine.waitFor((f) => statusOf(s.id)(f) === 'ended');
      await fine.close();
    });
  });
}
