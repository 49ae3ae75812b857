// The transcript's guarantee (docs/transcripts.md), with the server in a child process on both databases: a
// message whose ack arrived survives a SIGKILL of the server; a message the server relayed before a clean
// shutdown (SIGTERM) is stored even if nobody waited for its ack.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MessagePage } from '@usher/protocol';
import { openStore, type UsherServerOptions } from '@usher/server';
import {
  agentProject,
  createTestDatabase,
  databaseKinds,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  TestSocket,
} from '@usher/testing';
import { ECHO_COMMAND, eventually } from './fixtures/processes.ts';
import { adminApi, adminOk, freePort, startServer, step } from './fixtures/server-child.ts';

const post = <T>(base: string, path: string, body: unknown) => adminOk<T>(base, 'POST', path, body);

const texts = (page: MessagePage) =>
  page.messages.filter((m) => m.type === 'user_text').map((m) => (m.data as { n: number }).n);

for (const kind of databaseKinds()) {
  describe(`transcript durability (${kind})`, () => {
    test('acked messages survive SIGKILL; relayed messages are all stored by a clean shutdown', async (c) => {
      const db = await createTestDatabase(kind);
      const options: UsherServerOptions = {
        storage: db.storage,
        port: await freePort(),
        serverId: 'durability-test-server',
        adminKeys: [TEST_ADMIN_KEY],
        secret: TEST_SECRET,
        messageRate: { perSecond: 10_000, burst: 10_000 },
      };
      const run1 = await startServer(options);
      c.after(async () => {
        for (const run of [run1, run2])
          if (run && run.proc.exitCode === null && run.proc.signalCode === null) run.proc.kill('SIGKILL');
        await db.drop();
      });
      let run2: Awaited<ReturnType<typeof startServer>> | undefined;

      await post(run1.url, '/projects', {
        ...agentProject('durable', { min: 1, max: 1 }),
        worker: { driver: 'process', command: ECHO_COMMAND },
      });
      const s = await post<{ id: string; token: string; url: string }>(run1.url, '/sessions', {
        projectId: 'durable',
      });
      const viewer = new TestSocket(`${s.url}?token=${s.token}`);
      await step(
        'the session goes active',
        run1,
        viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active'),
      );

      // 1. acked, then SIGKILL
      for (let n = 0; n < 100; n++)
        viewer.send({ type: 'message', messageType: 'user_text', data: { n }, ref: `r${n}` });
      for (let n = 0; n < 100; n++)
        assert.equal((await step(`ack ${n}`, run1, viewer.next('message_ack'))).recorded, true);
      run1.proc.kill('SIGKILL');
      await run1.exited;
      await viewer.closed;
      const store = await openStore(db.storage);
      try {
        const killed = await store.messages.page({ sessionId: s.id, limit: 100, includeDebug: false });
        assert.deepEqual(
          texts({ ...killed, nextBefore: null, nextBeforeId: null }),
          Array.from({ length: 100 }, (_, n) => n),
        );
      } finally {
        await store.close();
      }

      // 2. a second run on the same database: the session goes on; 500 messages relayed, then SIGTERM at once
      run2 = await startServer(options);
      const again = new TestSocket(`${s.url}?token=${s.token}`);
      await step(
        'the snapshot after the restart',
        run2,
        again.waitFor((e) => e.type === 'session.status_changed'),
      );
      await eventually('the session is live again', async () => {
        const res = await adminApi<{ state: string }>(run2!.url, 'GET', `/sessions/${s.id}`);
        return ['active', 'idle'].includes(res.body.state);
      });
      for (let n = 100; n < 600; n++) again.send({ type: 'message', messageType: 'user_text', data: { n } });
      await step(
        'message 599 relayed',
        run2,
        again.waitFor((e) => e.type === 'session.message' && (e.message.data as { n: number }).n === 599),
      );
      run2.proc.kill('SIGTERM');
      assert.deepEqual(await step('the exit after SIGTERM', run2, run2.exited), { code: 0, signal: null });
      const after = await openStore(db.storage);
      try {
        const all: number[] = [];
        let cursor: { atUs: number; id: string } | null = null;
        do {
          const page = await after.messages.page({
            sessionId: s.id,
            limit: 100,
            includeDebug: false,
            ...(cursor ? { beforeUs: cursor.atUs, beforeId: cursor.id } : {}),
          });
          all.unshift(...texts({ ...page, nextBefore: null, nextBeforeId: null }));
          cursor = page.next;
        } while (cursor);
        assert.deepEqual(
          all,
          Array.from({ length: 600 }, (_, n) => n),
        );
      } finally {
        await after.close();
      }
    });
  });
}
