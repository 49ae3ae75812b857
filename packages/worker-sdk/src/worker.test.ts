// Unit tests for UsherWorker against a small real `ws` server standing in for Usher's /workers/ws.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { type TestContext, test } from 'node:test';
import {
  type Assignment,
  type Envelope,
  MAX_CLIENT_FRAME_BYTES,
  PROTOCOL_VERSION,
  type ServerToWorkerFrame,
  validator,
  WorkerFrame,
} from '@usher/protocol';
import { WebSocket, WebSocketServer } from 'ws';
import { WorkerError, WorkerServerError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { Timers, WorkerOptions } from './options.ts';
import { OUTBOX_MAX_MESSAGES } from './outbox.ts';
import type { SocketConstructor, SocketLike } from './socket.ts';
import { SILENT_HEARTBEATS_LIMIT, UsherWorker } from './worker.ts';

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
  /**
   * Reads `register` and answers `registered`; with `sessionId`, naming the session the server has the worker on
   * (a server of an earlier version names none).
   */
  async accept(
    heartbeatIntervalMs = 60_000,
    sessionId?: string | null,
  ): Promise<Extract<WorkerFrame, { type: 'register' }>> {
    const register = await this.expect('register');
    this.send({
      type: 'registered',
      workerId: 'wrk_1',
      heartbeatIntervalMs,
      ...(sessionId !== undefined ? { sessionId } : {}),
    });
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
  /** autoPong: false stands for a server that no longer answers (its host died, a NAT dropped the connection) */
  static async listen(t: TestContext, { autoPong = true } = {}): Promise<FakeServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/workers/ws', autoPong });
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

/** `promise`, or a failure naming `what` after `ms`: a test of something that must settle fails, not hangs. */
async function within<T>(promise: Promise<T>, what: string, ms = 5_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Timers that hold the callbacks scheduled for `ms` (and only those) until the test fires them, oldest first. */
function holdTimers(ms: number): { timers: Timers; fire(): void } {
  const held: { callback: () => void }[] = [];
  const timers: Timers = {
    setTimeout: (callback, delay) => {
      if (delay !== ms) return setTimeout(callback, delay);
      const handle = { callback };
      held.push(handle);
      return handle;
    },
    clearTimeout: (handle) => {
      const i = held.indexOf(handle as { callback: () => void });
      if (i >= 0) held.splice(i, 1);
      else clearTimeout(handle as ReturnType<typeof setTimeout>);
    },
  };
  const fire = (): void => {
    const next = held.shift();
    assert.ok(next, `no ${ms} ms timer is pending`);
    next.callback();
  };
  return { timers, fire };
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

let envelopes = 0;
function envelope(data: unknown, type = 'user_text', at = new Date().toISOString()): Envelope {
  return {
    id: `msg_${++envelopes}`,
    sessionId: 'ses_1',
    type,
    from: { identity: 'u1', kind: 'user' },
    at,
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
  // short, but not so short that a loaded machine answers the SDK's ping later than two periods: it would take
  // the connection for dead and dial again (the half-open check)
  await conn.accept(200);
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

test('an onConnect that throws: the error is logged and emitted, and the session is ended instead of started', async (t) => {
  const logger = quietLogger();
  const { worker, conn } = await registered(t, {
    logger,
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
  // `session_failed` came before the reply, and no session_started at all
  assert.deepEqual(await conn.nextFrame(), {
    type: 'session_failed',
    sessionId: 'ses_1',
    message: 'onConnect threw: model failed to load',
  });
  assert.equal((await conn.nextFrame()).type, 'message');
  // logged even though someone listens for errors
  const line = await logger.lines.shift();
  assert.equal(line.level, 'error');
  assert.match(line.message, /^onConnect threw: model failed to load; telling the server the session failed/);
});

test('an onConnect that rejects while the socket is down: the session is ended once the worker registers again', async (t) => {
  let fail!: (err: Error) => void;
  const loading = new Promise<void>((_, reject) => {
    fail = reject;
  });
  const { server, worker, conn } = await registered(t, { onConnect: () => loading });
  worker.on('error', () => {});
  conn.send({ type: 'assign', assignment });
  await once(worker, 'connect');
  conn.socket.terminate();
  const conn2 = await server.next();
  fail(new Error('no GPU'));
  await conn2.accept();
  assert.deepEqual(await conn2.nextFrame(), {
    type: 'session_failed',
    sessionId: 'ses_1',
    message: 'onConnect threw: no GPU',
  });
  // said once: a further reconnect does not say it again
  conn2.socket.terminate();
  const conn3 = await server.next();
  const registeredAgain = once(worker, 'registered');
  await conn3.accept();
  await registeredAgain;
  worker.send('probe', {});
  // the first frame after register is the probe: no second session_failed before it
  assert.equal((await conn3.expect('message')).messageType, 'probe');
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

test("saveState() whose frame is over the server's 1 MiB limit throws WORKER_BAD_ARGUMENT and sends nothing", async (t) => {
  const { worker, conn } = await assigned(t);
  // the server's MAX_WORKER_FRAME_BYTES: a larger frame closes the worker's connection with 1009
  const limit = 1024 * 1024;
  const overhead = JSON.stringify({ type: 'save_state', sessionId: 'ses_1', state: '' }).length;
  const atLimit = 'x'.repeat(limit - overhead);
  const tooLarge = (err: unknown) =>
    err instanceof WorkerError &&
    err.code === 'WORKER_BAD_ARGUMENT' &&
    /^saveState\(state\): the state makes a frame of \d+ bytes, over the limit of 1048576; nothing was sent/.test(
      err.message,
    );
  assert.throws(() => worker.saveState(`${atLimit}x`), tooLarge);
  // bytes on the wire, not characters: "é" is two bytes in UTF-8
  assert.throws(() => worker.saveState('é'.repeat((limit - overhead) / 2 + 1)), tooLarge);
  assert.throws(
    () => worker.saveState({ big: 1n }),
    (err: unknown) => err instanceof WorkerError && err.code === 'WORKER_BAD_ARGUMENT',
  );
  worker.saveState(atLimit);
  // the first frame to arrive is the one at the limit: the larger ones were never sent
  const frame = await conn.nextFrame();
  assert.equal(frame.type, 'save_state');
  assert.equal((frame as { state: unknown }).state, atLimit);
  assert.equal(worker.state, 'registered');
});

test('send() whose frame is over the room message limit (64 KiB) throws WORKER_BAD_ARGUMENT and sends nothing', async (t) => {
  const { worker, conn } = await assigned(t);
  const frame = { type: 'message', sessionId: 'ses_1', messageType: 'agent_text', data: '' };
  const atLimit = 'x'.repeat(MAX_CLIENT_FRAME_BYTES - JSON.stringify(frame).length);
  assert.throws(
    () => worker.send('agent_text', `${atLimit}x`),
    (err: unknown) =>
      err instanceof WorkerError &&
      err.code === 'WORKER_BAD_ARGUMENT' &&
      /^send\(type, data\): the message makes a frame of 65537 bytes, over the limit of 65536/.test(
        err.message,
      ),
  );
  worker.send('agent_text', atLimit);
  assert.deepEqual(await conn.nextFrame(), { ...frame, data: atLimit });
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

test('a shutdown under way when the worker comes back to hear its session has ended: the shutdown still leaves it, after onShutdown', async (t) => {
  const calls: string[] = [];
  let finish!: () => void;
  const shutdownDone = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const { server, worker, conn } = await assigned(t, {
    onShutdown: async (info) => {
      calls.push(`shutdown ${info.sessionId}`);
      await shutdownDone;
      calls.push(`shutdown done ${info.sessionId}`);
    },
    onDisconnect: (a) => void calls.push(`disconnect ${a.sessionId}`),
  });
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: 60_000, reason: 'completed', reuse: true });
  await new Promise((resolve) => worker.once('shutdown', resolve));
  // the connection drops while onShutdown runs; the session ends meanwhile
  await dropped(worker, conn);
  const conn2 = await server.next();
  const registered = new Promise((resolve) => worker.once('registered', resolve));
  await conn2.accept(60_000, null);
  await registered;
  assert.deepEqual(calls, ['shutdown ses_1'], 'nothing leaves the session before onShutdown is done');
  finish();
  // then it leaves, says it stopped, and takes the next session
  assert.deepEqual(await conn2.expect('stopped'), { type: 'stopped' });
  assert.deepEqual(calls, ['shutdown ses_1', 'shutdown done ses_1', 'disconnect ses_1']);
  assert.equal(worker.session, null);
  conn2.send({ type: 'assign', assignment: { ...assignment, sessionId: 'ses_2' } });
  assert.deepEqual(await conn2.expect('session_started'), { type: 'session_started', sessionId: 'ses_2' });
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

test('shutdown with reuse: an onShutdown that outlives graceMs is still followed by onDisconnect, once', async (t) => {
  const GRACE_MS = 4_321;
  const clock = holdTimers(GRACE_MS);
  const calls: string[] = [];
  const running = Promise.withResolvers<void>();
  const finish = Promise.withResolvers<void>();
  const { worker, conn } = await assigned(t, {
    timers: clock.timers,
    onConnect: (a) => void calls.push(`connect ${a.sessionId}`),
    onShutdown: async () => {
      calls.push('shutdown');
      running.resolve();
      await finish.promise;
      calls.push('shutdown done');
    },
    onDisconnect: (a, w) => void calls.push(`disconnect ${a.sessionId} (now ${w.session?.sessionId})`),
  });
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: GRACE_MS, reason: 'completed', reuse: true });
  await running.promise;
  clock.fire(); // graceMs is over: the worker moves on without waiting for onShutdown
  await conn.expect('stopped');
  assert.equal(worker.session, null);
  conn.send({ type: 'assign', assignment: { ...assignment, sessionId: 'ses_2' } });
  await conn.expect('session_started');
  const left = once(worker, 'disconnect');
  finish.resolve();
  // the late onDisconnect is told which session it is for: not the one the worker holds now
  assert.equal((await left)[0].sessionId, 'ses_1');
  assert.deepEqual(calls, [
    'connect ses_1',
    'shutdown',
    'connect ses_2',
    'shutdown done',
    'disconnect ses_1 (now ses_2)',
  ]);
});

test('shutdown: an onShutdown that outlives graceMs is still followed by onDisconnect after the worker closed', async (t) => {
  const GRACE_MS = 4_321;
  const clock = holdTimers(GRACE_MS);
  const running = Promise.withResolvers<void>();
  const finish = Promise.withResolvers<void>();
  const disconnected = Promise.withResolvers<void>();
  const { worker, conn } = await assigned(t, {
    timers: clock.timers,
    onShutdown: async () => {
      running.resolve();
      await finish.promise;
    },
    onDisconnect: () => disconnected.resolve(),
  });
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: GRACE_MS, reason: 'recycle' });
  await running.promise;
  clock.fire();
  await conn.expect('stopped');
  await worker.closed;
  finish.resolve();
  await disconnected.promise;
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

test('fresh credentials from the server: the next registration uses the worker token, history() the session token', async (t) => {
  const asked: string[] = [];
  const fetch = async (_url: string, init: { headers: Record<string, string> }) => {
    asked.push(init.headers.authorization ?? '');
    return new Response(
      JSON.stringify({ messages: [], hasMore: false, nextBefore: null, nextBeforeId: null }),
      {
        status: 200,
        headers: { 'content-type': 'application/json' },
      },
    );
  };
  const { server, worker, conn } = await assigned(t, { fetch });
  await worker.history();
  conn.send({ type: 'token', worker: 'tok-2', session: { sessionId: 'ses_other', token: 'not-mine' } });
  conn.send({ type: 'token', session: { sessionId: 'ses_1', token: 'ses-tok-2' } });
  // frames are handled in order: a message after them shows they were
  conn.send({ type: 'message', message: envelope('after') });
  await once(worker, 'message');
  await worker.history();
  assert.deepEqual(asked, [`Bearer ${assignment.token}`, 'Bearer ses-tok-2']);
  conn.socket.terminate();
  const conn2 = await server.next();
  assert.equal((await conn2.accept()).token, 'tok-2');
});

test('a worker that reconnects while holding a session keeps it, says session_started again and not ready', async (t) => {
  const { server, worker, conn } = await assigned(t, { onMessage: (env, w) => w.send('echo', env.data) });
  // the session_started of the old connection may have been lost with it
  conn.socket.close(1011, 'server restarting');
  const conn2 = await server.next();
  await conn2.accept();
  assert.equal(worker.session?.sessionId, 'ses_1');
  conn2.send({ type: 'message', message: envelope('again') });
  // the frames after register: session_started, then the reply; no `ready`
  assert.deepEqual(await conn2.nextFrame(), { type: 'session_started', sessionId: 'ses_1' });
  assert.deepEqual(await conn2.nextFrame(), {
    type: 'message',
    sessionId: 'ses_1',
    messageType: 'echo',
    data: 'again',
  });
});

test('a worker that comes back with its session asks for what it missed after the newest message heard; one that comes twice is handled once', async (t) => {
  const seen: string[] = [];
  const { server, conn } = await assigned(t, { onMessage: (env) => void seen.push(String(env.data)) });
  const first = envelope('one', 'user_text', '2026-01-01T00:00:01.000000Z');
  conn.send({ type: 'message', message: first });
  conn.send({ type: 'message', message: first }); // relayed live and replayed: once
  conn.send({ type: 'message', message: envelope('two', 'user_text', '2026-01-01T00:00:02.000000Z') });
  conn.send({
    type: 'replayed',
    sessionId: 'ses_1',
    upto: '2026-01-01T00:00:01.500000Z',
    count: 1,
    complete: true,
  });
  conn.socket.terminate();
  const conn2 = await server.next();
  const register = await conn2.accept();
  assert.deepEqual(register.after, {
    sessionId: 'ses_1',
    at: '2026-01-01T00:00:02.000000Z',
    id: `msg_${envelopes}`,
  });
  // the server's replay mark is later than anything heard: the next cursor is that mark
  conn2.send({
    type: 'replayed',
    sessionId: 'ses_1',
    upto: '2026-01-01T00:00:03.000000Z',
    count: 0,
    complete: true,
  });
  conn2.send({ type: 'message', message: envelope('three', 'user_text', '2026-01-01T00:00:02.500000Z') });
  await conn2.expect('session_started');
  conn2.socket.terminate();
  const conn3 = await server.next();
  assert.deepEqual((await conn3.accept()).after, { sessionId: 'ses_1', at: '2026-01-01T00:00:03.000000Z' });
  assert.deepEqual(seen, ['one', 'two', 'three']);
});

test("a new session's room is heard from its handover: the cursor is the assignment's, and a repeated arrival or departure is news once", async (t) => {
  const seen: string[] = [];
  const { server, conn } = await registered(t, {
    onParticipantJoined: (p) => void seen.push(`joined ${p.identity}`),
    onParticipantLeft: (p) => void seen.push(`left ${p.identity}`),
  });
  const assignment = {
    sessionId: 'ses_9',
    projectId: 'p',
    region: 'default',
    agentType: null,
    config: {},
    token: 'agent-token',
    savedState: null,
    restarts: 0,
    participants: [{ identity: 'ann', kind: 'viewer' as const }],
  };
  conn.send({ type: 'assign', assignment, upto: '2026-01-01T00:00:05.000000Z' });
  await conn.expect('session_started');
  const ann = { identity: 'ann', kind: 'viewer' as const };
  const bob = { identity: 'bob', kind: 'user' as const };
  for (const frame of [
    { type: 'participant_joined' as const, sessionId: 'ses_9', participant: ann }, // in the assignment already
    { type: 'participant_joined' as const, sessionId: 'ses_9', participant: bob },
    { type: 'participant_joined' as const, sessionId: 'ses_9', participant: bob },
    { type: 'participant_left' as const, sessionId: 'ses_9', participant: bob },
    { type: 'participant_left' as const, sessionId: 'ses_9', participant: bob },
  ])
    conn.send(frame);
  conn.socket.terminate();
  const conn2 = await server.next();
  const register = await conn2.accept();
  assert.deepEqual(register.after, { sessionId: 'ses_9', at: '2026-01-01T00:00:05.000000Z' });
  assert.deepEqual(seen, ['joined bob', 'left bob']);
});

test('a worker without a session registers with no cursor', async (t) => {
  const { server, conn } = await registered(t);
  conn.socket.terminate();
  const conn2 = await server.next();
  assert.equal((await conn2.accept()).after, undefined);
});

const HEARTBEAT_MS = 7_777;

/** A worker registered with HEARTBEAT_MS, whose heartbeat timers the test fires. */
async function heartbeating(t: TestContext, server: FakeServer, options: WorkerOptions = {}) {
  const clock = holdTimers(HEARTBEAT_MS);
  const worker = makeWorker(t, server, { timers: clock.timers, ...options });
  const started = worker.start();
  const conn = await server.next();
  await conn.accept(HEARTBEAT_MS);
  await started;
  await conn.expect('ready');
  return { clock, worker, conn };
}

test('a connection the server no longer answers is dropped after SILENT_HEARTBEATS_LIMIT silent heartbeat periods, and the worker reconnects', async (t) => {
  const server = await FakeServer.listen(t, { autoPong: false });
  const { clock, worker, conn } = await heartbeating(t, server);
  const reconnecting = once(worker, 'reconnecting');
  for (let beat = 1; beat < SILENT_HEARTBEATS_LIMIT; beat++) {
    clock.fire();
    await conn.expect('heartbeat');
    assert.equal(worker.state, 'registered');
  }
  clock.fire();
  assert.equal(worker.state, 'connecting', `dropped after ${SILENT_HEARTBEATS_LIMIT} periods of silence`);
  const [info] = await reconnecting;
  assert.equal(info.code, 1006);
  assert.equal(info.reason, `nothing from the server for ${SILENT_HEARTBEATS_LIMIT * HEARTBEAT_MS} ms`);
  assert.equal((await conn.closed).code, 1006, 'the socket was terminated, not left to TCP');
  const conn2 = await server.next();
  await conn2.accept(HEARTBEAT_MS);
  await conn2.expect('ready');
  assert.equal(worker.state, 'registered');
});

test('pongs keep a quiet connection alive', async (t) => {
  const pongs = new AsyncQueue<void>();
  class Watched extends WebSocket {
    constructor(url: string) {
      super(url);
      this.on('pong', () => pongs.push());
    }
  }
  const server = await FakeServer.listen(t);
  const { clock, worker, conn } = await heartbeating(t, server, { WebSocket: Watched });
  for (let beat = 1; beat <= 2 * SILENT_HEARTBEATS_LIMIT; beat++) {
    clock.fire();
    await conn.expect('heartbeat');
    await pongs.shift();
  }
  assert.equal(worker.state, 'registered');
});

test('frames from the server count as signs of life as well as pongs', async (t) => {
  const server = await FakeServer.listen(t, { autoPong: false });
  const { clock, worker, conn } = await heartbeating(t, server);
  for (let beat = 1; beat <= 2 * SILENT_HEARTBEATS_LIMIT; beat++) {
    clock.fire();
    await conn.expect('heartbeat');
    const heard = once(worker, 'message');
    conn.send({ type: 'message', message: envelope(beat) });
    await heard;
  }
  assert.equal(worker.state, 'registered');
});

test('a socket that cannot ping (the WHATWG WebSocket) is not dropped by a quiet server', async (t) => {
  const server = await FakeServer.listen(t, { autoPong: false });
  const { clock, worker, conn } = await heartbeating(t, server, { WebSocket: globalThis.WebSocket });
  for (let beat = 1; beat <= 2 * SILENT_HEARTBEATS_LIMIT; beat++) {
    clock.fire();
    await conn.expect('heartbeat');
  }
  assert.equal(worker.state, 'registered');
});

test('not registered within registerTimeoutMs → the worker drops the connection at once and tries again', async (t) => {
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
  // a dead server answers no close frame either: the worker does not wait for one
  silent.socket.pause();
  held[0]?.();
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

// ---- listeners that throw ----

test('a "reconnecting" listener that throws is reported, and the worker still reconnects', async (t) => {
  const { server, worker, conn } = await registered(t);
  const errors: Error[] = [];
  worker.on('error', (err) => void errors.push(err));
  worker.on('reconnecting', () => {
    throw new Error('listener bug');
  });
  conn.socket.terminate();
  const conn2 = await within(server.next(), 'the next connection');
  await conn2.accept();
  await within(conn2.expect('ready'), 'ready after the reconnect');
  assert.equal(worker.state, 'registered');
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof WorkerError);
  assert.equal(errors[0].code, 'WORKER_HOOK_FAILED');
  assert.match(errors[0].message, /^a "reconnecting" listener threw: listener bug/);
});

test('a "close" listener that throws is reported, and closed and close() still settle', async (t) => {
  const { worker, conn } = await assigned(t);
  const errors: Error[] = [];
  worker.on('error', (err) => void errors.push(err));
  worker.on('close', () => {
    throw new Error('listener bug');
  });
  const closing = worker.close();
  await conn.expect('stopped');
  await within(worker.closed, 'worker.closed');
  await within(closing, 'close()');
  assert.equal(worker.state, 'closed');
  assert.match(errors[0]?.message ?? '', /^a "close" listener threw: listener bug/);
});

test('listeners of connect, message, shutdown and disconnect that throw (or reject) are reported and their hooks still run; a throwing error listener is only logged', async (t) => {
  const logger = quietLogger();
  const calls: string[] = [];
  const { worker, conn } = await registered(t, {
    logger,
    onConnect: (a) => void calls.push(`connect ${a.sessionId}`),
    onMessage: (env, w) => w.send('echo', env.data),
    onShutdown: () => void calls.push('shutdown'),
    onDisconnect: () => void calls.push('disconnect'),
  });
  const errors: string[] = [];
  worker.on('error', (err) => {
    errors.push(err.message);
    throw new Error('error listener bug');
  });
  const bug = (): never => {
    throw new Error('listener bug');
  };
  worker.on('connect', bug);
  worker.on('message', async () => bug());
  worker.on('shutdown', bug);
  worker.on('disconnect', bug);
  // a later listener of the same event still hears it
  worker.on('connect', (a) => void calls.push(`connect event ${a.sessionId}`));
  conn.send({ type: 'assign', assignment });
  assert.deepEqual(await conn.nextFrame(), { type: 'session_started', sessionId: 'ses_1' });
  conn.send({ type: 'message', message: envelope('hi') });
  assert.equal((await conn.expect('message')).data, 'hi');
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: 5_000, reason: 'done', reuse: false });
  await conn.expect('stopped');
  await within(worker.closed, 'worker.closed');
  assert.deepEqual(calls, ['connect event ses_1', 'connect ses_1', 'shutdown', 'disconnect']);
  assert.deepEqual(errors, [
    'a "connect" listener threw: listener bug',
    'a "message" listener threw: listener bug',
    'a "shutdown" listener threw: listener bug',
    'a "disconnect" listener threw: listener bug',
  ]);
  // each failure of the error listener is logged, once, and not emitted again
  for (const message of errors) {
    const line = await logger.lines.shift();
    assert.equal(line.level, 'error');
    assert.equal(line.message, `an "error" listener threw: error listener bug (reporting: ${message})`);
  }
});

// ---- giving up ----

test('refused, or out of reconnect attempts, with an onDisconnect that never settles: closed settles after closeGraceMs', async (t) => {
  for (const how of ['1008', 'reconnect: false'] as const) {
    const { worker, conn } = await assigned(t, {
      onDisconnect: () => new Promise<void>(() => {}),
      closeGraceMs: 10,
      ...(how === 'reconnect: false' ? { reconnect: false } : {}),
    });
    worker.on('error', () => {});
    if (how === '1008') conn.socket.close(1008, 'bad token');
    else conn.socket.terminate();
    await within(worker.closed, `worker.closed after ${how}`);
    assert.equal(worker.state, 'closed');
    await within(worker.close(), `close() after ${how}`);
  }
});

// ---- a worker serving session after session ----

test("reuse: a hook of the last session still running does not hold up the next session's set-up", async (t) => {
  const { worker, conn } = await assigned(t, { onMessage: () => new Promise<void>(() => {}) });
  conn.send({ type: 'message', message: envelope('never answered') });
  await once(worker, 'message');
  conn.send({ type: 'message', message: envelope('queued behind it') });
  conn.send({ type: 'shutdown', sessionId: 'ses_1', graceMs: 10, reason: 'completed', reuse: true });
  await conn.expect('stopped');
  conn.send({ type: 'assign', assignment: { ...assignment, sessionId: 'ses_2' } });
  assert.deepEqual(await within(conn.expect('session_started'), 'session_started of ses_2'), {
    type: 'session_started',
    sessionId: 'ses_2',
  });
  assert.equal(worker.session?.sessionId, 'ses_2');
});

/** A socket the test drives by hand: frames it "receives" are dispatched at once, several in the same tick. */
class HandSocket implements SocketLike {
  readyState = 0;
  readonly sent: WorkerFrame[] = [];
  readonly #listeners = new Map<string, ((event: unknown) => void)[]>();
  addEventListener(type: string, listener: (event: never) => void): void {
    const list = this.#listeners.get(type) ?? [];
    list.push(listener as (event: unknown) => void);
    this.#listeners.set(type, list);
  }
  #emit(type: string, event?: unknown): void {
    for (const listener of this.#listeners.get(type) ?? []) listener(event);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data) as WorkerFrame);
  }
  close(code = 1000, reason = ''): void {
    this.drop(code, reason);
  }
  open(): void {
    this.readyState = 1;
    this.#emit('open');
  }
  receive(frame: ServerToWorkerFrame): void {
    this.#emit('message', { data: JSON.stringify(frame) });
  }
  drop(code = 1006, reason = ''): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.#emit('close', { code, reason });
  }
}

function handSockets(): { WebSocket: SocketConstructor; sockets: AsyncQueue<HandSocket> } {
  const sockets = new AsyncQueue<HandSocket>();
  class Made extends HandSocket {
    constructor(_url: string) {
      super();
      sockets.push(this);
    }
  }
  return { WebSocket: Made, sockets };
}

/** Resolves once `check` holds, polling. */
async function until(check: () => boolean, what: string): Promise<void> {
  await within(
    (async () => {
      while (!check()) await new Promise((resolve) => setTimeout(resolve, 2));
    })(),
    what,
  );
}

test('reuse: a session shut down before its set-up began is never set up, and the worker says ready again', async (t) => {
  const { WebSocket, sockets } = handSockets();
  const calls: string[] = [];
  const worker = new UsherWorker({
    url: 'ws://usher.test/workers/ws',
    token: 'tok-1',
    logger: quietLogger(),
    reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 },
    env: {},
    WebSocket,
    onConnect: (a) => void calls.push(`connect ${a.sessionId}`),
    onShutdown: (info) => void calls.push(`shutdown ${info.sessionId}`),
    onDisconnect: (a) => void calls.push(`disconnect ${a.sessionId}`),
  });
  t.after(() => worker.close());
  const started = worker.start();
  const socket = await sockets.shift();
  socket.open();
  socket.receive({ type: 'registered', workerId: 'wrk_1', heartbeatIntervalMs: 60_000 });
  await started;
  // the assignment and its shutdown are handled in the same tick: onConnect has not begun when the shutdown comes
  socket.receive({ type: 'assign', assignment: { ...assignment, sessionId: 'ses_2' } });
  socket.receive({ type: 'shutdown', sessionId: 'ses_2', graceMs: 1_000, reason: 'cancelled', reuse: true });
  await until(() => socket.sent.some((f) => f.type === 'stopped'), 'stopped');
  // a hook queued for it would have run by now
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(
    socket.sent.map((f) => f.type),
    ['register', 'ready', 'stopped'],
    'no session_started for a session that ended before it was set up',
  );
  assert.deepEqual(calls, ['shutdown ses_2']);
  assert.equal(worker.session, null);
  // after a drop it comes back free: no cursor, no session_started, and `ready`
  socket.drop();
  const socket2 = await within(sockets.shift(), 'the next connection');
  socket2.open();
  socket2.receive({ type: 'registered', workerId: 'wrk_1', heartbeatIntervalMs: 60_000 });
  assert.deepEqual(socket2.sent, [
    { type: 'register', token: 'tok-1', protocolVersion: PROTOCOL_VERSION },
    { type: 'ready' },
  ]);
});

// ---- the outbox: send() and saveState() while reconnecting ----

const UPTO = '2026-01-01T00:00:00.000000Z';

/** Registered and assigned `assignment` with a room cursor (`upto`), so that it comes back asking for a replay. */
async function serving(t: TestContext, options: WorkerOptions = {}) {
  const setup = await registered(t, options);
  setup.conn.send({ type: 'assign', assignment, upto: UPTO });
  await setup.conn.expect('session_started');
  return setup;
}

/** Drops the connection and waits until the worker is reconnecting. */
async function dropped(worker: UsherWorker, conn: Conn): Promise<void> {
  const reconnecting = once(worker, 'reconnecting');
  conn.socket.terminate();
  await reconnecting;
  assert.equal(worker.state, 'connecting');
}

const replayed = (sessionId = 'ses_1'): ServerToWorkerFrame => ({
  type: 'replayed',
  sessionId,
  upto: UPTO,
  count: 0,
  complete: true,
});

test('send() and saveState() while reconnecting are kept and sent in order once the server has replayed the session; only the newest state is', async (t) => {
  const { server, worker, conn } = await serving(t);
  await dropped(worker, conn);
  worker.send('agent_text', 'a');
  worker.saveState({ n: 1 });
  worker.send('agent_text', 'b');
  worker.saveState({ n: 2 });
  const conn2 = await server.next();
  const register = await conn2.accept();
  assert.equal(register.after?.sessionId, 'ses_1');
  await conn2.expect('session_started');
  // registered again, but not yet told it still serves the session: kept too, behind the others
  worker.send('agent_text', 'c');
  conn2.send(replayed());
  const frames = [];
  for (let i = 0; i < 4; i++) frames.push(await conn2.nextFrame());
  assert.deepEqual(frames, [
    { type: 'message', sessionId: 'ses_1', messageType: 'agent_text', data: 'a' },
    { type: 'message', sessionId: 'ses_1', messageType: 'agent_text', data: 'b' },
    { type: 'save_state', sessionId: 'ses_1', state: { n: 2 } },
    { type: 'message', sessionId: 'ses_1', messageType: 'agent_text', data: 'c' },
  ]);
  worker.send('agent_text', 'd');
  assert.equal((await conn2.expect('message')).data, 'd');
});

test('a worker that registers again without a cursor sends what it kept at once', async (t) => {
  const { server, worker, conn } = await assigned(t);
  await dropped(worker, conn);
  worker.send('agent_text', 'a');
  const conn2 = await server.next();
  assert.equal((await conn2.accept()).after, undefined);
  assert.deepEqual(await conn2.nextFrame(), { type: 'session_started', sessionId: 'ses_1' });
  assert.equal((await conn2.expect('message')).data, 'a');
});

test(`the outbox keeps at most ${OUTBOX_MAX_MESSAGES} messages: the oldest go, and one error says so`, async (t) => {
  const { server, worker, conn } = await serving(t);
  const errors: Error[] = [];
  worker.on('error', (err) => void errors.push(err));
  await dropped(worker, conn);
  for (let i = 0; i <= OUTBOX_MAX_MESSAGES + 1; i++) worker.send('n', i);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof WorkerError);
  assert.equal(errors[0].code, 'WORKER_OUTBOX_DROPPED');
  assert.match(errors[0].message, /outbox of session "ses_1" is full .*the oldest kept message was dropped/);
  const conn2 = await server.next();
  await conn2.accept();
  await conn2.expect('session_started');
  conn2.send(replayed());
  for (let i = 2; i <= OUTBOX_MAX_MESSAGES + 1; i++) assert.equal((await conn2.expect('message')).data, i);
});

test('what was kept for a session the worker no longer serves when it comes back is dropped, and an error says so', async (t) => {
  const left: string[] = [];
  const { server, worker, conn } = await serving(t, { onDisconnect: (a) => void left.push(a.sessionId) });
  const errors: Error[] = [];
  worker.on('error', (err) => void errors.push(err));
  await dropped(worker, conn);
  worker.send('agent_text', 'a');
  worker.saveState({ n: 1 });
  const conn2 = await server.next();
  await conn2.accept();
  await conn2.expect('session_started');
  // no replay for ses_1: the server seats another session instead
  conn2.send({ type: 'assign', assignment: { ...assignment, sessionId: 'ses_2' }, upto: UPTO });
  assert.deepEqual(await conn2.nextFrame(), { type: 'session_started', sessionId: 'ses_2' });
  worker.send('agent_text', 'probe');
  assert.deepEqual(await conn2.nextFrame(), {
    type: 'message',
    sessionId: 'ses_2',
    messageType: 'agent_text',
    data: 'probe',
  });
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as WorkerError).code, 'WORKER_OUTBOX_DROPPED');
  assert.equal(
    errors[0]?.message,
    '2 frames (send(), saveState()) kept for session "ses_1" while reconnecting were dropped: the worker was given session "ses_2" instead',
  );
  // the session it held is over for it: left, once
  assert.deepEqual(left, ['ses_1']);
});

test('what was kept is dropped, and an error says so, when the server does not replay the session within registerTimeoutMs', async (t) => {
  const REGISTER_TIMEOUT_MS = 12_345;
  const clock = holdTimers(REGISTER_TIMEOUT_MS);
  const { server, worker, conn } = await serving(t, {
    timers: clock.timers,
    registerTimeoutMs: REGISTER_TIMEOUT_MS,
  });
  await dropped(worker, conn);
  worker.send('agent_text', 'a');
  const conn2 = await server.next();
  await conn2.accept();
  await conn2.expect('session_started');
  const failed = once(worker, 'error');
  const left = new Promise((resolve) => worker.once('disconnect', resolve));
  clock.fire(); // the wait for `replayed` is over
  const [error] = await failed;
  assert.equal(error.code, 'WORKER_OUTBOX_DROPPED');
  assert.match(error.message, /did not replay the session's room within 12345 ms/);
  // the worker takes it that it no longer serves the session: it leaves it, and is free for the next
  await left;
  assert.equal(worker.session, null);
  assert.deepEqual(await conn2.nextFrame(), { type: 'ready' });
});

test('a worker told as it registers again that it still has its session sends what it kept at once', async (t) => {
  const { server, worker, conn } = await serving(t);
  await dropped(worker, conn);
  worker.send('agent_text', 'a');
  const conn2 = await server.next();
  await conn2.accept(60_000, 'ses_1');
  // no `replayed` needed: the server said so
  assert.deepEqual(await conn2.nextFrame(), { type: 'session_started', sessionId: 'ses_1' });
  assert.equal((await conn2.expect('message')).data, 'a');
});

test('a worker told as it registers again that its session ended while it was away leaves it, drops what it kept, and says ready', async (t) => {
  const left: string[] = [];
  const { server, worker, conn } = await serving(t, { onDisconnect: (a) => void left.push(a.sessionId) });
  const errors: Error[] = [];
  worker.on('error', (err) => void errors.push(err));
  await dropped(worker, conn);
  worker.send('agent_text', 'a');
  const conn2 = await server.next();
  // (events.once would reject on the error event this also brings)
  const disconnected = new Promise((resolve) => worker.once('disconnect', resolve));
  await conn2.accept(60_000, null);
  // free again: `ready`, not the session_started of a session it no longer has
  assert.deepEqual(await conn2.nextFrame(), { type: 'ready' });
  await disconnected;
  assert.deepEqual(left, ['ses_1']);
  assert.equal(worker.session, null);
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as WorkerError).code, 'WORKER_OUTBOX_DROPPED');
  assert.match(
    errors[0]!.message,
    /kept for session "ses_1" while reconnecting was dropped: the session ended/,
  );
  // it takes the next session
  conn2.send({ type: 'assign', assignment: { ...assignment, sessionId: 'ses_2' }, upto: UPTO });
  assert.deepEqual(await conn2.expect('session_started'), { type: 'session_started', sessionId: 'ses_2' });
});

test('while the worker is closing or has no session, send() still throws', async (t) => {
  const { server, worker, conn } = await registered(t);
  await dropped(worker, conn);
  assert.throws(() => worker.send('agent_text', 'a'), /WORKER_NO_SESSION|no session/);
  const conn2 = await server.next();
  await conn2.accept();
  await conn2.expect('ready');
  conn2.send({ type: 'assign', assignment, upto: UPTO });
  await conn2.expect('session_started');
  await dropped(worker, conn2);
  const closing = worker.close();
  assert.throws(
    () => worker.send('agent_text', 'a'),
    (err: unknown) => err instanceof WorkerError && err.code === 'WORKER_NOT_CONNECTED',
  );
  await closing;
});
