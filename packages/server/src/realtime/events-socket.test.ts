// The operator's feed on its own (no sockets): events go out in order with their projects from the session
// directory; under a steady flow of new sessions what was delivered is not kept; while lookups fall behind, what
// waits is bounded, and past the bound every subscriber is dropped as too slow rather than the feed growing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionEvent } from '@usher/protocol';
import { EventHub } from '../engine/event-hub.ts';
import { SessionDirectory, type SessionKey } from '../observability/session-directory.ts';
import { EventFeed, type Subscriber } from './events-socket.ts';

const T = Date.UTC(2026, 0, 1);

/** A directory whose reads the test answers, one at a time: every session s<n> is in project p<n>. */
function controlledDirectory() {
  const reads: { ids: string[]; answer: () => void; fail: () => void }[] = [];
  let onRead: (() => void) | null = null;
  const sessions = new SessionDirectory(
    (ids) =>
      new Promise<Map<string, SessionKey>>((resolve, reject) => {
        const known = ids.filter((id) => id.startsWith('s'));
        reads.push({
          ids: [...ids],
          answer: () =>
            resolve(
              new Map(
                known.map((id) => [
                  id,
                  {
                    projectId: `p${id.slice(1)}`,
                    region: 'eu',
                    createdAt: T,
                    queuedAt: null,
                    activeAt: null,
                    endedAt: null,
                  },
                ]),
              ),
            ),
          fail: () => reject(new Error('database down')),
        });
        onRead?.();
      }),
    () => {},
  );
  let taken = 0;
  /** Resolves with the next read once it has been asked for. */
  const nextRead = async () => {
    if (reads.length <= taken) await new Promise<void>((r) => (onRead = r));
    onRead = null;
    return reads[taken++]!;
  };
  return { sessions, reads, nextRead };
}

function subscriber(messages = false) {
  const frames: Record<string, unknown>[] = [];
  const dropped: string[] = [];
  const sub: Subscriber = {
    messages,
    send: (text) => frames.push(JSON.parse(text)),
    tooSlow: (reason) => dropped.push(reason),
  };
  return { sub, frames, dropped };
}

const status = (sessionId: string): SessionEvent => ({
  type: 'session.status_changed',
  sessionId,
  at: new Date(T).toISOString(),
  status: 'active',
  previous: 'connecting',
  cause: 'test',
});

function feedOf(hub: EventHub, sessions: SessionDirectory, maxQueued: number): EventFeed {
  return new EventFeed({
    hub,
    sessions,
    workerFrame: (w) => ({
      type: 'worker.changed',
      at: new Date(T).toISOString(),
      worker: { id: w.id } as never,
    }),
    maxQueued,
  });
}

test('under a steady flow of new sessions the feed never drains, yet keeps only what still waits', async () => {
  const hub = new EventHub();
  const { sessions, nextRead } = controlledDirectory();
  const feed = feedOf(hub, sessions, 10_000);
  const { sub, frames } = subscriber();
  feed.add(sub);
  const ROUNDS = 3_000;
  let most = 0;
  hub.publish(status('s0'));
  for (let i = 1; i <= ROUNDS; i++) {
    const read = await nextRead();
    // a new session's event arrives while the previous one is looked up: there is always one waiting
    hub.publish(status(`s${i}`));
    read.answer();
    most = Math.max(most, feed.held);
  }
  (await nextRead()).answer();
  await sessions.idle();
  assert.deepEqual(
    frames.map((f) => `${f.sessionId}:${f.projectId}`),
    Array.from({ length: ROUNDS + 1 }, (_, i) => `s${i}:p${i}`),
    'every event, in order, with its project',
  );
  assert.ok(most <= 1_100, `at most ${most} events held, though ${ROUNDS} went out while one always waited`);
  assert.equal(feed.held, 0);
  feed.remove(sub);
});

test('past maxQueued waiting events every subscriber is dropped as too slow, and the feed lets go of the hub', async () => {
  const hub = new EventHub();
  const { sessions, nextRead } = controlledDirectory();
  const feed = feedOf(hub, sessions, 5);
  const a = subscriber();
  const b = subscriber(true);
  feed.add(a.sub);
  feed.add(b.sub);
  hub.publish(status('s1')); // its project is being read: what follows waits
  const read = await nextRead();
  for (let i = 2; i <= 5; i++) hub.publish(status(`s${i}`));
  assert.deepEqual([a.dropped, b.dropped, feed.held], [[], [], 5], 'five wait: the bound is not passed yet');
  hub.publish(status('s6'));
  assert.equal(a.dropped.length, 1);
  assert.match(a.dropped[0]!, /more than 5 events waited/);
  assert.deepEqual(b.dropped, a.dropped);
  assert.equal(feed.held, 0, 'what waited is let go');
  assert.equal(hub.hasWorkerListeners, false, 'no subscriber left: the feed no longer listens');
  hub.publish(status('s7'));
  read.answer();
  await sessions.idle();
  assert.deepEqual([a.frames, b.frames], [[], []], 'nothing is sent to a dropped subscriber');
});

test('events of unknown sessions, or whose lookup failed, go out with projectId null, in order', async () => {
  const hub = new EventHub();
  const { sessions, nextRead } = controlledDirectory();
  const feed = feedOf(hub, sessions, 100);
  const { sub, frames } = subscriber();
  feed.add(sub);
  hub.publish(status('s1'));
  hub.publish(status('x-unknown'));
  (await nextRead()).answer(); // s1
  const unknown = await nextRead();
  assert.deepEqual(unknown.ids, ['x-unknown']);
  unknown.answer();
  hub.publish(status('s2'));
  (await nextRead()).fail();
  hub.publish(status('s1')); // known now: out at once
  await sessions.idle();
  assert.deepEqual(
    frames.map((f) => `${f.sessionId}:${f.projectId}`),
    ['s1:p1', 'x-unknown:null', 's2:null', 's1:p1'],
  );
  feed.remove(sub);
});
