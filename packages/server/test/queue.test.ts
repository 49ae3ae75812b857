// The queue and worker pools, on both databases: FIFO, positions, seating, warm refill, recycling.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { agentProject, databaseKinds, streamProject, useTestServer } from '@usher/testing';

for (const kind of databaseKinds()) {
  describe(`queue and pools (${kind})`, () => {
    const { t } = useTestServer(kind);

    test('three viewers on two workers: the third queues at position 1 and is seated when one leaves', async () => {
      await t.createProject(streamProject('q3', { min: 2, max: 2 }));
      await t.readyWorkers('q3', 2);
      const a = await t.createSession('q3');
      const b = await t.createSession('q3');
      const c = await t.createSession('q3');
      assert.equal(a.state, 'connecting');
      assert.equal(b.state, 'connecting');
      assert.equal(c.state, 'queued');
      assert.equal(c.queuePosition, 1);

      const va = await t.connect(a);
      await va.state('active');
      const vc = await t.connect(c);
      const pos = await vc.waitFor((e) => e.type === 'session.queue_position');
      assert.equal(pos.type === 'session.queue_position' && pos.position, 1);

      await va.close(1000);
      await vc.state('connecting');
      await vc.state('active');
      assert.deepEqual(vc.states, ['queued', 'connecting', 'active']);
      const final = await t.waitForState(a.id, 'ended');
      assert.equal(final.endCode, 1000);
      assert.equal(final.endReason, 'completed');
      assert.equal(final.outcome, 'disconnected');
      await vc.close(1001);
      assert.equal((await t.waitForState(c.id, 'ended')).endReason, 'viewer_left');
    });

    test('with reuseWorkers, one worker serves session after session on the same connection', async () => {
      await t.createProject(agentProject('reuse', { min: 1, max: 1 }, { reuseWorkers: true }));
      await t.readyWorkers('reuse', 1);
      const a = await t.createSession('reuse');
      await t.waitForState(a.id, 'active');
      const b = await t.createSession('reuse');
      assert.equal(b.state, 'queued');
      await t.api('POST', `/sessions/${a.id}/end`);
      const seated = await t.waitForState(b.id, 'active');
      assert.equal(seated.workerId, a.workerId, 'the same worker');
      const worker = t.fake.workers.get(a.workerId!);
      assert.deepEqual(
        worker?.assignments.map((x) => x.sessionId),
        [a.id, b.id],
      );
      assert.equal(worker?.sdk.state, 'registered');
      // (other tests' projects may still be refilling their pools: only this project's workers count)
      const ever = await t.server.engine.store.read.listWorkers({ projectId: 'reuse' });
      assert.deepEqual(
        ever.map((w) => w.id),
        [a.workerId],
        'no worker was started for the second session',
      );
      await t.api('POST', `/sessions/${b.id}/end`);
      await t.waitForState(b.id, 'ended');
    });

    test('an event listener that fails after an admission committed does not admit the sessions twice', async () => {
      await t.createProject(agentProject('once', { min: 0, max: 1 }));
      const off = t.server.hub.subscribeAll((e) => {
        if (e.type === 'session.status_changed' && e.status === 'requesting')
          throw new Error('a broken listener');
      });
      try {
        const made = await Promise.all([1, 2, 3].map(() => t.createSession('once')));
        assert.equal(new Set(made.map((s) => s.id)).size, 3);
        const stored = await t.server.engine.store.read.listSessions({ projectId: 'once', limit: 100 });
        assert.equal(stored.length, 3, 'three requests, three sessions');
        for (const s of made) await t.api('POST', `/sessions/${s.id}/end`);
      } finally {
        off();
      }
    });

    test('positions move up one by one as the queue drains', async () => {
      await t.createProject(streamProject('q1', { min: 0, max: 1 }));
      const first = await t.createSession('q1');
      const waiting = [];
      for (let i = 0; i < 3; i++) waiting.push(await t.createSession('q1'));
      assert.deepEqual(
        waiting.map((s) => s.queuePosition),
        [1, 2, 3],
      );
      const last = await t.connect(waiting[2]!);
      await last.waitFor((e) => e.type === 'session.queue_position' && e.position === 3);
      await t.api('POST', `/sessions/${first.id}/end`);
      await last.waitFor((e) => e.type === 'session.queue_position' && e.position === 2);
      await t.api('POST', `/sessions/${waiting[0]!.id}/end`);
      await last.waitFor((e) => e.type === 'session.queue_position' && e.position === 1);
      const positions = last.events.flatMap((e) => (e.type === 'session.queue_position' ? [e.position] : []));
      assert.deepEqual(positions, [3, 2, 1]);
      for (const s of waiting) await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('the line growing behind a session is news too: its queue length (and estimate) is told again', async () => {
      await t.createProject(streamProject('q2', { min: 0, max: 1 }));
      const seated = await t.createSession('q2');
      const front = await t.createSession('q2');
      const socket = await t.connect(front);
      await socket.waitFor((e) => e.type === 'session.queue_position' && e.queueLength === 1);
      const behind = await t.createSession('q2');
      const told = await socket.waitFor((e) => e.type === 'session.queue_position' && e.queueLength === 2);
      assert.ok(told.type === 'session.queue_position' && told.position === 1, 'still first in line');
      assert.deepEqual(
        socket.events.flatMap((e) =>
          e.type === 'session.queue_position' ? [[e.position, e.queueLength]] : [],
        ),
        [
          [1, 1],
          [1, 2],
        ],
      );
      for (const s of [behind, front, seated]) await t.api('POST', `/sessions/${s.id}/end`);
    });
  });
}
