// An orderly shutdown tells every socket that the server is restarting (1012), so viewers and workers come
// back; the viewer's session stays live in the database with its reconnect window running.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SocketCloseCode } from '@usher/protocol';
import { openStore } from '@usher/server';
import { createTestDatabase, databaseKinds, streamProject, TestServer } from '@usher/testing';

for (const kind of databaseKinds()) {
  describe(`shutdown (${kind})`, () => {
    test('viewer sockets close with 1012 and the session stays live for its viewer to come back', async (c) => {
      const db = await createTestDatabase(kind);
      c.after(() => db.drop());
      const t = await new TestServer({
        storage: db.storage,
        projects: [streamProject('s', { min: 1, max: 1 })],
      }).start();
      await t.readyWorkers('s', 1);
      const session = await t.createSession('s');
      const viewer = await t.connect(session);
      await viewer.state('active');
      await t.close();
      assert.deepEqual(await viewer.closed, {
        code: SocketCloseCode.ServerShutdown,
        reason: 'the server is restarting',
      });

      // what the next server finds: the session still live; its viewer's reconnect window is either running
      // (the detach was stored before the database closed) or starts when the next server recovers
      const store = await openStore(db.storage);
      c.after(() => store.close());
      const after = await store.read.getSession(session.id);
      assert.equal(after?.state, 'active', 'a server restart is not the end of the session');
      const timers = await store.read.timersForSession(session.id);
      assert.ok(
        after.viewerAttached || timers.some((x) => x.kind === 'reconnect'),
        'the viewer gets its reconnect window',
      );
    });
  });
}
