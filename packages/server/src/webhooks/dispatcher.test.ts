// The dispatcher against a real HTTP receiver on SQLite and PostgreSQL, on a manual clock: signed POSTs in queue
// order, retries on the schedule, failures recorded as the receiver answered them, leases that keep two
// servers from sending the same delivery and that a restarted or surviving server takes over.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { databaseKinds, useTestStore } from '@usher/testing';
import { Webhook } from 'standardwebhooks';
import { WebhookReceiver } from '../../test/fixtures/webhook-receiver.ts';
import { ManualClock } from '../engine/clock.ts';
import { type NewDelivery, WebhookLog } from '../storage/webhooks.ts';
import { silentLogger } from '../util/logger.ts';
import { Dispatcher, type DispatcherOptions } from './dispatcher.ts';
import { resolveEndpoints } from './endpoints.ts';

const SECRET = 'dispatcher-test-secret-0123456789';
const verifier = new Webhook(SECRET, { format: 'raw' });

let seq = 0;

for (const kind of databaseKinds()) {
  describe(`webhook dispatcher (${kind})`, () => {
    const { store } = useTestStore(kind);
    let receiver: WebhookReceiver;
    const running: Dispatcher[] = [];
    before(async () => {
      receiver = await WebhookReceiver.start();
    });
    after(async () => {
      for (const d of running) await d.close();
      await receiver.close();
    });

    /** A fresh endpoint path, a clock, and a dispatcher for it (not started). */
    function setup(extra: Partial<DispatcherOptions> = {}, path = `/d${++seq}`) {
      const url = receiver.url + path;
      const clock = new ManualClock();
      const log = new WebhookLog(store.db);
      const make = (o: Partial<DispatcherOptions> = {}) => {
        const d = new Dispatcher({
          log,
          endpoints: resolveEndpoints([{ url, secret: SECRET }]),
          clock,
          serverId: 'srv-a',
          logger: silentLogger,
          timeoutMs: 5_000,
          maxAttempts: 4,
          retryScheduleMs: [5_000, 30_000, 120_000],
          pollMs: 0,
          userAgent: 'usher-test',
          random: () => 0.5, // no jitter: the schedule exactly
          ...extra,
          ...o,
        });
        running.push(d);
        return d;
      };
      const queue = async (count: number, at = clock.now()) => {
        const rows: NewDelivery[] = Array.from({ length: count }, (_, i) => ({
          id: `whd_${kind}_${String(++seq).padStart(6, '0')}_${i}`,
          endpointUrl: url,
          eventType: 'session.status_changed',
          sessionId: 's1',
          projectId: 'p1',
          payload: JSON.stringify({ type: 'session.status_changed', timestamp: 'x', data: { i } }),
          createdAt: at,
        }));
        await log.enqueue(rows);
        return rows;
      };
      return { url, path, clock, log, make, queue };
    }

    test('due deliveries go out signed, in queue order, and are marked delivered; later ones wait', async () => {
      const { path, clock, log, make, queue } = setup();
      const d = make();
      const now = await queue(12); // more than one claim's batch
      const later = await queue(1, clock.now() + 10_000);
      await d.start();
      await d.idle();
      const got = receiver.at(path);
      assert.deepEqual(
        got.map((r) => r.headers['webhook-id']),
        now.map((r) => r.id),
      );
      for (const r of got) {
        assert.deepEqual(verifier.verify(r.body, r.headers as Record<string, string>), JSON.parse(r.body));
        assert.equal(r.headers['user-agent'], 'usher-test');
        assert.equal(r.headers['content-type'], 'application/json');
      }
      assert.equal((await log.get(now[0]!.id))!.status, 'delivered');
      assert.equal((await log.get(later[0]!.id))!.status, 'pending');
      await clock.advance(9_999);
      assert.equal(receiver.at(path).length, 12, 'not before it is due');
      await clock.advance(1);
      assert.equal(receiver.at(path).length, 13);
      const done = await log.get(later[0]!.id);
      assert.deepEqual([done!.status, done!.attempts, done!.lastStatus], ['delivered', 1, 200]);
      assert.equal(clock.pending, 0, 'nothing due: the lane sleeps without a timer');
    });

    test('a failing receiver: retried on the schedule, its answers recorded, failed after the last attempt', async () => {
      const { path, clock, log, make, queue } = setup();
      receiver.script(
        { status: 500, body: 'database   down\n' },
        503,
        { status: 302, body: '' }, // a redirect is not followed
        404,
      );
      const d = make();
      const [row] = await queue(1);
      const t0 = clock.now();
      await d.start();
      await d.idle();
      let got = await log.get(row!.id);
      assert.deepEqual(
        [got!.status, got!.attempts, got!.lastStatus, got!.lastError, got!.nextAttemptAt],
        ['pending', 1, 500, 'HTTP 500 Internal Server Error: database down', t0 + 5_000],
      );
      await clock.advance(4_999);
      assert.equal(receiver.at(path).length, 1);
      await clock.advance(1);
      got = await log.get(row!.id);
      assert.deepEqual([got!.attempts, got!.lastStatus, got!.nextAttemptAt], [2, 503, t0 + 5_000 + 30_000]);
      await clock.advance(30_000);
      got = await log.get(row!.id);
      assert.deepEqual([got!.attempts, got!.lastStatus], [3, 302]);
      assert.equal(receiver.at(path).length, 3, 'the redirect was not followed');
      await clock.advance(120_000);
      got = await log.get(row!.id);
      assert.deepEqual(
        [got!.status, got!.attempts, got!.lastStatus, got!.lastError],
        ['failed', 4, 404, 'HTTP 404 Not Found'],
      );
      await clock.advance(86_400_000);
      const sent = receiver.at(path);
      assert.equal(sent.length, 4, 'no attempt after the last');
      assert.equal(new Set(sent.map((r) => r.headers['webhook-id'])).size, 1, 'one id across retries');
      assert.equal(new Set(sent.map((r) => r.body)).size, 1, 'one body across retries');
      for (const r of sent) verifier.verify(r.body, r.headers as Record<string, string>);
    });

    test('an answer with a NUL byte is recorded with the character replaced; the attempt counts', async () => {
      const { clock, log, make, queue } = setup();
      receiver.script({ status: 500, body: 'E\u0000r\u0000r' });
      const d = make();
      const [row] = await queue(1);
      await d.start();
      await d.idle();
      const got = await log.get(row!.id);
      assert.deepEqual(
        [got!.status, got!.attempts, got!.lastError, got!.nextAttemptAt],
        ['pending', 1, 'HTTP 500 Internal Server Error: E\uFFFDr\uFFFDr', clock.now() + 5_000],
      );
    });

    test('a 2xx counts as delivered when it comes, even if its body never ends', async () => {
      const stalled = setup({ timeoutMs: 2_000 });
      receiver.answer = () => 'stall';
      const [row] = await stalled.queue(1);
      try {
        await stalled.make().start();
        await running.at(-1)!.idle();
      } finally {
        receiver.answer = () => 200;
      }
      const got = await stalled.log.get(row!.id);
      assert.deepEqual([got!.status, got!.attempts, got!.lastStatus], ['delivered', 1, 200]);
    });

    test('no answer in time, and no connection, are recorded without a status', async () => {
      const hang = setup({ timeoutMs: 100 });
      receiver.answer = () => 'hang';
      const [slow] = await hang.queue(1);
      await hang.make().start();
      await running.at(-1)!.idle();
      receiver.answer = () => 200;
      const got = await hang.log.get(slow!.id);
      assert.deepEqual(
        [got!.status, got!.attempts, got!.lastStatus, got!.lastError],
        ['pending', 1, null, 'no answer within 100 ms'],
      );

      const refused = setup();
      const closed = await WebhookReceiver.start();
      await closed.close();
      const d = refused.make({
        endpoints: resolveEndpoints([{ url: `${closed.url}/gone`, secret: SECRET }]),
      });
      await refused.log.enqueue([
        {
          id: `whd_refused_${kind}`,
          endpointUrl: `${closed.url}/gone`,
          eventType: 'session.error',
          sessionId: 's1',
          projectId: 'p1',
          payload: '{}',
          createdAt: refused.clock.now(),
        },
      ]);
      await d.start();
      await d.idle();
      const r = await refused.log.get(`whd_refused_${kind}`);
      assert.equal(r!.lastStatus, null);
      assert.match(r!.lastError!, /ECONNREFUSED/);
    });

    test('closing aborts a send in flight and gives the delivery back, due at once', async () => {
      const { path, log, make, queue } = setup();
      receiver.answer = () => 'hang';
      const [row] = await queue(2);
      const d = make();
      const arrived = receiver.until(receiver.received.length + 1);
      await d.start();
      await arrived;
      await d.close();
      receiver.answer = () => 200;
      const got = await log.get(row!.id);
      assert.deepEqual([got!.status, got!.attempts, got!.lastError], ['pending', 0, null]);
      const successor = make({ serverId: 'srv-b' });
      await successor.start();
      await successor.idle();
      assert.equal((await log.get(row!.id))!.status, 'delivered', 'another server sends it without waiting');
      assert.equal(receiver.at(path).length, 3, 'the first again (at least once), then the second');
    });

    test("a server that restarts takes back its own claims at once; another waits for the lease's end", async () => {
      const own = setup();
      const [mine] = await own.queue(1);
      await own.log.claim({
        endpointUrl: own.url,
        serverId: 'srv-a',
        claim: 'killed-run',
        now: own.clock.now(),
        leaseUntil: own.clock.now() + 600_000,
        limit: 10,
      });
      const restarted = own.make();
      await restarted.start();
      await restarted.idle();
      assert.equal((await own.log.get(mine!.id))!.status, 'delivered');

      const other = setup();
      const [theirs] = await other.queue(1);
      await other.log.claim({
        endpointUrl: other.url,
        serverId: 'srv-dead',
        claim: 'dead-run',
        now: other.clock.now(),
        leaseUntil: other.clock.now() + 60_000,
        limit: 10,
      });
      const survivor = other.make();
      await survivor.start();
      await survivor.idle();
      assert.equal(receiver.at(other.path).length, 0, 'the lease still runs');
      await other.clock.advance(59_999);
      assert.equal(receiver.at(other.path).length, 0);
      await other.clock.advance(1);
      assert.equal((await other.log.get(theirs!.id))!.status, 'delivered');
    });

    if (kind === 'postgres') {
      test('two servers woken for the same rows send each exactly once', async () => {
        const { path, make, queue, log } = setup({ batch: 3 });
        const rows = await queue(40);
        const a = make({ serverId: 'srv-1' });
        const b = make({ serverId: 'srv-2' });
        await Promise.all([a.start(), b.start(), a.wake(rows[0]!.endpointUrl), b.wake(rows[0]!.endpointUrl)]);
        await Promise.all([a.idle(), b.idle()]);
        const ids = receiver.at(path).map((r) => r.headers['webhook-id']);
        assert.equal(ids.length, 40);
        assert.deepEqual(new Set(ids), new Set(rows.map((r) => r.id)));
        for (const r of rows) assert.equal((await log.get(r.id))!.attempts, 1);
      });
    }
  });
}
