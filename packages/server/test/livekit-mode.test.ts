// LiveKit mode through the whole server: a project with `rooms: livekit` gets a LiveKit room per session (the
// fake RoomService of livekit/fake-server.ts over real HTTP), LiveKit tokens for its users and its agent, signed
// webhooks as participant events (each once), the recorder's data packets relayed and recorded, and the room
// deleted at the end; the recorder back in the room after it lost its connection, and after a restart. The
// recorder's LiveKit connection is a stand-in Room (no LiveKit server runs here).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { MessagePage } from '@usher/protocol';
import {
  agentProject,
  createTestDatabase,
  databaseKinds,
  FakeDriver,
  TestServer,
  useTestServer,
} from '@usher/testing';
import { decodeJwt } from 'jose';
import { FakeLiveKitServer } from '../src/livekit/fake-server.ts';
import { LiveKitMode } from '../src/livekit/mode.ts';
import type { PacketSender, RecorderRoom } from '../src/livekit/recorder.ts';
import { RECORDER_IDENTITY, ROLE_ATTRIBUTE } from '../src/livekit/roles.ts';
import { LiveKitRooms } from '../src/livekit/rooms.ts';
import { LiveKitTokens } from '../src/livekit/tokens.ts';
import { WEBHOOK_PATH } from '../src/livekit/webhooks.ts';
import { freePort } from './fixtures/server-child.ts';

const keys = { apiKey: 'APIusher', apiSecret: 'livekit-secret-of-at-least-32-characters' };

class StandInRoom extends EventEmitter implements RecorderRoom {
  url = '';
  left = false;
  /** when set, the recorder shows in the fake's room while it is connected (as in LiveKit) */
  readonly fake: FakeLiveKitServer | undefined;
  constructor(fake?: FakeLiveKitServer) {
    super();
    this.fake = fake;
  }
  /** the LiveKit room its token is for */
  room = '';
  async connect(url: string, token: string) {
    this.url = url;
    this.room = (decodeJwt(token) as { video: { room: string } }).video.room;
    await this.fake?.join(token);
  }
  async disconnect() {
    this.left = true;
    const room = this.fake?.rooms().find((r) => r.name === this.room);
    if (room?.participants.includes(RECORDER_IDENTITY)) await this.fake!.leave(room.name, RECORDER_IDENTITY);
  }
}

/** The stand-in rooms made so far, and the next one to be made. */
class StandIns {
  readonly made: StandInRoom[] = [];
  #waiting: ((room: StandInRoom) => void)[] = [];
  readonly fake: FakeLiveKitServer | undefined;

  constructor(fake?: FakeLiveKitServer) {
    this.fake = fake;
  }

  create = (): StandInRoom => {
    const room = new StandInRoom(this.fake);
    this.made.push(room);
    for (const w of this.#waiting.splice(0)) w(room);
    return room;
  };

  next(): Promise<StandInRoom> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
}

/** LiveKit mode on the fake, its recorder connecting through stand-ins, joining again at once when it lost a room. */
const liveKitMode = (fake: FakeLiveKitServer, standIns: StandIns) =>
  new LiveKitMode({
    settings: { url: fake.url, ...keys },
    tokenTtlMs: 600_000,
    rejoinDelaysMs: [0],
    presentRecheckMs: 0,
    createRecorderRoom: standIns.create,
  });

/** A recorder's token for the session's room, as another server's recorder would have. */
const recorderToken = (sessionId: string) =>
  new LiveKitTokens(keys).participantToken({
    sessionId,
    identity: RECORDER_IDENTITY,
    kind: 'recorder',
    ttlMs: 60_000,
  });

/** A live session of a new LiveKit project with one warm worker, on server t. */
async function liveKitSession(t: TestServer, projectId: string): Promise<{ id: string; token: string }> {
  await t.createProject(agentProject(projectId, { min: 1, max: 1 }, { rooms: 'livekit' }));
  await t.readyWorkers(projectId, 1);
  const s = await t.createSession(projectId);
  await t.waitForState(s.id, 'active');
  return s;
}

/** Ends the session through the API and waits until it has ended. */
async function endSession(t: TestServer, s: { id: string }): Promise<void> {
  await t.api('POST', `/sessions/${s.id}/end`);
  await t.waitForState(s.id, 'ended');
}

const packet = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const alice: PacketSender = { identity: 'alice', attributes: { [ROLE_ATTRIBUTE]: 'user' } };

const recordedTexts = async (t: TestServer, s: { id: string; token: string }) => {
  await t.settled();
  const page = await t.api<MessagePage>('GET', `/sessions/${s.id}/messages`, undefined, s.token);
  return page.body.messages
    .filter((m) => m.type === 'user_text')
    .map((m) => (m.data as { text: string }).text);
};

for (const kind of databaseKinds()) {
  describe(`LiveKit mode (${kind})`, () => {
    let fake: FakeLiveKitServer;
    const standIns = new StandIns();
    const recorderRooms = standIns.made;
    let mode!: LiveKitMode;
    before(async () => {
      fake = await FakeLiveKitServer.start(keys);
    });
    after(() => fake.close());
    const { t } = useTestServer(kind, {
      livekit: () => {
        mode = liveKitMode(fake, standIns);
        return mode;
      },
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

      await endSession(t, s);
      await t.settled();
      assert.deepEqual(fake.rooms(), [], 'the room is deleted at the end');
      assert.equal(recorderRooms[0]!.left, true, 'the recorder left it');
      assert.ok(fake.calls.some((c) => c.method === 'DeleteRoom' && c.status === 200));
    });

    test("a recorder that lost its connection joins again; one replaced by another server's does not", async () => {
      const s = await liveKitSession(t, 'lk-lost');
      const first = recorderRooms.at(-1)!;
      first.emit('dataReceived', packet({ type: 'user_text', data: { text: 'before' } }), alice);

      // the connection dropped, and LiveKit's SDK gave up resuming it
      const back = standIns.next();
      first.emit('disconnected', 'SIGNAL_CLOSE');
      assert.equal(mode.rejoining(s.id), true);
      const second = await back;
      await mode.settled();
      assert.equal(second.url, fake.url);
      assert.deepEqual(mode.recorder.sessions(), [s.id]);
      first.emit('dataReceived', packet({ type: 'user_text', data: { text: 'lost' } }), alice);
      second.emit('dataReceived', packet({ type: 'user_text', data: { text: 'after' } }), alice);
      assert.deepEqual(
        await recordedTexts(t, s),
        ['before', 'after'],
        'the lost connection is not listened to; the new one is recorded',
      );

      // another server's recorder took the identity over: this one stays out
      second.emit('disconnected', 'DUPLICATE_IDENTITY');
      assert.equal(mode.rejoining(s.id), false);
      assert.deepEqual(mode.recorder.sessions(), []);
      await endSession(t, s);
    });

    test('a server that adopts a dead one puts a recorder back in the live rooms that have none', async () => {
      const s = await liveKitSession(t, 'lk-adopt');
      // the recorder in the room went with the server that died
      await mode.recorder.leave(s.id);
      const made = recorderRooms.length;
      await t.engine.adoptServer('a-dead-server');
      await mode.settled();
      assert.equal(recorderRooms.length, made + 1);
      assert.ok(mode.recorder.holds(s.id));
      await endSession(t, s);
    });

    test('a recorder LiveKit still lists is looked for again: one that died is replaced once LiveKit lets it go', async () => {
      const s = await liveKitSession(t, 'lk-ghost');
      // the recorder of a server that crashed: LiveKit lists it until its departure timeout
      await mode.recorder.leave(s.id);
      await fake.join(await recorderToken(s.id));
      const listed: boolean[] = [];
      const list = mode.rooms.listParticipants.bind(mode.rooms);
      mode.rooms.listParticipants = async (room) => {
        const present = await list(room);
        listed.push(present.some((p) => p.identity === RECORDER_IDENTITY));
        // LiveKit lets the dead participant go
        if (listed.length === 1) await fake.leave(room, RECORDER_IDENTITY);
        return present;
      };
      try {
        await t.engine.adoptServer('the-crashed-server');
        await mode.settled();
      } finally {
        mode.rooms.listParticipants = list;
      }
      assert.deepEqual(listed, [true, false], 'listed at the first look, gone at the second');
      assert.ok(mode.recorder.holds(s.id), 'the recorder is back');
      await endSession(t, s);
    });

    test('a recorder that loses the room while it is joining again joins once more', async () => {
      const s = await liveKitSession(t, 'lk-flap');
      const made = recorderRooms.length;
      // the next connection drops as soon as it is made, before the attempt that made it is over
      const flapping = standIns.next().then((room) => {
        const connect = room.connect.bind(room);
        room.connect = async (url, token) => {
          await connect(url, token);
          queueMicrotask(() => room.emit('disconnected', 'SIGNAL_CLOSE'));
        };
      });
      recorderRooms.at(-1)!.emit('disconnected', 'SIGNAL_CLOSE');
      await flapping;
      await mode.settled();
      assert.equal(recorderRooms.length, made + 2, 'a connection that dropped, then one that held');
      assert.ok(mode.recorder.holds(s.id));
      assert.equal(mode.rejoining(s.id), false);
      await endSession(t, s);
    });

    test('a room made for a session that ended meanwhile is deleted again, without its recorder', async () => {
      const s = await liveKitSession(t, 'lk-late');
      await endSession(t, s);
      await t.settled();
      assert.equal(
        fake.rooms().some((r) => r.name === s.id),
        false,
      );
      // the agent's access, on its way since before the end, opens the room late
      await mode.access(s.id, 'w_late', 'agent');
      assert.equal(
        fake.rooms().some((r) => r.name === s.id),
        false,
        'the room is gone again',
      );
      assert.equal(mode.recorder.holds(s.id), false);
    });

    test('a room lasts the reconnect window after its last participant left; a room_finished ends only the live session whose room it was', async () => {
      const s = await liveKitSession(t, 'lk-depart');
      assert.equal(
        fake.rooms().find((r) => r.name === s.id)?.departureTimeout,
        60,
        "the project's reconnect window (60 s), not LiveKit's 20 s",
      );
      // a late room_finished of an earlier room of the same name: the room is there now
      const late = await fake.signedWebhook('room_finished', s.id);
      assert.equal((await fake.deliver('room_finished', late.body, late.authorization)).status, 200);
      // a room LiveKit made for a user who joined a queued session, and closed when they left
      const queued = await t.createSession('lk-depart');
      assert.equal(queued.state, 'queued');
      const early = await fake.signedWebhook('room_finished', queued.id);
      assert.equal((await fake.deliver('room_finished', early.body, early.authorization)).status, 200);
      await t.settled();
      assert.equal((await t.session(s.id)).state, 'active');
      assert.equal((await t.session(queued.id)).state, 'queued');
      await t.api('POST', `/sessions/${queued.id}/end`);
      await endSession(t, s);
    });

    test("LiveKit's news of rooms that are no live session's is not recorded: an ended session's room made again is deleted", async () => {
      const s = await liveKitSession(t, 'lk-stray');
      const join = await t.api<{ token: string }>('POST', `/sessions/${s.id}/join`, { identity: 'mallory' });
      await endSession(t, s);
      const before = await t.api<MessagePage>('GET', `/sessions/${s.id}/messages?limit=100`);
      // mallory's token is still valid: LiveKit makes the room again and says she joined
      await fake.join(join.body.token);
      // and a room of another application on the same LiveKit server
      const other = await fake.signedWebhook('participant_joined', 'not-a-session');
      assert.equal((await fake.deliver('participant_joined', other.body, other.authorization)).status, 200);
      await t.settled();
      assert.deepEqual(
        fake.rooms().map((r) => r.name),
        [],
        "the ended session's room was deleted again",
      );
      const after = await t.api<MessagePage>('GET', `/sessions/${s.id}/messages?limit=100`);
      assert.deepEqual(after.body.messages, before.body.messages, 'nothing was added to its transcript');
      const elsewhere = await t.api('GET', '/sessions/not-a-session/messages');
      assert.equal(elsewhere.status, 404);
    });

    test("a participant's data packets are held to the room message rate, as on Usher's own sockets", async () => {
      const s = await liveKitSession(t, 'lk-flood');
      const room = recorderRooms.at(-1)!;
      const kept: string[] = [];
      const stop = t.engine.hub.subscribe(s.id, (e) => {
        if (e.type === 'session.message') kept.push((e.message.data as { text: string }).text);
      });
      for (let i = 0; i < 300; i++)
        room.emit('dataReceived', packet({ type: 'user_text', data: { text: `${i}` } }), alice);
      await t.settled();
      stop();
      // the burst (100) goes through, the rest of this instant's flood does not
      assert.ok(kept.length >= 100 && kept.length < 300, `${kept.length} of 300 relayed`);
      assert.deepEqual(
        kept.slice(0, 100),
        Array.from({ length: 100 }, (_, i) => `${i}`),
      );
      await endSession(t, s);
    });

    test('auto-restart puts the crashed agent out of the room before the fresh one comes', async () => {
      await t.createProject(
        agentProject(
          'lk-restart',
          { min: 1, max: 2 },
          { rooms: 'livekit', autoRestart: { enabled: true, maxRestarts: 1 } },
        ),
      );
      await t.readyWorkers('lk-restart', 1);
      const s = await t.createSession('lk-restart');
      const crashed = (await t.waitForState(s.id, 'active')).workerId as string;
      // the agent is in the LiveKit room, and stays connected to it while its link to Usher is gone
      await fake.join(t.fake.workers.get(crashed)!.assignments[0]!.livekit!.token);
      const inRoom = () => fake.rooms().find((r) => r.name === s.id)?.participants ?? [];
      assert.ok(inRoom().includes(crashed));
      const again = t.nextEvent(s.id, (e) => e.type === 'session.status_changed' && e.status === 'active');
      t.fake.crash(crashed);
      await again;
      assert.notEqual((await t.session(s.id)).workerId, crashed);
      await t.settled();
      assert.ok(!inRoom().includes(crashed), 'the crashed agent is out of the room');
      await endSession(t, s);
    });

    test('LiveKit closing the room ends the live session', async () => {
      const s = await liveKitSession(t, 'lk-close');
      await fake.closeRoom(s.id);
      const ended = await t.waitForState(s.id, 'ended');
      assert.equal(ended.endReason, 'completed');
      const timeline = (await t.session(s.id)).timeline as { cause: string }[];
      assert.ok(timeline.some((e) => e.cause === 'livekit:room_finished'));
    });
  });
}

/** Workers that outlive their server's close, as processes do when only the server restarts. */
class LastingWorkers extends FakeDriver {
  override closeStopsWorkers = false;
}

for (const kind of databaseKinds()) {
  describe(`LiveKit mode across a restart (${kind})`, () => {
    test("a restarted server puts the recorder back in live sessions' rooms that have none", async (c) => {
      const fake = await FakeLiveKitServer.start(keys);
      const db = await createTestDatabase(kind);
      const workers = new LastingWorkers();
      const standIns = new StandIns(fake);
      const port = await freePort();
      let mode!: LiveKitMode;
      const start = () =>
        new TestServer({
          storage: db.storage,
          port,
          processDriver: workers,
          livekit: () => {
            mode = liveKitMode(fake, standIns);
            return mode;
          },
        }).start();
      let t = await start();
      c.after(async () => {
        await t.close();
        await workers.stopAll();
        await fake.close();
        await db.drop();
      });
      const recorderIn = (id: string) =>
        fake.rooms().some((r) => r.name === id && r.participants.includes(RECORDER_IDENTITY));

      await t.createProject(agentProject('lk-rs', { min: 3, max: 3 }, { rooms: 'livekit' }));
      await t.readyWorkers('lk-rs', 3);
      const [live, elsewhere, done] = [
        await t.createSession('lk-rs'),
        await t.createSession('lk-rs'),
        await t.createSession('lk-rs'),
      ];
      for (const s of [live, elsewhere, done]) await t.waitForState(s.id, 'active');
      await t.api('POST', `/sessions/${done.id}/end`);
      await t.waitForState(done.id, 'ended');
      assert.equal(recorderIn(live.id), true);

      // a clean stop: the recorder leaves every room; the workers stay and dial the same address again
      await t.close();
      assert.equal(recorderIn(live.id), false);
      assert.equal(recorderIn(elsewhere.id), false);
      assert.equal(standIns.made.length, 3);
      // meanwhile another server's recorder joins one of the rooms; the ended session's room is there again (its
      // delete had failed), and another application has a room of its own
      await fake.join(await recorderToken(elsewhere.id));
      const rooms = new LiveKitRooms({ url: fake.url, ...keys });
      await rooms.createRoom(done.id, { metadata: { usherSession: done.id } });
      await rooms.createRoom('another-app-room', { metadata: { app: 'other' } });

      t = await start();
      await mode.settled();
      await t.settled();
      assert.ok(
        fake.rooms().some((r) => r.name === 'another-app-room'),
        "another application's room stays",
      );
      await rooms.deleteRoom('another-app-room');
      assert.equal(recorderIn(live.id), true, 'the recorder is back in the live room');
      assert.deepEqual(mode.recorder.sessions(), [live.id], 'and only there');
      assert.equal(standIns.made.length, 4);
      assert.deepEqual(
        fake
          .rooms()
          .map((r) => r.name)
          .sort(),
        [live.id, elsewhere.id].sort(),
        "the ended session's room is deleted, and not made again",
      );
      standIns.made.at(-1)!.emit('dataReceived', packet({ type: 'user_text', data: { text: 'hi' } }), alice);
      assert.deepEqual(await recordedTexts(t, live), ['hi']);
    });
  });
}

describe('LiveKit mode across servers', { skip: !databaseKinds().includes('postgres') }, () => {
  test("a server that stops hands its recorders' rooms to another, which puts its own recorder in", async (c) => {
    const fake = await FakeLiveKitServer.start(keys);
    const db = await createTestDatabase('postgres');
    const workers = new LastingWorkers();
    const standInsA = new StandIns(fake);
    const standInsB = new StandIns(fake);
    let modeB!: LiveKitMode;
    const a = await new TestServer({
      storage: db.storage,
      serverId: 'lk-a',
      processDriver: workers,
      livekit: () => liveKitMode(fake, standInsA),
    }).start();
    const b = await new TestServer({
      storage: db.storage,
      serverId: 'lk-b',
      livekit: () => {
        modeB = liveKitMode(fake, standInsB);
        return modeB;
      },
    }).start();
    c.after(async () => {
      await a.close();
      await b.close();
      await workers.stopAll();
      await fake.close();
      await db.drop();
    });
    const s = await liveKitSession(a, 'lk-hand');
    assert.equal(standInsA.made.length, 1, "A's recorder is in the room");

    const handedOver = standInsB.next();
    await a.close(); // a rolling restart: A goes, its agent stays and B carries on
    await handedOver;
    await modeB.settled();
    assert.ok(modeB.recorder.holds(s.id), "B's recorder is in the room");
    assert.deepEqual(
      fake.rooms().find((r) => r.name === s.id)?.participants,
      [RECORDER_IDENTITY],
      'one recorder, in the room that stayed',
    );
    standInsB.made[0]!.emit('dataReceived', packet({ type: 'user_text', data: { text: 'via B' } }), alice);
    assert.deepEqual(await recordedTexts(b, s), ['via B']);
  });
});

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
