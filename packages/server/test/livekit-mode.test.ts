// LiveKit mode through the whole server: a project with `rooms: livekit` gets a LiveKit room per session (the
// fake RoomService of livekit/fake-server.ts over real HTTP), LiveKit tokens for its users and its agent, signed
// webhooks as participant events (each once), the recorder's data packets relayed and recorded, and the room
// deleted at the end. The recorder's LiveKit connection is a stand-in Room (no LiveKit server runs here).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { MessagePage } from '@usher/protocol';
import { agentProject, createTestDatabase, databaseKinds, TestServer, useTestServer } from '@usher/testing';
import { FakeLiveKitServer } from '../src/livekit/fake-server.ts';
import { LiveKitMode } from '../src/livekit/mode.ts';
import type { PacketSender, RecorderRoom } from '../src/livekit/recorder.ts';
import { ROLE_ATTRIBUTE } from '../src/livekit/roles.ts';
import { WEBHOOK_PATH } from '../src/livekit/webhooks.ts';

const keys = { apiKey: 'APIusher', apiSecret: 'livekit-secret-of-at-least-32-characters' };

class StandInRoom extends EventEmitter implements RecorderRoom {
  url = '';
  left = false;
  async connect(url: string) {
    this.url = url;
  }
  async disconnect() {
    this.left = true;
  }
}

const packet = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

for (const kind of databaseKinds()) {
  describe(`LiveKit mode (${kind})`, () => {
    let fake: FakeLiveKitServer;
    const recorderRooms: StandInRoom[] = [];
    before(async () => {
      fake = await FakeLiveKitServer.start(keys);
    });
    after(() => fake.close());
    const { t } = useTestServer(kind, {
      livekit: () =>
        new LiveKitMode({
          settings: { url: fake.url, ...keys },
          tokenTtlMs: 600_000,
          createRecorderRoom: () => {
            const room = new StandInRoom();
            recorderRooms.push(room);
            return room;
          },
        }),
    });
    before(() => {
      fake.webhookUrl = `${t.url}${WEBHOOK_PATH}`;
    });

    test('a session gets its room, tokens, participant events, recorded packets, and loses the room at the end', async () => {
      await t.createProject(agentProject('lk', { min: 1, max: 1 }, { rooms: 'livekit' }));
      await t.readyWorkers('lk', 1);
      const s = await t.createSession('lk');
      await t.waitForState(s.id, 'active');
      const worker = t.fake.workers.get(s.workerId!)!;
      const assignment = worker.assignments[0]!;
      assert.equal(assignment.livekit?.url, fake.url);
      assert.deepEqual(
        fake.rooms().map((r) => r.name),
        [s.id],
        "the room is named after the session and exists before the agent's assignment",
      );
      assert.equal(recorderRooms.length, 1);
      assert.equal(recorderRooms[0]!.url, fake.url, 'the recorder joined the room');
      const heardByAgent: string[] = [];
      worker.sdk.on('message', (m) => heardByAgent.push(m.type));

      // the user joins through Usher and connects to LiveKit with the token it got
      const join = await t.api<{ token: string; url: string; identity: string }>(
        'POST',
        `/sessions/${s.id}/join`,
        { identity: 'alice' },
        s.token,
      );
      assert.equal(join.status, 200);
      assert.equal(join.body.url, fake.url);
      const joined = t.nextEvent(
        s.id,
        (e) => e.type === 'session.participant_joined' && e.participant.identity === 'alice',
      );
      const sent = await fake.join(join.body.token);
      assert.deepEqual(
        sent.map((w) => [w.event, w.status]),
        [['participant_joined', 200]],
      );
      const aliceJoined = await joined;
      assert.equal(aliceJoined.type === 'session.participant_joined' && aliceJoined.participant.kind, 'user');
      await fake.join(assignment.livekit!.token); // the agent's token is accepted as an agent's
      assert.deepEqual(fake.rooms()[0]!.participants.sort(), ['alice', s.workerId!].sort());

      // a webhook LiveKit sends twice is handled once
      const repeat = await fake.signedWebhook('participant_left', s.id, 'alice');
      const left: string[] = [];
      const stop = t.engine.hub.subscribe(s.id, (e) => {
        if (e.type === 'session.participant_left') left.push(e.participant.identity);
      });
      assert.equal((await fake.deliver('participant_left', repeat.body, repeat.authorization)).status, 200);
      assert.equal((await fake.deliver('participant_left', repeat.body, repeat.authorization)).status, 200);
      stop();
      assert.deepEqual(left, ['alice']);

      // the recorder reads data packets: relayed to Usher's sockets and recorded, not sent to the agent again
      const viewer = await t.connect(s);
      const alice: PacketSender = { identity: 'alice', attributes: { [ROLE_ATTRIBUTE]: 'user' } };
      recorderRooms[0]!.emit('dataReceived', packet({ type: 'user_text', data: { text: 'hi' } }), alice);
      recorderRooms[0]!.emit('dataReceived', packet({ type: 'audio_level', data: 0.4 }), alice);
      const relayed = await viewer.waitFor(
        (e) => e.type === 'session.message' && e.message.type === 'audio_level',
      );
      assert.equal(relayed.type === 'session.message' && relayed.message.from.identity, 'alice');
      await t.settled();
      const transcript = await t.api<MessagePage>('GET', `/sessions/${s.id}/messages`, undefined, s.token);
      assert.deepEqual(
        transcript.body.messages.filter((m) => m.type === 'user_text').map((m) => [m.from, m.data]),
        [[{ identity: 'alice', kind: 'user' }, { text: 'hi' }]],
      );
      assert.deepEqual(
        heardByAgent,
        [],
        'the agent is in the LiveKit room: Usher does not send it the packet again',
      );

      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      await t.settled();
      assert.deepEqual(fake.rooms(), [], 'the room is deleted at the end');
      assert.equal(recorderRooms[0]!.left, true, 'the recorder left it');
      assert.ok(fake.calls.some((c) => c.method === 'DeleteRoom' && c.status === 200));
    });

    test('LiveKit closing the room ends the live session', async () => {
      await t.createProject(agentProject('lk-close', { min: 1, max: 1 }, { rooms: 'livekit' }));
      await t.readyWorkers('lk-close', 1);
      const s = await t.createSession('lk-close');
      await t.waitForState(s.id, 'active');
      await fake.closeRoom(s.id);
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endReason, 'completed');
      const timeline = (await t.session(s.id)).timeline as { cause: string }[];
      assert.ok(timeline.some((e) => e.cause === 'livekit:room_finished'));
    });
  });
}

describe('LiveKit mode without LiveKit settings', () => {
  test('a project cannot use LiveKit rooms on a server that has no LiveKit', async () => {
    const db = await createTestDatabase('sqlite');
    const t = await new TestServer({ storage: db.storage }).start();
    try {
      const res = await t.api<{ error: { code: string; message: string } }>('POST', '/projects', {
        ...agentProject('nolk', { min: 0, max: 1 }),
        rooms: 'livekit',
      });
      assert.equal(res.status, 400);
      assert.match(res.body.error.message, /livekit\.url/);
    } finally {
      await t.close();
      await db.drop();
    }
  });
});
