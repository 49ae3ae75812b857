// Draining a server (SPEC §5): it is no longer ready, takes no new sessions and starts no workers; its idle
// workers stop at once, its busy ones after their session; the drain resolves when they are all gone.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { agentProject, databaseKinds, useTestServer } from '@usher/testing';

for (const kind of databaseKinds()) {
  describe(`draining a server (${kind})`, () => {
    const { t } = useTestServer(kind, { serverId: 'drain-me' });

    test('no new sessions, live ones finish, then the drain is done', async () => {
      await t.createProject(agentProject('dr', { min: 2, max: 3 }));
      await t.readyWorkers('dr', 2);
      const s = await t.createSession('dr');
      await t.waitForState(s.id, 'active');
      const listed = await t.api<{
        servers: { id: string; self: boolean; draining: boolean; alive: boolean }[];
      }>('GET', '/servers');
      assert.deepEqual(listed.body.servers, [
        { ...listed.body.servers[0]!, id: 'drain-me', self: true, draining: false, alive: true },
      ]);
      assert.equal((await t.api('GET', '/readyz')).status, 200);

      const asked = await t.api<{ draining: boolean }>('POST', '/servers/drain-me/drain');
      assert.equal(asked.status, 202);
      assert.equal(asked.body.draining, true);
      const drained = t.server.drain(); // the same drain as the API's
      assert.equal((await t.api('GET', '/readyz')).status, 503);
      const refused = await t.api<{ error: { code: string; message: string } }>('POST', '/sessions', {
        projectId: 'dr',
      });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, 'UNAVAILABLE');
      assert.match(refused.body.error.message, /draining/);
      // the idle warm worker stops now; the busy one keeps its session
      await t.workersWhere('dr', (ws) => ws.filter((w) => w.state !== 'stopped').length === 1);
      assert.equal((await t.session(s.id)).state, 'active');
      let done = false;
      void drained.then(() => {
        done = true;
      });
      await t.settled();
      assert.equal(done, false, 'the drain waits for the live session');

      await t.api('POST', `/sessions/${s.id}/end`);
      assert.deepEqual(await drained, { remaining: 0 });
      // nothing was started to refill the pool while draining
      await t.workersWhere('dr', (ws) => ws.every((w) => w.state === 'stopped'));
      const after = await t.api<{ servers: { draining: boolean }[] }>('GET', '/servers');
      assert.equal(after.body.servers[0]!.draining, true);
      assert.equal((await t.api('POST', '/servers/nobody/drain')).status, 404);
    });
  });
}
