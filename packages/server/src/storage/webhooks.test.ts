// The webhook delivery log on SQLite and PostgreSQL: batched queueing, claims under a lease (never the same row
// to two servers at once), outcomes that only the current claim may record, re-queueing, paging newest first.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { databaseKinds, useTestStore } from '@usher/testing';
import {
  type ClaimedDelivery,
  type NewDelivery,
  RELEASE_CLAIM,
  RELEASE_SERVER,
  WebhookLog,
} from './webhooks.ts';

const T = Date.UTC(2026, 0, 1);
const URL_A = 'http://127.0.0.1:1/a';
const URL_B = 'http://127.0.0.1:1/b';

let n = 0;
function delivery(extra: Partial<NewDelivery> = {}): NewDelivery {
  n++;
  return {
    id: `whd_${String(n).padStart(6, '0')}`,
    endpointUrl: URL_A,
    eventType: 'session.status_changed',
    sessionId: 's1',
    projectId: 'p1',
    payload: JSON.stringify({ type: 'session.status_changed', n, text: 'naïve ✓' }),
    createdAt: T,
    ...extra,
  };
}

const ids = (rows: { id: string }[]) => rows.map((r) => r.id);

for (const kind of databaseKinds()) {
  describe(`webhook delivery log (${kind})`, () => {
    const { store } = useTestStore(kind);
    const log = () => new WebhookLog(store.db);
    const claim = (o: { url?: string; server?: string; claim?: string; now?: number; limit?: number } = {}) =>
      log().claim({
        endpointUrl: o.url ?? URL_A,
        serverId: o.server ?? 'srv-1',
        claim: o.claim ?? `c-${Math.random()}`,
        now: o.now ?? T,
        leaseUntil: (o.now ?? T) + 60_000,
        limit: o.limit ?? 10,
      });
    const clear = () => store.db.run('DELETE FROM webhook_deliveries');

    test('queued in one statement, a delivery comes back exactly, pending and due at once', async () => {
      await clear();
      const d = delivery({ createdAt: T + 5 });
      await log().enqueue([d, delivery({ endpointUrl: URL_B })]);
      const got = await log().get(d.id);
      assert.deepEqual(got, {
        id: d.id,
        endpointUrl: URL_A,
        eventType: 'session.status_changed',
        sessionId: 's1',
        projectId: 'p1',
        status: 'pending',
        attempts: 0,
        nextAttemptAt: T + 5,
        lastStatus: null,
        lastError: null,
        lastAttemptAt: null,
        createdAt: T + 5,
        deliveredAt: null,
        payload: d.payload,
      });
      assert.equal(await log().get('whd_none'), undefined);
      assert.equal(await log().nextDue(URL_A), T + 5);
      assert.equal(await log().nextDue('http://nowhere/'), null);
    });

    test('a claim takes the due rows of one endpoint, in queue order, and holds them for its lease', async () => {
      await clear();
      const rows = [
        delivery({ createdAt: T }),
        delivery({ createdAt: T + 1 }),
        delivery({ createdAt: T + 2 }),
        delivery({ createdAt: T + 50_000 }), // not due yet
        delivery({ endpointUrl: URL_B }),
      ];
      await log().enqueue(rows);
      const first = await claim({ claim: 'c1', now: T + 10, limit: 2 });
      assert.deepEqual(ids(first), ids(rows.slice(0, 2)));
      assert.equal(first[0]!.claim, 'c1');
      assert.equal(first[0]!.payload, rows[0]!.payload);
      // the leased rows are nobody else's until the lease ends; the free due one is
      assert.deepEqual(ids(await claim({ claim: 'c2', now: T + 15, server: 'srv-2' })), [rows[2]!.id]);
      assert.deepEqual(await claim({ now: T + 20 }), []);
      assert.equal(await log().nextDue(URL_A), T + 50_000, 'the earliest of a lease end and a due time');
      // the lease of c1 ends at T+10+60s: another server takes its rows over; the late outcome of c1 is ignored
      const taken = await claim({ claim: 'c3', server: 'srv-2', now: T + 60_010 });
      assert.deepEqual(ids(taken), [rows[0]!.id, rows[1]!.id, rows[3]!.id]);
      assert.equal(await log().delivered(rows[0]!.id, 'c1', T + 60_011, 200), false);
      assert.equal((await log().get(rows[0]!.id))!.status, 'pending');
      assert.equal(await log().delivered(rows[0]!.id, 'c3', T + 60_012, 204), true);
      const done = await log().get(rows[0]!.id);
      assert.equal(done!.status, 'delivered');
      assert.equal(done!.attempts, 1);
      assert.equal(done!.lastStatus, 204);
      assert.equal(done!.deliveredAt, T + 60_012);
    });

    test('failed attempts count, schedule the next one, and fail the delivery when none is left', async () => {
      await clear();
      const d = delivery();
      await log().enqueue([d]);
      const [c] = await claim({ claim: 'k1' });
      assert.ok(
        await log().attemptFailed(d.id, 'k1', {
          at: T + 1,
          status: 500,
          error: 'HTTP 500',
          nextAttemptAt: T + 5_001,
        }),
      );
      let got = await log().get(d.id);
      assert.equal(c!.attempts, 0);
      assert.deepEqual(
        [got!.status, got!.attempts, got!.lastStatus, got!.lastError, got!.lastAttemptAt, got!.nextAttemptAt],
        ['pending', 1, 500, 'HTTP 500', T + 1, T + 5_001],
      );
      assert.deepEqual(await claim({ now: T + 5_000 }), [], 'not due before its time');
      await claim({ claim: 'k2', now: T + 5_001 });
      await log().attemptFailed(d.id, 'k2', {
        at: T + 5_002,
        status: null,
        error: 'ECONNREFUSED',
        nextAttemptAt: null,
      });
      got = await log().get(d.id);
      assert.deepEqual(
        [got!.status, got!.attempts, got!.lastStatus, got!.lastError, got!.nextAttemptAt],
        ['failed', 2, null, 'ECONNREFUSED', T + 5_001],
      );
      assert.equal(await log().nextDue(URL_A), null);
      assert.deepEqual(await claim({ now: T + 1e9 }), []);
    });

    test('re-queueing: a failed or delivered delivery starts afresh; a claim in flight loses its say', async () => {
      await clear();
      const d = delivery();
      await log().enqueue([d]);
      await claim({ claim: 'r1' });
      await log().attemptFailed(d.id, 'r1', { at: T, status: 502, error: 'HTTP 502', nextAttemptAt: null });
      const again = await log().retry(d.id, T + 100);
      assert.deepEqual(
        [again!.status, again!.attempts, again!.nextAttemptAt, again!.lastStatus],
        ['pending', 0, T + 100, 502],
      );
      await claim({ claim: 'r2', now: T + 100 });
      await log().retry(d.id, T + 200); // while r2 is sending
      assert.equal(await log().delivered(d.id, 'r2', T + 201, 200), false, 'r2 no longer holds it');
      assert.deepEqual(ids(await claim({ claim: 'r3', now: T + 200 })), [d.id], 'due again at once');
      await log().delivered(d.id, 'r3', T + 202, 200);
      const redo = await log().retry(d.id, T + 300);
      assert.deepEqual([redo!.status, redo!.attempts, redo!.deliveredAt], ['pending', 0, null]);
      assert.equal(await log().retry('whd_none', T), undefined);
    });

    test('giving back: what a claim did not attempt, and every claim of a server that restarts', async () => {
      await clear();
      const rows = [delivery(), delivery(), delivery()];
      await log().enqueue(rows);
      await claim({ claim: 'g1', limit: 1 });
      await claim({ claim: 'g2', limit: 1, server: 'srv-dead' });
      assert.equal(await log().release('g1'), 1);
      assert.equal(await log().releaseServer('srv-dead'), 1);
      assert.deepEqual(ids(await claim({ claim: 'g3' })), ids(rows));
    });

    if (kind === 'postgres') {
      test('servers claiming at the same moment never get the same row', async () => {
        await clear();
        const rows = Array.from({ length: 60 }, (_, i) => delivery({ createdAt: T + i }));
        await log().enqueue(rows);
        const claims: ClaimedDelivery[][] = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            claim({ claim: `p${i}`, server: `srv-${i}`, now: T + 100, limit: 10 }),
          ),
        );
        const all = claims.flat().map((r) => r.id);
        assert.equal(new Set(all).size, all.length, 'no row claimed twice');
        assert.equal(all.length, 60, 'and every row claimed by someone');
      });
    }

    test('the log pages newest first without skipping or repeating, filtered by status, session, project', async () => {
      await clear();
      const rows: NewDelivery[] = [];
      for (let i = 0; i < 25; i++)
        rows.push(
          delivery({
            createdAt: T + Math.floor(i / 4), // ties on the time: the id breaks them
            sessionId: `s${i % 3}`,
            projectId: i % 2 ? 'odd' : 'even',
          }),
        );
      await log().enqueue(rows);
      await claim({ claim: 'l1', limit: 3, now: T + 100 });
      await log().delivered(rows[0]!.id, 'l1', T + 101, 200);
      const seen: string[] = [];
      let before: { createdAt: number; id: string } | undefined;
      for (;;) {
        const page = await log().list({ limit: 4, ...(before ? { before } : {}) });
        seen.push(...ids(page));
        if (page.length < 4) break;
        const last = page[page.length - 1]!;
        before = { createdAt: last.createdAt, id: last.id };
      }
      assert.deepEqual(seen, ids(rows).reverse());
      assert.deepEqual(
        ids(await log().list({ limit: 50, sessionId: 's1' })),
        ids(rows.filter((r) => r.sessionId === 's1')).reverse(),
      );
      assert.deepEqual(
        ids(await log().list({ limit: 50, projectId: 'odd' })),
        ids(rows.filter((r) => r.projectId === 'odd')).reverse(),
      );
      assert.deepEqual(ids(await log().list({ limit: 50, status: 'delivered' })), [rows[0]!.id]);
      assert.equal(
        (await log().list({ limit: 50, status: 'pending', projectId: 'even', sessionId: 's0' })).length,
        4,
      );
    });

    test('pruning deletes old finished deliveries only', async () => {
      await clear();
      const [old, oldPending, recent] = [
        delivery({ createdAt: T }),
        delivery({ createdAt: T }),
        delivery({ createdAt: T + 10 }),
      ];
      await log().enqueue([old!, oldPending!, recent!]);
      await claim({ claim: 'x', limit: 1 });
      await log().delivered(old!.id, 'x', T, 200);
      await claim({ claim: 'y', now: T + 10 });
      await log().delivered(recent!.id, 'y', T + 10, 200);
      assert.equal(await log().prune(T + 5), 1);
      assert.deepEqual(ids(await log().list({ limit: 10 })).sort(), [oldPending!.id, recent!.id].sort());
    });

    test('giving back reads only the claimed rows: each statement goes through its partial index', async () => {
      // a log as it mostly is: many pending rows, few of them claimed; the planner is told how the table looks
      await clear();
      await log().enqueue(Array.from({ length: 2_000 }, (_, i) => delivery({ createdAt: T + i })));
      await claim({ claim: 'plan', limit: 5 });
      await store.db.run('ANALYZE webhook_deliveries');
      const plan = (sql: string) =>
        store.db.tx(async (q) => {
          if (q.dialect === 'sqlite') {
            const rows = await q.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, ['x']);
            return rows.map((r) => r.detail).join('\n');
          }
          // the table is small enough to scan whole: forbid that, so the plan shows whether an index serves
          await q.run('SET LOCAL enable_seqscan = off');
          const rows = await q.all<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, ['x']);
          return rows.map((r) => r['QUERY PLAN']).join('\n');
        });
      assert.match(await plan(RELEASE_CLAIM), /webhook_deliveries_claim\b/);
      assert.match(await plan(RELEASE_SERVER), /webhook_deliveries_claimed_by\b/);
    });
  });
}
