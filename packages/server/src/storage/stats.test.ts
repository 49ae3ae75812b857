// The operator's queries on SQLite and PostgreSQL: queues in seating order, statistics of hand-made timelines at
// known times (exact numbers per bucket, close codes, the project filter, the cache), and presence stays.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Envelope, SessionState } from '@usher/protocol';
import { databaseKinds, useTestStore } from '@usher/testing';
import type { Queryable, SqlParam } from './db.ts';
import { microsToIso } from './messages.ts';
import { presence, stays } from './presence.ts';
import { newSessionRecord, type SessionRecord } from './records.ts';
import { queuedSessions, StatsReader } from './stats.ts';
import type { Store } from './store.ts';

const T = Date.UTC(2026, 0, 1);
const MIN = 60_000;

type Step = [to: SessionState, atMinute: number];

/** Writes a session and its timeline (requesting at the first step's time); the row ends in the last state. */
async function timeline(
  store: Store,
  id: string,
  projectId: string,
  steps: Step[],
  end?: { code: SessionRecord['endCode']; reason: SessionRecord['endReason'] },
): Promise<void> {
  const created = T + steps[0]![1] * MIN;
  const last = steps[steps.length - 1]!;
  const queued = steps.find(([s]) => s === 'queued');
  await store.read.insertSession({
    ...newSessionRecord({ id, projectId, region: 'default', agentType: null, config: {} }, created),
    state: last[0],
    queuedAt: last[0] === 'queued' && queued ? T + queued[1] * MIN : null,
    endedAt: last[0] === 'ended' ? T + last[1] * MIN : null,
    endCode: end?.code ?? null,
    endReason: end?.reason ?? null,
    outcome: end ? (end.code === 1000 || end.code === 4004 ? 'disconnected' : 'failed') : null,
  });
  let from: SessionState | null = null;
  for (const [to, minute] of steps) {
    await store.read.addTransition(id, { from, to, at: T + minute * MIN, cause: 'test' });
    from = to;
  }
}

const zero = { requesting: 0, queued: 0, connecting: 0, active: 0, idle: 0, paused: 0, ending: 0 };

for (const kind of databaseKinds()) {
  describe(`operator queries (${kind})`, () => {
    const { store } = useTestStore(kind);

    test('queuedSessions: every queued session, pool by pool, in seating order (queued_at, id)', async () => {
      const q = (id: string, projectId: string, region: string, at: number) =>
        store.read.insertSession({
          ...newSessionRecord({ id, projectId, region, agentType: null, config: {} }, T),
          state: 'queued',
          queuedAt: at,
        });
      await q('qz-2', 'qz', 'eu', T + 5);
      await q('qz-1', 'qz', 'eu', T + 5); // same time: the id decides
      await q('qz-0', 'qz', 'eu', T + 9);
      await q('qz-us', 'qz', 'us', T + 1);
      await q('qa-1', 'qa', 'default', T + 7);
      await store.read.insertSession({
        ...newSessionRecord(
          { id: 'qz-active', projectId: 'qz', region: 'eu', agentType: null, config: {} },
          T,
        ),
        state: 'active',
      });
      const all = (await queuedSessions(store.db)).filter((s) => s.projectId.startsWith('q'));
      assert.deepEqual(
        all.map((s) => [s.projectId, s.region, s.id, s.queuedAt - T]),
        [
          ['qa', 'default', 'qa-1', 7],
          ['qz', 'eu', 'qz-1', 5],
          ['qz', 'eu', 'qz-2', 5],
          ['qz', 'eu', 'qz-0', 9],
          ['qz', 'us', 'qz-us', 1],
        ],
      );
      assert.deepEqual(
        (await queuedSessions(store.db, 'qa')).map((s) => s.id),
        ['qa-1'],
      );
      assert.deepEqual(await queuedSessions(store.db, 'nobody'), []);
    });

    describe('session statistics of known timelines', () => {
      // an hour from T in buckets of 10 minutes; times below are minutes after T
      const window = { from: T, to: T + 60 * MIN, bucketMs: 10 * MIN };

      test('setup: nine sessions of two projects', async () => {
        // before the window: ended before it opened, counts nowhere
        await timeline(
          store,
          'st-6',
          'sa',
          [
            ['requesting', -30],
            ['queued', -30],
            ['connecting', -29],
            ['active', -28],
            ['ending', -20],
            ['ended', -20],
          ],
          { code: 1000, reason: 'completed' },
        );
        // queued before the window opened, seated at 3 (waited 8 minutes), ending at 25, ended at 31
        await timeline(
          store,
          'st-1',
          'sa',
          [
            ['requesting', -5],
            ['queued', -5],
            ['connecting', 3],
            ['active', 4],
            ['ending', 25],
            ['ended', 31],
          ],
          { code: 1000, reason: 'completed' },
        );
        // waited 11 minutes, active from 13 on
        await timeline(store, 'st-2', 'sa', [
          ['requesting', 1],
          ['queued', 1],
          ['connecting', 12],
          ['active', 13],
        ]);
        // waited 13 minutes and gave up
        await timeline(
          store,
          'st-3',
          'sa',
          [
            ['requesting', 2],
            ['queued', 2],
            ['ended', 15],
          ],
          { code: 4001, reason: 'pending_timeout' },
        );
        await timeline(
          store,
          'st-9',
          'sa',
          [
            ['requesting', 5],
            ['connecting', 5],
            ['active', 6],
            ['ending', 38],
            ['ended', 38],
          ],
          { code: 4004, reason: 'afk_timeout' },
        );
        await timeline(
          store,
          'st-4',
          'sb',
          [
            ['requesting', 21],
            ['connecting', 21],
            ['active', 22],
            ['idle', 33],
            ['ending', 41],
            ['ended', 41],
          ],
          { code: 4004, reason: 'afk_timeout' },
        );
        await timeline(store, 'st-5', 'sa', [
          ['requesting', 45],
          ['queued', 45],
        ]);
        // queued at 50, a bucket boundary: it belongs to the bucket that starts there
        // it ends at 70, after the window: not counted as ended, and still queued at its end
        await timeline(
          store,
          'st-8',
          'sa',
          [
            ['requesting', 50],
            ['queued', 50],
            ['ended', 70],
          ],
          { code: 4001, reason: 'pending_timeout' },
        );
        // at exactly the window's end: in the last bucket
        await timeline(store, 'st-7', 'sb', [['requesting', 60]]);
      });

      const expected = [
        {
          states: { ...zero, active: 2, queued: 2 },
          left: 1,
          waitMsAvg: 8 * MIN,
          waitMsMax: 8 * MIN,
          ended: 0,
        },
        { states: { ...zero, active: 3 }, left: 2, waitMsAvg: 12 * MIN, waitMsMax: 13 * MIN, ended: 1 },
        { states: { ...zero, active: 3, ending: 1 }, left: 0, waitMsAvg: null, waitMsMax: null, ended: 0 },
        { states: { ...zero, active: 1, idle: 1 }, left: 0, waitMsAvg: null, waitMsMax: null, ended: 2 },
        { states: { ...zero, active: 1, queued: 1 }, left: 0, waitMsAvg: null, waitMsMax: null, ended: 1 },
        {
          states: { ...zero, active: 1, queued: 2, requesting: 1 },
          left: 0,
          waitMsAvg: null,
          waitMsMax: null,
          ended: 0,
        },
      ];
      const withStarts = (rows: typeof expected) => rows.map((r, i) => ({ at: T + i * 10 * MIN, ...r }));

      test('per bucket: states at its end, queue departures and their waits, endings; close codes by frequency', async () => {
        const reader = new StatsReader(store.db);
        const a = await reader.read({ ...window, projectId: 'sa' });
        const b = await reader.read({ ...window, projectId: 'sb' });
        const none = { left: 0, waitMsAvg: null, waitMsMax: null };
        assert.deepEqual(
          a.buckets,
          withStarts([
            // st-1 and st-9 active, st-2 and st-3 queued; st-1 left the queue after 8 minutes
            {
              states: { ...zero, active: 2, queued: 2 },
              left: 1,
              waitMsAvg: 8 * MIN,
              waitMsMax: 8 * MIN,
              ended: 0,
            },
            // st-2 seated after 11 minutes, st-3 gave up after 13
            { states: { ...zero, active: 3 }, left: 2, waitMsAvg: 12 * MIN, waitMsMax: 13 * MIN, ended: 1 },
            { states: { ...zero, active: 2, ending: 1 }, ...none, ended: 0 },
            { states: { ...zero, active: 1 }, ...none, ended: 2 },
            { states: { ...zero, active: 1, queued: 1 }, ...none, ended: 0 },
            { states: { ...zero, active: 1, queued: 2 }, ...none, ended: 0 },
          ]),
        );
        assert.deepEqual(b.buckets, [
          { at: T, states: zero, left: 0, waitMsAvg: null, waitMsMax: null, ended: 0 },
          { at: T + 10 * MIN, states: zero, left: 0, waitMsAvg: null, waitMsMax: null, ended: 0 },
          {
            at: T + 20 * MIN,
            states: { ...zero, active: 1 },
            left: 0,
            waitMsAvg: null,
            waitMsMax: null,
            ended: 0,
          },
          {
            at: T + 30 * MIN,
            states: { ...zero, idle: 1 },
            left: 0,
            waitMsAvg: null,
            waitMsMax: null,
            ended: 0,
          },
          { at: T + 40 * MIN, states: zero, left: 0, waitMsAvg: null, waitMsMax: null, ended: 1 },
          {
            at: T + 50 * MIN,
            states: { ...zero, requesting: 1 },
            left: 0,
            waitMsAvg: null,
            waitMsMax: null,
            ended: 0,
          },
        ]);
        assert.deepEqual(a.closeCodes, [
          { code: 1000, reason: 'completed', count: 1 },
          { code: 4001, reason: 'pending_timeout', count: 1 },
          { code: 4004, reason: 'afk_timeout', count: 1 },
        ]);
        assert.deepEqual(b.closeCodes, [{ code: 4004, reason: 'afk_timeout', count: 1 }]);
      });

      test('every project at once: both projects, and the queue test’s sessions (without timelines: in every bucket)', async () => {
        const all = await new StatsReader(store.db).read(window);
        // the queue test above left five queued sessions and an active one, with no transitions at all
        assert.equal((await queuedSessions(store.db)).filter((s) => s.projectId.startsWith('q')).length, 5);
        assert.deepEqual(
          all.buckets,
          withStarts(expected).map((r) => ({
            ...r,
            states: { ...r.states, queued: r.states.queued + 5, active: r.states.active + 1 },
          })),
        );
        assert.deepEqual(all.closeCodes, [
          { code: 4004, reason: 'afk_timeout', count: 2 },
          { code: 1000, reason: 'completed', count: 1 },
          { code: 4001, reason: 'pending_timeout', count: 1 },
        ]);
      });

      test('wider buckets add up; a transition after the window’s end is taken back from the current counts', async () => {
        const r = await new StatsReader(store.db).read({ ...window, bucketMs: 30 * MIN, projectId: 'sa' });
        assert.deepEqual(
          r.buckets.map((b) => [b.states, b.left, b.waitMsAvg, b.waitMsMax, b.ended]),
          [
            // at 30: st-1 ending, st-2 and st-9 active
            [{ ...zero, active: 2, ending: 1 }, 3, Math.round(((8 + 11 + 13) * MIN) / 3), 13 * MIN, 1],
            // at 60: st-2 active, st-5 and st-8 queued (st-8 ends only at 70)
            [{ ...zero, active: 1, queued: 2 }, 0, null, null, 2],
          ],
        );
        // a window that is not a whole number of buckets: the last one is cut short at `to`
        const cut = await new StatsReader(store.db).read({ ...window, to: T + 55 * MIN, projectId: 'sa' });
        assert.equal(cut.buckets.length, 6);
        // at 55 st-8 is queued (50) but st-7 (60, project sb) is not there anyway
        assert.deepEqual(cut.buckets[5]!.states, { ...zero, active: 1, queued: 2 });
      });

      test('settled buckets come from the cache: a second read gives the same numbers, an uncached reader too', async () => {
        // six hours later every bucket of the window is settled
        const later = { ...window, to: T + 6 * 60 * MIN, bucketMs: 60 * MIN, projectId: 'sa' };
        // count the statements the reader runs
        let statements = 0;
        const counted =
          <T>(run: (sql: string, params?: readonly SqlParam[]) => Promise<T>) =>
          (sql: string, params?: readonly SqlParam[]) => {
            statements++;
            return run(sql, params);
          };
        const counting: Queryable = {
          dialect: store.db.dialect,
          all: counted((sql, params) => store.db.all(sql, params)),
          get: counted((sql, params) => store.db.get(sql, params)),
          run: counted((sql, params) => store.db.run(sql, params)),
        };
        const reader = new StatsReader(counting);
        const first = await reader.read(later);
        const firstStatements = statements;
        statements = 0;
        const again = await reader.read(later);
        assert.deepEqual(again, first);
        // only the last bucket (it ends now: not settled), what was written after `to`, and the current counts
        assert.equal(statements, 3, `the first read took ${firstStatements}`);
        assert.ok(firstStatements > 3);
        assert.deepEqual(await new StatsReader(store.db).read(later), first);
        assert.deepEqual(first.buckets[0]!.states, { ...zero, active: 1, queued: 2 });
        assert.equal(first.buckets[1]!.ended, 1, 'st-8 ended at 70');
        assert.deepEqual(
          first.buckets.map((b) => b.ended),
          [3, 1, 0, 0, 0, 0],
        );
      });
    });

    test('presence: stays from the recorded joins and departures, oldest first, through the database', async () => {
      const us = T * 1000;
      const m = (
        n: number,
        type: string,
        identity: string,
        kind: Envelope['from']['kind'],
        name?: string,
      ) => ({
        message: {
          id: `m_${n}`,
          sessionId: 'pr-1',
          type,
          from: { identity, kind },
          at: microsToIso(us + n),
          data: { participant: { identity, kind, ...(name ? { name } : {}) } },
        },
        atUs: us + n,
      });
      await store.messages.append([
        m(1, 'participant_joined', 'agent-1', 'agent'),
        m(2, 'participant_joined', 'viewer-1', 'viewer', 'Vera'),
        m(3, 'user_text', 'viewer-1', 'viewer'),
        m(4, 'participant_left', 'viewer-1', 'viewer'),
        m(5, 'participant_joined', 'viewer-1', 'viewer', 'Vera'),
        m(6, 'participant_left', 'agent-1', 'agent'),
      ]);
      assert.deepEqual(await presence(store.db, 'pr-1'), [
        { participant: { identity: 'agent-1', kind: 'agent' }, joinedUs: us + 1, leftUs: us + 6 },
        {
          participant: { identity: 'viewer-1', kind: 'viewer', name: 'Vera' },
          joinedUs: us + 2,
          leftUs: us + 4,
        },
        {
          participant: { identity: 'viewer-1', kind: 'viewer', name: 'Vera' },
          joinedUs: us + 5,
          leftUs: null,
        },
      ]);
      assert.deepEqual(await presence(store.db, 'pr-none'), []);
    });
  });
}

describe('presence stays', () => {
  const row = (at: number, type: 'participant_joined' | 'participant_left', identity: string) => ({
    at,
    type,
    from_identity: identity,
    from_kind: 'user',
    data: JSON.stringify({ participant: { identity, kind: 'user' } }),
  });

  test('joined through two servers: in the room until the last of them records the departure', () => {
    assert.deepEqual(
      stays([
        row(1, 'participant_joined', 'u'),
        row(2, 'participant_joined', 'u'),
        row(3, 'participant_left', 'u'),
        row(4, 'participant_left', 'u'),
      ]),
      [{ participant: { identity: 'u', kind: 'user' }, joinedUs: 1, leftUs: 4 }],
    );
  });

  test('a departure without an arrival is ignored; bad data falls back to the sender', () => {
    assert.deepEqual(
      stays([
        row(1, 'participant_left', 'ghost'),
        { ...row(2, 'participant_joined', 'u'), data: 'not json' },
      ]),
      [{ participant: { identity: 'u', kind: 'user' }, joinedUs: 2, leftUs: null }],
    );
  });
});
