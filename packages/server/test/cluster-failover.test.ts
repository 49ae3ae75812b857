// A server killed with SIGKILL among three on one PostgreSQL, behind a TCP balancer: the session keeps its
// worker, which dials in again through the balancer and lands on a survivor; the viewer reconnects and resumes;
// messages flow both ways again; and the session's deadline, set before the kill, fires on a survivor.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
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
import { adminOk, type Child, freePort, startServer } from './fixtures/server-child.ts';
import { TcpBalancer } from './fixtures/tcp-balancer.ts';

const call = adminOk;

describe('a server killed among three', { skip: !databaseKinds().includes('postgres') }, () => {
  test('its session keeps its worker, its viewer resumes elsewhere, and its deadline fires on a survivor', async (c) => {
    const db = await createTestDatabase('postgres');
    const ports = [await freePort(), await freePort(), await freePort()];
    const balancer = await TcpBalancer.start(ports);
    const children: Child[] = [];
    let workerPid: number | null = null;
    c.after(async () => {
      for (const ch of children)
        if (ch.proc.exitCode === null && ch.proc.signalCode === null) ch.proc.kill('SIGKILL');
      if (workerPid) {
        try {
          process.kill(-workerPid, 'SIGKILL');
        } catch {}
      }
      await balancer.close();
      await db.drop();
    });
    for (const [i, port] of ports.entries()) {
      const options: UsherServerOptions = {
        storage: db.storage,
        port,
        serverId: `failover-${i}`,
        publicUrl: balancer.url, // what workers and viewers are told to dial
        adminKeys: [TEST_ADMIN_KEY],
        secret: TEST_SECRET,
        engine: { heartbeatIntervalMs: 500 },
      };
      children.push(await startServer(options));
    }
    const direct = children.map((ch) => ch.url);

    await call(direct[0]!, 'POST', '/projects', {
      ...agentProject('fo', { min: 1, max: 1 }),
      worker: { driver: 'process', command: ECHO_COMMAND },
      // long enough to set everything up; it is the deadline a survivor must fire
      timeouts: { maxRuntimeMs: 8_000, reconnectWindowMs: 60_000, shutdownGraceMs: 500 },
    });
    const s = await call<{ id: string; token: string; url: string }>(balancer.url, 'POST', '/sessions', {
      projectId: 'fo',
    });
    let viewer = new TestSocket(`${s.url}?token=${s.token}`);
    await viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active');
    const store = await openStore(db.storage);
    try {
      const w = (await store.read.listWorkers({ projectId: 'fo' })).find((x) => x.sessionId === s.id)!;
      workerPid = (JSON.parse(w.handle!) as { pid: number }).pid;
    } finally {
      await store.close();
    }

    // kill the server the worker's socket is on: the worst case
    const holder = await eventually('the server holding the worker', async () => {
      for (const [i, base] of direct.entries()) {
        const { workers } = await call<{ workers: { sessionId: string | null; connected: boolean }[] }>(
          base,
          'GET',
          '/workers?projectId=fo',
        );
        if (workers.some((x) => x.sessionId === s.id && x.connected)) return i + 1;
      }
      return null;
    });
    const victim = holder - 1;
    balancer.remove(ports[victim]!);
    children[victim]!.proc.kill('SIGKILL');
    await children[victim]!.exited;
    const survivors = direct.filter((_, i) => i !== victim);

    // the worker dials in again through the balancer and lands on a survivor
    await eventually('the worker on a survivor', async () => {
      for (const base of survivors) {
        const { workers } = await call<{ workers: { sessionId: string | null; connected: boolean }[] }>(
          base,
          'GET',
          '/workers?projectId=fo',
        );
        if (workers.some((x) => x.sessionId === s.id && x.connected)) return true;
      }
      return false;
    });
    // the viewer's socket may have been on the dead server: it reconnects, as the SDK does, and resumes
    await viewer.close(4999).catch(() => {});
    viewer = new TestSocket(`${s.url}?token=${s.token}`);
    const snapshot = await viewer.waitFor((e) => e.type === 'session.status_changed');
    assert.equal(snapshot.type === 'session.status_changed' && snapshot.status, 'active');
    viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'still there?' }, ref: 'after' });
    assert.equal((await viewer.next('message_ack')).recorded, true);
    // the echo worker answers through whichever server it is on now
    await viewer.waitFor((e) => e.type === 'session.message' && e.message.type === 'echo');

    // the max-runtime deadline was set before the kill; a survivor fires it
    const ended = await viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'ended');
    assert.equal(ended.type === 'session.status_changed' && ended.endReason, 'max_runtime');
    assert.equal(ended.type === 'session.status_changed' && ended.endCode, 4004);

    for (const [i, ch] of children.entries()) if (i !== victim) ch.proc.kill('SIGTERM');
    for (const [i, ch] of children.entries()) if (i !== victim) await ch.exited;
  });
});

describe('a killed server that does not come back', { skip: !databaseKinds().includes('postgres') }, () => {
  test('a survivor claims it and adopts its viewer: the reconnect window runs out with 4007', async (c) => {
    const db = await createTestDatabase('postgres');
    const children: Child[] = [];
    c.after(async () => {
      for (const ch of children)
        if (ch.proc.exitCode === null && ch.proc.signalCode === null) ch.proc.kill('SIGTERM');
      for (const ch of children) await ch.exited;
      await db.drop();
    });
    for (const i of [0, 1]) {
      children.push(
        await startServer({
          storage: db.storage,
          port: await freePort(),
          serverId: `adopt-${i}`,
          adminKeys: [TEST_ADMIN_KEY],
          secret: TEST_SECRET,
          // a server not seen for three beats (0.9 s) is dead
          serverHeartbeatMs: 300,
        }),
      );
    }
    const [survivor, victim] = children.map((ch) => ch.url) as [string, string];
    await call(survivor, 'POST', '/projects', {
      ...agentProject('ad', { min: 1, max: 1 }),
      worker: { driver: 'process', command: ECHO_COMMAND },
      timeouts: { reconnectWindowMs: 1_000, shutdownGraceMs: 500 },
    });
    const s = await call<{ id: string; token: string }>(survivor, 'POST', '/sessions', { projectId: 'ad' });
    // the viewer is on the server that is about to die
    const viewer = new TestSocket(`${victim.replace('http', 'ws')}/sessions/${s.id}/ws?token=${s.token}`);
    await viewer.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active');
    // an observer on the survivor sees how it ends (a viewer token opens a socket as a viewer too, so an
    // observer token it is)
    const obs = await call<{ token: string }>(survivor, 'POST', `/sessions/${s.id}/join`, {
      role: 'observer',
    });
    const watcher = new TestSocket(
      `${survivor.replace('http', 'ws')}/sessions/${s.id}/ws?token=${obs.token}`,
    );
    await watcher.waitFor((e) => e.type === 'session.status_changed' && e.status === 'active');
    await eventually('the viewer attached on the victim', async () => {
      const store = await openStore(db.storage);
      try {
        return (await store.read.getSession(s.id))?.viewerServer === 'adopt-1';
      } finally {
        await store.close();
      }
    });

    children[1]!.proc.kill('SIGKILL');
    await children[1]!.exited;
    // the survivor claims the dead server's row, starts the viewer's reconnect window, and it runs out
    const ended = await watcher.waitFor((e) => e.type === 'session.status_changed' && e.status === 'ended');
    assert.equal(ended.type === 'session.status_changed' && ended.endReason, 'reconnect_failed');
    assert.equal(ended.type === 'session.status_changed' && ended.endCode, 4007);
    const { servers } = await call<{ servers: { id: string }[] }>(survivor, 'GET', '/servers');
    assert.deepEqual(
      servers.map((x) => x.id),
      ['adopt-0'],
      "the dead server's row was claimed",
    );
  });
});
