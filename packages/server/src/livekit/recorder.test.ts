// The recorder: how it decodes data packets into room messages, the options and token it joins with, and its
// callbacks, with an injected Room in place of @livekit/rtc-node's (no LiveKit server runs here).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { UsherError } from '@usher/protocol';
import { jwtVerify } from 'jose';
import {
  decodeRoomMessage,
  LiveKitRecorder,
  type PacketSender,
  RECORDER_CONNECT_OPTIONS,
  type RecorderRoom,
  type RoomMessage,
} from './recorder.ts';
import { RECORDER_IDENTITY, ROLE_ATTRIBUTE } from './roles.ts';

const at = '2026-01-02T03:04:05.000Z';
const bytes = (value: unknown) =>
  new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
const agent: PacketSender = { identity: 'w1', attributes: { [ROLE_ATTRIBUTE]: 'agent' }, kind: 4 };

describe('decoding data packets', () => {
  test('a JSON {type, data} becomes a room message from its sender, with its kind', () => {
    assert.deepEqual(decodeRoomMessage(bytes({ type: 'agent_text', data: { text: 'hi' } }), agent, at), {
      ok: true,
      message: { type: 'agent_text', from: { identity: 'w1', kind: 'agent' }, data: { text: 'hi' }, at },
    });
  });

  test("the sender's kind comes from its role attribute, else from LiveKit's kind", () => {
    const kind = (sender: PacketSender) => {
      const d = decodeRoomMessage(bytes({ type: 't' }), sender, at);
      return d.ok ? d.message.from.kind : d.reason;
    };
    assert.equal(kind({ identity: 'u', attributes: { [ROLE_ATTRIBUTE]: 'user' } }), 'user');
    assert.equal(kind({ identity: 'v', attributes: { [ROLE_ATTRIBUTE]: 'viewer' }, kind: 4 }), 'viewer');
    assert.equal(kind({ identity: 'r', attributes: { [ROLE_ATTRIBUTE]: 'recorder' } }), 'observer');
    assert.equal(kind({ identity: 'lk-agent', attributes: {}, kind: 4 }), 'agent');
    assert.equal(kind({ identity: 'egress', kind: 2 }), 'observer');
    assert.equal(kind({ identity: 'someone', attributes: { [ROLE_ATTRIBUTE]: 'admin' }, kind: 0 }), 'user');
  });

  test('a message without data has data null', () => {
    const d = decodeRoomMessage(bytes({ type: 'user_text' }), agent, at);
    assert.equal(d.ok && d.message.data, null);
  });

  test('anything else is skipped, with the reason', () => {
    const reason = (payload: Uint8Array, sender: PacketSender | null = agent) => {
      const d = decodeRoomMessage(payload, sender ?? undefined, at);
      assert.equal(d.ok, false);
      return d.ok ? '' : d.reason;
    };
    assert.match(reason(bytes({ type: 'x' }), null), /no sender participant/);
    assert.match(reason(new Uint8Array([0xff, 0xfe, 0x7b])), /not valid JSON/);
    assert.match(reason(bytes('{"type":')), /not valid JSON/);
    // as socket frames are: nesting past 64 levels, and the NUL character, are refused
    assert.match(
      reason(bytes(`{"type":"t","data":${'['.repeat(100)}${']'.repeat(100)}}`)),
      /nested deeper than 64/,
    );
    assert.match(reason(bytes({ type: 't', data: 'a\u0000b' })), /NUL character/);
    assert.match(reason(bytes([1, 2])), /not a room message/);
    assert.match(reason(bytes({ message: 'hello', timestamp: 1 })), /not a room message/);
    assert.match(reason(bytes({ type: 7, data: {} })), /not a room message/);
    assert.match(reason(bytes({ type: '' })), /1 to 64 characters/);
    assert.match(reason(bytes({ type: 'x'.repeat(65) })), /1 to 64 characters/);
  });
});

/** A stand-in for @livekit/rtc-node's Room: records connect/disconnect, lets a test emit its events. */
class TestRoom extends EventEmitter implements RecorderRoom {
  connected: { url: string; token: string; options: object } | undefined;
  disconnects = 0;
  failConnect: Error | undefined;
  /** when set, connect waits for it */
  gate: Promise<void> | undefined;

  async connect(url: string, token: string, options: { autoSubscribe: boolean; dynacast: boolean }) {
    await this.gate;
    if (this.failConnect) throw this.failConnect;
    this.connected = { url, token, options };
  }

  async disconnect() {
    this.disconnects++;
    this.emit('disconnected', 'CLIENT_INITIATED');
  }
}

function recorder(overrides: { onMessage?: (s: string, m: RoomMessage) => void | Promise<void> } = {}) {
  const rooms: TestRoom[] = [];
  const seen = {
    messages: [] as Array<[string, RoomMessage]>,
    skipped: [] as string[],
    errors: [] as unknown[],
    disconnected: [] as unknown[],
  };
  const settings = {
    url: 'wss://livekit.test',
    apiKey: 'APIrec',
    apiSecret: 'recorder-secret-of-at-least-32-chars',
  };
  const r = new LiveKitRecorder({
    settings,
    onMessage: overrides.onMessage ?? ((sessionId, message) => void seen.messages.push([sessionId, message])),
    onSkipped: (_s, reason) => seen.skipped.push(reason),
    onError: (_s, err) => seen.errors.push(err),
    onDisconnected: (_s, reason) => seen.disconnected.push(reason),
    now: () => Date.parse(at),
    createRoom: () => {
      const room = new TestRoom();
      rooms.push(room);
      return room;
    },
  });
  return { r, rooms, seen, settings };
}

describe('the recorder', () => {
  test('joins as the hidden recorder, subscribing to nothing', async () => {
    const { r, rooms, settings } = recorder();
    await r.join('s_1');
    const c = rooms[0]!.connected!;
    assert.equal(c.url, settings.url);
    assert.deepEqual(c.options, { autoSubscribe: false, dynacast: false });
    assert.deepEqual(RECORDER_CONNECT_OPTIONS, { autoSubscribe: false, dynacast: false });
    const { payload } = await jwtVerify(c.token, new TextEncoder().encode(settings.apiSecret), {
      issuer: settings.apiKey,
    });
    assert.equal(payload.sub, RECORDER_IDENTITY);
    assert.deepEqual(payload.video, {
      roomJoin: true,
      room: 's_1',
      canUpdateOwnMetadata: false,
      canPublish: false,
      canSubscribe: false,
      canPublishData: false,
      hidden: true,
      recorder: true,
    });
    assert.deepEqual(r.sessions(), ['s_1']);
  });

  test('hands each room message to onMessage with its session, and reports the rest', async () => {
    const { r, rooms, seen } = recorder();
    await r.join('s_1');
    await r.join('s_2');
    rooms[0]!.emit('dataReceived', bytes({ type: 'transcript', data: { text: 'hello' } }), agent);
    rooms[1]!.emit('dataReceived', bytes({ type: 'user_text', data: 'hi' }), {
      identity: 'u1',
      attributes: { [ROLE_ATTRIBUTE]: 'user' },
    });
    rooms[0]!.emit('dataReceived', bytes('audio bytes'), agent);
    assert.deepEqual(seen.messages, [
      ['s_1', { type: 'transcript', from: { identity: 'w1', kind: 'agent' }, data: { text: 'hello' }, at }],
      ['s_2', { type: 'user_text', from: { identity: 'u1', kind: 'user' }, data: 'hi', at }],
    ]);
    assert.equal(seen.skipped.length, 1);
    assert.match(seen.skipped[0]!, /not valid JSON/);
  });

  test('a failing onMessage is reported, whether it throws or rejects', async () => {
    let calls = 0;
    const { r, rooms, seen } = recorder({
      onMessage: () => {
        calls++;
        if (calls === 1) throw new Error('sync failure');
        return Promise.reject(new Error('async failure'));
      },
    });
    await r.join('s_1');
    rooms[0]!.emit('dataReceived', bytes({ type: 'a' }), agent);
    rooms[0]!.emit('dataReceived', bytes({ type: 'b' }), agent);
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(
      seen.errors.map((e) => (e as Error).message),
      ['sync failure', 'async failure'],
    );
  });

  test('joins a room once, however often asked; leaves it when asked, without reporting a loss', async () => {
    const { r, rooms, seen } = recorder();
    await Promise.all([r.join('s_1'), r.join('s_1')]);
    await r.join('s_1');
    assert.equal(rooms.length, 1);
    await r.leave('s_1');
    await r.leave('s_1');
    assert.equal(rooms[0]!.disconnects, 1);
    assert.deepEqual(r.sessions(), []);
    assert.deepEqual(seen.disconnected, []);
  });

  test('leaving while joining waits for the join to finish, then leaves', async () => {
    let open = () => {};
    const room = new TestRoom();
    room.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const r = new LiveKitRecorder({
      settings: { url: 'wss://livekit.test', apiKey: 'k', apiSecret: 's' },
      onMessage: () => {},
      createRoom: () => room,
    });
    const joining = r.join('s_1');
    const leaving = r.leave('s_1');
    open();
    await Promise.all([joining, leaving]);
    assert.ok(room.connected);
    assert.equal(room.disconnects, 1);
    assert.deepEqual(r.sessions(), []);
  });

  test('a room lost without being asked (deleted, removed) is reported and forgotten', async () => {
    const { r, rooms, seen } = recorder();
    await r.join('s_1');
    rooms[0]!.emit('disconnected', 'ROOM_DELETED');
    assert.deepEqual(seen.disconnected, ['ROOM_DELETED']);
    assert.deepEqual(r.sessions(), []);
    await r.join('s_1');
    assert.equal(rooms.length, 2);
  });

  test('a failed connection is an UNAVAILABLE error naming the room and the URL', async () => {
    const rooms: TestRoom[] = [];
    const r = new LiveKitRecorder({
      settings: { url: 'wss://livekit.test', apiKey: 'k', apiSecret: 's' },
      onMessage: () => {},
      createRoom: () => {
        const room = new TestRoom();
        room.failConnect = new Error('engine: signal failure: ws failure');
        rooms.push(room);
        return room;
      },
    });
    await assert.rejects(r.join('s_9'), (err: unknown) => {
      assert.ok(err instanceof UsherError);
      assert.equal(err.code, 'UNAVAILABLE');
      assert.match(err.message, /room "s_9" at wss:\/\/livekit\.test: engine: signal failure/);
      return true;
    });
    assert.deepEqual(r.sessions(), []);
  });

  test('close leaves every room', async () => {
    const { r, rooms } = recorder();
    await r.join('s_1');
    await r.join('s_2');
    await r.close();
    assert.deepEqual(
      rooms.map((room) => room.disconnects),
      [1, 1],
    );
    assert.deepEqual(r.sessions(), []);
  });
});
