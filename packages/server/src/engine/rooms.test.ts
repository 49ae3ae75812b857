// Presence across servers, with Rooms of three servers wired to one another as the bus would: a participant is
// in a room while any server holds it, and each arrival and departure is announced once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Participant, SessionEvent } from '@usher/protocol';
import { ManualClock } from './clock.ts';
import type { EventHub } from './event-hub.ts';
import type { Recorder } from './recorder.ts';
import { type PresenceNews, Rooms } from './rooms.ts';

const SESSION = 's_room';

/** Three servers' rooms; what one sends reaches the others in order, when `deliver()` is awaited. */
function cluster(ids: string[]) {
  const clock = new ManualClock(0);
  const announced: string[] = [];
  const queue: (() => void)[] = [];
  const rooms = new Map<string, Rooms>();
  /** servers that died: they hear nothing more */
  const dead = new Set<string>();
  for (const serverId of ids) {
    const hub = {
      publish(e: SessionEvent) {
        if (e.type === 'session.participant_joined' || e.type === 'session.participant_left')
          announced.push(
            `${serverId}: ${e.type.slice('session.participant_'.length)} ${e.participant.identity}`,
          );
        // the other servers hear of it through the bus
        for (const [other, r] of rooms)
          if (other !== serverId && !dead.has(other)) queue.push(() => r.presenceElsewhere(e));
      },
    } as unknown as EventHub;
    const recorder = {
      envelope: (nowMs: number, fields: object) => ({ message: { id: 'm', at: '', ...fields }, atUs: nowMs }),
      record: async () => {},
    } as unknown as Recorder;
    rooms.set(
      serverId,
      new Rooms({
        store: { read: { getSession: async () => undefined } } as never,
        hub,
        clock,
        livenessClock: clock,
        recorder,
        log: { error() {} } as never,
        track: (task) => void task(),
        sendWorker: () => {},
        activity: () => {},
        serverId,
        sendPresence: (news: PresenceNews) => {
          for (const [other, r] of rooms)
            if (other !== serverId && !dead.has(other)) queue.push(() => r.presence(news));
        },
      }),
    );
  }
  const deliver = () => {
    while (queue.length > 0) queue.shift()!();
  };
  return { rooms: (id: string) => rooms.get(id)!, announced, deliver, kill: (id: string) => dead.add(id) };
}

const mo: Participant = { identity: 'mo', kind: 'user' };

describe('Rooms: presence across servers', () => {
  test('a LiveKit departure that reaches another server is announced once, by the server that holds it', () => {
    const { rooms, announced, deliver } = cluster(['a', 'b', 'c']);
    rooms('a').participantJoined(SESSION, mo);
    deliver();
    rooms('b').participantLeft(SESSION, 'mo', { anywhere: true });
    deliver();
    assert.deepEqual(announced, ['a: joined mo', 'a: left mo']);
    for (const id of ['a', 'b', 'c']) assert.deepEqual(rooms(id).holders(SESSION, 'mo'), [], id);
    // a socket's departure is not `anywhere`: on a server that does not hold it, nothing happens
    rooms('a').participantJoined(SESSION, mo);
    deliver();
    rooms('b').participantLeft(SESSION, 'mo');
    deliver();
    assert.deepEqual(announced.slice(2), ['a: joined mo']);
  });

  test("a dead server's participants: the server that claims it announces their departures, the others forget them", () => {
    const { rooms, announced, deliver, kill } = cluster(['a', 'b', 'c']);
    rooms('a').participantJoined(SESSION, mo);
    rooms('a').participantJoined(SESSION, { identity: 'kim', kind: 'user' });
    rooms('c').participantJoined(SESSION, { identity: 'kim', kind: 'user' });
    deliver();
    announced.length = 0;
    // a dies; b claims it
    kill('a');
    rooms('b').serverDied('a');
    rooms('c').serversAlive(new Set(['b', 'c']));
    deliver();
    assert.deepEqual(announced, ['b: left mo'], 'kim is still in the room through c');
    assert.deepEqual(rooms('c').holders(SESSION, 'mo'), []);
    assert.deepEqual(rooms('b').holders(SESSION, 'kim'), ['c']);
    rooms('c').participantLeft(SESSION, 'kim');
    deliver();
    assert.deepEqual(announced, ['b: left mo', 'c: left kim']);
  });

  test('a departure announced before the news of a move arrived is followed by a new arrival', () => {
    const { rooms, announced, deliver } = cluster(['a', 'b']);
    rooms('a').participantJoined(SESSION, mo);
    deliver();
    // mo moves to b; a loses its old socket before b's news reaches it
    rooms('b').participantJoined(SESSION, mo);
    rooms('a').participantLeft(SESSION, 'mo');
    deliver();
    assert.deepEqual(announced, ['a: joined mo', 'a: left mo', 'b: joined mo']);
    assert.deepEqual(rooms('a').holders(SESSION, 'mo'), ['b']);
  });

  test('at the end, a participant held by two servers is announced gone once', () => {
    const { rooms, announced, deliver } = cluster(['a', 'b']);
    rooms('a').participantJoined(SESSION, mo);
    deliver();
    rooms('b').participantJoined(SESSION, mo);
    deliver();
    rooms('a').ended(SESSION);
    rooms('b').ended(SESSION);
    assert.deepEqual(announced, ['a: joined mo', 'a: left mo']);
  });
});
