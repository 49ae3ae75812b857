// The server of the chat tests: an UsherServer as `npm start` runs it for the chat demo — the demo's `chat`
// project (the demo agent as a real worker process), the demo pages served at `/` — on a SQLite test
// database, with the system clock; and the check that no demo agent outlives the test file.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before } from 'node:test';
import type { ProjectInput } from '@usher/protocol';
import { UsherServer } from '@usher/server';
import {
  createTestDatabase,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  type TestDatabase,
  workersWhere,
} from '@usher/testing';
import type { WebSocket } from 'ws';
import { DEMO_PAGE, demoProjects } from '../../../cli/src/demo.ts';
import { gone, WatchedProcessDriver } from '../fixtures/processes.ts';

/** The demo's own chat project, exactly as `npm start` declares it. */
export function chatProject(): ProjectInput {
  const project = demoProjects().find((p) => p.id === 'chat');
  if (!project) throw new Error('the demo has no `chat` project (packages/cli/src/demo.ts)');
  return project;
}

export interface ChatServer {
  readonly server: UsherServer;
  readonly driver: WatchedProcessDriver;
  /** http://127.0.0.1:port */
  readonly url: string;
  /** Calls the HTTP API with the admin key. */
  api<T = Record<string, unknown>>(method: string, path: string): Promise<{ status: number; body: T }>;
  /** Resolves once n workers of the project are ready. */
  readyWorkers(projectId: string, n: number): Promise<void>;
  /** The pid of the worker process that serves a session now. */
  agentPid(sessionId: string): Promise<number>;
  /**
   * Cuts a participant off, as a network failure would: its session sockets are dropped now and at once
   * whenever they open again (the page sees 1006 and keeps reconnecting), until the returned function is called.
   */
  cutOff(identity: string): () => void;
}

/** The identity a session socket's `?token=` names (the token's `idn` claim), or null. */
function socketIdentity(req: IncomingMessage): string | null {
  const token = new URL(req.url ?? '/', 'http://x').searchParams.get('token');
  const payload = token?.split('.')[1];
  if (!payload) return null;
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { idn?: string };
  return claims.idn ?? null;
}

/** Registers hooks on the current suite: before() starts the server and waits for the warm agent. */
export function useChatServer(projects: ProjectInput[] = [chatProject()]): ChatServer {
  let db: TestDatabase | undefined;
  let server: UsherServer | undefined;
  let url = '';
  const driver = new WatchedProcessDriver();
  const started = () => {
    if (!server) throw new Error('useChatServer: the server starts in before(); use it inside tests');
    return server;
  };
  const api = async <T>(method: string, path: string) => {
    const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${TEST_ADMIN_KEY}` } });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
  };
  /** the session sockets open now, with the identity each one's token names */
  const sockets = new Map<WebSocket, string | null>();
  const cut = new Set<string>();
  const readyWorkers = async (projectId: string, n: number) => {
    await workersWhere(started(), projectId, (ws) => ws.filter((w) => w.state === 'ready').length >= n);
  };
  before(async () => {
    db = await createTestDatabase('sqlite');
    server = new UsherServer({
      storage: db.storage,
      port: 0,
      adminKeys: [TEST_ADMIN_KEY],
      secret: TEST_SECRET,
      serverId: 'chat-test-server',
      drivers: { process: driver },
      projects,
      pagesRoot: DEMO_PAGE,
      keepaliveMs: 0,
    });
    ({ url } = await server.listen());
    server.app.websocketServer.on('connection', (ws: WebSocket, req: IncomingMessage) => {
      if (!new URL(req.url ?? '/', 'http://x').pathname.startsWith('/sessions/')) return;
      const identity = socketIdentity(req);
      if (identity !== null && cut.has(identity)) return ws.terminate();
      sockets.set(ws, identity);
      ws.once('close', () => sockets.delete(ws));
    });
    for (const p of projects) await readyWorkers(p.id!, p.regions?.default?.min ?? 0);
  });
  after(async () => {
    await server?.close();
    await db?.drop();
    const alive = [];
    for (const [workerId, pid] of driver.pids) if (!(await gone(pid))) alive.push(`${workerId} (pid ${pid})`);
    assert.deepEqual(alive, [], 'no demo agent outlives the test file');
  });
  return {
    get server() {
      return started();
    },
    driver,
    get url() {
      started();
      return url;
    },
    api,
    readyWorkers,
    async agentPid(sessionId) {
      const r = await api<{ workerId: string | null }>('GET', `/sessions/${sessionId}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.ok(r.body.workerId, `session ${sessionId} has a worker`);
      return driver.pid(r.body.workerId);
    },
    cutOff(identity) {
      cut.add(identity);
      for (const [ws, who] of sockets) if (who === identity) ws.terminate();
      return () => cut.delete(identity);
    },
  };
}
