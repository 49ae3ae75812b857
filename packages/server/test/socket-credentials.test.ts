// A credential offered as a WebSocket subprotocol, `bearer.<key or token>` beside `usher`, as the dashboard
// sends it: accepted on the event feed and the session socket with no token in the URL, refused when wrong,
// never echoed back (the server selects `usher`); `?token=` still works for the clients that use it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { describe, test } from 'node:test';
import { SocketCloseCode } from '@usher/protocol';
import { agentProject, databaseKinds, TEST_ADMIN_KEY, type TestServer, useTestServer } from '@usher/testing';

type Frame = Record<string, unknown> & { type: string };

/** A socket opened as a browser opens one (Node's WebSocket): its frames, and how it closed. */
class BrowserSocket {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: (() => void)[] = [];

  constructor(t: TestServer, path: string, protocols: string[]) {
    this.ws = new WebSocket(`${t.url.replace(/^http/, 'ws')}${path}`, protocols);
    this.ws.onmessage = (m) => {
      this.frames.push(JSON.parse(String(m.data)) as Frame);
      for (const wake of this.#waiters) wake();
    };
    this.closed = new Promise((resolve) => {
      this.ws.onclose = (c) => resolve({ code: c.code, reason: c.reason });
    });
  }

  /** The first frame that `pred` accepts; rejects if the socket closes before one comes. */
  waitFor(pred: (f: Frame) => boolean): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const f = this.frames.find(pred);
        if (f) resolve(f);
        return f;
      };
      if (check()) return;
      this.#waiters.push(check);
      void this.closed.then((c) =>
        reject(new Error(`closed with ${c.code} ${c.reason} before the frame came`)),
      );
    });
  }

  close(): Promise<unknown> {
    this.ws.close(1000);
    return this.closed;
  }
}

/** A bare upgrade request offering `protocols`: the status and the subprotocol the server answered with. */
function upgrade(
  t: TestServer,
  path: string,
  protocols: string,
): Promise<{ status: number; protocol?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.url}${path}`, {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-protocol': protocols,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode!, protocol: res.headers['sec-websocket-protocol'] });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode! });
    });
    req.on('error', reject);
    req.end();
  });
}

for (const kind of databaseKinds()) {
  describe(`a credential offered as a WebSocket subprotocol (${kind})`, () => {
    const { t } = useTestServer(kind, { projects: [agentProject('chat', { min: 0, max: 1 })] });
    const bearer = (credential: string) => ['usher', `bearer.${credential}`];

    test('the event feed accepts the admin key as `bearer.<key>` with no token in the URL, and selects `usher`', async () => {
      const s = new BrowserSocket(t, '/events/ws', bearer(TEST_ADMIN_KEY));
      try {
        const hello = await s.waitFor((f) => f.type === 'hello');
        assert.equal(hello.serverId, 'test-server');
        assert.equal(s.ws.protocol, 'usher');
      } finally {
        await s.close();
      }

      // a key made through the API, too
      const made = await t.api<{ key: string }>('POST', '/admin-keys', { name: 'dashboard' });
      assert.equal(made.status, 201);
      const other = new BrowserSocket(t, '/events/ws', bearer(made.body.key));
      try {
        await other.waitFor((f) => f.type === 'hello');
        assert.equal(other.ws.protocol, 'usher');
      } finally {
        await other.close();
      }
    });

    test('the session socket accepts an admin key (as an observer) and a session token offered that way', async () => {
      const session = await t.createSession('chat');
      const path = `/sessions/${session.id}/ws`;
      const isSnapshot = (f: Frame) => f.type === 'session.status_changed' && f.sessionId === session.id;

      const observer = new BrowserSocket(t, path, bearer(TEST_ADMIN_KEY));
      try {
        await observer.waitFor(isSnapshot);
        assert.equal(observer.ws.protocol, 'usher');
      } finally {
        await observer.close();
      }

      // the token's holder joins the room as the viewer
      const joined = t.nextEvent(
        session.id,
        (e) => e.type === 'session.participant_joined' && e.participant.kind === 'viewer',
      );
      const viewer = new BrowserSocket(t, path, bearer(session.token));
      try {
        await viewer.waitFor(isSnapshot);
        assert.equal(viewer.ws.protocol, 'usher');
        await joined;
      } finally {
        await viewer.close();
      }
    });

    test('a wrong credential offered that way is refused: an error frame, then close 1008', async () => {
      const session = await t.createSession('chat');
      for (const path of ['/events/ws', `/sessions/${session.id}/ws`]) {
        const s = new BrowserSocket(t, path, bearer('not-an-admin-key-0123456789'));
        const error = await s.waitFor((f) => f.type === 'error');
        assert.equal(error.code, 'UNAUTHORIZED', path);
        assert.match(String(error.message), /admin key is not valid/, path);
        assert.equal((await s.closed).code, SocketCloseCode.PolicyViolation, path);
        assert.ok(!s.frames.some((f) => f.type === 'hello' || f.type === 'session.status_changed'), path);
      }

      // `usher` alone carries no credential: the feed asks for one
      const bare = new BrowserSocket(t, '/events/ws', ['usher']);
      assert.equal((await bare.waitFor((f) => f.type === 'error')).code, 'UNAUTHORIZED');
      assert.equal((await bare.closed).code, SocketCloseCode.PolicyViolation);
    });

    test('the credentials of the URL and headers come first: a wrong ?token= is refused whatever the subprotocol says', async () => {
      const s = new BrowserSocket(t, '/events/ws?token=wrong-key-0123456789', bearer(TEST_ADMIN_KEY));
      assert.equal((await s.waitFor((f) => f.type === 'error')).code, 'UNAUTHORIZED');
      assert.equal((await s.closed).code, SocketCloseCode.PolicyViolation);
    });

    test('?token= still opens the feed (Epic’s frontend and the Web SDK use it); no subprotocol is needed', async () => {
      const s = new BrowserSocket(t, `/events/ws?token=${TEST_ADMIN_KEY}`, []);
      try {
        await s.waitFor((f) => f.type === 'hello');
        assert.equal(s.ws.protocol, '');
      } finally {
        await s.close();
      }
    });

    test('the server never answers with the `bearer.` entry: `usher` when offered, else another one, else none', async () => {
      const key = `bearer.${TEST_ADMIN_KEY}`;
      assert.deepEqual(await upgrade(t, '/events/ws', `usher, ${key}`), { status: 101, protocol: 'usher' });
      assert.deepEqual(await upgrade(t, '/events/ws', `${key}, usher`), { status: 101, protocol: 'usher' });
      assert.deepEqual(await upgrade(t, '/events/ws', `${key}, other`), { status: 101, protocol: 'other' });
      assert.deepEqual(await upgrade(t, '/events/ws', key), { status: 101, protocol: undefined });
    });
  });
}
