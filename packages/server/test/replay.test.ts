// A reopened session socket hears what it missed: the recorded room messages, arrivals and departures after its
// cursor (`?after=`), in the transcript's order, then `replayed`, then everything live, nothing twice.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type Envelope,
  MAX_REPLAYED_MESSAGES,
  type MessagePage,
  type SessionEvent,
  SocketCloseCode,
} from '@usher/protocol';
import { agentProject, databaseKinds, FrameSocket, TestSocket, useTestServer } from '@usher/testing';

/** The `text` of a room message's data. */
const textOf = (message: unknown) => ((message as Envelope).data as { text?: string }).text;

/** What a socket heard of the room, as the transcript would list it. */
function roomLine(e: SessionEvent): string | null {
  if (e.type === 'session.message') return `${e.message.type} ${e.message.from.identity}`;
  if (e.type === 'session.participant_joined' || e.type === 'session.participant_left')
    return `${e.type.slice('session.'.length)} ${e.participant.identity}`;
  return null;
}

for (const kind of databaseKinds()) {
  describe(`replay on reconnect (${kind})`, () => {
    const { t } = useTestServer(kind);

    async function liveSession(projectId: string) {
      await t.createProject(agentProject(projectId, { min: 1, max: 1 }));
      await t.readyWorkers(projectId, 1);
      const s = await t.createSession(projectId);
      await t.waitForState(s.id, 'active');
      return s;
    }

    test('a reopened socket gets what it missed after its cursor, in order, then `replayed`, then live messages once', async () => {
      const s = await liveSession('replay');
      const agent = t.fake.workers.get(s.workerId!)!.sdk;
      const viewer = await t.connect(s, s.token, { after: 'now' });
      const first = await viewer.next('replayed');
      assert.equal(first.count, 0);
      assert.equal(first.complete, true);
      const alice = await t.joinToken(s, { identity: 'alice' });
      const tab = await t.connect(s, alice.token, { after: 'now' });
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'before the drop' } });
      const seen = await tab.waitFor((e) => e.type === 'session.message');
      const cursor = (seen as Extract<SessionEvent, { type: 'session.message' }>).message;

      // alice's connection drops; meanwhile the room goes on: messages, the agent, bob comes and goes
      await tab.drop();
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'one' } });
      agent.send('agent_text', { text: 'two' });
      agent.send('debug', { tokens: 3 });
      const bob = await t.join(s, { identity: 'bob' });
      await bob.close(1000);
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'three' }, ref: 'last' });
      await viewer.next('message_ack');

      const again = await t.connect(s, alice.token, { after: cursor.at, after_id: cursor.id });
      const mark = await again.next('replayed');
      // the transcript after the cursor, debug messages included (a live socket hears them too)
      const page = await t.api<MessagePage>('GET', `/sessions/${s.id}/messages?limit=100&include_debug=true`);
      const all = page.body.messages;
      // up to where the replay stopped: alice's own return comes after it, live
      const missed = all
        .slice(all.findIndex((m) => m.id === cursor.id) + 1)
        .filter((m) => m.at <= String(mark.upto));
      const lines = (ms: Envelope[]) => ms.map((m) => `${m.type} ${m.from.identity}`);
      const replayed = again.events.map(roomLine).filter((x) => x !== null);
      // the replay comes before the room's current list (which names the viewer and the agent again)
      assert.deepEqual(replayed.slice(0, missed.length), lines(missed));
      assert.ok(
        missed.some((m) => m.type === 'participant_left' && m.from.identity === 'bob'),
        'bob came and went during the gap',
      );
      assert.equal(mark.count, missed.length);
      assert.equal(mark.complete, true);
      assert.equal(
        again.events.filter((e) => e.type === 'session.message' && e.message.id === cursor.id).length,
        0,
        'the message at the cursor is not sent again',
      );

      // then live, once
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'four' } });
      await again.waitFor(
        (e) => e.type === 'session.message' && (e.message.data as { text?: string }).text === 'four',
      );
      const texts = again.events.flatMap((e) =>
        e.type === 'session.message' ? [(e.message.data as { text?: string }).text ?? e.message.type] : [],
      );
      assert.deepEqual(texts, ['one', 'two', 'debug', 'three', 'four']);

      // a socket that asks from its `replayed` mark hears nothing more than what came since
      const later = await t.connect(s, alice.token, { after: String(mark.upto) });
      const laterMark = await later.next('replayed');
      const laterTexts = later.events.flatMap((e) =>
        e.type === 'session.message' ? [(e.message.data as { text?: string }).text] : [],
      );
      assert.deepEqual(laterTexts, ['four']);
      assert.ok(String(laterMark.upto) > String(mark.upto));
    });

    test('a message relayed while the replay is read comes after `replayed`, once', async () => {
      const s = await liveSession('meanwhile');
      const viewer = await t.connect(s, s.token, { after: 'now' });
      const mark = await viewer.next('replayed');
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'missed' } });
      await viewer.waitFor((e) => e.type === 'session.message');
      const recorder = t.server.engine.recorder;
      const read = recorder.missed.bind(recorder);
      const reading = Promise.withResolvers<void>();
      const gate = Promise.withResolvers<void>();
      recorder.missed = async (q) => {
        reading.resolve();
        await gate.promise;
        return read(q);
      };
      const alice = await t.joinToken(s, { identity: 'alice' });
      const url = `${t.url.replace(/^http/, 'ws')}/sessions/${s.id}/ws?${new URLSearchParams({ token: alice.token, after: String(mark.upto) })}`;
      const tab = new TestSocket(url);
      try {
        await reading.promise;
        viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'live' }, ref: 'l' });
        await viewer.next('message_ack');
      } finally {
        gate.resolve();
        recorder.missed = read;
      }
      await tab.waitFor((e) => e.type === 'session.message' && textOf(e.message) === 'live');
      const texts = tab.events.flatMap((e) => (e.type === 'session.message' ? [textOf(e.message)] : []));
      assert.deepEqual(texts, ['missed', 'live']);
      // the replay: the viewer's arrival (after the mark its socket was given) and the message; not `live`
      assert.equal(tab.other.find((m) => m.type === 'replayed')?.count, 2);
      await tab.close();
    });

    test('a socket reopened after its session ended still gets what was said before the end, then `ended` and the close', async () => {
      const s = await liveSession('farewell');
      const agent = t.fake.workers.get(s.workerId!)!.sdk;
      const alice = await t.joinToken(s, { identity: 'alice' });
      const tab = await t.connect(s, alice.token, { after: 'now' });
      const mark = await tab.next('replayed');
      await tab.drop();
      agent.send('agent_text', { text: 'goodbye' });
      await t.nextEvent(s.id, (e) => e.type === 'session.message');
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      const again = await t.connect(s, alice.token, { after: String(mark.upto) });
      const { code } = await again.closed;
      assert.equal(code, 1000);
      const heard = again.events.map((e) =>
        e.type === 'session.message'
          ? `message ${textOf(e.message)}`
          : e.type === 'session.status_changed'
            ? e.status
            : null,
      );
      assert.deepEqual(heard.filter(Boolean), ['message goodbye', 'ended']);
    });

    test('more than the replay holds: the newest are replayed and `replayed` says it is not complete', async () => {
      const s = await liveSession('flood');
      const from = { identity: 'flooder', kind: 'user' as const };
      const first = await t.server.engine.rooms.relayMessage(s.id, from, 'user_text', { n: -1 });
      const total = MAX_REPLAYED_MESSAGES + 5;
      for (let n = 0; n < total; n++)
        await t.server.engine.rooms.relayMessage(s.id, from, 'user_text', { n }, { toWorker: false });
      const socket = await t.connect(s, s.token, { after: first.message.at, after_id: first.message.id });
      const mark = await socket.next('replayed');
      assert.equal(mark.complete, false);
      assert.equal(mark.count, MAX_REPLAYED_MESSAGES);
      const ns = socket.events.flatMap((e) =>
        e.type === 'session.message' ? [(e.message.data as { n: number }).n] : [],
      );
      assert.equal(ns.length, MAX_REPLAYED_MESSAGES);
      assert.equal(ns[0], total - MAX_REPLAYED_MESSAGES);
      assert.equal(ns[ns.length - 1], total - 1);
    });

    test('a worker that comes back with its session hears what its room said meanwhile, then `replayed`, then live frames', async () => {
      await t.createProject(agentProject('by-hand', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
      const { w, ownToken, workerUrl } = await t.poolWorker('by-hand');
      await t.readyWorkers('by-hand', 1);
      const s = await t.createSession('by-hand');
      await w.waitFor((f) => f.type === 'assign');
      w.send({ type: 'session_started', sessionId: s.id });
      await t.waitForState(s.id, 'active');
      const viewer = await t.connect(s);
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'one' } });
      const heard = await w.waitFor((f) => f.type === 'message');
      const cursor = heard.message as Envelope;

      // the worker's connection drops (its session stays: the liveness clock does not move); the room goes on
      w.ws.terminate();
      await w.closed;
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'two' } });
      // the agent's own words (as a LiveKit data packet of its would be recorded) are not told back to it
      await t.server.engine.rooms.relayMessage(s.id, { identity: s.workerId!, kind: 'agent' }, 'agent_text', {
        text: 'mine',
      });
      const alice = await t.join(s, { identity: 'alice' });
      await alice.close(1000);
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'three' }, ref: 'r' });
      await viewer.next('message_ack');

      // the replay's read waits until a live message has gone through the room: that one must come after it
      const recorder = t.server.engine.recorder;
      const read = recorder.missed.bind(recorder);
      const gate = Promise.withResolvers<void>();
      recorder.missed = async (q) => {
        await gate.promise;
        return read(q);
      };
      const back = new FrameSocket(workerUrl);
      try {
        await back.opened;
        back.send({
          type: 'register',
          token: ownToken,
          after: { sessionId: s.id, at: cursor.at, id: cursor.id },
        });
        await back.waitFor((f) => f.type === 'registered');
        viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'four' }, ref: 'live' });
        await viewer.waitFor((e) => e.type === 'session.message' && textOf(e.message) === 'four');
      } finally {
        gate.resolve();
        recorder.missed = read;
      }
      const mark = await back.waitFor((f) => f.type === 'replayed');
      await back.waitFor((f) => f.type === 'message' && textOf(f.message) === 'four');
      const told = back.frames.flatMap((f) => {
        if (f.type === 'message') return [`message ${textOf(f.message)}`];
        if (f.type === 'participant_joined' || f.type === 'participant_left')
          return [`${f.type} ${(f.participant as { identity: string }).identity}`];
        return f.type === 'registered' || f.type === 'replayed' ? [f.type] : [];
      });
      assert.deepEqual(told, [
        'registered',
        'message two',
        'participant_joined alice',
        'participant_left alice',
        'message three',
        'replayed',
        'message four',
      ]);
      assert.equal(mark.count, 4);
      assert.equal(mark.complete, true);
      assert.equal(mark.sessionId, s.id);
      // a worker that registers without a cursor is told where the room stands, for the next time, and the
      // session it is on
      const registered = back.frames.find((f) => f.type === 'registered');
      assert.equal(typeof registered?.upto, 'string');
      assert.equal(registered?.sessionId, s.id);
      await back.close();
    });

    test("a worker's cursor that is not one gets an error frame after `registered`, and nothing is replayed", async () => {
      await t.createProject(
        agentProject('bad-cursor', { min: 0, max: 1 }, { worker: { driver: 'external' } }),
      );
      const { w, ownToken, workerUrl } = await t.poolWorker('bad-cursor');
      w.ws.terminate();
      await w.closed;
      const back = new FrameSocket(workerUrl);
      await back.opened;
      back.send({ type: 'register', token: ownToken, after: { sessionId: 's_x', at: 'yesterday' } });
      const error = await back.waitFor((f) => f.type === 'error');
      assert.equal(error.code, 'BAD_REQUEST');
      assert.match(String(error.message), /register\.after\.at/);
      assert.deepEqual(
        back.frames.map((f) => f.type),
        ['registered', 'error'],
      );
      await back.close();
      // a good cursor for a session the worker no longer serves (it ended while it was away): nothing, quietly
      const later = new FrameSocket(workerUrl);
      await later.opened;
      later.send({
        type: 'register',
        token: ownToken,
        after: { sessionId: 's_x', at: '2026-01-01T00:00:00Z' },
      });
      // it is told it is on no session, so that it lets the one it holds go
      assert.equal((await later.waitFor((f) => f.type === 'registered')).sessionId, null);
      later.send({ type: 'register', token: ownToken });
      const next = await later.waitFor((f) => f.type === 'error');
      assert.match(String(next.message), /already registered/, 'the first error is the repeated register');
      await later.close();
    });

    test('a cursor that is not one is refused with BAD_PARAMETER and 1008', async () => {
      const s = await liveSession('cursor');
      const queries: Record<string, string>[] = [
        { after: 'yesterday' },
        { after_id: 'm_1' },
        { after: 'now', after_id: 'm_1' },
      ];
      for (const query of queries) {
        const socket = await t.connect(s, s.token, query);
        const { code } = await socket.closed;
        assert.equal(code, SocketCloseCode.PolicyViolation, JSON.stringify(query));
        const error = socket.other.find((m) => m.type === 'error');
        assert.equal(error?.code, 'BAD_PARAMETER', JSON.stringify(query));
        assert.match(String(error?.message), /after/);
      }
      // the session goes on
      assert.equal((await t.session(s.id)).state, 'active');
    });
  });
}
