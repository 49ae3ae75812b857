// Presence across servers (Rooms): a participant is in a room while any server holds a socket of theirs. Two
// Rooms stand for two servers; their presence notes and published events are passed between them by hand, in
// the order a test chooses, as the bus would deliver them.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { Participant, SessionEvent } from '@usher/protocol';
import type { PresenceNote } from '../cluster/bus.ts';
import { openStore, type Store } from '../storage/store.ts';
import { silentLogger } from '../util/logger.ts';
import { ManualClock } from './clock.ts';
import { EventHub } from './event-hub.ts';
import { Recorder } from './recorder.ts';
import { Rooms } from './rooms.ts';

const SESSION = 's_room';
const alice: Participant = { identity: 'alice', kind: 'user' };

/** One server's room keeping: what it announced, and the notes it would send to the others. */
function server(store: Store, serverId: string, handingOver = () => false) {
  const hub = new EventHub();
  const told: string[] = [];
  const published: SessionEvent[] = [];
  hub.subscribe(SESSION, (e) => {
    if (e.type === 'session.participant_joined' || e.type === 'session.participant_left') {
      told.push(`${e.type === 'session.participant_joined' ? 'joined' : 'left'} ${e.participant.identity}`);
      published.push(e);
    }
  });
  const notes: PresenceNote[] = [];
  const clock = new ManualClock();
  const rooms = new Rooms({
    serverId,
    notify: (note) => notes.push(note),
    handingOver,
    store,
    hub,
    clock,
    livenessClock: clock,
    recorder: new Recorder(store.messages, (work) => void work()),
    log: silentLogger,
    track: (task) => void task(),
    sendWorker: () => {},
    activity: () => {},
  });
  return { rooms, told, published, notes };
}

type Server = ReturnType<typeof server>;

/** Her sockets open on each server in turn, each heard by the others before the next opens. */
function joinInTurn(p: Participant, all: Server[]): void {
  for (const x of all) {
    x.rooms.participantJoined(SESSION, p);
    deliver(x, ...all.filter((y) => y !== x));
  }
}

/** Hands `from`'s notes and published events so far to each of `to`, as the bus would. */
function deliver(from: Server, ...to: Server[]): void {
  const notes = from.notes.splice(0);
  const published = from.published.splice(0);
  for (const other of to) {
    for (const note of notes) other.rooms.presenceNote(note);
    for (const e of published) other.rooms.presenceElsewhere(e);
  }
}

describe('presence across servers', () => {
  let store: Store;
  beforeEach(async () => {
    store = await openStore({ type: 'sqlite', path: ':memory:' });
  });
  afterEach(async () => {
    await store.close();
  });
  /** Servers of these ids on the test's database. */
  const servers = <T extends string[]>(...ids: T) =>
    ids.map((id) => server(store, id)) as { [K in keyof T]: Server };

  test('a participant whose sockets move from A to B is announced once, and leaves once, with the last socket', () => {
    const [a, b] = servers('a', 'b');
    joinInTurn(alice, [a, b]);
    a.rooms.participantLeft(SESSION, 'alice');
    deliver(a, b);
    assert.deepEqual(b.rooms.holders(SESSION, 'alice'), ['b']);
    b.rooms.participantLeft(SESSION, 'alice');
    deliver(b, a);
    assert.deepEqual([...a.told, ...b.told], ['joined alice', 'left alice']);
    assert.deepEqual(a.rooms.participants(SESSION), []);
  });

  test('A announces her departure while her new socket on B was not announced: B tells the room she is here', () => {
    const [a, b] = servers('a', 'b');
    a.rooms.participantJoined(SESSION, alice);
    deliver(a, b);
    // at once, before either hears of the other: her socket on A closes, one on B opens
    a.rooms.participantLeft(SESSION, 'alice');
    b.rooms.participantJoined(SESSION, alice);
    deliver(a, b);
    deliver(b, a);
    assert.deepEqual(a.told, ['joined alice', 'left alice']);
    assert.deepEqual(b.told, ['joined alice']);
    assert.deepEqual(a.rooms.holders(SESSION, 'alice'), ['b']);
  });

  test('her last sockets on A and B close at once, each server believing the other holds one: her departure is told', () => {
    const [a, b] = servers('a', 'b');
    joinInTurn(alice, [a, b]);
    a.rooms.participantLeft(SESSION, 'alice');
    b.rooms.participantLeft(SESSION, 'alice');
    deliver(a, b);
    deliver(b, a);
    assert.deepEqual(
      [...a.told, ...b.told],
      ['joined alice', 'left alice'],
      'one of them told the room, once',
    );
    assert.deepEqual(a.rooms.participants(SESSION), []);
    assert.deepEqual(b.rooms.participants(SESSION), []);
  });

  test('her last sockets on three servers close at once: her departure is told once', () => {
    const [a, b, c] = servers('a', 'b', 'c');
    joinInTurn(alice, [a, b, c]);
    for (const x of [a, b, c]) x.rooms.participantLeft(SESSION, 'alice');
    deliver(c, a, b);
    deliver(b, a, c);
    deliver(a, b, c);
    assert.deepEqual([...a.told, ...b.told, ...c.told], ['joined alice', 'left alice']);
    for (const x of [a, b, c]) assert.deepEqual(x.rooms.participants(SESSION), []);
  });

  test('a bystander keeps who holds her through a departure announced and answered with an arrival', () => {
    const [a, b, c] = servers('a', 'b', 'c');
    a.rooms.participantJoined(SESSION, alice);
    deliver(a, b, c);
    // her socket on B opens as her last on A closes: A announces the departure, B answers with her arrival
    b.rooms.participantJoined(SESSION, alice);
    a.rooms.participantLeft(SESSION, 'alice');
    deliver(b, c);
    deliver(a, b, c);
    deliver(b, a, c);
    assert.deepEqual(b.told, ['joined alice']);
    assert.deepEqual(c.rooms.holders(SESSION, 'alice'), ['b']);
    assert.deepEqual(
      c.rooms.participants(SESSION).map((p) => p.identity),
      ['alice'],
    );
  });

  test('a server handing over as it stops announces no departure; the one that adopts it announces who did not come back', () => {
    let stopping = false;
    const a = server(store, 'a', () => stopping);
    const b = server(store, 'b');
    const bob: Participant = { identity: 'bob', kind: 'user' };
    a.rooms.participantJoined(SESSION, alice);
    a.rooms.participantJoined(SESSION, bob);
    deliver(a, b);
    stopping = true;
    a.rooms.participantLeft(SESSION, 'alice');
    a.rooms.participantLeft(SESSION, 'bob');
    assert.deepEqual(a.notes, [], 'no note either: the adopting server decides');
    // alice reconnects to B; bob does not come back
    b.rooms.participantJoined(SESSION, alice);
    b.rooms.serverGone('a', true);
    assert.deepEqual(a.told, ['joined alice', 'joined bob']);
    assert.deepEqual(b.told, ['left bob']);
  });

  test('a server that starts again under its id holds nobody yet, and learns whom the others hold', () => {
    const [a, b] = servers('a', 'b');
    const bob: Participant = { identity: 'bob', kind: 'user' };
    a.rooms.participantJoined(SESSION, alice);
    b.rooms.participantJoined(SESSION, bob);
    deliver(a, b);
    deliver(b, a);
    // A stops and starts again, without anyone having adopted it: its hello reaches B
    const again = server(store, 'a');
    b.rooms.serverStarted('a');
    assert.deepEqual(b.rooms.holders(SESSION, 'alice'), []);
    deliver(b, again);
    assert.deepEqual(again.rooms.holders(SESSION, 'bob'), ['b']);
  });

  test("an agent's (or a LiveKit participant's) departure is told once, by the server that hears of it, and forgotten where it was announced", () => {
    const [a, b] = servers('a', 'b');
    a.rooms.agentPresent(SESSION, 'w_1');
    deliver(a, b);
    // its session ends on B (the worker's exit was handled there)
    b.rooms.leftEverywhere(SESSION, 'w_1');
    b.rooms.leftEverywhere(SESSION, 'w_1'); // ending, then ended: said once
    deliver(b, a);
    assert.deepEqual(a.told, ['joined w_1']);
    assert.deepEqual(b.told, ['left w_1']);
    assert.deepEqual(a.rooms.holders(SESSION, 'w_1'), []);
    // an adopted server takes no agent with it: its worker comes back elsewhere, or its loss is a crash
    a.rooms.agentPresent(SESSION, 'w_2');
    deliver(a, b);
    b.rooms.serverGone('a', true);
    assert.deepEqual(b.told, ['left w_1']);
  });

  test('a LiveKit participant whose webhooks reach two servers: joined through A, left through B, told once each', () => {
    const [a, b] = servers('a', 'b');
    a.rooms.participantJoined(SESSION, alice);
    deliver(a, b);
    b.rooms.leftEverywhere(SESSION, 'alice');
    deliver(b, a);
    assert.deepEqual([...a.told, ...b.told], ['joined alice', 'left alice']);
    assert.deepEqual(a.rooms.participants(SESSION), [], 'A forgets her too');
  });

  test('a session that ends while a participant is held on two servers: one departure', () => {
    const [a, b] = servers('a', 'b');
    joinInTurn(alice, [a, b]);
    a.rooms.ended(SESSION);
    b.rooms.ended(SESSION);
    assert.deepEqual([...a.told, ...b.told], ['joined alice', 'left alice']);
  });

  test('a server that is gone: the one that adopted it announces who only it held; the others forget them', () => {
    const [a, b, dead] = servers('a', 'b', 'dead');
    const bob: Participant = { identity: 'bob', kind: 'user' };
    dead.rooms.participantJoined(SESSION, alice);
    dead.rooms.participantJoined(SESSION, bob);
    a.rooms.participantJoined(SESSION, bob);
    for (const to of [a, b]) for (const note of dead.notes) to.rooms.presenceNote(note);
    deliver(a, b);
    a.rooms.serverGone('dead', true);
    b.rooms.serverGone('dead', false);
    assert.deepEqual(a.told, ['joined bob', 'left alice'], 'alice was held by the dead server only');
    assert.deepEqual(b.told, []);
    assert.deepEqual(b.rooms.holders(SESSION, 'alice'), []);
    assert.deepEqual(b.rooms.holders(SESSION, 'bob'), ['a']);
  });
});
