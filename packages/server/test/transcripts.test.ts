// Room messages recorded and read back (SPEC §7): two users and an agent converse, the transcript holds exactly
// the recorded types in order, pages back without skipping or repeating, hides debug unless asked, answers
// bad parameters with 400, refuses other sessions' tokens, outlives the session, and reaches a restarted agent.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Envelope, MessagePage } from '@usher/protocol';
import { agentProject, createTestDatabase, databaseKinds, TestServer, useTestServer } from '@usher/testing';
import WebSocket from 'ws';

const line = (m: Envelope) => `${m.from.kind}:${m.type}:${JSON.stringify(m.data)}`;

for (const kind of databaseKinds()) {
  describe(`transcripts (${kind})`, () => {
    const { t } = useTestServer(kind);

    /** A live agent session with its viewer connected, and a second user who joined. */
    async function conversation(projectId: string, extra = {}) {
      await t.createProject(agentProject(projectId, { min: 1, max: 2 }, extra));
      await t.readyWorkers(projectId, 1);
      const s = await t.createSession(projectId);
      await t.waitForState(s.id, 'active');
      const agent = t.fake.workers.get(s.workerId!)!.sdk;
      const viewer = await t.connect(s);
      const join = await t.joinToken(s, { identity: 'bob' });
      const bob = await t.connect(s, join.token);
      await viewer.waitFor(
        (e) => e.type === 'session.participant_joined' && e.participant.identity === 'bob',
      );
      return { s, agent, viewer, bob, bobToken: join.token };
    }

    const page = (id: string, query: string, token?: string) =>
      t.api<MessagePage & { error?: { code: string; message: string } }>(
        'GET',
        `/sessions/${id}/messages${query}`,
        undefined,
        token,
      );

    test('two users and an agent converse: the transcript holds exactly the recorded types, in order, attributed', async () => {
      const { s, agent, viewer, bob } = await conversation('talk');
      const heard: string[] = [];
      agent.on('message', (m) => heard.push(`${m.from.kind}:${m.type}`));

      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'hi' }, ref: 'v1' });
      const ack = await viewer.next('message_ack');
      assert.equal(ack.ref, 'v1');
      assert.equal(ack.recorded, true);
      agent.send('agent_text', { text: 'hello' });
      await bob.waitFor((e) => e.type === 'session.message' && e.message.type === 'agent_text');
      // relayed, never recorded: audio, partial chunks, control
      bob.send({ type: 'message', messageType: 'audio_chunk', data: { pcm: 'AAAA' }, ref: 'b0' });
      assert.equal((await bob.next('message_ack')).recorded, false);
      agent.send('agent_text_partial', { text: 'wor' });
      agent.send('transcript', { text: 'bob said something' });
      // the agent and bob send on their own sockets: the order is the order they reach the server
      await bob.waitFor((e) => e.type === 'session.message' && e.message.type === 'transcript');
      bob.send({ type: 'message', messageType: 'user_text', data: { text: 'a list please' } });
      agent.send('complete_todo_list', { items: ['milk'] });
      agent.send('state_change_notification', { from: 'listening', to: 'thinking' });
      agent.send('debug', { tokens: 42 });
      bob.send({ type: 'message', messageType: 'ping_agent', data: null, ref: 'last' });
      await bob.next('message_ack');
      await viewer.waitFor((e) => e.type === 'session.message' && e.message.type === 'debug');

      const res = await page(s.id, '', s.token);
      assert.equal(res.status, 200);
      const recorded = res.body.messages.filter((m) => !m.type.startsWith('participant_'));
      assert.deepEqual(recorded.map(line), [
        'viewer:user_text:{"text":"hi"}',
        'agent:agent_text:{"text":"hello"}',
        'agent:transcript:{"text":"bob said something"}',
        'user:user_text:{"text":"a list please"}',
        'agent:complete_todo_list:{"items":["milk"]}',
        'agent:state_change_notification:{"from":"listening","to":"thinking"}',
      ]);
      assert.equal(recorded[3]!.from.identity, 'bob');
      // presence is recorded too: the agent, the viewer and bob arrived before anyone spoke
      assert.deepEqual(
        res.body.messages.filter((m) => m.type === 'participant_joined').map((m) => m.from.kind),
        ['agent', 'viewer', 'user'],
      );
      // the envelope is the one participants saw live
      const live = viewer.events.find((e) => e.type === 'session.message' && e.message.type === 'agent_text');
      assert.deepEqual(
        live?.type === 'session.message' && live.message,
        res.body.messages.find((m) => m.type === 'agent_text'),
      );
      for (const flag of ['true', '1']) {
        const withDebug = await page(s.id, `?include_debug=${flag}`, s.token);
        assert.deepEqual(
          withDebug.body.messages.filter((m) => m.type === 'debug').map((m) => m.data),
          [{ tokens: 42 }],
          flag,
        );
      }
      for (const flag of ['false', '0']) {
        const without = await page(s.id, `?include_debug=${flag}`, s.token);
        assert.equal(without.body.messages.filter((m) => m.type === 'debug').length, 0, flag);
      }
      assert.deepEqual(heard, ['viewer:user_text', 'user:audio_chunk', 'user:user_text', 'user:ping_agent']);

      // the session ends; its transcript stays readable, with the departures
      await bob.close(1000);
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      await viewer.closed;
      await t.settled();
      const after = await page(s.id, '?limit=100');
      assert.equal(after.status, 200);
      const left = after.body.messages.filter((m) => m.type === 'participant_left');
      assert.deepEqual(left.map((m) => m.from.kind).sort(), ['agent', 'user', 'viewer']);
      assert.equal(left[0]!.from.identity, 'bob', 'bob left first');
    });

    test("a user's socket opened after the session ended relays and records nothing it sends", async () => {
      const { s } = await conversation('tr-late');
      const join = await t.joinToken(s, { identity: 'late' });
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      // the token still holds; its frames reach the server while the socket is being set up
      const url = `${t.url.replace(/^http/, 'ws')}/sessions/${s.id}/ws?token=${join.token}`;
      const late = new WebSocket(url);
      late.on('open', () => {
        for (let i = 0; i < 3; i++)
          late.send(
            JSON.stringify({ type: 'message', messageType: 'user_text', data: { text: `late ${i}` } }),
          );
      });
      await new Promise((resolve) => late.once('close', resolve));
      await t.settled();
      const page = await t.api<MessagePage>('GET', `/sessions/${s.id}/messages?limit=100`);
      assert.deepEqual(
        page.body.messages.filter((m) => m.from.identity === 'late'),
        [],
      );
    });

    test('1,000 messages sent while the clock stands still: paging back 30 at a time returns each exactly once, in order', async () => {
      const { s, agent, viewer } = await conversation('many');
      for (let i = 0; i < 1000; i++) agent.send(i % 10 === 9 ? 'debug' : 'agent_text', { i });
      await viewer.waitFor(
        (e) => e.type === 'session.message' && (e.message.data as { i: number }).i === 999,
      );
      const seen: number[] = [];
      let query = '?limit=30&include_debug=true';
      for (;;) {
        const res = await page(s.id, query, s.token);
        assert.equal(res.status, 200);
        assert.ok(res.body.messages.length <= 30);
        seen.unshift(
          ...res.body.messages
            .filter((m) => m.from.kind === 'agent' && m.type !== 'participant_joined')
            .map((m) => (m.data as { i: number }).i),
        );
        if (!res.body.hasMore) break;
        // the timestamp alone is a cursor: every message of a session has its own microsecond
        query = `?limit=30&include_debug=true&before=${encodeURIComponent(res.body.nextBefore!)}`;
      }
      assert.deepEqual(
        seen,
        Array.from({ length: 1000 }, (_, i) => i),
      );
      const times = (await page(s.id, '?limit=100', s.token)).body.messages.map((m) => m.at);
      assert.equal(new Set(times.map((at) => at.slice(0, 23))).size <= 2, true, 'the clock stood still');
      const plain = await page(s.id, '?limit=100', s.token);
      assert.equal(
        plain.body.messages.filter((m) => m.type === 'debug').length,
        0,
        'debug hidden by default',
      );
    });

    test('bad parameters get 400 naming the parameter; tokens of another session, or none, are refused', async () => {
      const { s } = await conversation('params');
      const other = await t.createSession('params');
      const cases: [string, string][] = [
        ['?limit=0', 'limit'],
        ['?limit=101', 'limit'],
        ['?limit=ten', 'limit'],
        ['?before=yesterday', 'before'],
        ['?before=2026-13-01T00:00:00Z', 'before'],
        ['?before_id=m_1', 'before_id'],
        ['?include_debug=maybe', 'include_debug'],
        ['?order=asc', 'order'],
      ];
      for (const [query, param] of cases) {
        const res = await page(s.id, query, s.token);
        assert.equal(res.status, 400, query);
        assert.equal(res.body.error?.code, 'BAD_PARAMETER', query);
        assert.match(res.body.error!.message, new RegExp(param), query);
      }
      assert.equal((await page(s.id, '', other.token)).status, 403, "another session's token");
      assert.equal((await page(s.id, '', 'not-a-key')).status, 401);
      assert.equal((await page('s_nope', '')).status, 404);
      const viaQuery = await t.api('GET', `/sessions/${s.id}/messages?token=${s.token}`, undefined, '');
      assert.equal(viaQuery.status, 200, 'the token may travel in the query, as on WebSockets');
    });

    test('a participant over the message rate gets RATE_LIMITED and its message is dropped; observers cannot send', async () => {
      const { s, bob } = await conversation('rate');
      for (let i = 0; i < 150; i++)
        bob.send({ type: 'message', messageType: 'user_text', data: { i }, ref: `r${i}` });
      // every frame is answered: an ack for each one the burst let through, RATE_LIMITED for the others
      const answer = (f: Record<string, unknown>) =>
        f.type === 'message_ack' || (f.type === 'error' && typeof f.ref === 'string');
      await bob.untilOther((frames) => frames.filter(answer).length >= 150);
      const answers = new Map(
        bob.other
          .filter(answer)
          .map((f) => [String(f.ref), f.type === 'message_ack' ? 'ack' : String(f.code)]),
      );
      const acked = [...answers].filter(([, a]) => a === 'ack').map(([ref]) => Number(ref.slice(1)));
      const refused = [...answers.values()].filter((a) => a === 'RATE_LIMITED').length;
      assert.equal(acked.length + refused, 150);
      // the burst of 100 passes (the bucket may refill by a message or two while the frames arrive)
      assert.ok(acked.length >= 100 && refused >= 45, `${acked.length} acked, ${refused} refused`);
      const error = bob.other.find((f) => f.code === 'RATE_LIMITED') as { message: string };
      assert.match(error.message, /50 a second \(bursts of 100\)/);
      const observer = await t.join(s, { role: 'observer' });
      observer.send({ type: 'message', messageType: 'user_text', data: {}, ref: 'o' });
      assert.equal((await observer.next('error')).code, 'FORBIDDEN');
      await t.settled();
      // exactly what was acked is in the transcript, in order; nothing that was refused
      const recorded: number[] = [];
      let query = '?limit=100';
      for (;;) {
        const res = await page(s.id, query, s.token);
        recorded.unshift(
          ...res.body.messages.filter((m) => m.type === 'user_text').map((m) => (m.data as { i: number }).i),
        );
        if (!res.body.hasMore) break;
        query = `?limit=100&before=${encodeURIComponent(res.body.nextBefore!)}&before_id=${res.body.nextBeforeId}`;
      }
      assert.deepEqual(
        recorded,
        acked.sort((a, b) => a - b),
      );
    });

    test("a participant's sockets share its message rate: a second socket does not double it, nor does reconnecting", async (c) => {
      // a server whose allowance does not refill while the test runs: the burst is all there is
      const db = await createTestDatabase(kind);
      const own = await new TestServer({
        storage: db.storage,
        server: { messageRate: { perSecond: 0.001, burst: 100 } },
        projects: [agentProject('rate-shared', { min: 1, max: 1 })],
      }).start();
      c.after(async () => {
        await own.close();
        await db.drop();
      });
      await own.readyWorkers('rate-shared', 1);
      const s = await own.createSession('rate-shared');
      await own.waitForState(s.id, 'active');
      const { token } = await own.joinToken(s, { identity: 'bob' });
      const sockets = [await own.connect(s, token), await own.connect(s, token)];
      for (let i = 0; i < 150; i++)
        sockets[i % 2]!.send({ type: 'message', messageType: 'user_text', data: { i }, ref: `r${i}` });
      const answer = (f: Record<string, unknown>) =>
        f.type === 'message_ack' || (f.type === 'error' && typeof f.ref === 'string');
      for (const socket of sockets) await socket.untilOther((frames) => frames.filter(answer).length >= 75);
      const answers = sockets.flatMap((socket) => socket.other.filter(answer));
      assert.equal(answers.filter((f) => f.type === 'message_ack').length, 100, 'one burst for both sockets');
      assert.equal(answers.filter((f) => f.code === 'RATE_LIMITED').length, 50);
      // reconnecting does not bring a fresh burst
      for (const socket of sockets) await socket.close(1000);
      const again = await own.connect(s, token);
      for (let i = 0; i < 10; i++)
        again.send({ type: 'message', messageType: 'user_text', data: { i }, ref: `again${i}` });
      await again.untilOther((frames) => frames.filter(answer).length >= 10);
      assert.deepEqual(
        again.other.filter(answer).map((f) => f.code),
        Array(10).fill('RATE_LIMITED'),
      );
    });

    test("identities let in with join do not multiply what a room may send, and a session's participants get join tokens at a bounded rate (admin keys aside)", async (c) => {
      // allowances that do not refill while the test runs: the bursts are all there is
      const db = await createTestDatabase(kind);
      const own = await new TestServer({
        storage: db.storage,
        server: {
          roomMessageRate: { perSecond: 0.001, burst: 30 },
          joinRate: { perSecond: 0.001, burst: 5 },
        },
        projects: [agentProject('rate-room', { min: 1, max: 1 })],
      }).start();
      c.after(async () => {
        await own.close();
        await db.drop();
      });
      await own.readyWorkers('rate-room', 1);
      const s = await own.createSession('rate-room');
      await own.waitForState(s.id, 'active');
      // the viewer lets five in; the sixth join is refused
      const tokens: string[] = [];
      for (let i = 0; i < 5; i++) tokens.push((await own.joinToken(s)).token);
      const sixth = await own.api<{ error: { code: string; message: string } }>(
        'POST',
        `/sessions/${s.id}/join`,
        {},
        s.token,
      );
      assert.equal(sixth.status, 429);
      assert.equal(sixth.body.error.code, 'RATE_LIMITED');
      assert.match(sixth.body.error.message, /at most .* join tokens/);
      // an admin key is not limited
      assert.equal((await own.api('POST', `/sessions/${s.id}/join`, {})).status, 200);
      // five participants, ten messages each, each within its own allowance: the room takes 30 of the 50
      const sockets = await Promise.all(tokens.map((token) => own.connect(s, token)));
      for (const [n, socket] of sockets.entries())
        for (let i = 0; i < 10; i++)
          socket.send({ type: 'message', messageType: 'user_text', data: { n, i }, ref: `r${n}-${i}` });
      const answer = (f: Record<string, unknown>) =>
        f.type === 'message_ack' || (f.type === 'error' && typeof f.ref === 'string');
      for (const socket of sockets) await socket.untilOther((frames) => frames.filter(answer).length >= 10);
      const answers = sockets.flatMap((socket) => socket.other.filter(answer));
      assert.equal(answers.filter((f) => f.type === 'message_ack').length, 30);
      const limited = answers.filter((f) => f.code === 'RATE_LIMITED');
      assert.equal(limited.length, 20);
      assert.match(String(limited[0]?.message), /participants together/);
      for (const socket of sockets) await socket.close(1000);
    });

    test('an agent reads the history with its own token; after a crash the fresh worker gets the transcript and saved state', async () => {
      const { s, agent, viewer } = await conversation('recover', {
        autoRestart: { enabled: true, maxRestarts: 1 },
      });
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'remember milk' }, ref: 'm' });
      await viewer.next('message_ack');
      agent.send('agent_text', { text: 'noted' });
      agent.saveState({ todos: ['milk'] });
      await viewer.waitFor((e) => e.type === 'session.message' && e.message.type === 'agent_text');
      const history = await agent.transcript();
      assert.deepEqual(history.filter((m) => m.type.endsWith('_text')).map(line), [
        'viewer:user_text:{"text":"remember milk"}',
        'agent:agent_text:{"text":"noted"}',
      ]);
      await assert.rejects(agent.history({ limit: 500 }), /limit/);

      const crashed = t.nextEvent(s.id, (e) => e.type === 'session.error');
      t.fake.crash(s.workerId!);
      const error = await crashed;
      assert.equal(error.type === 'session.error' && error.recoverable, true);
      const restarted = await t.waitForState(s.id, 'active');
      assert.notEqual(restarted.workerId, s.workerId);
      const assignment = t.fake.workers.get(restarted.workerId as string)!.assignments[0]!;
      assert.deepEqual(assignment.savedState, { todos: ['milk'] });
      assert.equal(assignment.restarts, 1);
      assert.deepEqual(assignment.transcript?.messages.filter((m) => m.type.endsWith('_text')).map(line), [
        'viewer:user_text:{"text":"remember milk"}',
        'agent:agent_text:{"text":"noted"}',
      ]);
      assert.equal(assignment.transcript?.hasMore, false);
      // the viewer stayed in the room throughout, and saw the crashed agent leave and the fresh one join
      assert.equal(viewer.states.includes('ended'), false);
      await viewer.waitFor(
        (e) => e.type === 'session.participant_joined' && e.participant.identity === restarted.workerId,
      );
      const agents = viewer.events.flatMap((e) =>
        (e.type === 'session.participant_joined' || e.type === 'session.participant_left') &&
        e.participant.kind === 'agent'
          ? [`${e.type.slice(20)} ${e.participant.identity === s.workerId ? 'crashed' : 'fresh'}`]
          : [],
      );
      assert.deepEqual(agents, ['joined crashed', 'left crashed', 'joined fresh']);
      // room messages now go to the fresh agent, and its own are relayed (the crashed one is forgotten)
      const fresh = t.fake.workers.get(restarted.workerId as string)!.sdk;
      const heard = new Promise<Envelope>((resolve) =>
        fresh.on('message', (m) => {
          if (m.type === 'user_text') resolve(m);
        }),
      );
      viewer.send({
        type: 'message',
        messageType: 'user_text',
        data: { text: 'still there?' },
        ref: 'again',
      });
      assert.deepEqual((await heard).data, { text: 'still there?' });
      fresh.send('agent_text', { text: 'yes' });
      const reply = await viewer.waitFor(
        (e) => e.type === 'session.message' && (e.message.data as { text?: string }).text === 'yes',
      );
      assert.equal(reply.type === 'session.message' && reply.message.from.identity, restarted.workerId);
    });
  });
}
