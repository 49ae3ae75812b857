// Unit tests for UsherWorker against a small real `ws` server standing in for Usher's /workers/ws.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { type TestContext, test } from 'node:test';
import {
  type Assignment,
  type Envelope,
  PROTOCOL_VERSION,
  type ServerToWorkerFrame,
  validator,
  WorkerFrame,
} from '@usher/protocol';
import { type WebSocket, WebSocketServer } from 'ws';
import { WorkerError, WorkerServerError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { WorkerOptions } from './options.ts';
import { UsherWorker } from './worker.ts';

const workerFrame = validator(WorkerFrame);

/** A FIFO whose shift() waits for the next item. */
class AsyncQueue<T> {
  readonly #items: T[] = [];
  readonly #waiters: ((item: T) => void)[] = [];
  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }
  shift(): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift() as T);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/** One worker connection as the server sees it; every frame it receives must be a valid WorkerFrame. */
class Conn {
  readonly socket: WebSocket;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly #frames = new AsyncQueue<WorkerFrame>();
  constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (data) => {
      const parsed = workerFrame.parse(JSON.parse(String(data)));
      assert.ok(parsed.ok, `the worker sent an invalid frame: ${String(data)}`);
      this.#frames.push(parsed.value);
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', (code, reason) => resolve({ code, reason: String(reason) })),
    );
  }
  nextFrame(): Promise<WorkerFrame> {
    return this.#frames.shift();
  }
  /** The next frame, which must be of `type` (heartbeats in between are skipped). */
  async expect<T extends WorkerFrame['type']>(type: T): Promise<Extract<WorkerFrame, { type: T }>> {
    for (;;) {
      const frame = await this.nextFrame();
      if (frame.type === 'heartbeat' && type !== 'heartbeat') continue;
      assert.equal(frame.type, type, `expected "${type}", got ${JSON.stringify(frame)}`);
      return frame as Extract<WorkerFrame, { type: T }>;
    }
  }
  send(frame: ServerToWorkerFrame | string): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }
  /** Reads `register` and answers `registered`. */
  async accept(heartbeatIntervalMs = 60_000): Promise<Extract<WorkerFrame, { type: 'register' }>> {
    const register = await this.expect('register');
    this.send({ type: 'registered', workerId: 'wrk_1', heartbeatIntervalMs });
    return register;
  }
}

class FakeServer {
  readonly wss: WebSocketServer;
  readonly connections = new AsyncQueue<Conn>();
  constructor(wss: WebSocketServer) {
    this.wss = wss;
    wss.on('connection', (socket) => this.connections.push(new Conn(socket)));
  }
  static async listen(t: TestContext): Promise<FakeServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/workers/ws' });
    await once(wss, 'listening');
    const server = new FakeServer(wss);
    t.after(() => server.close());
    return server;
  }
  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}/workers/ws`;
  }
  next(): Promise<Conn> {
    return this.connections.shift();
  }
  async close(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

interface Logged {
  level: string;
  message: string;
}
function quietLogger(): Logger & { lines: AsyncQueue<Logged> } {
  const lines = new AsyncQueue<Logged>();
  const at = (level: string) => (message: string) => lines.push({ level, message });
  return { lines, debug: () => {}, info: () => {}, warn: at('warn'), error: at('error') };
}

function makeWorker(t: TestContext, server: FakeServer, options: WorkerOptions = {}): UsherWorker {
  const worker = new UsherWorker({
    url: options.url ?? server.url,
    token: 'tok-1',
    name: 'test-worker',
    logger: quietLogger(),
    reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 },
    env: {},
    ...options,
  });
  t.after(() => worker.close());
  return worker;
}

const assignment: Assignment = {
  sessionId: 'ses_1',
  projectId: 'prj_1',
  region: 'local',
  agentType: null,
  config: { voice: 'calm' },
  token: 'session-token',
  savedState: { count: 2 },
  restarts: 0,
  participants: [{ identity: 'u1', kind: 'user' }],
};

function envelope(data: unknown, type = 'user_text'): Envelope {
  return {
    id: 'msg_1',
    sessionId: 'ses_1',
    type,
    from: { identity: 'u1', kind: 'user' },
    at: new Date().toISOString(),
    data,
  };
}

/** Starts a worker, registers it and reads its `ready`. */
async function registered(t: TestContext, options: WorkerOptions = {}) {
  const server = await FakeServer.listen(t);
  const worker = makeWorker(t, server, options);
  const started = worker.start();
  const conn = await server.next();
  await conn.accept();
  await started;
  if (options.autoReady !== false) await conn.expect('ready');
  return { server, worker, conn };
}

/** Registered and assigned `assignment`, `session_started` read. */
async function assigned(t: TestContext, options: WorkerOptions = {}) {
  const setup = await registered(t, options);
  setup.conn.send({ type: 'assign', assignment });
  await setup.conn.expect('session_started');
  return setup;
}

test('the first frame is register with the token, protocol version and name', async (t) => {
  const server = await FakeServer.listen(t);
  const worker = makeWorker(t, server);
  void worker.start();
  const conn = await server.next();
  assert.deepEqual(await conn.nextFrame(), {
    type: 'register',
    token: 'tok-1',
    protocolVersion: PROTOCOL_VERSION,
    name: 'test-worker',
  });
});

test('registered → start() resolves and ready is sent', async (t) => {
  const server = await FakeServer.listen(t);
  const worker = makeWorker(t, server);
  const started = worker.start();
  const conn = await server.next();
  await conn.accept();
  await started;
  assert.equal(worker.state, 'registered');
  assert.equal(worker.workerId, 'wrk_1');
  assert.deepEqual(await conn.nextFrame(), { type: 'ready' });
});

test('autoReady: false sends nothing until ready() is called', async (t) => {
  const { worker, conn } = await registered(t, { autoReady: false });
  conn.send({ type: 'assign', assignment });
  // the frame after register is session_started, so no `ready` went out
  assert.deepEqual(await conn.nextFrame(), { type: 'session_started', sessionId: 'ses_1' });
  worker.ready();
  assert.deepEqual(await conn.nextFrame(), { type: 'ready' });
});

test('heartbeats follow the interval from the server, not the option', async (t) => {
  const server = await FakeServer.listen(t);
  const worker = makeWorker(t, server, { heartbeatIntervalMs: 3_600_000 });
  const started = worker.start();
  const conn = await server.next();
  await conn.accept(5);
  await started;
  assert.deepEqual(await conn.nextFrame(), { type: 'ready' });
  assert.deepEqual(await conn.nextFrame(), { type: 'heartbeat' });
  assert.deepEqual(await conn.nextFrame(), { type: 'heartbeat' });
});

test('assign → onConnect gets the assignment, session is set, session_started is sent', async (t) => {
  const connected = Promise.withResolvers<Assignment>();
  const { worker, conn } = await registered(t, { onConnect: (a) => connected.resolve(a) });
  const event = once(worker, 'connect');
  conn.send({ type: 'assign', assignment });
  assert.deepEqual(await connected.promise, assignment);
  assert.deepEqual(await event, [assignment]);
  assert.deepEqual(await conn.nextFrame(), { type: 'session_started', sessionId: 'ses_1' });
  assert.deepEqual(worker.session?.savedState, { count: 2 });
});

test('an onConnect that throws: no session_started, an error event instead', async (t) => {
  const { worker, conn } = await registered(t, {
    onConnect: () => {
      throw new Error('model failed to load');
    },
    onMessage: (env, w) => w.send('after', env.data),
  });
  const failed = once(worker, 'error');
  conn.send({ type: 'assign', assignment });
  const [error] = await failed;
  assert.ok(error instanceof WorkerError);
  assert.equal(error.code, 'WORKER_HOOK_FAILED');
  assert.match(error.message, /onConnect threw: model failed to load/);
  conn.send({ type: 'message', message: envelope(1) });
  // the next frame is the reply, so session_started was never sent
  assert.equal((await conn.nextFrame()).type, 'message');
});

test('room messages and participants reach the hooks and events in order', async (t) => {
  const seen: string[] = [];
  const done = Promise.withResolvers<void>();
  const { worker, conn } = await assigned(t, {
    onParticipantJoined: (p) => void seen.push(`joined ${p.identity}`),
    onMessage: (env) => void seen.push(`message ${JSON.stringify(env.data)}`),
    onSessionState: (s) => void seen.push(`state ${s.state}`),
    onParticipantLeft: (p) => {
      seen.push(`left ${p.identity}`);
      done.resolve();
    },
  });
  const messageEvent = once(worker, 'message');
  conn.send({
    type: 'participant_joined',
    sessionId: 'ses_1',
    participant: { identity: 'u2', kind: 'user' },
  });
  conn.send({ type: 'message', message: envelope({ text: 'hi' }) });
  conn.send({ type: 'session_state', sessionId: 'ses_1', state: 'paused' });
  conn.send({ type: 'participant_left', sessionId: 'ses_1', participant: { identity: 'u2', kind: 'user' } });
  await done.promise;
  assert.deepEqual(seen, ['joined u2', 'message {"text":"hi"}', 'state paused', 'left u2']);
  const [env] = await messageEvent;
  assert.deepEqual(env.data, { text: 'hi' });
});

test('send(), saveState(), pause(), resume() and end() produce their frames', async (t) => {
  const { worker, conn } = await assigned(t);
  worker.send('agent_text', { text: 'hello' });
  assert.deepEqual(await conn.nextFrame(), {
    type: 'message',
    sessionId: 'ses_1',
    messageType: 'agent_text',
    data: { text: 'hello' },
  });
  worker.saveState({ count: 3 });
  assert.deepEqual(await conn.nextFrame(), { type: 'save_state', sessionId: 'ses_1', state: { count: 3 } });
  worker.pause();
  worker.resume();
  worker.end();
  for (const action of ['pause', 'resume', 'end']) {
    assert.deepEqual(await conn.nextFrame(), { type: 'control', sessionId: 'ses_1', action });
  }
});

test('send() without a session throws a WORKER_NO_SESSION error', async (t) => {
  const { worker } = await registered(t);
  assert.throws(
    () => worker.send('agent_text', {}),
    (err: unknown) =>
      err instanceof WorkerError && err.code === 'WORKER_NO_SESSION' && /send\(\)/.test(err.message),
  );
  assert.throws(() => worker.saveState({}), /saveState\(\): no session is assigned/);
});

test('a subclass overriding onMessage can reply with send()', async (t) => {
  class Echo extends UsherWorker {
    override onMessage(env: Envelope): void {
      this.send('echo', env.data);
    }
  }
  const server = await FakeServer.listen(t);
  const worker = new Echo({ url: server.url, token: 'tok-1', logger: quietLogger(), env: {} });
  t.after(() => worker.close());
  const started = worker.start();
  const conn = await server.next();
  await conn.accept();
  await started;
  await conn.expect('ready');
  conn.send({ type: 'assign', assignment });
  await conn.expect('session_started');
  conn.send({ type: 'message', message: envelope({ n: 7 }) });
  assert.deepEqual(await conn.nextFrame(), {
    type: 'message',
    sessionId: 'ses_1',
    messageType: 'echo',
    data: { n: 7 },
  });
});

test('shutdown → onShutdown, onDisconnect, stopped, socket closed, no reconnect', async (t) => {
  const calls: string[] = [];
  const { worker, conn } = await assigned(t, {
    onShutdown: (info) => void calls.push(`shutdown ${info.reason} ${info.graceMs} reuse=${info.reuse}`),
    onDisconnect: () => void calls.push('disconnect'),
  });
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: 5_000, reason: 'session ended', reuse: false });
  assert.deepEqual(await conn.expect('stopped'), { type: 'stopped' });
  assert.equal((await conn.closed).code, 1000);
  await worker.closed;
  assert.deepEqual(calls, ['shutdown session ended 5000 reuse=false', 'disconnect']);
  assert.equal(worker.state, 'closed');
  assert.equal(worker.session, null);
});

test('shutdown with reuse → the hooks run and stopped is sent, but the worker stays for its next session', async (t) => {
  const calls: string[] = [];
  const { worker, conn } = await assigned(t, {
    onShutdown: (info) => void calls.push(`shutdown ${info.sessionId} reuse=${info.reuse}`),
    onDisconnect: () => void calls.push('disconnect'),
    onConnect: (a) => void calls.push(`connect ${a.sessionId}`),
  });
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: 5_000, reason: 'completed', reuse: true });
  assert.deepEqual(await conn.expect('stopped'), { type: 'stopped' });
  assert.equal(worker.state, 'registered', 'still connected');
  assert.equal(worker.session, null, 'the session is over');
  conn.send({ type: 'assign', assignment: { ...assignment, sessionId: 'ses_2' } });
  assert.deepEqual(await conn.expect('session_started'), { type: 'session_started', sessionId: 'ses_2' });
  assert.equal((worker.session as Assignment | null)?.sessionId, 'ses_2', 'the next session is served');
  assert.deepEqual(calls.slice(-3), ['shutdown ses_1 reuse=true', 'disconnect', 'connect ses_2']);
});

test('close(): an onDisconnect still running after closeGraceMs does not hold back stopped', async (t) => {
  const { worker, conn } = await assigned(t, {
    onDisconnect: () => new Promise<void>(() => {}),
    closeGraceMs: 10,
  });
  const closing = worker.close();
  await conn.expect('stopped');
  await conn.closed;
  await closing;
  assert.equal(worker.state, 'closed');
});

test('shutdown: a hook still running after graceMs does not hold back stopped', async (t) => {
  const { worker, conn } = await assigned(t, { onShutdown: () => new Promise<void>(() => {}) });
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: 10, reason: 'recycle' });
  await conn.expect('stopped');
  await conn.closed;
  await worker.closed;
});

test('an unexpected close → reconnect with the same token, then ready again', async (t) => {
  const { server, worker, conn } = await registered(t);
  const reconnecting = once(worker, 'reconnecting');
  conn.socket.terminate();
  const [info] = await reconnecting;
  assert.equal(info.attempt, 1);
  const conn2 = await server.next();
  const register = await conn2.accept();
  assert.equal(register.token, 'tok-1');
  assert.deepEqual(await conn2.nextFrame(), { type: 'ready' });
  assert.equal(worker.state, 'registered');
});

test('a session started while the socket was down is said to be started once the worker registers again', async (t) => {
  let loaded!: () => void;
  const loading = new Promise<void>((resolve) => {
    loaded = resolve;
  });
  const { server, worker, conn } = await registered(t, { onConnect: () => loading });
  conn.send({ type: 'assign', assignment });
  await once(worker, 'connect');
  // the connection drops while onConnect is still loading
  conn.socket.terminate();
  const conn2 = await server.next();
  loaded();
  await conn2.accept();
  assert.deepEqual(await conn2.nextFrame(), { type: 'session_started', sessionId: assignment.sessionId });
  assert.equal(worker.session?.sessionId, assignment.sessionId);
});

test('a worker that reconnects while holding a session keeps it and does not say ready', async (t) => {
  const { server, worker, conn } = await assigned(t, { onMessage: (env, w) => w.send('echo', env.data) });
  conn.socket.close(1011, 'server restarting');
  const conn2 = await server.next();
  await conn2.accept();
  assert.equal(worker.session?.sessionId, 'ses_1');
  conn2.send({ type: 'message', message: envelope('again') });
  // the first frame after register is the reply: no `ready`
  assert.deepEqual(await conn2.nextFrame(), {
    type: 'message',
    sessionId: 'ses_1',
    messageType: 'echo',
    data: 'again',
  });
});

test('not registered within registerTimeoutMs → the worker closes and tries again', async (t) => {
  // register timers (and only those) are held by the test and fired by hand
  const REGISTER_TIMEOUT_MS = 12_345;
  const held: (() => void)[] = [];
  const timers = {
    setTimeout: (callback: () => void, ms: number): unknown => {
      if (ms !== REGISTER_TIMEOUT_MS) return setTimeout(callback, ms);
      held.push(callback);
      return null;
    },
    clearTimeout: (handle: unknown) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  };
  const server = await FakeServer.listen(t);
  const worker = makeWorker(t, server, { registerTimeoutMs: REGISTER_TIMEOUT_MS, timers });
  const started = worker.start();
  const silent = await server.next();
  await silent.expect('register');
  assert.equal(held.length, 1);
  held[0]?.();
  await silent.closed;
  const conn = await server.next();
  await conn.accept();
  await started;
  assert.equal(worker.state, 'registered');
});

test('refused with 1008 → start() rejects with WORKER_REJECTED naming the server error; no reconnect', async (t) => {
  const server = await FakeServer.listen(t);
  const worker = makeWorker(t, server);
  const started = worker.start();
  const conn = await server.next();
  await conn.expect('register');
  conn.send({ type: 'error', code: 'UNAUTHORIZED', message: 'unknown worker token' });
  conn.socket.close(1008, 'bad token');
  await assert.rejects(started, (err: unknown) => {
    assert.ok(err instanceof WorkerError);
    assert.equal(err.code, 'WORKER_REJECTED');
    assert.match(err.message, /1008 bad token.*UNAUTHORIZED unknown worker token/);
    return true;
  });
  await worker.closed;
  assert.equal(worker.state, 'closed');
});

test('reconnect attempts are bounded: start() rejects with WORKER_RECONNECT_FAILED', async (t) => {
  const server = await FakeServer.listen(t);
  const url = server.url;
  await server.close();
  const worker = makeWorker(t, server, {
    url,
    reconnect: { initialDelayMs: 1, maxDelayMs: 2, maxAttempts: 2 },
  });
  const attempts: number[] = [];
  worker.on('reconnecting', (info) => attempts.push(info.attempt));
  await assert.rejects(
    worker.start(),
    (err: unknown) => err instanceof WorkerError && err.code === 'WORKER_RECONNECT_FAILED',
  );
  assert.deepEqual(attempts, [1, 2]);
});

test('an error frame is emitted as a WorkerServerError', async (t) => {
  const { worker, conn } = await registered(t);
  const failed = once(worker, 'error');
  conn.send({ type: 'error', code: 'RATE_LIMITED', message: 'slow down' });
  const [error] = await failed;
  assert.ok(error instanceof WorkerServerError);
  assert.equal(error.code, 'RATE_LIMITED');
  assert.equal(error.retryable, true);
});

test('unexpected frames are logged truncated to 200 chars and ignored', async (t) => {
  const logger = quietLogger();
  const { conn, worker } = await registered(t, { logger, onMessage: (env, w) => w.send('echo', env.data) });
  const long = JSON.stringify({ type: 'bogus', filler: 'x'.repeat(1000) });
  conn.send(long);
  const line = await logger.lines.shift();
  assert.equal(line.level, 'warn');
  assert.match(line.message, /^ignored an unexpected frame/);
  assert.ok(line.message.includes(long.slice(0, 200)));
  assert.ok(!line.message.includes(long.slice(0, 201)));
  conn.send('not json');
  assert.match((await logger.lines.shift()).message, /not JSON: not json/);
  assert.equal(worker.state, 'registered');
});

test('close() leaves the session, sends stopped and does not reconnect', async (t) => {
  let disconnected = 0;
  const { worker, conn } = await assigned(t, { onDisconnect: () => void disconnected++ });
  const closing = worker.close();
  await conn.expect('stopped');
  assert.equal((await conn.closed).code, 1000);
  await closing;
  assert.equal(disconnected, 1);
  assert.equal(worker.state, 'closed');
  await assert.rejects(worker.start(), /the worker is closed/);
});

test('the WHATWG global WebSocket can be injected instead of ws', async (t) => {
  const server = await FakeServer.listen(t);
  const worker = makeWorker(t, server, { WebSocket: globalThis.WebSocket });
  const started = worker.start();
  const conn = await server.next();
  await conn.accept();
  await started;
  await conn.expect('ready');
  conn.send({ type: 'assign', assignment });
  await conn.expect('session_started');
});
