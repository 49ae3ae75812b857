// Security from the outside (SPEC §11, docs/security.md): tokens used beyond their scope (a worker's token as a
// viewer's, an agent's on another session, a viewer's on the worker endpoints, expired ones), floods of
// POST /sessions per client and per project, oversized frames on the worker and streamer sockets, CORS and the
// Origin of WebSocket upgrades, admin keys made, listed, rotated and revoked (on every server of a cluster), and
// logs that never carry a secret. What api.test.ts and bad-input.test.ts already try (a viewer token on another
// session, an expired viewer token, bodies over 1 MiB, session frames over 64 KiB) is not repeated here.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ADMIN_KEY_CACHE_MS, ManualClock, safeLoggerOptions } from '@usher/server';
import {
  type ApiResult,
  agentProject,
  type CreatedSession,
  createTestDatabase,
  databaseKinds,
  type Frame,
  FrameSocket,
  streamProject,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  type TestDatabase,
  TestServer,
  TestStreamer,
  useTestServer,
} from '@usher/testing';
import pino from 'pino';
import WebSocket from 'ws';
import { assertError, nextFrame } from './helpers.ts';

const ofType = (type: string) => (f: Frame) => f.type === type;

/** An upgrade answered with an HTTP status instead of 101: the status and the JSON body. */
function refusedUpgrade(url: string, origin: string): Promise<{ status: number; body: Frame }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { origin });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error(`the upgrade from ${origin} was accepted`));
    });
    ws.once('error', () => {});
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Frame }));
    });
  });
}

/** Opens a socket with this Origin (or none) and says whether it was upgraded. */
async function upgrades(url: string, origin?: string): Promise<boolean> {
  const s = new FrameSocket(url, origin ? { origin } : {});
  try {
    await s.opened;
    s.ws.terminate();
    return true;
  } catch {
    return false;
  }
}

const wsUrl = (t: TestServer, path: string) => `${t.url.replace(/^http/, 'ws')}${path}`;

/** A worker dialled in by hand with a pool token: registered and ready. */
async function poolWorker(t: TestServer, projectId: string, adminKey = TEST_ADMIN_KEY) {
  const pt = await t.api<{ token: string; workerUrl: string }>(
    'POST',
    `/projects/${projectId}/pool-tokens`,
    {},
    adminKey,
  );
  assert.equal(pt.status, 201, JSON.stringify(pt.body));
  const w = new FrameSocket(pt.body.workerUrl);
  await w.opened;
  w.send({ type: 'register', token: pt.body.token });
  const registered = await w.waitFor(ofType('registered'));
  w.send({ type: 'ready' });
  return { w, workerId: String(registered.workerId), poolToken: pt.body.token };
}

/** The assignment a hand-dialled worker gets, answered with session_started. */
async function takeAssignment(w: FrameSocket, sessionId: string): Promise<string> {
  const assign = await w.waitFor(
    (f) => f.type === 'assign' && (f.assignment as { sessionId: string }).sessionId === sessionId,
  );
  w.send({ type: 'session_started', sessionId });
  return (assign.assignment as { token: string }).token;
}

async function post(
  t: TestServer,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<ApiResult<Record<string, unknown>> & { headers: Headers }> {
  const res = await fetch(t.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

/** Workers dialled in by hand are never taken for lost during a test. */
const patientEngine = { workerLossMs: 600_000 };

for (const kind of databaseKinds()) {
  describe(`tokens and their scopes (${kind})`, () => {
    const { t } = useTestServer(kind, { engine: patientEngine });

    test("a worker's token is not a participant's: refused on the session socket and on every session route", async () => {
      await t.createProject(agentProject('tk-worker', { min: 1, max: 1 }));
      await t.readyWorkers('tk-worker', 1);
      const s = await t.createSession('tk-worker');
      const worker = t.fake.workers.get(s.workerId!)!;
      const workerToken = worker.launch.env.USHER_WORKER_TOKEN!;
      await t.waitForState(s.id, 'active');

      const sock = await t.connect(s, workerToken);
      assert.equal((await sock.closed).code, 1008);
      assert.equal((await nextFrame(sock, (f) => f.type === 'error')).code, 'FORBIDDEN');
      assert.deepEqual(sock.events, [], 'no event of the session reached it');
      for (const [method, path, body] of [
        ['GET', `/sessions/${s.id}`],
        ['GET', `/sessions/${s.id}/messages`],
        ['POST', `/sessions/${s.id}/join`],
        ['POST', `/sessions/${s.id}/end`],
        ['POST', '/sessions', { projectId: 'tk-worker' }],
        ['GET', '/projects'],
        ['POST', '/admin-keys', { name: 'stolen' }],
      ] as const)
        assertError(await t.api(method, path, body, workerToken), 403, 'FORBIDDEN');
      assert.equal((await t.session(s.id)).state, 'active', 'nothing happened to the session');
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test("the agent's session token serves its own session, as the agent, and no other", async () => {
      await t.createProject(agentProject('tk-agent', { min: 0, max: 2 }));
      const a = await t.createSession('tk-agent');
      const b = await t.createSession('tk-agent');
      await t.waitForState(a.id, 'active');
      const agentToken = t.fake.workers.get(a.workerId!)!.assignments[0]!.token;

      const own = await t.connect(a, agentToken);
      assert.equal(own.events[0]?.type, 'session.status_changed', 'its own session socket opens');
      await own.close();
      // as the agent: it cannot act as a viewer or let others in
      for (const path of [`/sessions/${a.id}/end`, `/sessions/${a.id}/pause`, `/sessions/${a.id}/join`])
        assertError(await t.api('POST', path, undefined, agentToken), 403, 'FORBIDDEN');
      // another session: refused everywhere
      const other = await t.connect(b, agentToken);
      assert.equal((await other.closed).code, 1008);
      assert.deepEqual(other.events, []);
      assertError(await t.api('GET', `/sessions/${b.id}`, undefined, agentToken), 403, 'FORBIDDEN');
      assertError(await t.api('GET', `/sessions/${b.id}/messages`, undefined, agentToken), 403, 'FORBIDDEN');
      // a pool token is no participant's either
      const pool = await t.api<{ token: string }>('POST', '/projects/tk-agent/pool-tokens', {});
      const poolSock = await t.connect(a, pool.body.token);
      assert.equal((await poolSock.closed).code, 1008);
      assertError(await t.api('GET', `/sessions/${a.id}`, undefined, pool.body.token), 403, 'FORBIDDEN');
      assert.equal((await t.session(a.id)).state, 'active');
      for (const s of [a, b]) await t.api('POST', `/sessions/${s.id}/end`);
    });

    test("an agent's room messages through a session socket are relayed and recorded in the order it sent them", async () => {
      await t.createProject(agentProject('tk-order', { min: 0, max: 1 }));
      const s = await t.createSession('tk-order');
      await t.waitForState(s.id, 'active');
      const agentToken = t.fake.workers.get(s.workerId!)!.assignments[0]!.token;
      const agent = await t.connect(s, agentToken);
      for (let n = 0; n < 40; n++)
        agent.send({ type: 'message', messageType: 'agent_text', data: { n }, ref: `a${n}` });
      await agent.untilOther((frames) => frames.filter((f) => f.type === 'message_ack').length === 40);
      const page = await t.api<{ messages: { type: string; data: { n: number } }[] }>(
        'GET',
        `/sessions/${s.id}/messages?limit=100`,
      );
      assert.deepEqual(
        page.body.messages.filter((m) => m.type === 'agent_text').map((m) => m.data.n),
        Array.from({ length: 40 }, (_, n) => n),
      );
      await agent.close();
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test("a crashed agent's token stops acting for the session once auto-restart has moved it to a fresh worker", async () => {
      await t.createProject(
        agentProject('tk-moved', { min: 0, max: 2 }, { autoRestart: { enabled: true, maxRestarts: 1 } }),
      );
      const s = await t.createSession('tk-moved');
      await t.waitForState(s.id, 'active');
      const crashed = s.workerId!;
      const oldToken = t.fake.workers.get(crashed)!.assignments[0]!.token;
      // a socket the old agent holds, open before the crash
      const held = await t.connect(s, oldToken);
      const back = t.nextEvent(s.id, (e) => e.type === 'session.status_changed' && e.status === 'active');
      t.fake.crash(crashed);
      await back;
      const fresh = (await t.session(s.id)).workerId as string;
      assert.notEqual(fresh, crashed);
      const newToken = t.fake.workers.get(fresh)!.assignments[0]!.token;
      // what it says through the socket it held is refused, not relayed as the agent
      held.send({ type: 'message', messageType: 'agent_text', data: { text: 'still me' }, ref: 'r1' });
      const refused = await nextFrame(held, (f) => f.type === 'error' && f.ref === 'r1');
      assert.equal(refused.code, 'FORBIDDEN');
      // a new socket, and the session's routes, refuse the old token; the fresh worker's token works
      const again = await t.connect(s, oldToken);
      assert.equal((await again.closed).code, 1008);
      for (const path of [
        `/sessions/${s.id}`,
        `/sessions/${s.id}/messages`,
        `/sessions/${s.id}/participants`,
      ])
        assertError(await t.api('GET', path, undefined, oldToken), 403, 'FORBIDDEN');
      for (const path of [
        `/sessions/${s.id}`,
        `/sessions/${s.id}/messages`,
        `/sessions/${s.id}/participants`,
      ])
        assert.equal((await t.api('GET', path, undefined, newToken)).status, 200, path);
      const page = await t.api<{ messages: { data: unknown }[] }>('GET', `/sessions/${s.id}/messages`);
      assert.ok(!JSON.stringify(page.body).includes('still me'), 'nothing of it was recorded');
      await held.close();
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('a revoked pool token registers no worker; workers registered with it keep running; only admins list and revoke', async () => {
      await t.createProject(
        agentProject('tk-revoke', { min: 0, max: 2 }, { worker: { driver: 'external' } }),
      );
      const made = await t.api<{ id: string; token: string; workerUrl: string }>(
        'POST',
        '/projects/tk-revoke/pool-tokens',
        { ttlSeconds: 3600 },
      );
      assert.equal(made.status, 201);
      const listed = await t.api<{ poolTokens: { id: string; region: string; revokedAt: string | null }[] }>(
        'GET',
        '/projects/tk-revoke/pool-tokens',
      );
      assert.deepEqual(
        listed.body.poolTokens.map((p) => [p.id, p.region, p.revokedAt]),
        [[made.body.id, 'default', null]],
      );
      assert.ok(!JSON.stringify(listed.body).includes(made.body.token), 'the token itself is never listed');
      const register = async () => {
        const w = new FrameSocket(made.body.workerUrl);
        await w.opened;
        w.send({ type: 'register', token: made.body.token });
        return w;
      };
      const before = await register();
      await before.waitFor(ofType('registered'));

      const viewer = await t.createSession('tk-revoke');
      assertError(
        await t.api('GET', '/projects/tk-revoke/pool-tokens', undefined, viewer.token),
        403,
        'FORBIDDEN',
      );
      assertError(
        await t.api('DELETE', `/projects/tk-revoke/pool-tokens/${made.body.id}`, undefined, viewer.token),
        403,
        'FORBIDDEN',
      );
      const revoked = await t.api<{ revokedAt: string | null }>(
        'DELETE',
        `/projects/tk-revoke/pool-tokens/${made.body.id}`,
      );
      assert.equal(revoked.status, 200);
      assert.ok(revoked.body.revokedAt);
      assertError(await t.api('DELETE', '/projects/tk-revoke/pool-tokens/pt_nothing'), 404, 'NOT_FOUND');
      assertError(await t.api('DELETE', `/projects/a-viewer/pool-tokens/${made.body.id}`), 404, 'NOT_FOUND');

      const after = await register();
      assert.equal((await after.closed).code, 1008);
      const refused = await after.waitFor(ofType('error'));
      assert.match(String(refused.message), /revoked/);
      assert.equal(before.ws.readyState, WebSocket.OPEN, 'the worker registered before still runs');
      before.ws.close(1000);
      await t.api('POST', `/sessions/${viewer.id}/end`);
    });

    test("an invited user's token lets others in, under names nobody in the room has; an observer's does not", async () => {
      await t.createProject(agentProject('tk-user', { min: 0, max: 1 }));
      const s = await t.createSession('tk-user');
      await t.waitForState(s.id, 'active');
      const invite = await t.api<{ token: string }>('POST', `/sessions/${s.id}/join`, {}, s.token);
      assert.equal(invite.status, 200, JSON.stringify(invite.body));
      // the invite is exchanged for a token with a name of its own, as the Web SDK's acceptInvite() does
      const bo = await t.api<{ token: string; identity: string }>(
        'POST',
        `/sessions/${s.id}/join`,
        { identity: 'Bo' },
        invite.body.token,
      );
      assert.equal(bo.status, 200, JSON.stringify(bo.body));
      const joined = t.nextEvent(
        s.id,
        (e) => e.type === 'session.participant_joined' && e.participant.identity === 'Bo',
      );
      const room = await t.connect(s, bo.body.token);
      await joined;
      // nobody else may take a name that is in the room (others would take one for the other); an admin may
      // hand Bo a new token
      const again = await t.api('POST', `/sessions/${s.id}/join`, { identity: 'Bo' }, invite.body.token);
      assertError(again, 409, 'CONFLICT');
      assert.match((again.body as { error: { message: string } }).error.message, /choose another identity/);
      assert.equal((await t.api('POST', `/sessions/${s.id}/join`, { identity: 'Bo' })).status, 200);
      // nor the agent's name, or one Usher makes, which could pass for someone briefly away
      const worker = (await t.session(s.id)).workerId as string;
      for (const identity of [worker, 'viewer_0mjuohs00000tb937c8e1', 'user_0mjuohs00000tb937c8e1']) {
        const r = await t.api('POST', `/sessions/${s.id}/join`, { identity }, invite.body.token);
        assertError(r, 409, 'CONFLICT');
        assert.match(
          (r.body as { error: { message: string } }).error.message,
          /looks like an identity Usher makes/,
        );
      }
      // names of an application's own scheme are fine, and so is asking again for one's own
      for (const identity of ['user_42', 'w_bo']) {
        const r = await t.api('POST', `/sessions/${s.id}/join`, { identity }, invite.body.token);
        assert.equal(r.status, 200, identity);
      }
      const again2 = await t.api('POST', `/sessions/${s.id}/join`, { identity: 'Bo' }, bo.body.token);
      assert.equal(again2.status, 200, 'Bo asks again for its own name, in the room already');
      const observer = await t.api<{ token: string }>('POST', `/sessions/${s.id}/join`, { role: 'observer' });
      for (const action of ['join', 'end']) {
        const r = await t.api('POST', `/sessions/${s.id}/${action}`, undefined, observer.body.token);
        assertError(r, 403, 'FORBIDDEN');
        assert.match(
          (r.body as { error: { message: string } }).error.message,
          /an observer token cannot do this: it takes the session's viewer or user token, or an admin API key/,
        );
      }
      assert.equal((await t.session(s.id)).state, 'active', 'the session goes on');
      await room.close();
      await t.api('POST', `/sessions/${s.id}/end`, undefined, s.token);
    });

    test('a worker serves only its own session: frames that name another session are refused', async () => {
      await t.createProject(agentProject('tk-own', { min: 0, max: 2 }, { worker: { driver: 'external' } }));
      const one = await poolWorker(t, 'tk-own');
      const a = await t.createSession('tk-own');
      await takeAssignment(one.w, a.id);
      const two = await poolWorker(t, 'tk-own');
      const b = await t.createSession('tk-own');
      await takeAssignment(two.w, b.id);
      await t.waitForState(a.id, 'active');
      await t.waitForState(b.id, 'active');

      const watchA = await t.connect(a, TEST_ADMIN_KEY);
      const watchB = await t.connect(b, TEST_ADMIN_KEY);
      one.w.send({
        type: 'message',
        sessionId: b.id,
        messageType: 'agent_text',
        data: { text: 'not yours' },
      });
      one.w.send({ type: 'save_state', sessionId: b.id, state: { stolen: true } });
      one.w.send({ type: 'control', sessionId: b.id, action: 'end' });
      one.w.send({ type: 'session_started', sessionId: b.id });
      one.w.send({ type: 'message', sessionId: a.id, messageType: 'agent_text', data: { text: 'mine' } });
      // frames are handled in order: once its own session has the last one, the four before it were answered
      await watchA.waitFor(
        (e) => e.type === 'session.message' && JSON.stringify(e.message.data).includes('mine'),
      );
      // (the errors travel on another connection: wait for them too)
      await one.w.waitFor(() => one.w.frames.filter(ofType('error')).length >= 4);
      const refused = one.w.frames.filter(ofType('error'));
      assert.equal(refused.length, 4, JSON.stringify(refused));
      assert.ok(
        refused.every((f) => f.code === 'FORBIDDEN'),
        JSON.stringify(refused),
      );
      assert.equal((await t.session(b.id)).state, 'active', 'b was not ended');
      assert.ok(!watchB.events.some((e) => e.type === 'session.message'), 'b heard nothing on its behalf');
      for (const sock of [watchA, watchB]) await sock.close();
      for (const s of [a, b]) await t.api('POST', `/sessions/${s.id}/end`);
      one.w.ws.terminate();
      two.w.ws.terminate();
    });

    test('a viewer token, or an expired pool token, cannot register a worker on either worker endpoint', async () => {
      await t.createProject(streamProject('tk-ep', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
      const s = await t.createSession('tk-ep');
      // the streamer endpoint (bad-input.test.ts tries the worker endpoint with a viewer token)
      const streamer = new TestStreamer(wsUrl(t, `/workers/signalling?token=${encodeURIComponent(s.token)}`));
      assert.equal((await streamer.closed).code, 1008);
      assert.match(String((await streamer.next('error')).message), /not a worker token/);

      const pool = await t.api<{ token: string; workerUrl: string; signallingUrl: string }>(
        'POST',
        '/projects/tk-ep/pool-tokens',
        { ttlSeconds: 60 },
      );
      await t.advance(60_000);
      const w = new FrameSocket(pool.body.workerUrl);
      await w.opened;
      w.send({ type: 'register', token: pool.body.token });
      const closed = await w.closed;
      assert.equal(closed.code, 1008);
      assert.match(closed.reason, /expired/);
      const late = new TestStreamer(pool.body.signallingUrl);
      assert.equal((await late.closed).code, 1008);
      assert.match(String((await late.next('error')).message), /expired/);
      const workers = await t.api<{ workers: { state: string }[] }>('GET', '/workers?projectId=tk-ep');
      assert.ok(
        workers.body.workers.every((w) => w.state !== 'ready'),
        'no worker joined the pool',
      );
      await t.api('POST', `/sessions/${s.id}/end`);
    });
  });

  describe(`session rate limits (${kind})`, () => {
    const { t } = useTestServer(kind, {
      server: {
        trustProxy: true,
        sessionRate: {
          perClient: { perSecond: 2, burst: 3 },
          perProject: { perSecond: 1, burst: 8 },
          exemptClients: ['198.51.100.0/24'],
        },
      },
    });
    const ask = (projectId: string, client: string, auth?: string) =>
      post(
        t,
        '/sessions',
        { projectId },
        {
          'x-forwarded-for': client,
          ...(auth ? { authorization: `Bearer ${auth}` } : {}),
        },
      );
    const count = async (projectId: string) =>
      (await t.api<{ sessions: unknown[] }>('GET', `/sessions?projectId=${projectId}`)).body.sessions.length;

    test('a flood from one client gets 429 RATE_LIMITED with Retry-After; other clients and admin keys go on', async () => {
      await t.createProject(streamProject('rl-client', { min: 0, max: 1 }));
      for (let i = 0; i < 3; i++) assert.equal((await ask('rl-client', '203.0.113.7')).status, 201);
      const refused = await ask('rl-client', '203.0.113.7');
      const err = assertError(refused, 429, 'RATE_LIMITED');
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.match(err.message, /203\.0\.113\.7/);
      assert.match(err.message, /2 a second \(bursts of 3\)/);
      assert.match(err.message, /sessionRate\.perClient/);
      assert.deepEqual(err.details, { limit: 'client', retryAfterSeconds: 1 });
      // refused before any work: an unknown project is not even looked up
      assertError(await ask('nope', '203.0.113.7'), 429, 'RATE_LIMITED');
      assert.equal((await ask('rl-client', '203.0.113.8')).status, 201, 'another client');
      assert.equal((await ask('rl-client', '203.0.113.7', TEST_ADMIN_KEY)).status, 201, 'an admin key');
      assert.equal(await count('rl-client'), 5, 'the refused asks made no session');
      // the bucket refills with the server's clock: half a second gives one more
      await t.advance(500);
      assert.equal((await ask('rl-client', '203.0.113.7')).status, 201);
      assertError(await ask('rl-client', '203.0.113.7'), 429, 'RATE_LIMITED');
    });

    test('IPv6 clients count by /64; exempt ranges are not limited', async () => {
      await t.createProject(streamProject('rl-v6', { min: 0, max: 1 }));
      for (const ip of ['2001:db8:5:6::1', '2001:db8:5:6::2', '2001:db8:5:6:ffff::9'])
        assert.equal((await ask('rl-v6', ip)).status, 201);
      assertError(await ask('rl-v6', '2001:db8:5:6::3'), 429, 'RATE_LIMITED');
      assert.equal((await ask('rl-v6', '2001:db8:5:7::1')).status, 201, 'another /64');
      await t.createProject(streamProject('rl-exempt', { min: 0, max: 1 }));
      for (let i = 0; i < 6; i++) assert.equal((await ask('rl-exempt', '198.51.100.9')).status, 201);
    });

    test('the per-project limit holds for every caller, admin keys included', async () => {
      await t.createProject(streamProject('rl-project', { min: 0, max: 1 }));
      await t.createProject(streamProject('rl-other', { min: 0, max: 1 }));
      for (let i = 0; i < 8; i++) await t.createSession('rl-project');
      const refused = await post(
        t,
        '/sessions',
        { projectId: 'rl-project' },
        {
          authorization: `Bearer ${TEST_ADMIN_KEY}`,
        },
      );
      const err = assertError(refused, 429, 'RATE_LIMITED');
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.match(err.message, /project "rl-project"/);
      assert.match(err.message, /sessionRate\.perProject/);
      assert.deepEqual(err.details, { limit: 'project', retryAfterSeconds: 1 });
      assert.equal((await ask('rl-project', '203.0.113.50')).status, 429, 'anonymous callers too');
      await t.createSession('rl-other');
      await t.advance(1_000);
      await t.createSession('rl-project');
      assertError(await t.api('POST', '/sessions', { projectId: 'rl-project' }), 429, 'RATE_LIMITED');
      assert.equal(await count('rl-project'), 9);
    });
  });

  describe(`session rate limits: the defaults (${kind})`, () => {
    const { t } = useTestServer(kind, { server: { trustProxy: true } });

    test('10 a second, bursts of 20, per client; loopback clients are exempt', async () => {
      await t.createProject(streamProject('rd', { min: 0, max: 1 }));
      for (let i = 0; i < 20; i++)
        assert.equal(
          (await post(t, '/sessions', { projectId: 'rd' }, { 'x-forwarded-for': '203.0.113.1' })).status,
          201,
        );
      const err = assertError(
        await post(t, '/sessions', { projectId: 'rd' }, { 'x-forwarded-for': '203.0.113.1' }),
        429,
        'RATE_LIMITED',
      );
      assert.match(err.message, /10 a second \(bursts of 20\)/);
      for (let i = 0; i < 25; i++)
        assert.equal((await post(t, '/sessions', { projectId: 'rd' })).status, 201);
    });
  });

  describe(`admin keys (${kind})`, () => {
    // no key configured: the first start makes the bootstrap key
    const { t } = useTestServer(kind, { server: { adminKeys: [] } });
    let boot = '';
    before(() => {
      boot = t.server.generatedAdminKey ?? '';
    });
    const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
    const tableText = async () =>
      JSON.stringify(await t.engine.store.db.all<Record<string, unknown>>('SELECT * FROM admin_keys'));

    test('the first start makes a "bootstrap" key, stored only as a hash; configured keys are not', async () => {
      assert.match(boot, /^usk_[\w-]{43}$/);
      const list = await t.api<{ keys: Record<string, unknown>[]; configuredKeys: number }>(
        'GET',
        '/admin-keys',
        undefined,
        boot,
      );
      assert.equal(list.status, 200);
      assert.equal(list.body.configuredKeys, 0);
      assert.equal(list.body.keys.length, 1);
      const [k] = list.body.keys;
      assert.equal(k!.name, 'bootstrap');
      assert.equal(k!.prefix, boot.slice(0, 8));
      assert.equal(k!.revokedAt, null);
      assert.equal(typeof k!.lastUsedAt, 'string', 'its use was stamped');
      assert.deepEqual(Object.keys(k!).sort(), [
        'createdAt',
        'id',
        'lastUsedAt',
        'name',
        'prefix',
        'revokedAt',
      ]);
      const table = await tableText();
      assert.ok(table.includes(sha256(boot)), 'the table holds its hash');
      assert.ok(!table.includes(boot) && !table.includes(boot.slice(8)), 'not the key');
      assertError(await t.api('GET', '/projects', undefined, TEST_ADMIN_KEY), 401, 'UNAUTHORIZED');
    });

    test('make, list, use, revoke: the key is shown once, and refused at once when revoked', async () => {
      const made = await t.api<Record<string, string>>('POST', '/admin-keys', { name: 'ci' }, boot);
      assert.equal(made.status, 201, JSON.stringify(made.body));
      const key = made.body.key!;
      assert.match(key, /^usk_/);
      assert.equal(made.body.prefix, key.slice(0, 8));
      assert.equal((await t.api('GET', '/projects', undefined, key)).status, 200, 'the new key works');
      const listed = await t.api<{ keys: Record<string, unknown>[] }>('GET', '/admin-keys', undefined, key);
      assert.ok(!JSON.stringify(listed.body).includes(key.slice(8)), 'the list shows no key');
      assert.ok(!JSON.stringify(listed.body).includes(sha256(key)), 'nor any hash');
      assert.deepEqual(
        listed.body.keys.map((k) => k.name),
        ['bootstrap', 'ci'],
      );
      assert.ok(!(await tableText()).includes(key.slice(8)), 'not stored in clear');

      const revoked = await t.api<Record<string, unknown>>(
        'DELETE',
        `/admin-keys/${made.body.id}`,
        undefined,
        boot,
      );
      assert.equal(revoked.status, 200);
      assert.equal(typeof revoked.body.revokedAt, 'string');
      const err = assertError(await t.api('GET', '/projects', undefined, key), 401, 'UNAUTHORIZED');
      assert.match(err.message, /revoked/);
      const again = await t.api<Record<string, unknown>>(
        'DELETE',
        `/admin-keys/${made.body.id}`,
        undefined,
        boot,
      );
      assert.equal(again.body.revokedAt, revoked.body.revokedAt, 'revoking twice changes nothing');
      assertError(await t.api('DELETE', '/admin-keys/ak_nope', undefined, boot), 404, 'NOT_FOUND');
      // only admins
      assertError(await t.api('GET', '/admin-keys', undefined, null), 401, 'UNAUTHORIZED');
      assertError(await t.api('POST', '/admin-keys', { name: 'x' }, key), 401, 'UNAUTHORIZED');
      for (const body of [{}, { name: '' }, { name: 'x', extra: 1 }, { name: 'x'.repeat(101) }])
        assertError(await t.api('POST', '/admin-keys', body, boot), 400, 'BAD_REQUEST');
    });

    test('rotation: make the new key with the old, switch, revoke the old; the last key cannot go', async () => {
      const list = await t.api<{ keys: { id: string; name: string; revokedAt: string | null }[] }>(
        'GET',
        '/admin-keys',
        undefined,
        boot,
      );
      const bootId = list.body.keys.find((k) => k.name === 'bootstrap')!.id;
      const last = assertError(
        await t.api('DELETE', `/admin-keys/${bootId}`, undefined, boot),
        409,
        'CONFLICT',
      );
      assert.match(last.message, /last one/);
      assert.match(last.message, /POST \/admin-keys/);

      const next = await t.api<{ id: string; key: string }>('POST', '/admin-keys', { name: 'rotated' }, boot);
      assert.equal((await t.api('DELETE', `/admin-keys/${bootId}`, undefined, next.body.key)).status, 200);
      assertError(await t.api('GET', '/projects', undefined, boot), 401, 'UNAUTHORIZED');
      assert.equal((await t.api('GET', '/projects', undefined, next.body.key)).status, 200);
      const self = assertError(
        await t.api('DELETE', `/admin-keys/${next.body.id}`, undefined, next.body.key),
        409,
        'CONFLICT',
      );
      assert.match(self.message, /last one/);
      assert.equal((await t.api('GET', '/projects', undefined, next.body.key)).status, 200, 'still in');
    });
  });

  describe(`admin keys across a restart (${kind})`, () => {
    let db: TestDatabase;
    before(async () => {
      db = await createTestDatabase(kind);
    });
    after(async () => {
      await db.drop();
    });

    test('a restart keeps the stored keys and makes no new bootstrap key; a configured key makes none', async () => {
      const first = await new TestServer({ storage: db.storage, server: { adminKeys: [] } }).start();
      const boot = first.server.generatedAdminKey;
      assert.ok(boot);
      await first.close();
      const second = await new TestServer({ storage: db.storage, server: { adminKeys: [] } }).start();
      try {
        assert.equal(second.server.generatedAdminKey, null);
        assert.equal((await second.api('GET', '/projects', undefined, boot)).status, 200);
      } finally {
        await second.close();
      }
      const configured = await new TestServer({ storage: db.storage }).start();
      try {
        assert.equal(configured.server.generatedAdminKey, null);
        const list = await configured.api<{ configuredKeys: number }>('GET', '/admin-keys');
        assert.equal(list.body.configuredKeys, 1);
        assert.equal((await configured.api('GET', '/projects', undefined, boot)).status, 200, 'both work');
      } finally {
        await configured.close();
      }
    });
  });

  describe(`no secret in the log (${kind})`, () => {
    const lines: string[] = [];
    const waiters: { pred: (l: string) => boolean; resolve: () => void }[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) {
          lines.push(line);
          for (const w of waiters.filter((w) => w.pred(line))) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve();
          }
        }
        done();
      },
    });
    const logged = (pred: (l: string) => boolean) =>
      lines.some(pred) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ pred, resolve }));
    const log = pino({ level: 'trace', ...safeLoggerOptions }, stream);
    const dir = mkdtempSync(join(tmpdir(), 'usher-security-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const envFile = join(dir, 'env.json');
    // a worker that prints its credentials (as a careless app might) and stays up
    const printer = [
      process.execPath,
      '-e',
      "require('node:fs').writeFileSync(process.argv[1], JSON.stringify(process.env)); console.log('my credentials:', process.env.USHER_WORKER_TOKEN, process.env.USHER_SIGNALLING_URL, process.env.USHER_SESSION_TOKEN); setInterval(() => {}, 1000);",
      envFile,
    ];
    const { t } = useTestServer(kind, {
      engine: patientEngine,
      // the server's own process driver, whose worker output goes to the log; no key configured
      server: { log, adminKeys: [], drivers: {} },
    });

    test('admin keys, tokens, joins, worker registrations and failed attempts leave no secret in the log', async () => {
      const boot = t.server.generatedAdminKey!;
      const secrets: string[] = [boot, TEST_SECRET];
      const api = <T = Record<string, unknown>>(method: string, path: string, body?: unknown, auth = boot) =>
        t.api<T>(method, path, body, auth);
      assert.ok(
        lines.some((l) => l.includes('bootstrap')),
        'the bootstrap key was announced',
      );

      // admin keys: made, used, revoked, used again
      const made = await api<{ id: string; key: string }>('POST', '/admin-keys', { name: 'logs' });
      secrets.push(made.body.key);
      assert.equal((await api('GET', '/projects', undefined, made.body.key)).status, 200);
      await api('DELETE', `/admin-keys/${made.body.id}`);
      assert.equal((await api('GET', '/projects', undefined, made.body.key)).status, 401);
      assert.equal(
        (await api('GET', '/projects', undefined, 'usk_a-wrong-key-that-looks-right-0123')).status,
        401,
      );

      // a session of a worker that prints its credentials; a viewer, a user who joins, their sockets
      await api(
        'POST',
        '/projects',
        agentProject(
          'printer',
          { min: 0, max: 1 },
          {
            worker: { driver: 'process', command: printer },
          },
        ),
      );
      const s = (await api<CreatedSession>('POST', '/sessions', { projectId: 'printer' })).body;
      secrets.push(s.token);
      const join = await api<{ token: string }>(
        'POST',
        `/sessions/${s.id}/join`,
        { identity: 'ann' },
        s.token,
      );
      secrets.push(join.body.token);
      // (the viewer stays: its leaving would end the session before the worker has spoken)
      const sockets = [await t.connect(s, s.token), await t.connect(s, join.body.token)];
      await logged((l) => l.includes('my credentials'));
      const env = JSON.parse(readFileSync(envFile, 'utf8')) as Record<string, string>;
      for (const name of ['USHER_WORKER_TOKEN', 'USHER_SESSION_TOKEN']) {
        assert.ok(env[name], `the worker got ${name}`);
        secrets.push(env[name]!);
      }

      // workers dialled in by hand: the worker protocol and the streamer's URL with its token
      await api(
        'POST',
        '/projects',
        agentProject('hand', { min: 0, max: 1 }, { worker: { driver: 'external' } }),
      );
      const hand = await poolWorker(t, 'hand', boot);
      secrets.push(hand.poolToken);
      await api(
        'POST',
        '/projects',
        streamProject('ps', { min: 0, max: 1 }, { worker: { driver: 'external' } }),
      );
      const pool = await api<{ token: string; signallingUrl: string }>(
        'POST',
        '/projects/ps/pool-tokens',
        {},
      );
      secrets.push(pool.body.token);
      const streamer = new TestStreamer(pool.body.signallingUrl);
      await streamer.registered;

      // failed attempts: a forged token, a viewer's token on the worker endpoint, garbage
      const forged = `${s.token.slice(0, -4)}AAAA`;
      assert.equal((await api('GET', `/sessions/${s.id}`, undefined, forged)).status, 401);
      const intruder = new TestStreamer(wsUrl(t, `/workers/signalling?token=${s.token}`));
      assert.equal((await intruder.closed).code, 1008);
      const bad = new FrameSocket(wsUrl(t, '/workers/ws'));
      await bad.opened;
      bad.send({ type: 'register', token: join.body.token });
      assert.equal((await bad.closed).code, 1008);
      // a malformed frame is logged, truncated, with the token in it hidden
      const malformed = new FrameSocket(wsUrl(t, '/workers/ws'));
      await malformed.opened;
      malformed.send({ type: 'register', token: env.USHER_WORKER_TOKEN, extra: 'not allowed' });
      assert.equal((await malformed.closed).code, 1008);
      await logged((l) => l.includes('bad worker frame'));

      // what a careless caller of the logger might write is redacted too
      log.info(
        {
          req: {
            headers: { authorization: `Bearer ${boot}`, 'x-api-key': boot },
            url: `/x?token=${s.token}&a=1`,
          },
          token: s.token,
          nested: { secret: TEST_SECRET, key: made.body.key },
        },
        `a message with Bearer ${boot} and ${join.body.token}`,
      );
      await streamer.close();
      for (const sock of sockets) await sock.close();
      hand.w.ws.terminate();
      await api('POST', `/sessions/${s.id}/end`);
      await t.settled();

      const text = lines.join('\n');
      for (const secret of secrets) {
        assert.ok(secret.length >= 40);
        // not even a part of one (a truncated frame would show the start of a token); a token's header and the
        // start of its claims are the same in every token, and no secret
        const [header, claims, signature] = secret.split('.');
        const parts = signature ? [claims!.slice(16), signature] : [header!];
        for (const p of parts)
          for (let i = 0; i + 24 <= p.length; i += 8) {
            const part = p.slice(i, i + 24);
            assert.ok(!text.includes(part), `part of a secret reached the log: …${part}…`);
          }
      }
      assert.ok(text.includes('/x?token=[hidden]&a=1'), 'a URL keeps all but its token');
      const printed = lines.find((l) => l.includes('my credentials'))!;
      assert.match(printed, /\[hidden\]/, "the worker's line is kept, its credentials hidden");
    });
  });
}

describe('session rate limits: trustProxy []', () => {
  const warnings: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _enc, done) {
        warnings.push(chunk.toString());
        done();
      },
    }),
  );
  const { t } = useTestServer('sqlite', { log, server: { trustProxy: [] } });

  test('an empty list trusts no proxy: a forwarded request is reported as coming through an untrusted one', async () => {
    await t.createProject(streamProject('tp-none', { min: 0, max: 1 }));
    const res = await post(t, '/sessions', { projectId: 'tp-none' }, { 'x-forwarded-for': '203.0.113.9' });
    assert.equal(res.status, 201);
    assert.ok(
      warnings.some((w) => w.includes('X-Forwarded-For but trustProxy is off')),
      `no warning about trustProxy: ${warnings.join('')}`,
    );
    await t.api('POST', `/sessions/${res.body.id}/end`);
  });
});

describe('sizes of frames on the worker and streamer sockets', () => {
  const { t } = useTestServer('sqlite', { engine: patientEngine });

  test('worker socket: a room message over 64 KiB is refused and the socket stays; a frame over 1 MiB closes it with 1009', async () => {
    await t.createProject(agentProject('sz-worker', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
    const { w } = await poolWorker(t, 'sz-worker');
    const s = await t.createSession('sz-worker');
    await takeAssignment(w, s.id);
    await t.waitForState(s.id, 'active');
    const viewer = await t.connect(s, TEST_ADMIN_KEY);
    w.send({
      type: 'message',
      sessionId: s.id,
      messageType: 'agent_text',
      data: { text: 'x'.repeat(64 * 1024) },
    });
    const err = await w.waitFor(ofType('error'));
    assert.equal(err.code, 'PAYLOAD_TOO_LARGE');
    assert.match(String(err.message), /65536 bytes/);
    // saved state may be larger than a message, up to the frame limit
    w.send({ type: 'save_state', sessionId: s.id, state: { blob: 'y'.repeat(512 * 1024) } });
    w.send({ type: 'message', sessionId: s.id, messageType: 'agent_text', data: { text: 'small' } });
    await viewer.waitFor(
      (e) => e.type === 'session.message' && JSON.stringify(e.message.data).includes('small'),
    );
    assert.equal(w.frames.filter(ofType('error')).length, 1, 'the state and the small message were taken');
    w.send({ type: 'save_state', sessionId: s.id, state: { blob: 'z'.repeat(1024 * 1024) } });
    assert.equal((await w.closed).code, 1009);
    await viewer.close();
    await t.api('POST', `/sessions/${s.id}/end`);
  });

  test('streamer socket: a message over 64 KiB gets PAYLOAD_TOO_LARGE; a frame over 1 MiB closes it with 1009', async () => {
    await t.createProject(streamProject('sz-ps', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
    const pool = await t.api<{ signallingUrl: string }>('POST', '/projects/sz-ps/pool-tokens', {});
    const streamer = new TestStreamer(pool.body.signallingUrl);
    await streamer.registered;
    streamer.send({ type: 'ping', time: 1, pad: 'x'.repeat(64 * 1024) });
    assert.equal((await streamer.next('error')).code, 'PAYLOAD_TOO_LARGE');
    streamer.send({ type: 'ping', time: 2 });
    assert.equal((await streamer.next('pong')).time, 2, 'the streamer stays connected');
    streamer.send({ type: 'ping', time: 3, pad: 'x'.repeat(1024 * 1024) });
    assert.equal((await streamer.closed).code, 1009);
  });
});

describe('CORS and WebSocket origins: the default is same-origin only', () => {
  const { t } = useTestServer('sqlite');

  test('a preflight from another origin gets no CORS headers', async () => {
    const res = await fetch(`${t.url}/sessions`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    assert.ok(res.status >= 400, `status ${res.status}`);
    const get = await fetch(`${t.url}/healthz`, { headers: { origin: 'https://evil.example' } });
    assert.equal(get.headers.get('access-control-allow-origin'), null);
  });

  test("a session socket from another origin's page is refused with 403 before the upgrade; same-origin and Origin-less clients connect", async () => {
    await t.createProject(streamProject('co', { min: 0, max: 1 }));
    const s = await t.createSession('co');
    const url = `${wsUrl(t, `/sessions/${s.id}/ws`)}?token=${encodeURIComponent(s.token)}`;
    // another site, a sandboxed or file:// page, this host on another port
    for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1:1']) {
      const refused = await refusedUpgrade(url, origin);
      assert.equal(refused.status, 403, origin);
      assert.equal((refused.body.error as Frame).code, 'FORBIDDEN');
      assert.match(String((refused.body.error as Frame).message), /allowedOrigins/);
    }
    assert.equal(await upgrades(url, t.url), true, 'the page this server serves');
    assert.equal(await upgrades(url), true, 'a client that sends no Origin');
    // worker endpoints are for processes, not pages: not concerned
    assert.equal(await upgrades(wsUrl(t, '/workers/ws'), 'https://evil.example'), true);
    await t.api('POST', `/sessions/${s.id}/end`);
  });
});

describe('CORS and WebSocket origins: allowed origins', () => {
  const APP = 'https://app.example.com';
  const { t } = useTestServer('sqlite', { server: { allowedOrigins: [APP, 'http://localhost:5173/'] } });

  const preflight = (origin: string) =>
    fetch(`${t.url}/sessions`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });

  test('a preflight for Authorization and JSON from an allowed origin passes; from another it does not', async () => {
    for (const origin of [APP, 'http://localhost:5173']) {
      const ok = await preflight(origin);
      assert.equal(ok.status, 204);
      assert.equal(ok.headers.get('access-control-allow-origin'), origin);
      const headers = (ok.headers.get('access-control-allow-headers') ?? '').toLowerCase();
      assert.ok(headers.includes('authorization') && headers.includes('content-type'), headers);
      assert.match(ok.headers.get('access-control-allow-methods') ?? '', /POST/);
      assert.match(ok.headers.get('vary') ?? '', /Origin/i);
    }
    const other = await preflight('https://evil.example');
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    assert.ok(other.status >= 400);

    await t.createProject(streamProject('cors', { min: 0, max: 1 }));
    const created = await post(t, '/sessions', { projectId: 'cors' }, { origin: APP });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('access-control-allow-origin'), APP);
    // the page can read Retry-After when it is told 429 RATE_LIMITED
    assert.equal(created.headers.get('access-control-expose-headers'), 'retry-after');
    const foreign = await post(t, '/sessions', { projectId: 'cors' }, { origin: 'https://evil.example' });
    assert.equal(foreign.headers.get('access-control-allow-origin'), null);
    assert.equal(foreign.headers.get('access-control-expose-headers'), null);
    for (const s of [created, foreign]) await t.api('POST', `/sessions/${s.body.id}/end`);
  });

  test('a session socket from an allowed origin connects; from another it is refused', async () => {
    const s = await t.createSession('cors');
    const url = `${wsUrl(t, `/sessions/${s.id}/ws`)}?token=${encodeURIComponent(s.token)}`;
    assert.equal(await upgrades(url, APP), true);
    assert.equal((await refusedUpgrade(url, 'https://evil.example')).status, 403);
    await t.api('POST', `/sessions/${s.id}/end`);
  });
});

describe('CORS and WebSocket origins: any origin', () => {
  const { t } = useTestServer('sqlite', { server: { allowedOrigins: ['*'] } });

  test('"*" lets every page call the API and open session sockets', async () => {
    const res = await fetch(`${t.url}/healthz`, { headers: { origin: 'https://anyone.example' } });
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    await t.createProject(streamProject('any', { min: 0, max: 1 }));
    const s = await t.createSession('any');
    const url = `${wsUrl(t, `/sessions/${s.id}/ws`)}?token=${encodeURIComponent(s.token)}`;
    assert.equal(await upgrades(url, 'https://anyone.example'), true);
    await t.api('POST', `/sessions/${s.id}/end`);
  });
});

describe('admin key revocation on every server of one PostgreSQL', {
  skip: !databaseKinds().includes('postgres'),
}, () => {
  let db: TestDatabase;
  const clock = new ManualClock();
  const servers: TestServer[] = [];
  before(async () => {
    db = await createTestDatabase('postgres');
    for (const [name, cluster] of [
      ['a', true],
      ['b', true],
      ['c', false],
    ] as const)
      servers.push(
        await new TestServer({
          storage: db.storage,
          clock,
          serverId: `keys-${name}`,
          server: { cluster },
        }).start(),
      );
  });
  after(async () => {
    for (const s of servers) await s.close();
    await db?.drop();
  });

  test('a key revoked on A is refused by B as soon as the news arrives, and by C (no bus) once its cache expires', async () => {
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    const made = await a.api<{ id: string; key: string }>('POST', '/admin-keys', { name: 'shared' });
    for (const s of servers)
      assert.equal((await s.api('GET', '/projects', undefined, made.body.key)).status, 200);
    assert.equal((await a.api('DELETE', `/admin-keys/${made.body.id}`)).status, 200);
    assertError(await a.api('GET', '/projects', undefined, made.body.key), 401, 'UNAUTHORIZED');
    // B hears A's bus messages one at a time, in the order A sent them: once it hears of a session A made after
    // the revocation, it has heard of the revocation
    const heard = new Promise<string>((resolve) => {
      const off = b.server.hub.subscribeAll((event, local) => {
        if (local) return;
        off();
        resolve(event.sessionId);
      });
    });
    await a.createProject(streamProject('keys-news', { min: 0, max: 1 }));
    const news = await a.createSession('keys-news');
    assert.equal(await heard, news.id);
    assertError(await b.api('GET', '/projects', undefined, made.body.key), 401, 'UNAUTHORIZED');
    await a.api('POST', `/sessions/${news.id}/end`);
    assert.equal(
      (await c.api('GET', '/projects', undefined, made.body.key)).status,
      200,
      'C hears nothing and believes its cache',
    );
    await clock.advance(ADMIN_KEY_CACHE_MS);
    assertError(await c.api('GET', '/projects', undefined, made.body.key), 401, 'UNAUTHORIZED');
  });
});
