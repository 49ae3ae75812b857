// The viewer's connection as the server sees it: a dead one (no answer to pings) is dropped as 1006 and gets
// its reconnect window, then frees its seat; an orderly shutdown tells every socket that the server is
// restarting (1012), so viewers and workers come back, and the session stays live.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SocketCloseCode } from '@usher/protocol';
import { ManualClock, openStore } from '@usher/server';
import {
  agentProject,
  createTestDatabase,
  type DatabaseKind,
  databaseKinds,
  streamProject,
  TestServer,
  type TestSocket,
} from '@usher/testing';
import WebSocket from 'ws';
import { assertError } from './helpers.ts';

/** A server with one warm stream worker on a fresh database; it stops before its database goes. */
async function oneWorker(
  kind: DatabaseKind,
  c: { after: (fn: () => Promise<void>) => void },
  o: { reconnectWindowMs?: number; keepaliveMs?: number } = {},
): Promise<TestServer> {
  const db = await createTestDatabase(kind);
  const timeouts = o.reconnectWindowMs ? { timeouts: { reconnectWindowMs: o.reconnectWindowMs } } : {};
  const t = await new TestServer({
    storage: db.storage,
    projects: [streamProject('s', { min: 1, max: 1 }, timeouts)],
    ...(o.keepaliveMs ? { keepaliveMs: o.keepaliveMs } : {}),
  }).start();
  c.after(async () => {
    await t.close();
    await db.drop();
  });
  await t.readyWorkers('s', 1);
  return t;
}

for (const kind of databaseKinds()) {
  describe(`viewer connection (${kind})`, () => {
    test('a viewer that stops answering pings is dropped; after the reconnect window its seat is free (4007)', async (c) => {
      const t = await oneWorker(kind, c, { reconnectWindowMs: 30_000, keepaliveMs: 50 });
      const session = await t.createSession('s');
      // a client whose network is gone: it never answers a ping
      const url = `${t.url.replace(/^http/, 'ws')}/sessions/${session.id}/ws?token=${session.token}`;
      // the waits start before the socket can go: the session may be active, and the socket dropped, before a
      // wait started after it would begin to listen
      const left = t.nextEvent(session.id, (e) => e.type === 'session.participant_left');
      const dead = new WebSocket(url, { autoPong: false });
      const gone = new Promise<number>((resolve) => dead.once('close', (code) => resolve(code)));
      await t.waitForState(session.id, 'active');
      assert.equal(await gone, 1006, 'the server dropped the connection without a close frame');
      await left; // the server saw the socket go
      await t.settled();
      const timers = await t.engine.store.read.timersForSession(session.id);
      assert.ok(
        timers.some((x) => x.kind === 'reconnect'),
        'the reconnect window is open',
      );
      const ended = t.nextEvent(
        session.id,
        (e) => e.type === 'session.status_changed' && e.status === 'ended',
      );
      await t.advance(30_000);
      const e = await ended;
      assert.equal(e.type === 'session.status_changed' && e.endCode, 4007);
      await t.workersWhere('s', (ws) => ws.some((w) => w.state === 'ready' || w.state === 'starting'));
    });

    test('a session that ends with its viewer connected leaves no viewer counted on the server', async (c) => {
      const t = await oneWorker(kind, c);
      const session = await t.createSession('s');
      const viewer = await t.connect(session);
      await viewer.state('active');
      assert.equal(t.engine.viewersHere(session.id), 1);
      await t.api('POST', `/sessions/${session.id}/end`);
      assert.equal((await viewer.closed).code, 1000);
      await t.settled();
      assert.equal(t.engine.viewersHere(session.id), 0);
    });

    test('a socket the server fails to set up closes 1011 (try again), leaves nobody behind, and the next try works', async (c) => {
      const t = await oneWorker(kind, c);
      const session = await t.createSession('s');
      // the worker has started the session: what is left to write is the viewer's arrival
      await t.workersWhere('s', (ws) => ws.some((w) => w.state === 'busy'));
      await t.settled();
      // the database goes away just as the viewer's arrival is written
      const store = t.engine.store;
      const tx = store.tx.bind(store);
      let outage = true;
      store.tx = ((fn, o) => {
        if (!outage) return tx(fn, o);
        outage = false;
        return Promise.reject(new Error('connection terminated'));
      }) as typeof store.tx;
      const first = await t.connect(session);
      assert.deepEqual(await first.closed, { code: 1011, reason: 'could not open the session socket' });
      // nothing that reads as a connection came first: a client (the Web SDK) counts this as a failed attempt
      assert.deepEqual(first.events, [], 'no snapshot before the failure');
      await t.settled();
      assert.deepEqual(
        t.engine.rooms.participants(session.id).filter((p) => p.kind === 'viewer'),
        [],
        'the viewer is not left in the room',
      );
      assert.equal(t.engine.viewersHere(session.id), 0);
      const second = await t.connect(session);
      await second.state('active');
      assert.equal(t.engine.viewersHere(session.id), 1);
    });

    test('a participant past half its token’s life gets a fresh one with a ping: the old one expires, the fresh one reconnects', async (c) => {
      const HOUR = 3_600_000;
      const long = 100 * HOUR;
      const db = await createTestDatabase(kind);
      const t = await new TestServer({
        storage: db.storage,
        // the workers' liveness runs on a clock of its own: hours pass for the session, not for the worker
        engine: { sessionTokenTtlMs: HOUR, livenessClock: new ManualClock(Date.now()) },
        projects: [
          agentProject(
            'long',
            { min: 1, max: 1 },
            { timeouts: { idleMs: long, maxRuntimeMs: long, afkWarningMs: long, reconnectWindowMs: long } },
          ),
        ],
      }).start();
      c.after(async () => {
        await t.close();
        await db.drop();
      });
      await t.readyWorkers('long', 1);
      const s = await t.createSession('long');
      await t.waitForState(s.id, 'active');
      const viewer = await t.connect(s);
      const bob = await t.joinToken(s, { identity: 'bob' });
      const bobSocket = await t.connect(s, bob.token);
      /** pings; the fresh token the answer brought (it comes before the pong), or null */
      const ping = async (socket: TestSocket): Promise<string | null> => {
        const from = socket.other.length;
        socket.send({ type: 'ping', id: 1 });
        await socket.untilOther((frames) => frames.slice(from).some((f) => f.type === 'pong'));
        const token = socket.other.slice(from).find((f) => f.type === 'token');
        return token ? String(token.token) : null;
      };

      await t.advance(HOUR / 2 - 2_000);
      assert.equal(await ping(viewer), null, 'before half its life, a ping is only answered');
      await t.advance(4_000);
      const viewerToken = await ping(viewer);
      const bobToken = await ping(bobSocket);
      assert.ok(viewerToken && bobToken);
      assert.equal(await ping(viewer), null, 'the fresh token is not renewed again at once');

      await t.advance(HOUR / 2 + 1_000);
      assertError(await t.api('GET', `/sessions/${s.id}`, undefined, s.token), 401, 'UNAUTHORIZED');
      assert.equal((await t.api('GET', `/sessions/${s.id}`, undefined, viewerToken)).status, 200);
      // the same participant comes back with it, under the same name
      await bobSocket.close();
      const again = await t.connect(s, bobToken);
      await again.waitFor((e) => e.type === 'session.status_changed');
      const identities = t.engine.rooms.participants(s.id).map((p) => p.identity);
      assert.ok(identities.includes('bob'), identities.join(', '));
      assert.equal((await t.api('POST', `/sessions/${s.id}/end`, undefined, viewerToken)).status, 200);
    });

    test('viewer sockets close with 1012 and the session stays live for its viewer to come back', async (c) => {
      const db = await createTestDatabase(kind);
      let store: Awaited<ReturnType<typeof openStore>> | undefined;
      c.after(async () => {
        await store?.close();
        await db.drop();
      });
      const t = await new TestServer({
        storage: db.storage,
        projects: [streamProject('s', { min: 1, max: 1 })],
      }).start();
      // the worker outlives the server, as a Kubernetes pod or an external worker does (a server's own child
      // processes stop with it, and so do their sessions: cluster.test.ts)
      t.fake.closeStopsWorkers = false;
      c.after(() => t.fake.stopAll());
      await t.readyWorkers('s', 1);
      const session = await t.createSession('s');
      const viewer = await t.connect(session);
      await viewer.state('active');
      await t.close();
      assert.deepEqual(await viewer.closed, {
        code: SocketCloseCode.ServerShutdown,
        reason: 'the server is restarting',
      });

      // what the next server finds: the session still live; its viewer's reconnect window is either running
      // (the detach was stored before the database closed) or starts when the next server recovers
      store = await openStore(db.storage);
      const after = await store.read.getSession(session.id);
      assert.equal(after?.state, 'active', 'a server restart is not the end of the session');
      const timers = await store.read.timersForSession(session.id);
      assert.ok(
        after.viewerAttached || timers.some((x) => x.kind === 'reconnect'),
        'the viewer gets its reconnect window',
      );
    });
  });
}
