// Participants joining and leaving a session's room: events to every socket, and frames to the worker.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SessionEvent } from '@usher/protocol';
import { agentProject, databaseKinds, useTestServer } from '@usher/testing';
import { nextFrame } from './helpers.ts';

const who = (e: SessionEvent) =>
  e.type === 'session.participant_joined' || e.type === 'session.participant_left'
    ? `${e.type === 'session.participant_joined' ? 'joined' : 'left'} ${e.participant.kind}`
    : null;

for (const kind of databaseKinds()) {
  describe(`participants (${kind})`, () => {
    const { t } = useTestServer(kind);

    test('the agent, the viewer and a user join and leave; late sockets see who is there; the worker hears of the humans', async () => {
      await t.createProject(agentProject('room', { min: 1, max: 1 }));
      await t.readyWorkers('room', 1);
      const s = await t.createSession('room');
      await t.waitForState(s.id, 'active');
      const worker = t.fake.workers.get(s.workerId!)!;
      const heard: string[] = [];
      worker.sdk.on('participantJoined', (p) => heard.push(`joined ${p.kind}`));
      worker.sdk.on('participantLeft', (p) => heard.push(`left ${p.kind}`));

      // the viewer arrives after the agent: the snapshot lists the agent, then the viewer's own join
      const viewer = await t.connect(s);
      await viewer.waitFor((e) => who(e) === 'joined viewer');
      assert.deepEqual(viewer.events.map(who).filter(Boolean), ['joined agent', 'joined viewer']);

      const join = await t.joinToken(s, { identity: 'alice' });
      assert.equal(join.identity, 'alice');
      const tab1 = await t.connect(s, join.token);
      const joined = await viewer.waitFor(
        (e) => e.type === 'session.participant_joined' && e.participant.identity === 'alice',
      );
      assert.equal(joined.type === 'session.participant_joined' && joined.participant.kind, 'user');
      const tab2 = await t.connect(s, join.token); // a second tab of the same user is not a new participant
      await tab1.close(1000);
      await tab2.close(1000);
      await viewer.waitFor(
        (e) => e.type === 'session.participant_left' && e.participant.identity === 'alice',
      );

      const agentLeft = t.nextEvent(s.id, (e) => who(e) === 'left agent');
      await t.api('POST', `/sessions/${s.id}/end`);
      await agentLeft;
      await viewer.closed;
      assert.deepEqual(viewer.events.map(who).filter(Boolean), [
        'joined agent',
        'joined viewer',
        'joined user',
        'left user',
        'left agent',
      ]);
      assert.deepEqual(heard, ['joined viewer', 'joined user', 'left user']);
    });

    test("an ended session's transcript holds every departure, even of a socket still closing", async () => {
      await t.createProject(agentProject('farewell', { min: 1, max: 1 }));
      await t.readyWorkers('farewell', 1);
      const s = await t.createSession('farewell');
      await t.waitForState(s.id, 'active');
      const viewer = await t.connect(s);
      const dora = await t.join(s, { identity: 'dora' });
      await viewer.waitFor(
        (e) => e.type === 'session.participant_joined' && e.participant.identity === 'dora',
      );
      // dora's client stops reading: the server's close frame goes unanswered, her socket stays half closed
      dora.ws.pause();

      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      const page = await t.api<{ messages: { type: string; from: { kind: string } }[] }>(
        'GET',
        `/sessions/${s.id}/messages?limit=100`,
      );
      const left = page.body.messages.filter((m) => m.type === 'participant_left').map((m) => m.from.kind);
      assert.deepEqual(left.sort(), ['agent', 'user', 'viewer']);
      dora.ws.resume();
      await dora.closed;
      // the socket's own close announces nobody twice
      const again = await t.api<{ messages: { type: string }[] }>(
        'GET',
        `/sessions/${s.id}/messages?limit=100`,
      );
      assert.equal(again.body.messages.filter((m) => m.type === 'participant_left').length, 3);
    });

    test('an agent that greets from onConnect is recorded as arrived before its greeting', async () => {
      await t.createProject(agentProject('greets', { min: 0, max: 1 }));
      t.fake.behaviour = () => ({ greeting: 'Hello!' });
      // the greeting comes as the session starts: waited for before the session is asked for
      let off = () => {};
      const greeted = new Promise<void>((resolve) => {
        off = t.server.hub.subscribeAll((e) => {
          if (e.type === 'session.message' && e.message.type === 'agent_text') resolve();
        });
      });
      try {
        const s = await t.createSession('greets');
        await greeted;
        const page = await t.api<{ messages: { type: string; from: { identity: string } }[] }>(
          'GET',
          `/sessions/${s.id}/messages?limit=100`,
        );
        const ofAgent = page.body.messages.filter((m) => m.from.identity === s.workerId);
        assert.deepEqual(
          ofAgent.map((m) => m.type),
          ['participant_joined', 'agent_text'],
        );
        await t.api('POST', `/sessions/${s.id}/end`);
      } finally {
        off();
        t.fake.behaviour = () => ({});
      }
    });

    test('a message of the agent still on the wire as its session ends does not bring it back to the room', async () => {
      await t.createProject(agentProject('late-word', { min: 0, max: 1 }));
      const s = await t.createSession('late-word');
      await t.waitForState(s.id, 'active');
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      const agent = s.workerId!;
      // the worker still names the session while it stops: its last word is taken as its own
      await t.engine
        .workerFrame(agent, {
          type: 'message',
          sessionId: s.id,
          messageType: 'agent_text',
          data: { text: 'bye' },
        })
        .catch(() => {});
      const page = await t.api<{ messages: { type: string; from: { identity: string } }[] }>(
        'GET',
        `/sessions/${s.id}/messages?limit=100`,
      );
      assert.deepEqual(
        page.body.messages
          .filter((m) => m.from.identity === agent && m.type.startsWith('participant_'))
          .map((m) => m.type),
        ['participant_joined', 'participant_left'],
      );
      assert.deepEqual(
        t.engine.rooms.participants(s.id).map((p) => p.identity),
        [],
        'nobody is left in the room of an ended session',
      );
    });

    test('an agent that cannot set its session up says so: 4003 launch_failed at once, with AGENT_START_FAILED', async () => {
      await t.createProject(agentProject('no-start', { min: 0, max: 1 }));
      t.fake.behaviour = () => ({ startSessions: false });
      try {
        const s = await t.createSession('no-start');
        const error = await t.nextEvent(s.id, (e) => e.type === 'session.error');
        assert.ok(error.type === 'session.error');
        assert.equal(error.code, 'AGENT_START_FAILED');
        assert.equal(error.recoverable, false);
        assert.match(error.message, /this fake worker refuses sessions/);
        const ended = await t.waitForState(s.id, 'ended');
        assert.deepEqual([ended.endCode, ended.endReason], [4003, 'launch_failed']);
        const timeline = (await t.session(s.id)).timeline as { cause: string }[];
        assert.ok(timeline.some((e) => /^worker:session_failed: onConnect threw/.test(e.cause)));
      } finally {
        t.fake.behaviour = () => ({});
      }
    });

    test("a room message cannot pass for an arrival or a departure: those types are the server's own", async () => {
      await t.createProject(agentProject('forge', { min: 1, max: 1 }));
      await t.readyWorkers('forge', 1);
      const s = await t.createSession('forge');
      await t.waitForState(s.id, 'active');
      const eve = await t.join(s, { identity: 'eve' });
      await eve.waitFor((e) => e.type === 'session.participant_joined' && e.participant.identity === 'eve');
      for (const messageType of ['participant_left', 'participant_joined']) {
        const from = eve.other.length;
        eve.send({
          type: 'message',
          messageType,
          data: { participant: { identity: 'viewer', kind: 'viewer' } },
          ref: messageType,
        });
        const err = await nextFrame(eve, (f) => f.type === 'error' && f.ref === messageType, from);
        assert.equal(err.code, 'BAD_REQUEST');
        assert.match(String(err.message), /written by the server/);
      }
      // an ordinary message still goes through, after the refused ones
      eve.send({ type: 'message', messageType: 'user_text', data: 'hi', ref: 'ok' });
      await nextFrame(eve, (f) => f.type === 'message_ack' && f.ref === 'ok');
      const page = await t.api<{ messages: { type: string; from: { identity: string } }[] }>(
        'GET',
        `/sessions/${s.id}/messages?limit=100`,
      );
      assert.deepEqual(
        page.body.messages
          .filter((m) => m.type.startsWith('participant_'))
          .map((m) => `${m.type} ${m.from.identity}`),
        [`participant_joined ${s.workerId}`, 'participant_joined eve'],
        'only the server wrote arrivals, and nobody left',
      );
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('the agent pauses and resumes its own session, a user pauses it with their token, and the paused timeout ends it', async () => {
      await t.createProject(agentProject('pausing', { min: 1, max: 1 }, { timeouts: { pausedMs: 30_000 } }));
      await t.readyWorkers('pausing', 1);
      const s = await t.createSession('pausing');
      await t.waitForState(s.id, 'active');
      const agent = t.fake.workers.get(s.workerId!)!.sdk;
      const viewer = await t.connect(s);
      const states: string[] = [];
      agent.on('sessionState', (i) => states.push(i.state));

      agent.pause();
      await viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'paused');
      agent.resume();
      await viewer.waitFor(
        (e) => e.type === 'session.status_changed' && e.status === 'active' && e.cause === 'worker:resume',
      );
      const join = await t.joinToken(s, { identity: 'carol' });
      const paused = await t.api('POST', `/sessions/${s.id}/pause`, undefined, join.token);
      assert.equal(paused.status, 200);
      assert.equal(paused.body.state, 'paused');
      const observer = await t.joinToken(s, { role: 'observer' });
      assert.equal((await t.api('POST', `/sessions/${s.id}/resume`, undefined, observer.token)).status, 403);

      await t.advance(30_000);
      const ended = await t.waitForState(s.id, 'ended');
      assert.deepEqual([ended.endCode, ended.endReason], [4004, 'paused_timeout']);
      const causes = ((await t.session(s.id)).timeline as { to: string; cause: string }[]).map(
        (e) => `${e.to} ${e.cause}`,
      );
      assert.deepEqual(causes.slice(3), [
        'paused worker:pause',
        'active worker:resume',
        'paused user:pause',
        'ending timer:paused',
        'ended worker:stopped',
      ]);
      assert.deepEqual(states.slice(0, 3), ['paused', 'active', 'paused']);
    });
  });
}
