// Webhooks end to end (SPEC §7), on SQLite and PostgreSQL, against a real HTTP receiver: a session's events
// arrive signed (checked with the Standard Webhooks reference library) and in order, filtered per endpoint;
// failures are retried on the manual clock's schedule and recorded in the delivery log; the last attempt
// fails a delivery; an admin re-queues it; deliveries survive a restart and a SIGKILL; the log is admin only.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SessionEvent } from '@usher/protocol';
import { ManualClock, type UsherServerOptions, WebhookConfigError } from '@usher/server';
import {
  createTestDatabase,
  databaseKinds,
  streamProject,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  type TestDatabase,
  TestServer,
} from '@usher/testing';
import { Webhook } from 'standardwebhooks';
import { eventually } from './fixtures/processes.ts';
import { adminApi, freePort, startServer } from './fixtures/server-child.ts';
import { type Answer, type Received, WebhookReceiver } from './fixtures/webhook-receiver.ts';
import { assertError } from './helpers.ts';

const PLAIN = 'plain-webhook-secret-0123456789';
const WHSEC = `whsec_${Buffer.alloc(32, 42).toString('base64')}`;
const DEFAULT_TYPES = [
  'session.status_changed',
  'session.participant_joined',
  'session.participant_left',
  'session.error',
  'session.afk_warning',
];

interface Delivery {
  id: string;
  endpointUrl: string;
  eventType: string;
  sessionId: string;
  projectId: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
  lastAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
  payload?: unknown;
}
interface Page {
  deliveries: Delivery[];
  nextBefore: string | null;
}

/** What an endpoint must receive for an event: the Standard Webhooks body with the session's project added. */
function expected(e: SessionEvent, projectId: string) {
  const { type, sessionId, ...rest } = e;
  return { type, timestamp: e.at, data: { type, sessionId, projectId, ...rest } };
}

function verify(r: Received, secret: string): unknown {
  const receiver = secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(secret, { format: 'raw' });
  return receiver.verify(r.body, r.headers as Record<string, string>);
}

const ms = (iso: string | null) => (iso === null ? Number.NaN : Date.parse(iso));

for (const kind of databaseKinds()) {
  describe(`webhooks (${kind})`, () => {
    let receiver: WebhookReceiver;
    let db: TestDatabase;
    let t: TestServer;
    /** per path, answers still to give (then 200) */
    const scripts = new Map<string, (r: Received) => Answer>();
    const published: SessionEvent[] = [];

    before(async () => {
      receiver = await WebhookReceiver.start();
      receiver.answer = (r) => scripts.get(r.path)?.(r) ?? 200;
      db = await createTestDatabase(kind);
      t = new TestServer({
        storage: db.storage,
        webhooks: [
          { url: `${receiver.url}/all`, secret: PLAIN },
          {
            url: `${receiver.url}/p2-status`,
            secret: WHSEC,
            events: ['session.status_changed'],
            projects: ['p2'],
          },
          { url: `${receiver.url}/flaky`, secret: PLAIN, projects: ['flaky'] },
          { url: `${receiver.url}/down`, secret: PLAIN, projects: ['down'] },
        ],
        webhookDelivery: { maxAttempts: 3 },
      });
      t.server.hub.subscribeAll((e) => published.push(e));
      await t.start();
    });
    after(async () => {
      await t?.close();
      await receiver?.close();
      await db?.drop();
    });

    const settled = async () => {
      await t.settled();
      await t.server.webhooks.settled();
    };
    const deliveries = async (query: string, endpointPath?: string) => {
      const r = await t.api<Page>('GET', `/webhooks/deliveries${query}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const all = r.body.deliveries;
      return endpointPath ? all.filter((d) => d.endpointUrl === receiver.url + endpointPath) : all;
    };
    const delivery = async (id: string) => {
      const r = await t.api<Delivery>('GET', `/webhooks/deliveries/${id}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };
    /** A session of the project that is created, then ended; resolves once it has ended. */
    const shortSession = async (projectId: string) => {
      const s = await t.createSession(projectId);
      assert.equal((await t.api('POST', `/sessions/${s.id}/end`)).status, 200);
      await t.waitForState(s.id, 'ended');
      await settled();
      return s;
    };

    test('a session lifecycle arrives signed, complete and in order; each POST is in the delivery log', async () => {
      await t.createProject(streamProject('p1', { min: 1, max: 1 }));
      await t.readyWorkers('p1', 1);
      const s = await t.createSession('p1');
      const viewer = await t.connect(s);
      await t.waitForState(s.id, 'active');
      assert.equal((await t.api('POST', `/sessions/${s.id}/end`)).status, 200);
      await t.waitForState(s.id, 'ended');
      await viewer.closed;
      await settled();

      const want = published
        .filter((e) => e.sessionId === s.id && DEFAULT_TYPES.includes(e.type))
        .map((e) => expected(e, 'p1'));
      const statuses = published.flatMap((e) =>
        e.sessionId === s.id && e.type === 'session.status_changed' ? [e.status] : [],
      );
      assert.ok(statuses.includes('active') && statuses.at(-1) === 'ended', statuses.join());
      assert.ok(want.some((p) => p.type === 'session.participant_joined'));

      const got = receiver.at('/all').filter((r) => r.json.data.sessionId === s.id);
      assert.deepEqual(
        got.map((r) => r.json),
        want,
      );
      for (const r of got) {
        assert.deepEqual(verify(r, PLAIN), r.json, 'the signature checks out');
        assert.throws(() => verify({ ...r, body: r.body.replace('"p1"', '"p9"') }, PLAIN), /signature/i);
        assert.throws(() => verify(r, WHSEC), /signature/i, 'signed with this endpoint’s secret only');
        assert.match(String(r.headers['user-agent']), /^Usher\/\S+ \(webhooks\)$/);
      }
      assert.equal(receiver.at('/p2-status').length, 0, 'another project’s endpoint hears nothing of p1');

      const logged = await deliveries(`?sessionId=${s.id}&limit=100`);
      assert.deepEqual(
        logged.map((d) => d.id).reverse(),
        got.map((r) => r.headers['webhook-id']),
        'newest first; each POST carries its delivery id',
      );
      for (const d of logged) {
        assert.equal(d.status, 'delivered');
        assert.equal(d.attempts, 1);
        assert.equal(d.lastStatus, 200);
        assert.equal(d.nextAttemptAt, null);
        assert.equal(d.projectId, 'p1');
        assert.equal(d.endpointUrl, `${receiver.url}/all`);
        assert.equal(d.deliveredAt, new Date(t.clock.now()).toISOString());
      }
      const one = await delivery(logged[0]!.id);
      assert.deepEqual(one.payload, got.at(-1)!.json);
    });

    test('endpoints get only the events and projects they asked for', async () => {
      await t.createProject(streamProject('p2', { min: 0, max: 1 }));
      const s = await shortSession('p2');
      const want = published
        .filter((e) => e.sessionId === s.id && e.type === 'session.status_changed')
        .map((e) => expected(e, 'p2'));
      assert.ok(want.length >= 2);
      const narrow = receiver.at('/p2-status');
      assert.deepEqual(
        narrow.map((r) => r.json),
        want,
      );
      for (const r of narrow) assert.deepEqual(verify(r, WHSEC), r.json);
      assert.ok(
        receiver.at('/all').some((r) => r.json.data.sessionId === s.id),
        'and /all hears it too',
      );
      assert.equal(receiver.at('/flaky').length + receiver.at('/down').length, 0);
    });

    test('a receiver answering 500 then 200: retried on the schedule, attempts and status in the log', async () => {
      const answered = new Set<string>();
      scripts.set('/flaky', (r) => {
        const id = String(r.headers['webhook-id']);
        if (answered.has(id)) return 200;
        answered.add(id);
        return { status: 500, body: 'try later' };
      });
      await t.createProject(streamProject('flaky', { min: 0, max: 1 }));
      const s = await shortSession('flaky');
      let log = await deliveries('?projectId=flaky', '/flaky');
      assert.ok(log.length >= 2);
      assert.equal(receiver.at('/flaky').length, log.length);
      for (const d of log) {
        assert.deepEqual(
          [d.status, d.attempts, d.lastStatus, d.lastError, d.sessionId],
          ['pending', 1, 500, 'HTTP 500 Internal Server Error: try later', s.id],
        );
        // 5 s, give or take 20 %
        const wait = ms(d.nextAttemptAt) - ms(d.lastAttemptAt);
        assert.ok(wait >= 4_000 && wait <= 6_000, String(wait));
      }
      const dues = log.map((d) => ms(d.nextAttemptAt));
      const first = Math.min(...dues);
      await t.advance(first - t.clock.now() - 1);
      await settled();
      assert.equal(receiver.at('/flaky').length, log.length, 'nothing before the first is due');
      await t.advance(Math.max(...dues) - t.clock.now());
      await settled();
      log = await deliveries('?projectId=flaky', '/flaky');
      for (const d of log)
        assert.deepEqual([d.status, d.attempts, d.lastStatus, d.lastError], ['delivered', 2, 200, null]);
      const sent = receiver.at('/flaky');
      assert.equal(sent.length, 2 * log.length);
      for (const d of log) {
        const tries = sent.filter((r) => r.headers['webhook-id'] === d.id);
        assert.equal(tries.length, 2);
        assert.equal(tries[0]!.body, tries[1]!.body);
        for (const r of tries) verify(r, PLAIN);
      }
    });

    test('the last attempt fails a delivery; an admin re-queues it and it goes out at once', async () => {
      let down = true;
      scripts.set('/down', () => (down ? 503 : 200));
      await t.createProject(streamProject('down', { min: 0, max: 1 }));
      await shortSession('down');
      const ids = (await deliveries('?projectId=down', '/down')).map((d) => d.id);
      assert.ok(ids.length >= 2);
      // attempts 2 and 3 come at most 6 s and 36 s after the one before
      await t.advance(6_000);
      await settled();
      await t.advance(36_000);
      await settled();
      const failed = await deliveries('?projectId=down&status=failed', '/down');
      assert.deepEqual(failed.map((d) => d.id).sort(), [...ids].sort());
      for (const d of failed) assert.deepEqual([d.attempts, d.lastStatus, d.nextAttemptAt], [3, 503, null]);
      await t.advance(3_600_000);
      await settled();
      assert.equal(receiver.at('/down').length, 3 * ids.length, 'nothing after the last attempt');

      down = false;
      const r = await t.api<Delivery>('POST', `/webhooks/deliveries/${ids[0]}/retry`);
      assert.equal(r.status, 202);
      assert.deepEqual([r.body.status, r.body.attempts, r.body.lastStatus], ['pending', 0, 503]);
      await settled();
      const d = await delivery(ids[0]!);
      assert.deepEqual([d.status, d.attempts, d.lastStatus], ['delivered', 1, 200]);
      assert.equal(receiver.at('/down').length, 3 * ids.length + 1);
      assert.equal((await delivery(ids[1]!)).status, 'failed', 'the others stay failed');
    });

    test('the log pages newest first, filters, and refuses bad parameters naming them', async () => {
      const all = await deliveries('?limit=100');
      assert.ok(all.length > 10);
      const seen: string[] = [];
      let before = '';
      for (;;) {
        const r = await t.api<Page>('GET', `/webhooks/deliveries?limit=3${before}`);
        assert.equal(r.status, 200);
        seen.push(...r.body.deliveries.map((d) => d.id));
        if (!r.body.nextBefore) break;
        before = `&before=${r.body.nextBefore}`;
      }
      assert.deepEqual(
        seen,
        all.map((d) => d.id),
      );
      const times = all.map((d) => ms(d.createdAt));
      assert.deepEqual(
        times,
        [...times].sort((a, b) => b - a),
      );
      assert.ok((await deliveries('?status=failed')).every((d) => d.status === 'failed'));
      assert.ok((await deliveries('?projectId=p2')).every((d) => d.projectId === 'p2'));

      for (const [query, name] of [
        ['?status=lost', 'status'],
        ['?limit=0', 'limit'],
        ['?limit=101', 'limit'],
        ['?limit=ten', 'limit'],
        ['?before=whd_nope', 'before'],
        ['?sessionId=', 'sessionId'],
        ['?colour=red', 'colour'],
      ] as const) {
        const r = await t.api('GET', `/webhooks/deliveries${query}`);
        const error = assertError(r, 400, 'BAD_PARAMETER');
        assert.match(error.message, new RegExp(name), `${query}: ${error.message}`);
      }
      assertError(await t.api('GET', '/webhooks/deliveries/whd_nope'), 404, 'NOT_FOUND');
      assertError(await t.api('POST', '/webhooks/deliveries/whd_nope/retry'), 404, 'NOT_FOUND');
    });

    test('the delivery log is for admins only', async () => {
      const s = await t.createSession('p2');
      const id = (await deliveries('?limit=1'))[0]!.id;
      for (const [method, path] of [
        ['GET', '/webhooks/deliveries'],
        ['GET', `/webhooks/deliveries/${id}`],
        ['POST', `/webhooks/deliveries/${id}/retry`],
      ] as const) {
        assertError(await t.api(method, path, undefined, null), 401, 'UNAUTHORIZED');
        assertError(await t.api(method, path, undefined, s.token), 403, 'FORBIDDEN');
        assertError(await t.api(method, path, undefined, 'not-the-admin-key'), 401, 'UNAUTHORIZED');
      }
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      await settled();
    });
  });

  describe(`webhooks across restarts (${kind})`, () => {
    let receiver: WebhookReceiver;
    before(async () => {
      receiver = await WebhookReceiver.start();
    });
    after(async () => {
      await receiver?.close();
    });

    test('a pending delivery is sent by the next run, on its schedule', async (c) => {
      const db = await createTestDatabase(kind);
      c.after(() => db.drop());
      const endpoint = { url: `${receiver.url}/restart-${kind}`, secret: PLAIN };
      receiver.answer = () => 503;
      const run1 = await new TestServer({ storage: db.storage, webhooks: [endpoint] }).start();
      c.after(() => run1.close());
      await run1.createProject(streamProject('r', { min: 0, max: 1 }));
      const s = await run1.createSession('r');
      // the worker starts the session (the agent's arrival is an event, and a delivery, of its own)
      await eventually('the worker to start the session', async () =>
        Boolean((await run1.engine.store.read.getSession(s.id))?.workerStarted),
      );
      await run1.settled();
      await run1.server.webhooks.settled();
      const pending = (await run1.api<Page>('GET', `/webhooks/deliveries?sessionId=${s.id}`)).body.deliveries;
      assert.ok(pending.length >= 1);
      assert.ok(
        pending.every((d) => d.status === 'pending' && d.attempts === 1),
        JSON.stringify(pending, null, 1),
      );
      const stoppedAt = run1.clock.now();
      await run1.close();

      receiver.answer = () => 200;
      const ids = new Set(pending.map((d) => d.id));
      const resent = () => receiver.received.filter((r) => ids.has(String(r.headers['webhook-id']))).length;
      const before = resent();
      const run2 = await new TestServer({
        storage: db.storage,
        webhooks: [endpoint],
        clock: new ManualClock(stoppedAt),
      }).start();
      c.after(() => run2.close());
      await run2.settled();
      await run2.server.webhooks.settled();
      assert.equal(resent(), before, 'not before it is due');
      await run2.advance(6_000);
      await run2.server.webhooks.settled();
      assert.equal(resent(), before + ids.size, 'each once more');
      for (const id of ids) {
        const d = (await run2.api<Delivery>('GET', `/webhooks/deliveries/${id}`)).body;
        assert.deepEqual([d.status, d.attempts, d.lastStatus], ['delivered', 2, 200]);
      }
    });

    test('a server killed while sending sends the delivery again when it comes back', async (c) => {
      const db = await createTestDatabase(kind);
      c.after(() => db.drop());
      const path = `/killed-${kind}`;
      receiver.answer = () => 'hang';
      const options: UsherServerOptions = {
        storage: db.storage,
        port: await freePort(),
        serverId: `webhook-kill-${kind}`,
        adminKeys: [TEST_ADMIN_KEY],
        secret: TEST_SECRET,
        webhooks: [{ url: receiver.url + path, secret: PLAIN, events: ['session.status_changed'] }],
      };
      const run1 = await startServer(options);
      c.after(() => {
        if (run1.proc.exitCode === null && run1.proc.signalCode === null) run1.proc.kill('SIGKILL');
      });
      const created = await adminApi(run1.url, 'POST', '/projects', {
        ...streamProject('k', { min: 0, max: 1 }),
        worker: { driver: 'external' },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const first = receiver.received.length;
      const arrived = receiver.until(first + 1);
      assert.equal((await adminApi(run1.url, 'POST', '/sessions', { projectId: 'k' })).status, 201);
      await arrived; // the server is in the middle of sending it
      const id = receiver.received[first]!.headers['webhook-id'];
      run1.proc.kill('SIGKILL');
      await run1.exited;

      receiver.answer = () => 200;
      const again = receiver.waitFor((r) => r.headers['webhook-id'] === id, first + 1);
      const run2 = await startServer(options);
      c.after(async () => {
        run2.proc.kill('SIGTERM');
        await run2.exited;
      });
      // the same delivery, again: at least once
      verify(await again, PLAIN);
      // the answer is recorded just after it is sent, in the other process: read the row until it says so (the
      // server has no event to wait on), within a bound that fails the test with what the row said last
      const deadline = Date.now() + 15_000;
      for (;;) {
        const d = await adminApi<Delivery>(run2.url, 'GET', `/webhooks/deliveries/${id}`);
        if (d.body.status === 'delivered') {
          assert.equal(d.body.attempts, 1);
          break;
        }
        assert.ok(
          Date.now() < deadline,
          `delivery ${id} is still ${d.body.status} (attempts ${d.body.attempts}, last error ${d.body.lastError}) 15 s after the receiver answered it 200`,
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    });
  });
}

describe('webhook configuration', () => {
  test('a bad endpoint stops the server from starting, naming the field', async () => {
    const server = new TestServer({
      storage: { type: 'sqlite', path: ':memory:' },
      webhooks: [{ url: 'http://127.0.0.1:1/x', secret: 'too-short' }],
    });
    await assert.rejects(
      server.start(),
      (err: Error) => err instanceof WebhookConfigError && /webhooks\[0\]\.secret/.test(err.message),
    );
  });
});
