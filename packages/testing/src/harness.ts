// An Usher server for tests: real HTTP and WebSockets on loopback, a chosen database, a manual clock and
// fake in-process workers by default.
import { after, before } from 'node:test';
import type { ProjectInput, SessionEvent } from '@usher/protocol';
import {
  type Clock,
  ManualClock,
  openStore,
  type StorageOptions,
  Store,
  UsherServer,
  type UsherServerOptions,
  type WorkerDriver,
} from '@usher/server';
import { createTestDatabase, type DatabaseKind, type TestDatabase } from './databases.ts';
import { FakeDriver } from './fake-driver.ts';
import { FrameSocket } from './frame-socket.ts';
import { TestSocket } from './session-socket.ts';

export const TEST_ADMIN_KEY = 'test-admin-key-0123456789';
export const TEST_SECRET = 'test-secret-0123456789-0123456789-0123456789';

export interface TestServerOptions {
  storage: StorageOptions;
  /** default: a ManualClock */
  clock?: Clock;
  /** default: a FakeDriver */
  processDriver?: WorkerDriver;
  /** the driver of projects with `worker.driver: kubernetes` (e.g. a KubernetesDriver on a FakeKubeApi) */
  kubernetesDriver?: WorkerDriver;
  projects?: ProjectInput[];
  port?: number;
  serverId?: string;
  engine?: UsherServerOptions['engine'];
  /** how often participants' sockets are pinged (real time); default: off */
  keepaliveMs?: number;
  /** LiveKit mode: settings, or a LiveKitMode (built after the options, hence a function) */
  livekit?: () => UsherServerOptions['livekit'];
  /** the server's logger (default: none) */
  log?: UsherServerOptions['log'];
  /** GET /metrics access (default: an admin key is needed) */
  metrics?: UsherServerOptions['metrics'];
  /** webhook endpoints and how deliveries are made (docs/webhooks.md) */
  webhooks?: UsherServerOptions['webhooks'];
  webhookDelivery?: UsherServerOptions['webhookDelivery'];
  /** any other server options (rate limits, allowed origins, trustProxy…), applied last */
  server?: Partial<UsherServerOptions>;
}

export interface ApiResult<T = Record<string, unknown>> {
  status: number;
  body: T;
}

export class TestServer {
  readonly server: UsherServer;
  readonly clock: Clock;
  readonly driver: WorkerDriver;
  url = '';

  constructor(options: TestServerOptions) {
    this.clock = options.clock ?? new ManualClock();
    this.driver = options.processDriver ?? new FakeDriver();
    this.server = new UsherServer({
      storage: options.storage,
      port: options.port ?? 0,
      adminKeys: [TEST_ADMIN_KEY],
      secret: TEST_SECRET,
      clock: this.clock,
      serverId: options.serverId ?? 'test-server',
      drivers: {
        process: this.driver,
        ...(options.kubernetesDriver ? { kubernetes: options.kubernetesDriver } : {}),
      },
      projects: options.projects,
      engine: { positionIntervalMs: 0, ...options.engine },
      keepaliveMs: options.keepaliveMs ?? 0,
      livekit: options.livekit?.(),
      log: options.log,
      metrics: options.metrics,
      webhooks: options.webhooks,
      webhookDelivery: options.webhookDelivery,
      ...options.server,
    });
  }

  get fake(): FakeDriver {
    if (!(this.driver instanceof FakeDriver)) throw new Error('this test server does not use the FakeDriver');
    return this.driver;
  }

  get manualClock(): ManualClock {
    if (!(this.clock instanceof ManualClock)) throw new Error('this test server does not use a ManualClock');
    return this.clock;
  }

  get engine() {
    return this.server.engine;
  }

  async start(): Promise<this> {
    const { url } = await this.server.listen();
    this.url = url;
    return this;
  }

  /** Calls the HTTP API; `auth` is the admin key unless a token (or null for none) is given. */
  async api<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    auth: string | null = TEST_ADMIN_KEY,
  ): Promise<ApiResult<T>> {
    const headers: Record<string, string> = {};
    if (auth) headers.authorization = `Bearer ${auth}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
  }

  async createProject(input: ProjectInput): Promise<Record<string, unknown>> {
    const r = await this.api('POST', '/projects', input);
    if (r.status !== 201) throw new Error(`creating project failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** POST /sessions; throws unless 201. */
  async createSession(projectId: string, extra: Record<string, unknown> = {}): Promise<CreatedSession> {
    const r = await this.api<CreatedSession>('POST', '/sessions', { projectId, ...extra });
    if (r.status !== 201) throw new Error(`creating a session failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Opens the session's socket with a token (the viewer's by default; with `query` added to its URL, e.g. a replay cursor) and waits for its snapshot. */
  async connect(
    session: { id: string; token?: string },
    token = session.token,
    query: Record<string, string> = {},
  ): Promise<TestSocket> {
    const params = new URLSearchParams({ ...(token ? { token } : {}), ...query }).toString();
    const url = `${this.url.replace(/^http/, 'ws')}/sessions/${session.id}/ws${params ? `?${params}` : ''}`;
    const s = new TestSocket(url);
    await s.opened;
    // the server's first frame is the snapshot, sent once the socket is in the room (or a refusal and a close)
    await Promise.race([s.waitFor((e) => e.type === 'session.status_changed'), s.closed]);
    return s;
  }

  /**
   * POST /sessions/{id}/join, with the session's token unless `auth` is given; throws unless 200. The
   * participant's token and identity.
   */
  async joinToken(
    session: { id: string; token?: string },
    body: { identity?: string; role?: string } = {},
    auth: string | undefined = session.token,
  ): Promise<{ token: string; identity: string }> {
    const r = await this.api<{ token: string; identity: string }>(
      'POST',
      `/sessions/${session.id}/join`,
      body,
      auth,
    );
    if (r.status !== 200) throw new Error(`joining failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** A participant joins the session's room: a join token (as joinToken), then its open socket. */
  async join(
    session: { id: string; token?: string },
    body: { identity?: string; role?: string } = {},
    auth: string | undefined = session.token,
  ): Promise<TestSocket> {
    return this.connect(session, (await this.joinToken(session, body, auth)).token);
  }

  /** Waits until every after-commit task (assignments, driver calls, exits) has run. */
  settled(): Promise<void> {
    return this.engine.settled();
  }

  /** Advances the manual clock and waits for the work it caused. */
  async advance(ms: number): Promise<void> {
    await this.manualClock.advance(ms);
    await this.settled();
  }

  async session(id: string): Promise<Record<string, unknown> & { state: string }> {
    const r = await this.api<Record<string, unknown> & { state: string }>('GET', `/sessions/${id}`);
    if (r.status !== 200) throw new Error(`GET /sessions/${id}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Waits for a session event through the engine's hub (no socket needed). */
  nextEvent(sessionId: string, pred: (e: SessionEvent) => boolean): Promise<SessionEvent> {
    return new Promise((resolve) => {
      const off = this.server.hub.subscribe(sessionId, (e) => {
        if (pred(e)) {
          off();
          resolve(e);
        }
      });
    });
  }

  /** Resolves with the workers of a project once they satisfy pred (checked now and on every worker change). */
  workersWhere(projectId: string, pred: (workers: EngineWorker[]) => boolean): Promise<EngineWorker[]> {
    return workersWhere(this.server, projectId, pred);
  }

  /**
   * A worker dialled in by hand, as an external one is: a pool token of the project (`body`: its region and
   * lifetime), a socket that registers with it and says `ready`. Returns the socket, the worker's id and the
   * token the server gave it, and the pool token.
   */
  async poolWorker(
    projectId: string,
    body: { region?: string; ttlSeconds?: number } = {},
  ): Promise<{ w: FrameSocket; workerId: string; ownToken: string; poolToken: string; workerUrl: string }> {
    const pool = await this.api<{ token: string; workerUrl: string }>(
      'POST',
      `/projects/${projectId}/pool-tokens`,
      body,
    );
    if (pool.status !== 201) throw new Error(`no pool token: ${pool.status} ${JSON.stringify(pool.body)}`);
    const w = new FrameSocket(pool.body.workerUrl);
    await w.opened;
    w.send({ type: 'register', token: pool.body.token });
    const registered = await w.waitFor((f) => f.type === 'registered');
    w.send({ type: 'ready' });
    return {
      w,
      workerId: String(registered.workerId),
      ownToken: String(registered.token),
      poolToken: pool.body.token,
      workerUrl: pool.body.workerUrl,
    };
  }

  /** Resolves when at least n workers of the project are ready. */
  async readyWorkers(projectId: string, n: number): Promise<void> {
    await this.workersWhere(projectId, (ws) => ws.filter((w) => w.state === 'ready').length >= n);
  }

  /** Resolves when the session reaches a state (checked now, then on its events). */
  async waitForState(sessionId: string, state: string): Promise<Record<string, unknown> & { state: string }> {
    const reached = this.nextEvent(
      sessionId,
      (e) => e.type === 'session.status_changed' && e.status === state,
    );
    const now = await this.session(sessionId);
    if (now.state !== state) await reached;
    return this.session(sessionId);
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

export interface CreatedSession {
  id: string;
  state: string;
  token: string;
  url: string;
  queuePosition: number | null;
  workerId: string | null;
  [key: string]: unknown;
}

/** A streaming project whose workers are fake: `max` workers, `min` warm. */
export function streamProject(
  id: string,
  pool: { min: number; max: number },
  extra: Partial<ProjectInput> = {},
): ProjectInput {
  return {
    id,
    name: id,
    kind: 'stream',
    public: true,
    worker: { driver: 'process', command: ['fake-worker'] },
    regions: { default: pool },
    ...extra,
  };
}

export function agentProject(
  id: string,
  pool: { min: number; max: number },
  extra: Partial<ProjectInput> = {},
): ProjectInput {
  return { ...streamProject(id, pool, extra), kind: 'agent', ...extra };
}

/**
 * An agent project whose workers are dialled in by hand (the external driver) and whose live sessions no
 * timeout ends: for tests that move the clock by hours.
 */
export function lastingExternalProject(id: string, pool: { min: number; max: number }): ProjectInput {
  const long = 100 * 3_600_000;
  return agentProject(id, pool, {
    worker: { driver: 'external' },
    timeouts: { idleMs: long, maxRuntimeMs: long, reconnectWindowMs: long, afkWarningMs: long },
  });
}

/** What useTestServer gives a suite: stand-ins for the server and database its hooks start. */
export interface SuiteServer {
  /** forwards every property to the TestServer of the running suite (throws before it is started) */
  readonly t: TestServer;
  /** the suite's database (throws before it is created) */
  readonly db: TestDatabase;
}

/**
 * Registers node:test hooks on the current suite: before() creates a database of `kind` and starts a
 * TestServer on it, after() closes the server and drops the database. Hooks registered later see both.
 * `const { t } = useTestServer(kind)` reads as the server itself inside tests and hooks.
 */
export function useTestServer(
  kind: DatabaseKind,
  options: Omit<TestServerOptions, 'storage'> = {},
): SuiteServer {
  let db: TestDatabase | undefined;
  let server: TestServer | undefined;
  before(async () => {
    db = await createTestDatabase(kind);
    server = await new TestServer({ ...options, storage: db.storage }).start();
  });
  after(async () => {
    await server?.close();
    await db?.drop();
  });
  const t = suiteProxy(() => server, TestServer.prototype, 'the server');
  return {
    t,
    get db() {
      return live(db, 'the database');
    },
  };
}

/**
 * Registers node:test hooks on the current suite: before() creates a database of `kind` and opens a Store on
 * it (migrated), after() closes it and drops the database. `store` reads as the store inside tests.
 */
export function useTestStore(kind: DatabaseKind): { readonly store: Store } {
  let db: TestDatabase | undefined;
  let store: Store | undefined;
  before(async () => {
    db = await createTestDatabase(kind);
    store = await openStore(db.storage);
  });
  after(async () => {
    await store?.close();
    await db?.drop();
  });
  return { store: suiteProxy(() => store, Store.prototype, 'the store') };
}

function live<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is made in before(); use it inside tests`);
  return value;
}

/** An object that forwards everything to the suite's current value (made in a before() hook). */
function suiteProxy<T extends object>(current: () => T | undefined, proto: object, what: string): T {
  return new Proxy(Object.create(proto) as T, {
    get: (_, key) => {
      const target = live(current(), what);
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
    set: (_, key, value) => Reflect.set(live(current(), what), key, value),
    has: (_, key) => key in live(current(), what),
  });
}

/** A worker as the engine lists it. */
type EngineWorker = Awaited<ReturnType<UsherServer['engine']['listWorkers']>>[number];

/** A worker as a test looks at it. */
export interface LiveWorker {
  id: string;
  state: string;
  sessionId: string | null;
}

/**
 * Resolves with the project's workers once they satisfy pred: read now and again on every worker change (it
 * listens before the first read, so no change falls between the two). A failed read rejects; a read still
 * running once the wait is over is not heard (the server may have closed since).
 */
export function workersWhere<W extends LiveWorker>(
  server: { engine: { listWorkers(filter: { projectId: string }): Promise<W[]> }; hub: UsherServer['hub'] },
  projectId: string,
  pred: (workers: W[]) => boolean,
): Promise<W[]> {
  return new Promise((resolve, reject) => {
    let done = false;
    const settle = (outcome: { workers: W[] } | { err: unknown }) => {
      if (done) return;
      done = true;
      off();
      if ('workers' in outcome) resolve(outcome.workers);
      else reject(outcome.err);
    };
    const check = () =>
      void server.engine.listWorkers({ projectId }).then(
        (workers) => pred(workers) && settle({ workers }),
        (err: unknown) => settle({ err }),
      );
    const off = server.hub.subscribeWorkers(check);
    check();
  });
}
