// GET /metrics on a real server, on both databases: sessions that queue, get seated, end with different codes,
// a worker crash and room messages, each counted exactly once; who may scrape; and two servers on one
// PostgreSQL counting each event once between them.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { ManualClock } from '@usher/server';
import {
  agentProject,
  createTestDatabase,
  databaseKinds,
  type TestDatabase,
  TestServer,
  useTestServer,
} from '@usher/testing';
import { processMetrics } from '../src/observability/metrics.ts';
import { assertError } from './helpers.ts';

/** One scrape, parsed: each sample by `name{label="value",…}` (labels sorted), and each metric's type. */
interface Scrape {
  samples: Map<string, number>;
  types: Map<string, string>;
  /** the value of one sample, or undefined when the scrape has none */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** every sample of a metric name, keyed as in `samples` */
  series(name: string): [string, number][];
}

/** A small parser of the Prometheus text format (what this test needs: no escapes beyond \" \\ \n). */
function parseExposition(text: string): Scrape {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[k!] = v!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.set(key(m[1]!, labels), Number(m[3]));
  }
  return {
    samples,
    types,
    value: (name, labels = {}) => samples.get(key(name, labels)),
    series: (name) => [...samples].filter(([k]) => k === name || k.startsWith(`${name}{`)),
  };
}

function key(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`);
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}

async function scrape(t: TestServer, auth?: string | null): Promise<Scrape> {
  await t.settled();
  await t.engine.recorder.flushed();
  const res = await fetch(`${t.url}/metrics`, {
    headers: auth === null ? {} : { authorization: `Bearer ${auth ?? 'test-admin-key-0123456789'}` },
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseExposition(text);
}

for (const kind of databaseKinds()) {
  describe(`GET /metrics (${kind})`, () => {
    const { t } = useTestServer(kind);

    test('a queue, seats, three close codes, a crash and messages: each counted once, with its latency', async () => {
      const P = 'mq';
      const pool = { project: P, region: 'default' };
      await t.createProject(agentProject(P, { min: 0, max: 1 }));
      // workers say ready only when the test says so: the clock moves in between
      t.fake.behaviour = () => ({ ready: false });

      // s1 at 0 s: a worker is started for it at once; it is ready 2 s later, and the session is active
      const starting1 = t.fake.nextStart();
      const s1 = await t.createSession(P);
      assert.equal(s1.state, 'connecting');
      const w1 = await starting1;
      await t.advance(2_000);
      const active1 = t.waitForState(s1.id, 'active');
      w1.sdk.ready();
      await active1;

      // s2 at 2 s and s3 at 3 s wait in the queue
      const s2 = await t.createSession(P);
      await t.advance(1_000);
      const s3 = await t.createSession(P);
      assert.deepEqual([s2.state, s3.state], ['queued', 'queued']);
      await t.advance(2_000);

      const mid = await scrape(t);
      assert.equal(mid.types.get('usher_sessions'), 'gauge');
      assert.equal(mid.value('usher_sessions', { ...pool, state: 'active' }), 1);
      assert.equal(mid.value('usher_sessions', { ...pool, state: 'queued' }), 2);
      assert.equal(mid.value('usher_sessions', { ...pool, state: 'paused' }), 0);
      assert.equal(mid.value('usher_queue_length', pool), 2);
      assert.equal(mid.value('usher_workers', { ...pool, state: 'busy' }), 1);
      assert.equal(mid.value('usher_workers', { ...pool, state: 'ready' }), 0);

      // at 5 s s1 ends (1000 completed); its worker is recycled and s2 gets a fresh one after 3 s in line
      const starting2 = t.fake.nextStart();
      assert.equal((await t.api('POST', `/sessions/${s1.id}/end`)).status, 200);
      const w2 = await starting2;
      await t.waitForState(s2.id, 'connecting');
      const active2 = t.waitForState(s2.id, 'active');
      w2.sdk.ready();
      await active2;
      // s3 gives up after 2 s in line (1000 canceled)
      assert.equal((await t.api('POST', `/sessions/${s3.id}/end`)).status, 200);

      // in s2: a user sends three messages (two of a recorded type), the agent one
      const user = await t.connect(s2);
      for (const [i, messageType] of ['user_text', 'typing', 'user_text'].entries())
        user.send({ type: 'message', messageType, data: { i }, ref: `r${i}` });
      await user.untilOther((frames) => frames.filter((f) => f.type === 'message_ack').length === 3);
      w2.sdk.send('agent_text', { text: 'hello' });
      await user.waitFor((e) => e.type === 'session.message' && e.message.type === 'agent_text');

      // s2's worker dies while the session is live (4006)
      t.fake.crash(w2.id);
      const s2End = await t.waitForState(s2.id, 'ended');
      assert.equal(s2End.endCode, 4006);
      // a session for a region the project does not have is refused (4002)
      const refused = await t.api('POST', '/sessions', { projectId: P, region: 'mars' });
      assertError(refused, 422, 'APP_NOT_FOUND');
      await t.waitForState(s1.id, 'ended');

      const m = await scrape(t);
      assert.equal(m.types.get('usher_sessions_created_total'), 'counter');
      assert.equal(m.value('usher_sessions_created_total', pool), 3);
      assert.equal(m.value('usher_sessions_created_total', { project: P, region: 'other' }), 1);
      assert.deepEqual(
        m.series('usher_sessions_ended_total').sort(),
        [
          [key('usher_sessions_ended_total', { ...pool, code: '1000', reason: 'canceled' }), 1],
          [key('usher_sessions_ended_total', { ...pool, code: '1000', reason: 'completed' }), 1],
          [key('usher_sessions_ended_total', { ...pool, code: '4006', reason: 'worker_crashed' }), 1],
          [
            key('usher_sessions_ended_total', {
              project: P,
              region: 'other',
              code: '4002',
              reason: 'app_not_found',
            }),
            1,
          ],
        ].sort(),
      );
      // queue waits: s2 seated after 3 s, s3 left after 2 s
      assert.equal(m.types.get('usher_queue_wait_seconds'), 'histogram');
      assert.equal(m.value('usher_queue_wait_seconds_count', { ...pool, result: 'seated' }), 1);
      assert.equal(m.value('usher_queue_wait_seconds_sum', { ...pool, result: 'seated' }), 3);
      assert.equal(m.value('usher_queue_wait_seconds_count', { ...pool, result: 'ended' }), 1);
      assert.equal(m.value('usher_queue_wait_seconds_sum', { ...pool, result: 'ended' }), 2);
      assert.equal(m.value('usher_queue_wait_seconds_bucket', { ...pool, result: 'ended', le: '2.5' }), 1);
      assert.equal(m.value('usher_queue_wait_seconds_bucket', { ...pool, result: 'seated', le: '2.5' }), 0);
      assert.equal(m.value('usher_queue_wait_seconds_bucket', { ...pool, result: 'seated', le: '5' }), 1);
      // seats: s1 at once (0 s), s2 after 3 s; active: s1 after 2 s, s2 after 3 s
      assert.equal(m.value('usher_seat_latency_seconds_count', pool), 2);
      assert.equal(m.value('usher_seat_latency_seconds_sum', pool), 3);
      assert.equal(m.value('usher_seat_latency_seconds_bucket', { ...pool, le: '0.01' }), 1);
      assert.equal(m.value('usher_time_to_active_seconds_count', pool), 2);
      assert.equal(m.value('usher_time_to_active_seconds_sum', pool), 5);
      // workers: two started, one crashed
      assert.deepEqual(m.series('usher_worker_starts_total'), [
        [key('usher_worker_starts_total', { ...pool, driver: 'process' }), 2],
      ]);
      assert.deepEqual(m.series('usher_worker_start_failures_total'), []);
      assert.deepEqual(m.series('usher_worker_crashes_total'), [
        [key('usher_worker_crashes_total', { ...pool, recoverable: 'false' }), 1],
      ]);
      // messages: four relayed; recorded: every transcript entry stored, as many as the transcripts hold
      assert.equal(m.value('usher_messages_relayed_total', { project: P }), 4);
      let stored = 0;
      for (const s of [s1, s2, s3]) {
        const page = await t.api<{ messages: unknown[]; hasMore: boolean }>(
          'GET',
          `/sessions/${s.id}/messages?limit=100&include_debug=true`,
        );
        assert.equal(page.body.hasMore, false);
        stored += page.body.messages.length;
      }
      // two user_text, one agent_text, and joins and departures of the agents and the user
      assert.ok(stored > 3);
      assert.equal(m.value('usher_messages_recorded_total', { project: P }), stored);
      // every session is over: the gauges are back to 0
      for (const state of ['requesting', 'queued', 'connecting', 'active', 'idle', 'paused', 'ending'])
        assert.equal(m.value('usher_sessions', { ...pool, state }), 0, state);
      assert.equal(m.value('usher_queue_length', pool), 0);
      // Node's process metrics are there too
      assert.equal(m.types.get('process_cpu_user_seconds_total'), 'counter');
      assert.equal(m.types.get('nodejs_eventloop_lag_seconds'), 'gauge');
    });

    test('an auto-restart is a recoverable crash; the restarted session is not seated or activated twice', async () => {
      const P = 'mr';
      const pool = { project: P, region: 'default' };
      await t.createProject(
        agentProject(P, { min: 0, max: 2 }, { autoRestart: { enabled: true, maxRestarts: 1 } }),
      );
      t.fake.behaviour = () => ({});
      const starting = t.fake.nextStart();
      const s = await t.createSession(P);
      const w = await starting;
      await t.waitForState(s.id, 'active');
      await t.advance(1_000);
      const restarted = t.fake.nextStart();
      t.fake.crash(w.id);
      // the fresh worker is started once the session is connecting again; it may be active by the time this
      // reads it, so the wait is for active, and the timeline shows the way through connecting
      await restarted;
      const back = await t.waitForState(s.id, 'active');
      const restart = (back.timeline as { to: string; cause: string }[]).at(-2);
      assert.deepEqual([restart?.to, restart?.cause], ['connecting', 'worker:crashed:auto-restart']);
      await t.api('POST', `/sessions/${s.id}/end`);
      await t.waitForState(s.id, 'ended');
      const m = await scrape(t);
      assert.equal(m.value('usher_worker_crashes_total', { ...pool, recoverable: 'true' }), 1);
      assert.equal(m.value('usher_worker_starts_total', { ...pool, driver: 'process' }), 2);
      assert.equal(m.value('usher_seat_latency_seconds_count', pool), 1);
      assert.equal(m.value('usher_time_to_active_seconds_count', pool), 1);
      assert.equal(m.value('usher_time_to_active_seconds_sum', pool), 0);
    });

    test('without an admin key: 401; with a session token: 403', async () => {
      await t.createProject(agentProject('ma', { min: 0, max: 1 }));
      assertError(await t.api('GET', '/metrics', undefined, null), 401, 'UNAUTHORIZED');
      assertError(await t.api('GET', '/metrics', undefined, 'not-a-key'), 401, 'UNAUTHORIZED');
      const s = await t.createSession('ma');
      assertError(await t.api('GET', '/metrics', undefined, s.token), 403, 'FORBIDDEN');
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('the OpenAPI document lists GET /metrics', async () => {
      const doc = await t.api<{ paths: Record<string, Record<string, { summary?: string }>> }>(
        'GET',
        '/openapi.json',
      );
      assert.match(doc.body.paths['/metrics']?.get?.summary ?? '', /Prometheus/);
    });
  });

  test(`after a restart (${kind}), a session queued before it is observed with its whole wait`, async (ctx) => {
    const db = await createTestDatabase(kind);
    const clock = new ManualClock();
    const servers: TestServer[] = [];
    ctx.after(async () => {
      for (const s of servers) await s.close();
      await db.drop();
    });
    const start = async () => {
      const s = await new TestServer({ storage: db.storage, clock, serverId: 'metrics-restart' }).start();
      servers.push(s);
      return s;
    };
    const first = await start();
    const pool = { project: 'rq', region: 'default' };
    await first.createProject(agentProject('rq', { min: 0, max: 1 }));
    const s1 = await first.createSession('rq');
    await first.waitForState(s1.id, 'active');
    const s2 = await first.createSession('rq');
    assert.equal(s2.state, 'queued');
    await first.advance(4_000);
    await first.close();
    // the new run finds s1's worker gone: s1 ends, and s2, queued 4 s ago, gets a fresh worker
    const second = await start();
    await second.waitForState(s2.id, 'active');
    const m = await scrape(second);
    assert.equal(m.value('usher_queue_wait_seconds_count', { ...pool, result: 'seated' }), 1);
    assert.equal(m.value('usher_queue_wait_seconds_sum', { ...pool, result: 'seated' }), 4);
    assert.equal(m.value('usher_seat_latency_seconds_sum', pool), 4);
    assert.equal(m.value('usher_time_to_active_seconds_sum', pool), 4);
    assert.equal(m.value('usher_sessions_created_total', pool), undefined, 'created before this run');
  });

  describe(`GET /metrics with metrics.public (${kind})`, () => {
    const { t } = useTestServer(kind, { metrics: { public: true } });

    test('anyone may scrape', async () => {
      await t.createProject(agentProject('pub', { min: 0, max: 1 }));
      const m = await scrape(t, null);
      assert.equal(m.value('usher_queue_length', { project: 'pub', region: 'default' }), 0);
      const doc = await t.api<{ paths: Record<string, Record<string, { security?: unknown[] }>> }>(
        'GET',
        '/openapi.json',
      );
      assert.deepEqual(doc.body.paths['/metrics']?.get?.security, []);
    });
  });
}

describe('docs/observability.md', () => {
  const { t } = useTestServer(databaseKinds()[0]!);

  test('its table lists every usher_ metric, with its type and labels', async () => {
    const doc = readFileSync(new URL('../../../docs/observability.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `(usher_\w+)` +\| (\w+) +\| ([^|]*) \|/gm)].map((m) => ({
      name: m[1]!,
      type: m[2]!,
      labels: m[3]!
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean)
        .sort(),
    }));
    const registry = t.server.observability.metrics.registry;
    const metrics = (await registry.getMetricsAsJSON()).filter((m) => m.name.startsWith('usher_'));
    assert.deepEqual(rows.map((r) => r.name).sort(), metrics.map((m) => m.name).sort());
    for (const r of rows) {
      const m = registry.getSingleMetric(r.name) as unknown as { type: string; labelNames: string[] };
      assert.equal(m.type, r.type, r.name);
      assert.deepEqual([...m.labelNames].sort(), r.labels, r.name);
    }
  });
});

describe('two servers on one PostgreSQL count each event once', {
  skip: !databaseKinds().includes('postgres'),
}, () => {
  let db: TestDatabase;
  const servers: TestServer[] = [];
  const clock = new ManualClock();

  before(async () => {
    db = await createTestDatabase('postgres');
    for (const name of ['a', 'b'])
      servers.push(await new TestServer({ storage: db.storage, clock, serverId: `metrics-${name}` }).start());
  });
  after(async () => {
    for (const s of servers) await s.close();
    await db?.drop();
  });

  test('the server that publishes an event counts it; the gauges are the whole cluster’s on both', async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const pool = { project: 'cl', region: 'default' };
    // B hears the session end through the bus before it is scraped
    const heardOnB = new Promise<string>((resolve) => {
      const off = b.server.hub.subscribeAll((e, local) => {
        if (!local && e.type === 'session.status_changed' && e.status === 'ended') {
          off();
          resolve(e.sessionId);
        }
      });
    });
    await a.createProject(agentProject('cl', { min: 0, max: 1 }));
    const s = await a.createSession('cl');
    const queued = await a.createSession('cl');
    assert.equal(queued.state, 'queued');
    await a.api('POST', `/sessions/${s.id}/end`);
    await a.waitForState(s.id, 'ended');
    assert.equal(await heardOnB, s.id);

    const onA = await scrape(a);
    const onB = await scrape(b);
    assert.equal(onA.value('usher_sessions_created_total', pool), 2);
    assert.equal(onA.value('usher_sessions_ended_total', { ...pool, code: '1000', reason: 'completed' }), 1);
    assert.deepEqual(onB.series('usher_sessions_created_total'), []);
    assert.deepEqual(onB.series('usher_sessions_ended_total'), []);
    // the gauges come from the database: both servers show the whole cluster
    for (const m of [onA, onB]) {
      const live =
        (m.value('usher_sessions', { ...pool, state: 'queued' }) ?? 0) +
        (m.value('usher_sessions', { ...pool, state: 'connecting' }) ?? 0) +
        (m.value('usher_sessions', { ...pool, state: 'active' }) ?? 0);
      assert.equal(live, 1);
    }
    await a.api('POST', `/sessions/${queued.id}/end`);
  });
});

describe('process metrics in a process with several servers', () => {
  const servers: TestServer[] = [];
  before(async () => {
    for (const name of ['p1', 'p2'])
      servers.push(
        await new TestServer({ storage: { type: 'sqlite', path: ':memory:' }, serverId: name }).start(),
      );
  });
  after(async () => {
    for (const s of servers) await s.close();
  });

  test('are collected once, for the process, and served by every server beside its own metrics', async () => {
    const shared = processMetrics();
    assert.equal(processMetrics(), shared, 'one registry for the process');
    for (const s of servers) {
      // a server's own registry holds no process metric: it started no collector of its own
      const own = await s.server.observability.metrics.registry.getMetricsAsJSON();
      assert.deepEqual(
        own.filter((m) => !m.name.startsWith('usher_')).map((m) => m.name),
        [],
      );
      const m = await scrape(s);
      assert.equal(m.types.get('process_cpu_user_seconds_total'), 'counter');
      assert.equal(m.types.get('usher_sessions_created_total'), 'counter');
    }
  });
});
