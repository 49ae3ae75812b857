// The queries behind metrics and logs, on SQLite and PostgreSQL: live sessions per pool and state, and the keys
// of sessions by id.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { databaseKinds, useTestStore } from '@usher/testing';
import { sessionCountsByPool, sessionKeys } from './observability.ts';
import { newSessionRecord, type SessionRecord } from './records.ts';

const T = Date.UTC(2026, 0, 1); // past 2^31: times need 64-bit columns

function session(id: string, over: Partial<SessionRecord>): SessionRecord {
  return {
    ...newSessionRecord({ id, projectId: 'p', region: 'eu', agentType: null, config: {} }, T),
    ...over,
  };
}

for (const kind of databaseKinds()) {
  describe(`metrics queries (${kind})`, () => {
    const { store } = useTestStore(kind);

    test('sessionCountsByPool counts every state but ended, per project and region', async () => {
      const rows: Partial<SessionRecord>[] = [
        { projectId: 'a', region: 'eu', state: 'queued', queuedAt: T },
        { projectId: 'a', region: 'eu', state: 'queued', queuedAt: T + 1 },
        { projectId: 'a', region: 'eu', state: 'active' },
        { projectId: 'a', region: 'us', state: 'queued', queuedAt: T },
        { projectId: 'a', region: 'eu', state: 'ended', endedAt: T, endCode: 1000 },
        { projectId: 'b', region: 'eu', state: 'requesting' },
        { projectId: 'b', region: 'eu', state: 'connecting' },
        { projectId: 'b', region: 'eu', state: 'idle' },
        { projectId: 'b', region: 'eu', state: 'paused' },
        { projectId: 'b', region: 'eu', state: 'ending' },
        { projectId: 'b', region: 'eu', state: 'ended', endedAt: T, endCode: 4001 },
      ];
      for (const [i, over] of rows.entries()) await store.read.insertSession(session(`s${i}`, over));
      assert.deepEqual(await sessionCountsByPool(store.read.q), [
        { projectId: 'a', region: 'eu', state: 'active', count: 1 },
        { projectId: 'a', region: 'eu', state: 'queued', count: 2 },
        { projectId: 'a', region: 'us', state: 'queued', count: 1 },
        { projectId: 'b', region: 'eu', state: 'connecting', count: 1 },
        { projectId: 'b', region: 'eu', state: 'ending', count: 1 },
        { projectId: 'b', region: 'eu', state: 'idle', count: 1 },
        { projectId: 'b', region: 'eu', state: 'paused', count: 1 },
        { projectId: 'b', region: 'eu', state: 'requesting', count: 1 },
      ]);
    });

    test('sessionKeys reads the pool and times of sessions by id; unknown ids are left out', async () => {
      await store.read.insertSession(
        session('k1', { projectId: 'kp', region: 'us', state: 'queued', queuedAt: T + 5 }),
      );
      await store.read.insertSession(
        session('k2', {
          projectId: 'kq',
          region: 'eu',
          state: 'ended',
          createdAt: T + 1,
          activeAt: T + 10,
          endedAt: T + 20,
          endCode: 1000,
        }),
      );
      const keys = await sessionKeys(store.read.q, ['k2', 'nope', 'k1', 'k1']);
      assert.deepEqual(
        [...keys.entries()].sort(([a], [b]) => a.localeCompare(b)),
        [
          [
            'k1',
            { projectId: 'kp', region: 'us', createdAt: T, queuedAt: T + 5, activeAt: null, endedAt: null },
          ],
          [
            'k2',
            {
              projectId: 'kq',
              region: 'eu',
              createdAt: T + 1,
              queuedAt: null,
              activeAt: T + 10,
              endedAt: T + 20,
            },
          ],
        ],
      );
      assert.equal((await sessionKeys(store.read.q, [])).size, 0);
    });

    test('sessionKeys reads a thousand sessions in one call', async () => {
      const ids = Array.from({ length: 1000 }, (_, i) => `many${i}`);
      await store.tx(async (r) => {
        for (const id of ids) await r.insertSession(session(id, { projectId: 'many' }));
      });
      const keys = await sessionKeys(store.read.q, ids);
      assert.equal(keys.size, 1000);
      assert.ok([...keys.values()].every((k) => k.projectId === 'many' && k.createdAt === T));
    });
  });
}
