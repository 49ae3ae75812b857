// LiveKit rooms through the SDK's RoomServiceClient, against the fake RoomService over real HTTP: create,
// list, delete (idempotent), participants, and the errors an operator can act on.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { UsherError } from '@usher/protocol';
import { AccessToken, RoomServiceClient, ServerError } from 'livekit-server-sdk';
import { FakeLiveKitServer } from './fake-server.ts';
import { LiveKitRooms } from './rooms.ts';
import { LiveKitTokens } from './tokens.ts';

const keys = { apiKey: 'APIrooms', apiSecret: 'rooms-secret-of-at-least-32-characters!' };
let fake: FakeLiveKitServer;
let rooms: LiveKitRooms;
const tokens = new LiveKitTokens(keys);

before(async () => {
  fake = await FakeLiveKitServer.start(keys);
  rooms = new LiveKitRooms({ url: fake.url, ...keys, roomEmptyTimeoutS: 120 });
});
after(() => fake.close());

const join = async (
  sessionId: string,
  identity: string,
  kind: 'user' | 'agent' | 'recorder',
  name?: string,
) =>
  fake.join(
    await tokens.participantToken({ sessionId, identity, kind, ttlMs: 60_000, ...(name ? { name } : {}) }),
  );

const usherError = (code: string, message: RegExp) => (err: unknown) => {
  assert.ok(err instanceof UsherError, `not an UsherError: ${err}`);
  assert.equal(err.code, code);
  assert.match(err.message, message);
  return true;
};

describe('rooms', () => {
  test('a session gets its room, with its settings; creating it again returns the same room', async () => {
    const room = await rooms.createRoom('s_create', {
      maxParticipants: 3,
      departureTimeoutS: 90,
      metadata: { projectId: 'p1' },
    });
    assert.equal(room.name, 's_create');
    assert.match(room.sid, /^RM_/);
    assert.equal(room.metadata, '{"projectId":"p1"}');
    const again = await rooms.createRoom('s_create');
    assert.equal(again.sid, room.sid);
    const listed = await rooms.listRooms(['s_create']);
    assert.deepEqual(
      listed.map((r) => r.name),
      ['s_create'],
    );
    assert.deepEqual(
      fake.rooms().find((r) => r.name === 's_create'),
      {
        name: 's_create',
        participants: [],
        metadata: '{"projectId":"p1"}',
        maxParticipants: 3,
        departureTimeout: 90,
      },
    );
  });

  test('deleting a room closes it; deleting it again is not an error', async () => {
    await rooms.createRoom('s_delete');
    assert.equal(await rooms.deleteRoom('s_delete'), true);
    assert.deepEqual(await rooms.listRooms(['s_delete']), []);
    assert.equal(await rooms.deleteRoom('s_delete'), false);
    assert.equal(await rooms.deleteRoom('s_never_created'), false);
  });

  test("participants are listed with Usher's kinds; removing one twice is not an error", async () => {
    await rooms.createRoom('s_people');
    await join('s_people', 'u1', 'user', 'Ada');
    await join('s_people', 'w1', 'agent');
    await join('s_people', 'usher-recorder', 'recorder');
    const listed = await rooms.listParticipants('s_people');
    assert.deepEqual(
      listed.sort((a, b) => a.identity.localeCompare(b.identity)),
      [
        { identity: 'u1', kind: 'user', name: 'Ada' },
        { identity: 'usher-recorder', kind: 'observer' },
        { identity: 'w1', kind: 'agent' },
      ],
    );
    assert.equal(await rooms.removeParticipant('s_people', 'u1'), true);
    assert.equal(await rooms.removeParticipant('s_people', 'u1'), false);
    assert.deepEqual(
      fake
        .rooms()
        .find((r) => r.name === 's_people')
        ?.participants.sort(),
      ['usher-recorder', 'w1'],
    );
    assert.deepEqual(await rooms.listParticipants('s_no_room'), []);
  });

  test('maxParticipants counts people, not the agent or the recorder', async () => {
    await rooms.createRoom('s_full', { maxParticipants: 1 });
    await join('s_full', 'w1', 'agent');
    await join('s_full', 'usher-recorder', 'recorder');
    await join('s_full', 'u1', 'user');
    await assert.rejects(join('s_full', 'u2', 'user'), /room is full/);
  });
});

describe('errors say what to check', () => {
  test('a wrong secret: LiveKit refused the API key', async () => {
    const wrong = new LiveKitRooms({ url: fake.url, apiKey: keys.apiKey, apiSecret: 'not-the-secret' });
    await assert.rejects(
      wrong.createRoom('s_x'),
      usherError(
        'INTERNAL',
        /^LiveKit refused the API key: check livekit\.apiKey\/apiSecret \(while trying to create room "s_x"; LiveKit said: invalid authorization token/,
      ),
    );
  });

  test('an unknown API key: LiveKit refused the API key', async () => {
    const wrong = new LiveKitRooms({ url: fake.url, apiKey: 'APIother', apiSecret: keys.apiSecret });
    await assert.rejects(
      wrong.listRooms(),
      usherError(
        'INTERNAL',
        /^LiveKit refused the API key: check livekit\.apiKey\/apiSecret .*invalid API key/,
      ),
    );
  });

  test('nothing listening at livekit.url: unreachable, check livekit.url', async () => {
    const gone = await FakeLiveKitServer.start(keys);
    const url = gone.url;
    await gone.close();
    const unreachable = new LiveKitRooms({ url, ...keys });
    await assert.rejects(
      unreachable.createRoom('s_x'),
      usherError(
        'UNAVAILABLE',
        /^LiveKit at http:\/\/127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\).*check livekit\.url/,
      ),
    );
  });
});

describe('the fake answers like LiveKit', () => {
  const client =
    (grant: ConstructorParameters<typeof AccessToken>[2] & object, video: object) => async () => {
      const at = new AccessToken(keys.apiKey, keys.apiSecret, grant);
      at.addGrant(video);
      return new RoomServiceClient(fake.url.replace('ws', 'http'), undefined, undefined, {
        token: await at.toJwt(),
      });
    };

  test('a call without its grant gets Twirp unauthenticated (401)', async () => {
    const noList = await client({}, { roomCreate: true })();
    await assert.rejects(noList.listRooms(), (err: unknown) => {
      assert.ok(err instanceof ServerError);
      assert.equal(err.status, 401);
      assert.equal(err.code, 'unauthenticated');
      assert.equal(err.message, 'permissions denied');
      return true;
    });
    const otherRoom = await client({}, { roomAdmin: true, room: 's_a' })();
    await assert.rejects(
      otherRoom.listParticipants('s_b'),
      (err: unknown) => (err as ServerError).status === 401,
    );
    assert.deepEqual(await otherRoom.listParticipants('s_a'), []);
  });

  test('no such room: Twirp not_found (404)', async () => {
    const admin = await client({}, { roomCreate: true })();
    await assert.rejects(admin.deleteRoom('s_missing'), (err: unknown) => {
      assert.ok(err instanceof ServerError);
      assert.equal(err.status, 404);
      assert.equal(err.code, 'not_found');
      assert.equal(err.message, 'requested room does not exist');
      return true;
    });
  });

  test('only a POST of JSON reaches a method', async () => {
    const base = `${fake.url.replace('ws', 'http')}/twirp/livekit.RoomService/ListRooms`;
    const get = await fetch(base);
    assert.equal(get.status, 404);
    assert.equal((await get.json()).code, 'bad_route');
    const text = await fetch(base, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' });
    assert.equal(text.status, 404);
    const bad = await fetch(base, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{',
    });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).code, 'malformed');
  });
});
