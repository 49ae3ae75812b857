// The event hub between servers: worker changes cross the bus only while another server has an operator feed
// open, and such a feed hears every server's changes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Bus, BusMessage } from '../cluster/bus.ts';
import type { WorkerRecord } from '../storage/records.ts';
import { EventHub } from './event-hub.ts';

function connected(serverId: string) {
  const sent: BusMessage[] = [];
  let deliver: (m: BusMessage) => void = () => {};
  const bus: Bus = {
    shared: true,
    send: (m) => void sent.push(m),
    onMessage: (l) => {
      deliver = l;
    },
    async close() {},
  };
  const hub = new EventHub();
  hub.connect(bus, serverId);
  return { hub, sent, fromOtherServer: (m: BusMessage) => deliver(m) };
}

const worker = (id: string) => ({ id, state: 'ready' }) as WorkerRecord;
const kinds = (sent: BusMessage[]) =>
  sent.map((m) =>
    m.kind === 'worker_watch'
      ? `watch ${m.serverId} ${m.watching}`
      : m.kind === 'worker_changed'
        ? `changed ${m.worker.id}`
        : m.kind,
  );

test('worker changes go to the bus only while another server watches them', () => {
  const { hub, sent, fromOtherServer } = connected('a');
  assert.equal(hub.hasWorkerListeners, false);
  hub.publishWorker(worker('w1'));
  fromOtherServer({ kind: 'worker_watch', serverId: 'b', watching: true });
  assert.equal(hub.hasWorkerListeners, true, 'the engine announces its changes for b');
  hub.publishWorker(worker('w2'));
  fromOtherServer({ kind: 'worker_watch', serverId: 'b', watching: false });
  hub.publishWorker(worker('w3'));
  fromOtherServer({ kind: 'worker_watch', serverId: 'c', watching: true });
  hub.forgetServer('c'); // c died
  hub.publishWorker(worker('w4'));
  fromOtherServer({ kind: 'worker_watch', serverId: 'd', watching: true });
  fromOtherServer({ kind: 'hello', serverId: 'd' }); // d restarted: its feed went with it
  hub.publishWorker(worker('w5'));
  assert.equal(hub.hasWorkerListeners, false);
  assert.deepEqual(kinds(sent), ['changed w2']);
});

test("a feed says it watches, once; only listeners that want them hear the other servers' changes", () => {
  const { hub, sent, fromOtherServer } = connected('a');
  const feed1: string[] = [];
  const plain: string[] = [];
  const off1 = hub.subscribeWorkers((w) => feed1.push(w.id), { everywhere: true });
  const off2 = hub.subscribeWorkers(() => {}, { everywhere: true });
  const offPlain = hub.subscribeWorkers((w) => plain.push(w.id));
  fromOtherServer({ kind: 'worker_changed', worker: worker('remote') });
  hub.publishWorker(worker('here'));
  // a server that starts learns who watches
  fromOtherServer({ kind: 'hello', serverId: 'new' });
  off1();
  off1();
  off2();
  offPlain();
  fromOtherServer({ kind: 'hello', serverId: 'newer' });
  assert.deepEqual(feed1, ['remote', 'here']);
  assert.deepEqual(plain, ['here'], "the other servers' changes reach only the listeners that asked");
  assert.deepEqual(kinds(sent), ['watch a true', 'watch a true', 'watch a false']);
});

test('a watch is a lease: renewed at every beat of the watching server, lapsing when not renewed or when its server is gone', () => {
  const { hub, sent, fromOtherServer } = connected('a');
  const alive = new Set(['a', 'b', 'c']);
  fromOtherServer({ kind: 'worker_watch', serverId: 'b', watching: true });
  fromOtherServer({ kind: 'worker_watch', serverId: 'c', watching: true });
  for (let beat = 1; beat <= 3; beat++) {
    hub.beat(alive);
    fromOtherServer({ kind: 'worker_watch', serverId: 'b', watching: true }); // b renews; c's "no" was lost
  }
  assert.equal(hub.hasWorkerListeners, true, "c's wish still holds for 3 beats");
  hub.beat(alive);
  hub.publishWorker(worker('w1'));
  assert.deepEqual(kinds(sent), ['changed w1'], 'b still watches');
  alive.delete('b'); // b died, and another server adopted its work
  hub.beat(alive);
  assert.equal(hub.hasWorkerListeners, false, "c's wish lapsed, b's went with b");
  hub.publishWorker(worker('w2'));
  assert.deepEqual(kinds(sent), ['changed w1']);
});

test('a server with a feed open says so again at every beat, and no longer once the feed closes', () => {
  const { hub, sent } = connected('a');
  const alive = new Set(['a', 'b']);
  hub.beat(alive);
  const off = hub.subscribeWorkers(() => {}, { everywhere: true });
  hub.beat(alive);
  hub.beat(alive);
  off();
  hub.beat(alive);
  assert.deepEqual(kinds(sent), ['watch a true', 'watch a true', 'watch a true', 'watch a false']);
});

test('a listener that throws keeps the event from nobody else, and its error goes to the handler', () => {
  const { hub, sent } = connected('a');
  const failures: unknown[] = [];
  hub.onListenerError((err) => failures.push(err));
  const heard: string[] = [];
  const event = {
    type: 'session.status_changed',
    sessionId: 's1',
    at: '2026-01-01T00:00:00.000Z',
    status: 'requesting',
    previous: null,
    cause: 'api:create',
  } as const;
  hub.subscribeAll(() => {
    throw new Error('broken listener');
  });
  hub.subscribeAll(() => heard.push('all'));
  hub.subscribe('s1', () => {
    throw new Error('broken session listener');
  });
  hub.subscribe('s1', () => heard.push('session'));
  hub.subscribeWorkers(() => {
    throw new Error('broken worker listener');
  });
  hub.subscribeWorkers(() => heard.push('worker'));
  hub.publish(event);
  hub.publishWorker(worker('w1'));
  assert.deepEqual(heard, ['all', 'session', 'worker']);
  assert.deepEqual(
    failures.map((e) => (e as Error).message),
    ['broken listener', 'broken session listener', 'broken worker listener'],
  );
  assert.deepEqual(kinds(sent), ['event'], 'the other servers hear it too');
});
