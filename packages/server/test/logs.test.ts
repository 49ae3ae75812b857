// Structured logs on both databases: a pino logger writing to memory follows sessions through their lifecycle
// (and a worker crash); every line about a session carries its sessionId and projectId, every line about a
// worker its workerId and projectId.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openStore } from '@usher/server';
import { agentProject, createTestDatabase, databaseKinds, TestServer, useTestServer } from '@usher/testing';
import { pino } from 'pino';

type Line = Record<string, unknown> & { level: number; msg?: string };

for (const kind of databaseKinds()) {
  describe(`structured logs (${kind})`, () => {
    const lines: Line[] = [];
    const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    const { t } = useTestServer(kind, { log });

    /** Every line written once the engine, and the log lines waiting for a session's project, are done. */
    const written = async (): Promise<Line[]> => {
      await t.settled();
      await t.server.observability.sessions.idle();
      return lines;
    };

    test('a session from request to end, and a crash: every line names its session, worker and project', async () => {
      const P = 'lg';
      await t.createProject(agentProject(P, { min: 0, max: 1 }));
      const starting = t.fake.nextStart();
      const s1 = await t.createSession(P);
      const w1 = await starting;
      await t.waitForState(s1.id, 'active');
      const user = await t.connect(s1);
      user.send({ type: 'message', messageType: 'user_text', data: { text: 'hi' }, ref: 'r' });
      await user.next('message_ack');
      await t.api('POST', `/sessions/${s1.id}/end`);
      await t.waitForState(s1.id, 'ended');

      const crashing = t.fake.nextStart();
      const s2 = await t.createSession(P);
      const w2 = await crashing;
      await t.waitForState(s2.id, 'active');
      t.fake.crash(w2.id);
      await t.waitForState(s2.id, 'ended');

      const all = await written();
      const about = (sessionId: string) => all.filter((l) => l.sessionId === sessionId);
      // the lifecycle of s1, in order, each line with its ids
      const states = about(s1.id).filter((l) => l.msg?.startsWith('session '));
      assert.deepEqual(
        states.map((l) => l.msg),
        ['session requesting', 'session connecting', 'session active', 'session ending', 'session ended'],
      );
      for (const l of states) {
        assert.equal(l.projectId, P);
        assert.equal(l.region, 'default');
        assert.equal(l.level, 30);
      }
      assert.deepEqual(
        [states[4]!.endCode, states[4]!.endReason, states[4]!.outcome, states[4]!.cause],
        [1000, 'completed', 'disconnected', 'worker:stopped'],
      );
      // the participants of s1 (debug)
      const joined = about(s1.id).filter((l) => l.msg === 'participant joined');
      assert.deepEqual(joined.map((l) => [l.kind, l.projectId, l.level]).sort(), [
        ['agent', P, 20],
        ['viewer', P, 20],
      ]);
      // the worker of s1: started for it, registered, exited
      const w1Lines = all.filter((l) => l.workerId === w1.id);
      const starts = w1Lines.find((l) => l.msg === 'worker starting');
      assert.deepEqual(starts && [starts.projectId, starts.region, starts.sessionId, starts.driver], [
        P,
        'default',
        s1.id,
        'process',
      ]);
      assert.equal(w1Lines.find((l) => l.msg === 'worker registered')?.projectId, P);
      const exited = w1Lines.find((l) => l.msg === 'worker exited');
      assert.deepEqual(exited && [exited.projectId, exited.expected], [P, true]);
      // the crash of s2's worker: a warning about the session, and the worker's unexpected exit
      const crash = about(s2.id).find((l) => l.code === 'AGENT_CRASHED');
      assert.deepEqual(crash && [crash.level, crash.projectId, crash.recoverable], [40, P, false]);
      const ended = about(s2.id).find((l) => l.msg === 'session ended');
      assert.deepEqual(ended && [ended.endCode, ended.endReason], [4006, 'worker_crashed']);
      const w2Exit = all.find((l) => l.workerId === w2.id && l.msg === 'worker exited');
      assert.deepEqual(w2Exit && [w2Exit.projectId, w2Exit.expected, w2Exit.code], [P, false, 1]);

      // the rule: a line that names a session or a worker names its project
      const named = all.filter((l) => l.sessionId !== undefined || l.workerId !== undefined);
      assert.ok(named.length >= 20, `many lines name a session or worker (${named.length})`);
      for (const l of named) assert.equal(l.projectId, P, `projectId on ${JSON.stringify(l)}`);
    });
  });

  describe(`a clean shutdown (${kind})`, () => {
    test('closing with a viewer, a user and an agent connected logs no error; what their sockets’ ends set off is stored', async (c) => {
      const db = await createTestDatabase(kind);
      c.after(() => db.drop());
      const lines: Line[] = [];
      const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
      const t = await new TestServer({ storage: db.storage, log }).start();
      // the agent outlives the server, as a Kubernetes pod would: what is tried here is the sockets' ends
      t.fake.closeStopsWorkers = false;
      c.after(() => t.fake.stopAll());
      await t.createProject(agentProject('bye', { min: 1, max: 1 }));
      await t.readyWorkers('bye', 1);
      const s = await t.createSession('bye');
      await t.waitForState(s.id, 'active');
      const viewer = await t.connect(s);
      await t.join(s, { identity: 'eve' });
      await viewer.waitFor(
        (e) => e.type === 'session.participant_joined' && e.participant.identity === 'eve',
      );

      await t.close();
      assert.equal((await viewer.closed).code, 1012);
      assert.deepEqual(
        lines.filter((l) => l.level >= 50).map((l) => l.msg),
        [],
        'nothing failed on the way down',
      );
      // read back from the database: the viewer's reconnect window is open, and both departures are recorded
      const store = await openStore(db.storage);
      try {
        const stored = await store.read.getSession(s.id);
        assert.deepEqual([stored?.state, stored?.viewerAttached], ['active', false]);
        const page = await store.messages.page({ sessionId: s.id, limit: 100, includeDebug: false });
        const left = page.messages.filter((m) => m.type === 'participant_left').map((m) => m.from.kind);
        assert.deepEqual(left.sort(), ['user', 'viewer']);
      } finally {
        await store.close();
      }
    });
  });
}
