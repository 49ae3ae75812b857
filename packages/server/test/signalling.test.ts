// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the ${USHER_…} placeholders of worker commands are tested here
// Pixel Streaming signalling on both databases: a streamer registered with a pool token, viewers seated on it,
// offers, answers and ICE candidates relayed only between a viewer and its worker, and the messages a stock
// Epic client or a UE app may send at the wrong time.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { expandLaunchVars, TokenIssuer } from '@usher/server';
import {
  agentProject,
  databaseKinds,
  streamProject,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  TestStreamer,
  useTestServer,
} from '@usher/testing';
import WebSocket from 'ws';
import { MAX_EARLY_CANDIDATES } from '../src/realtime/signalling/relay.ts';

interface PoolToken {
  token: string;
  signallingUrl: string;
  workerUrl: string;
  region: string;
  expiresAt: string;
}

for (const kind of databaseKinds()) {
  describe(`Pixel Streaming signalling (${kind})`, () => {
    const { t } = useTestServer(kind, {
      projects: [
        streamProject('ps', { min: 0, max: 1 }, { worker: { driver: 'external' }, reuseWorkers: true }),
        agentProject('chat', { min: 0, max: 1 }),
      ],
      // streamers are pinged every 200 ms and lost after 2 s of silence (a crash test waits for that)
      engine: { heartbeatIntervalMs: 200, workerLossMs: 2_000 },
    });

    const poolToken = async (projectId = 'ps'): Promise<PoolToken> => {
      const r = await t.api<PoolToken>('POST', `/projects/${projectId}/pool-tokens`, {});
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body;
    };

    /** streamers of the running test: each test starts with no worker in the pool */
    let live: { s: TestStreamer; workerId: string }[] = [];
    afterEach(async () => {
      for (const { s } of live) await s.close();
      const ids = new Set(live.map((x) => x.workerId));
      live = [];
      await t.workersWhere('ps', (ws) => ws.every((w) => !ids.has(w.id) || w.state === 'stopped'));
    });

    /** A streamer registered with a pool token, and its worker id. */
    const streamer = async (): Promise<{ s: TestStreamer; workerId: string }> => {
      const s = new TestStreamer((await poolToken()).signallingUrl);
      const workerId = await s.registered;
      live.push({ s, workerId });
      return { s, workerId };
    };

    /** A viewer of a new session on `ps`, subscribed to its streamer; returns the player id the streamer saw. */
    const subscribed = async (s: TestStreamer, workerId: string) => {
      const session = await t.createSession('ps');
      const viewer = await t.connect(session);
      viewer.send({ type: 'listStreamers' });
      assert.deepEqual((await viewer.next('streamerList')).ids, [workerId]);
      viewer.send({ type: 'subscribe', streamerId: workerId });
      const connected = await s.next('playerConnected');
      return { session, viewer, playerId: String(connected.playerId) };
    };

    test('a pool token names the URLs to dial; an unknown region is refused with the regions there are', async () => {
      const pt = await poolToken();
      assert.equal(pt.region, 'default');
      assert.match(pt.signallingUrl, /^ws:\/\/.+\/workers\/signalling\?token=/);
      assert.match(pt.workerUrl, /^ws:\/\/.+\/workers\/ws$/);
      const bad = await t.api('POST', '/projects/ps/pool-tokens', { region: 'mars' });
      assert.equal(bad.status, 400);
      assert.match((bad.body as { error: { message: string } }).error.message, /no region "mars".*default/);
      const anonymous = await t.api('POST', '/projects/ps/pool-tokens', {}, null);
      assert.equal(anonymous.status, 401);
    });

    test('a streamer gets config then identify, and registers as a ready worker of the pool', async () => {
      const { s, workerId } = await streamer();
      assert.deepEqual(
        s.received.slice(0, 3).map((m) => m.type),
        ['config', 'identify', 'endpointIdConfirm'],
      );
      assert.equal(s.received[0]!.protocolVersion, '1.3.0');
      await t.workersWhere('ps', (ws) => ws.some((w) => w.id === workerId && w.state === 'ready'));
      s.send({ type: 'ping', time: 42 });
      assert.equal((await s.next('pong')).time, 42);
    });

    test('viewer and streamer negotiate through Usher; early candidates wait for the offer', async () => {
      const { s, workerId } = await streamer();
      const session = await t.createSession('ps');
      assert.equal(session.state, 'connecting');
      // the first message on a stream session's socket is Epic's config, before Usher's snapshot
      const raw = new WebSocket(session.url.replace(/^http/, 'ws') + `?token=${session.token}`);
      const first = await new Promise<Record<string, unknown>>((resolve) =>
        raw.once('message', (d) => resolve(JSON.parse(d.toString()))),
      );
      assert.equal(first.type, 'config');
      raw.terminate();

      const viewer = await t.connect(session);
      await viewer.state('active');
      viewer.send({ type: 'listStreamers' });
      assert.deepEqual((await viewer.next('streamerList')).ids, [workerId]);
      viewer.send({ type: 'subscribe', streamerId: 'someone-else' });
      assert.match(
        String((await viewer.next('subscribeFailed')).message),
        /not the one this session is seated on/,
      );
      viewer.send({ type: 'subscribe', streamerId: workerId });
      const { playerId } = await s.next('playerConnected');
      assert.equal(typeof playerId, 'string');

      const candidate = {
        candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host',
        sdpMid: '0',
        sdpMLineIndex: 0,
      };
      s.send({ type: 'iceCandidate', playerId, candidate });
      s.send({ type: 'offer', playerId: 'nobody', sdp: 'v=0 stray' });
      s.send({ type: 'offer', playerId, sdp: 'v=0 offer' });
      assert.equal((await viewer.next('offer')).sdp, 'v=0 offer');
      assert.deepEqual((await viewer.next('iceCandidate')).candidate, candidate);
      const order = viewer.other.filter((m) => m.type === 'offer' || m.type === 'iceCandidate');
      assert.deepEqual(
        order.map((m) => m.type),
        ['offer', 'iceCandidate'],
        'the candidate sent before the offer arrives after it; the stray offer never arrives',
      );

      viewer.send({ type: 'answer', sdp: 'v=0 answer' });
      const answer = await s.next('answer');
      assert.equal(answer.playerId, playerId);
      assert.equal(answer.sdp, 'v=0 answer');
      viewer.send({ type: 'iceCandidate', candidate });
      assert.equal((await s.next('iceCandidate')).playerId, playerId);
      viewer.send({ type: 'ping', time: 7 });
      assert.equal((await viewer.next('pong')).time, 7);

      // the session ends: the streamer lets go of the player and takes the next session
      const ended = t.api('POST', `/sessions/${session.id}/end`, {});
      assert.equal((await s.next('playerDisconnected')).playerId, playerId);
      assert.equal((await ended).status, 200);
      assert.equal((await viewer.closed).code, 1000);
      await t.workersWhere('ps', (ws) => ws.some((w) => w.id === workerId && w.state === 'ready'));
    });

    test('a queued viewer gets the streamer list once it is seated', async () => {
      const { s, workerId } = await streamer();
      const first = await subscribed(s, workerId);
      const second = await t.createSession('ps');
      assert.equal(second.state, 'queued');
      const waiting = await t.connect(second);
      waiting.send({ type: 'listStreamers' });
      waiting.send({ type: 'subscribe', streamerId: workerId });
      assert.match(String((await waiting.next('subscribeFailed')).message), /not seated on a worker yet/);
      await first.viewer.close(1000);
      assert.equal((await s.next('playerDisconnected')).playerId, first.playerId);
      assert.deepEqual((await waiting.next('streamerList')).ids, [workerId]);
      await waiting.state('active');
      await waiting.close(1000);
    });

    test('disconnectPlayer from the streamer ends that session normally', async () => {
      const { s, workerId } = await streamer();
      const { session, viewer, playerId } = await subscribed(s, workerId);
      s.send({ type: 'disconnectPlayer', playerId, reason: 'game over' });
      assert.deepEqual(await viewer.closed, { code: 1000, reason: 'completed' });
      const ended = await t.session(session.id);
      assert.equal(ended.state, 'ended');
    });

    test('a streamer that goes away while live ends the session with 4006', async () => {
      const { s, workerId } = await streamer();
      const { viewer } = await subscribed(s, workerId);
      s.ws.terminate();
      assert.deepEqual(await viewer.closed, { code: 4006, reason: 'worker_crashed' });
    });

    test('a streamer that comes back on a new socket is offered to its viewer again, and the session goes on', async () => {
      const { s, workerId } = await streamer();
      const { session, viewer, playerId } = await subscribed(s, workerId);
      await viewer.state('active');
      // the same worker dials in again (a UE app whose signalling dropped reconnects with its launch token)
      const token = await new TokenIssuer(TEST_SECRET, () => t.clock.now()).sign(
        { role: 'worker', wid: workerId, pid: 'ps' },
        60_000,
      );
      const url = (await poolToken()).signallingUrl.replace(/token=.*/, `token=${token}`);
      const again = new TestStreamer(url);
      live.push({ s: again, workerId });
      assert.equal(await again.registered, workerId);
      assert.equal((await s.closed).code, 4100, 'the old socket is closed as replaced');
      // its peer connection went with the old socket: the viewer is told the streamer again, and subscribes anew
      assert.deepEqual((await viewer.next('streamerList')).ids, [workerId]);
      viewer.send({ type: 'subscribe', streamerId: workerId });
      const connected = await again.next('playerConnected');
      assert.notEqual(connected.playerId, playerId);
      again.send({ type: 'offer', playerId: connected.playerId, sdp: 'v=0 again' });
      assert.equal((await viewer.next('offer')).sdp, 'v=0 again');
      viewer.send({ type: 'answer', sdp: 'v=0 answer' });
      assert.equal((await again.next('answer')).playerId, connected.playerId);
      assert.equal((await t.session(session.id)).state, 'active');
      await viewer.close(1000);
    });

    test("a streamer's launch token is honoured past its expiry while its worker runs and is not connected (a UE app cannot renew it); no other expired token is", async () => {
      const { s, workerId } = await streamer();
      const issuer = new TokenIssuer(TEST_SECRET, () => t.clock.now());
      const launch = await issuer.sign({ role: 'worker', wid: workerId, pid: 'ps', launch: true }, 60_000);
      const renewed = await issuer.sign({ role: 'worker', wid: workerId, pid: 'ps' }, 60_000);
      const nobody = await issuer.sign({ role: 'worker', wid: 'w_gone', pid: 'ps', launch: true }, 60_000);
      const pool = await poolToken();
      const dial = (token: string) =>
        new TestStreamer(pool.signallingUrl.replace(/token=.*/, `token=${token}`));
      const refused = async (streamer: TestStreamer, message: RegExp) => {
        assert.equal((await streamer.closed).code, 1008);
        assert.match(String((await streamer.next('error')).message), message);
      };
      await t.advance(120_000);
      // while its connection is up, the expired launch token takes nothing over
      await refused(dial(launch), /is connected/);
      s.send({ type: 'ping', time: 2 });
      assert.equal((await s.next('pong')).time, 2, 'the connected streamer is still served');
      // its signalling dropped a day later: it dials in again with the URL it was started with
      s.ws.terminate();
      await s.closed;
      await t.settled();
      // a worker token that is not a launch token (one handed out at a registration or a renewal) is refused
      await refused(dial(renewed), /expired/);
      const again = dial(launch);
      live.push({ s: again, workerId });
      assert.equal(await again.registered, workerId, 'the same worker');
      // an expired token of a worker that is gone is refused (security.test.ts: an expired pool token is too)
      await refused(dial(nobody), /no worker/);
    });

    test("one stream per session: the viewer's newest connection that subscribes takes the streamer over from the last", async () => {
      const { s, workerId } = await streamer();
      const { session, viewer, playerId } = await subscribed(s, workerId);
      // the same viewer token, in another tab (or the page reloaded before the old socket went)
      const tab = await t.connect(session);
      tab.send({ type: 'listStreamers' });
      assert.deepEqual((await tab.next('streamerList')).ids, [workerId]);
      tab.send({ type: 'subscribe', streamerId: workerId });
      assert.equal((await s.next('playerDisconnected')).playerId, playerId, 'the first player is let go');
      const second = String((await s.next('playerConnected')).playerId);
      assert.notEqual(second, playerId);
      assert.equal((await viewer.next('error')).code, 'CONFLICT');
      // what the old connection still says reaches nobody; the new one negotiates
      viewer.send({ type: 'answer', sdp: 'v=0 old' });
      tab.send({ type: 'answer', sdp: 'v=0 new' });
      const answer = await s.next('answer');
      assert.deepEqual([answer.playerId, answer.sdp], [second, 'v=0 new']);
      await tab.close(1000);
      await viewer.close(1000);
    });

    test('a streamer holds at most MAX_EARLY_CANDIDATES candidates before its offer; later ones pass at once', async () => {
      const { s, workerId } = await streamer();
      const { viewer, playerId } = await subscribed(s, workerId);
      const candidate = (n: number) => ({
        candidate: `candidate:${n} 1 udp 1 127.0.0.1 5000 typ host`,
        sdpMid: '0',
      });
      for (let i = 0; i < MAX_EARLY_CANDIDATES + 50; i++)
        s.send({ type: 'iceCandidate', playerId, candidate: candidate(i) });
      s.send({ type: 'offer', playerId, sdp: 'v=0 late offer' });
      s.send({ type: 'iceCandidate', playerId, candidate: candidate(-1) });
      await viewer.untilOther((frames) =>
        frames.some((f) =>
          (f.candidate as { candidate?: string } | undefined)?.candidate?.startsWith('candidate:-1 '),
        ),
      );
      const relayed = viewer.other.filter((f) => f.type === 'offer' || f.type === 'iceCandidate');
      assert.equal(relayed[0]?.type, 'offer');
      assert.equal(
        relayed.length,
        1 + MAX_EARLY_CANDIDATES + 1,
        'the offer, the first candidates held, the one after it',
      );
      await viewer.close(1000);
    });

    test('a viewer that floods the socket with signalling is told, and the rest of its frames are dropped', async () => {
      const { s, workerId } = await streamer();
      const { viewer } = await subscribed(s, workerId);
      const candidate = { candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host', sdpMid: '0' };
      for (let i = 0; i < 400; i++) viewer.send({ type: 'iceCandidate', candidate });
      assert.match(String((await viewer.next('error')).message), /signalling messages are limited/);
      viewer.send({ type: 'ping', time: 3 });
      assert.equal((await viewer.next('pong')).time, 3);
      const relayed = s.received.filter((m) => m.type === 'iceCandidate').length;
      assert.ok(relayed < 400, `${relayed} of 400 candidates relayed`);
      await viewer.close(1000);
    });

    test('only a stream session’s viewer signals; others get a clear error', async () => {
      const chat = await t.createSession('chat');
      const user = await t.connect(chat);
      user.send({ type: 'listStreamers' });
      assert.match(String((await user.next('error')).message), /only the viewer of a stream session/);
      assert.equal(
        user.other.some((m) => m.type === 'config'),
        false,
        'agent sessions get no Pixel Streaming config',
      );
      const { s, workerId } = await streamer();
      const { session, viewer } = await subscribed(s, workerId);
      const admin = await t.connect(session, TEST_ADMIN_KEY);
      admin.send({ type: 'subscribe', streamerId: workerId });
      assert.equal((await admin.next('error')).code, 'BAD_REQUEST');
      // someone invited to a stream session watches its events but plays no stream: no config, which would
      // have a player (the Web SDK, Epic's frontend) ask for a streamer it cannot have
      const invited = await t.join(session, { identity: 'guest' });
      await invited.waitFor(
        (e) => e.type === 'session.participant_joined' && e.participant.identity === 'guest',
      );
      assert.equal(
        invited.other.some((m) => m.type === 'config'),
        false,
        'an invited user gets no Pixel Streaming config',
      );
      await invited.close(1000);
      viewer.send({ type: 'answer' });
      assert.match(String((await viewer.next('error')).message), /sdp/);
      await Promise.all([admin.close(), viewer.close(1000), user.close(1000)]);
    });

    test('a streamer must identify first, with a valid token', async () => {
      const pt = await poolToken();
      const early = new TestStreamer(pt.signallingUrl, { identify: false });
      await early.next('identify');
      early.send({ type: 'offer', playerId: 'p', sdp: 'v=0' });
      assert.equal((await early.closed).code, 1008);

      const forged = new TestStreamer(pt.signallingUrl.replace(/token=.*/, 'token=a.b.c'));
      assert.equal((await forged.closed).code, 1008);
      const none = new TestStreamer(pt.signallingUrl.replace(/\?token=.*/, ''));
      const closed = await none.closed;
      assert.equal(closed.code, 1008);
      assert.match(closed.reason, /token/);

      const { s } = await streamer();
      s.ws.send('not json');
      assert.match(String((await s.next('error')).message), /not valid JSON/);
      s.send({ type: 'ping', time: 1 });
      assert.equal((await s.next('pong')).time, 1, 'the streamer is still served after bad input');
    });
  });
}

describe('launch variables in a worker command', () => {
  test('${USHER_…} in an argument becomes the launch variable; anything else is left alone', () => {
    const env = { USHER_SIGNALLING_URL: 'ws://h/workers/signalling?token=x' };
    assert.equal(
      expandLaunchVars('-PixelStreamingSignallingURL=${USHER_SIGNALLING_URL}', env),
      '-PixelStreamingSignallingURL=ws://h/workers/signalling?token=x',
    );
    assert.equal(expandLaunchVars('${HOME}/${USHER_MISSING}', env), '${HOME}/${USHER_MISSING}');
  });
});
