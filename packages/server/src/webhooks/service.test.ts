// The webhooks of one server, on SQLite and PostgreSQL: it queues only the events it published itself (another
// server queues its own), one row per endpoint that wants the event, with the session's project (from the
// server's session directory) in the payload; a batch is one statement; old finished deliveries are pruned on
// the clock.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SessionEvent } from '@usher/protocol';
import { databaseKinds, useTestStore } from '@usher/testing';
import { WebhookReceiver } from '../../test/fixtures/webhook-receiver.ts';
import type { Bus, BusMessage } from '../cluster/bus.ts';
import { ManualClock } from '../engine/clock.ts';
import { EventHub } from '../engine/event-hub.ts';
import { SessionDirectory } from '../observability/session-directory.ts';
import { sessionKeys } from '../storage/observability.ts';
import { silentLogger } from '../util/logger.ts';
import { type WebhookDeliveryOptions, Webhooks } from './service.ts';

const SECRET = 'service-test-secret-0123456789';

/** A bus whose messages the test delivers: what another server would publish. */
function fakeBus() {
  let listener: (m: BusMessage) => void = () => {};
  const bus: Bus = {
    shared: true,
    send() {},
    onMessage(l) {
      listener = l;
    },
    async close() {},
  };
  return { bus, fromOtherServer: (m: BusMessage) => listener(m) };
}

const status = (sessionId: string, s: string): SessionEvent => ({
  type: 'session.status_changed',
  sessionId,
  at: new Date(Date.UTC(2026, 0, 1)).toISOString(),
  status: s as 'active',
  previous: null,
  cause: 'test',
});

for (const kind of databaseKinds()) {
  describe(`webhooks of one server (${kind})`, () => {
    const { store } = useTestStore(kind);
    let receiver: WebhookReceiver;
    before(async () => {
      receiver = await WebhookReceiver.start();
      for (const [id, project] of [
        ['svc-a', 'alpha'],
        ['svc-b', 'beta'],
      ])
        await store.db.run(
          `INSERT INTO sessions (id, project_id, region, config, state, created_at, updated_at)
            VALUES (?, ?, 'default', '{}', 'active', 0, 0)`,
          [id!, project!],
        );
    });
    after(() => receiver.close());
    /** A session directory as the server's, with the sessions it read, call by call. */
    const directory = () => {
      const reads: string[][] = [];
      const sessions = new SessionDirectory(
        (ids) => {
          reads.push([...ids].sort());
          return sessionKeys(store.read.q, ids);
        },
        () => {},
      );
      return { sessions, reads };
    };

    test('only local events are queued, once per endpoint that wants them, with their project', async () => {
      const hub = new EventHub();
      const { bus, fromOtherServer } = fakeBus();
      hub.connect(bus, 'this-server');
      const clock = new ManualClock();
      const { sessions, reads } = directory();
      const webhooks = new Webhooks({
        db: store.db,
        hub,
        sessions,
        clock,
        serverId: 'svc',
        endpoints: [
          { url: `${receiver.url}/svc-all`, secret: SECRET },
          { url: `${receiver.url}/svc-beta`, secret: SECRET, projects: ['beta'] },
          { url: `${receiver.url}/svc-messages`, secret: SECRET, events: ['session.message'] },
        ],
        log: silentLogger,
        shared: false,
        userAgent: 'test',
      });
      await webhooks.start();
      try {
        hub.publish(status('svc-a', 'active'));
        hub.publish(status('svc-b', 'active'));
        hub.publish({
          type: 'session.queue_position',
          sessionId: 'svc-a',
          at: new Date(clock.now()).toISOString(),
          position: 1,
          queueLength: 1,
          estimatedWaitMs: null,
        });
        hub.publish(status('svc-unknown', 'active')); // no such session: dropped with a warning
        fromOtherServer({ kind: 'event', event: status('svc-b', 'ended') });
        await webhooks.settled();
        const rows = await webhooks.deliveries.list({ limit: 50 });
        assert.deepEqual(
          rows
            .map(
              (r) => `${r.endpointUrl.slice(receiver.url.length)} ${r.sessionId} ${r.projectId} ${r.status}`,
            )
            .sort(),
          [
            '/svc-all svc-a alpha delivered',
            '/svc-all svc-b beta delivered',
            '/svc-beta svc-b beta delivered',
          ],
        );
        const body = JSON.parse((await webhooks.deliveries.get(rows.at(-1)!.id))!.payload);
        assert.deepEqual(body, {
          type: 'session.status_changed',
          timestamp: '2026-01-01T00:00:00.000Z',
          data: {
            type: 'session.status_changed',
            sessionId: 'svc-a',
            projectId: 'alpha',
            at: '2026-01-01T00:00:00.000Z',
            status: 'active',
            previous: null,
            cause: 'test',
          },
        });
        assert.equal(receiver.at('/svc-messages').length, 0);
        assert.deepEqual(reads, [['svc-a', 'svc-b', 'svc-unknown']], 'the projects, read in one query');
        // a session the directory holds is not read again
        hub.publish(status('svc-a', 'idle'));
        await webhooks.settled();
        assert.equal((await webhooks.deliveries.list({ limit: 50 })).length, 4);
        assert.equal(reads.length, 1);
      } finally {
        await webhooks.close();
      }
      hub.publish(status('svc-a', 'ended'));
      assert.equal((await webhooks.deliveries.list({ limit: 50 })).length, 4, 'nothing is heard after close');
    });

    test('finished deliveries older than the retention are pruned every hour; pending ones stay', async () => {
      await store.db.run('DELETE FROM webhook_deliveries');
      const clock = new ManualClock();
      const webhooks = new Webhooks({
        db: store.db,
        hub: new EventHub(),
        sessions: directory().sessions,
        clock,
        serverId: 'svc-prune',
        endpoints: [],
        delivery: { retentionMs: 86_400_000 },
        log: silentLogger,
        shared: false,
        userAgent: 'test',
      });
      await webhooks.deliveries.enqueue(
        ['old-done', 'old-pending', 'new-done'].map((id, i) => ({
          id,
          endpointUrl: 'http://127.0.0.1:1/none',
          eventType: 'session.error',
          sessionId: 'svc-a',
          projectId: 'alpha',
          payload: '{}',
          createdAt: clock.now() + (i === 2 ? 3_600_000 : 0),
        })),
      );
      await store.db.run(`UPDATE webhook_deliveries SET status = 'delivered' WHERE id <> 'old-pending'`);
      await webhooks.start();
      try {
        await clock.advance(86_400_000);
        assert.equal((await webhooks.deliveries.list({ limit: 10 })).length, 3, 'a day old: not yet');
        await clock.advance(3_600_000);
        assert.deepEqual((await webhooks.deliveries.list({ limit: 10 })).map((d) => d.id).sort(), [
          'new-done',
          'old-pending',
        ]);
      } finally {
        await webhooks.close();
      }
    });
    /** This server's webhooks, to one endpoint of the receiver, on a manual clock. */
    const oneEndpoint = (path: string, delivery: WebhookDeliveryOptions = {}) => {
      const hub = new EventHub();
      const clock = new ManualClock();
      const webhooks = new Webhooks({
        db: store.db,
        hub,
        sessions: directory().sessions,
        clock,
        serverId: `svc${path.replaceAll('/', '-')}`,
        endpoints: [{ url: `${receiver.url}${path}`, secret: SECRET }],
        delivery,
        log: silentLogger,
        shared: false,
        userAgent: 'test',
      });
      return { hub, clock, webhooks };
    };

    test('close() stops sending at once, even with a backlog to an endpoint that does not answer', async () => {
      // a send would wait ten minutes for its answer
      const { hub, webhooks } = oneEndpoint('/svc-hangs', { timeoutMs: 600_000 });
      receiver.answer = (r) => (r.path === '/svc-hangs' ? 'hang' : 200);
      try {
        await webhooks.start();
        for (const s of ['queued', 'connecting', 'active']) hub.publish(status('svc-a', s));
        await receiver.waitFor((r) => r.path === '/svc-hangs');
        await webhooks.close();
        const rows = (await webhooks.deliveries.list({ limit: 50 })).filter((r) =>
          r.endpointUrl.endsWith('/svc-hangs'),
        );
        assert.equal(rows.length, 3, 'all three were queued');
        assert.deepEqual(
          rows.map((r) => r.status),
          ['pending', 'pending', 'pending'],
          'the one in flight was given back; the others wait',
        );
      } finally {
        receiver.answer = () => 200;
        await webhooks.close();
      }
    });
    test('an event whose write fails is queued again later, once, under the same delivery id', async () => {
      const { hub, clock, webhooks } = oneEndpoint('/svc-retry');
      const enqueue = webhooks.deliveries.enqueue.bind(webhooks.deliveries);
      const tries: string[][] = [];
      webhooks.deliveries.enqueue = async (rows) => {
        tries.push(rows.map((r) => r.id));
        // the first write is stored but its answer is lost; the second finds the database away
        if (tries.length === 1) await enqueue(rows);
        if (tries.length <= 2) throw new Error('connection terminated');
        await enqueue(rows);
      };
      try {
        await webhooks.start();
        hub.publish(status('svc-a', 'paused'));
        await webhooks.settled();
        assert.equal(tries.length, 1);
        await clock.advance(999);
        await webhooks.settled();
        assert.equal(tries.length, 1, 'the next try waits a second');
        await clock.advance(1);
        await webhooks.settled();
        assert.equal(tries.length, 2);
        await clock.advance(2_000);
        await webhooks.settled();
        assert.equal(tries.length, 3, 'then two');
        assert.deepEqual(new Set(tries.flat()).size, 1, 'every try wrote the same delivery id');
        const rows = (await webhooks.deliveries.list({ limit: 50 })).filter((r) =>
          r.endpointUrl.endsWith('/svc-retry'),
        );
        assert.deepEqual(
          rows.map((r) => [r.id, r.status]),
          [[tries[0]![0], 'delivered']],
        );
        assert.equal(receiver.at('/svc-retry').length, 1);
      } finally {
        webhooks.deliveries.enqueue = enqueue;
        await webhooks.close();
      }
    });
  });
}
