// Bad input from the outside, on both databases: every malformed request gets a clear 4xx with
// {error:{code,message}}, nothing is half-applied, the server keeps answering; bad WebSocket frames get an
// error frame or a policy close, never a crash.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { isErrorCode } from '@usher/protocol';
import { ManualClock, TokenIssuer } from '@usher/server';
import {
  type ApiResult,
  agentProject,
  type CreatedSession,
  databaseKinds,
  FrameSocket,
  streamProject,
  TEST_ADMIN_KEY,
  TEST_SECRET,
  type TestSocket,
  TestStreamer,
  useTestServer,
} from '@usher/testing';
import WebSocket from 'ws';
import { assertError, nextFrame } from './helpers.ts';

const json = { 'content-type': 'application/json' };
const DAY_MS = 86_400_000;
/** JSON text of arrays nested `levels` deep: 10,000 levels are only 20 KB. */
const nested = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;

for (const kind of databaseKinds()) {
  describe(`bad input (${kind})`, () => {
    const { t } = useTestServer(kind);
    let live: CreatedSession;
    let waiting: CreatedSession;
    let done: CreatedSession;
    let viewer: TestSocket;
    let baseline: unknown;

    /** A request with any body and headers; the answer must be JSON. */
    const raw = async (
      method: string,
      path: string,
      body?: string | ReadableStream<Uint8Array>,
      headers: Record<string, string> = {},
    ): Promise<ApiResult<unknown>> => {
      const init: RequestInit & { duplex?: 'half' } = {
        method,
        headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, ...headers },
        body,
      };
      if (body instanceof ReadableStream) init.duplex = 'half';
      const res = await fetch(t.url + path, init);
      assert.match(
        res.headers.get('content-type') ?? '',
        /^application\/json/,
        `${method} ${path} answers JSON`,
      );
      return { status: res.status, body: JSON.parse(await res.text()) };
    };

    /** Everything a client can read: projects, sessions with their timelines, workers. */
    const snapshot = async () => {
      const projects = (await t.api('GET', '/projects')).body;
      const sessions = (await t.api<{ sessions: { id: string }[] }>('GET', '/sessions')).body;
      const detail = [];
      for (const s of sessions.sessions) detail.push((await t.api('GET', `/sessions/${s.id}`)).body);
      const workers = (await t.api('GET', '/workers')).body;
      return { projects, sessions, detail, workers };
    };

    /** The server still answers and nothing it stores has changed. */
    const intact = async () => {
      const health = await t.api<{ status: string }>('GET', '/healthz');
      assert.equal(health.status, 200);
      assert.equal(health.body.status, 'ok');
      await t.settled();
      assert.deepEqual(await snapshot(), baseline, 'the stored state is unchanged');
    };

    before(async () => {
      await t.createProject(streamProject('base', { min: 1, max: 1 }));
      await t.readyWorkers('base', 1);
      live = await t.createSession('base');
      viewer = await t.connect(live);
      await viewer.state('active');
      waiting = await t.createSession('base');
      done = await t.createSession('base');
      await t.api('POST', `/sessions/${done.id}/end`);
      await t.settled();
      baseline = await snapshot();
      assert.equal((await t.session(live.id)).state, 'active');
      assert.equal((await t.session(waiting.id)).state, 'queued');
      assert.equal((await t.session(done.id)).state, 'ended');
    });

    // ------------------------------------------------------------------ HTTP

    test('malformed JSON is a 400 BAD_REQUEST that says so', async () => {
      for (const [method, path] of [
        ['POST', '/projects'],
        ['PATCH', '/projects/base'],
        ['POST', '/sessions'],
        ['POST', `/sessions/${live.id}/join`],
      ] as const) {
        for (const body of ['{"id": "x",', '{name: "x"}', "{'a': 1}", 'nul']) {
          const err = assertError(await raw(method, path, body, json), 400, 'BAD_REQUEST');
          assert.match(err.message, /JSON/, `${method} ${path} ${body}: ${err.message}`);
        }
      }
      await intact();
    });

    test('a NUL character in a string of the body is a 400 (PostgreSQL cannot store it), not a 500', async () => {
      for (const [method, path, body] of [
        ['POST', '/sessions', '{"projectId": "base", "agentType": "a\\u0000b"}'],
        ['POST', `/sessions/${live.id}/join`, '{"identity": "\\u0000"}'],
        ['POST', '/projects', '{"id": "nul", "name": "x", "config": {"k\\u0000": 1}}'],
      ] as const) {
        const err = assertError(await raw(method, path, body, json), 400, 'BAD_REQUEST');
        assert.match(err.message, /NUL/, `${method} ${path}: ${err.message}`);
      }
      // a backslash followed by "u0000" is no NUL: the body goes on to validation
      const escaped = assertError(
        await raw('POST', '/projects', '{"id": "nul", "unknownField": "\\\\u0000"}', json),
        400,
        'BAD_REQUEST',
      );
      assert.match(escaped.message, /unknownField/);
      await intact();
    });

    test('a plain GET of a WebSocket endpoint is a 400 that says what the endpoint is', async () => {
      for (const path of [`/sessions/${live.id}/ws`, '/workers/ws', '/workers/signalling']) {
        const err = assertError(await raw('GET', path), 400, 'BAD_REQUEST');
        assert.match(err.message, /is a WebSocket endpoint: open it with a WebSocket client/, path);
      }
      await intact();
    });

    test('a NUL character in a path or query value is a 400, not a 500', async () => {
      for (const [method, path] of [
        ['GET', '/sessions/s%00'],
        ['GET', `/sessions/${live.id}%00/messages`],
        ['POST', '/sessions/%00/end'],
        ['GET', '/sessions?projectId=base%00'],
        ['GET', '/projects/base%00'],
        ['GET', '/workers?projectId=%00'],
      ] as const) {
        const err = assertError(await raw(method, path, undefined, {}), 400, 'BAD_REQUEST');
        assert.match(err.message, /NUL/, `${method} ${path}: ${err.message}`);
      }
      await intact();
    });

    test("GET /sessions with an empty or malformed projectId is a 400 naming it, not every project's sessions", async () => {
      for (const q of ['projectId=', 'projectId=Not%20One']) {
        const err = assertError(await t.api('GET', `/sessions?${q}`), 400, 'BAD_PARAMETER');
        assert.match(err.message, /projectId/, q);
      }
    });

    test('an empty or missing body where one is required is a 400', async () => {
      for (const [method, path] of [
        ['POST', '/projects'],
        ['PATCH', '/projects/base'],
        ['POST', '/sessions'],
      ] as const) {
        assertError(await raw(method, path, '', json), 400, 'BAD_REQUEST');
        assertError(await raw(method, path, '   ', json), 400, 'BAD_REQUEST');
        assertError(await raw(method, path), 400, 'BAD_REQUEST');
        for (const body of ['null', '[]', '"text"', '42'])
          assertError(await raw(method, path, body, json), 400, 'BAD_REQUEST');
      }
      const noId = assertError(await t.api('POST', '/projects', { name: 'no id' }), 400, 'BAD_REQUEST');
      assert.match(noId.message, /\bid\b/, 'the message names the missing id');
      const noProject = assertError(await t.api('POST', '/sessions', {}), 400, 'BAD_REQUEST');
      assert.match(noProject.message, /projectId/);
      await intact();
    });

    test('unknown fields are refused, and the message names the field', async () => {
      const cases: [string, string, unknown, string][] = [
        ['POST', '/projects', { id: 'new-1', colour: 'red' }, 'colour'],
        ['POST', '/projects', { id: 'new-1', timeouts: { pendingSecs: 5 } }, 'pendingSecs'],
        ['POST', '/projects', { id: 'new-1', regions: { default: { min: 0, max: 1, warm: 1 } } }, 'warm'],
        ['PATCH', '/projects/base', { name: 'renamed', maxQueue: 5 }, 'maxQueue'],
        ['PATCH', '/projects/base', { timeouts: { pendingSecs: 5 } }, 'pendingSecs'],
        ['PATCH', '/projects/base', { session: { timeouts: { pending: 5, ending: 5 } } }, 'ending'],
        ['PATCH', '/projects/base', { autoRestart: { enabled: true, forever: true } }, 'forever'],
        ['POST', '/sessions', { projectId: 'base', priority: 1 }, 'priority'],
        ['POST', `/sessions/${live.id}/join`, { role: 'user', admin: true }, 'admin'],
      ];
      for (const [method, path, body, field] of cases) {
        const err = assertError(await t.api(method, path, body), 400, 'BAD_REQUEST');
        assert.ok(err.message.includes(`"${field}"`), `${method} ${path}: "${err.message}" names ${field}`);
      }
      const q = assertError(await t.api('GET', '/sessions?projectId=base&colour=red'), 400, 'BAD_PARAMETER');
      assert.match(q.message, /colour/);
      await intact();
    });

    test('wrong types are refused (no coercion), naming the field', async () => {
      const cases: [string, string, unknown, RegExp][] = [
        ['POST', '/projects', { id: 'new-2', public: 'yes' }, /public/],
        ['POST', '/projects', { id: 42 }, /id/],
        ['POST', '/projects', { id: 'new-2', regions: { default: { min: '1', max: 2 } } }, /min/],
        ['POST', '/projects', { id: 'new-2', regions: [] }, /regions/],
        ['PATCH', '/projects/base', { maxQueueLength: '10' }, /maxQueueLength/],
        ['PATCH', '/projects/base', { maxQueueLength: 1.5 }, /maxQueueLength/],
        ['PATCH', '/projects/base', { enabled: 'false' }, /enabled/],
        ['PATCH', '/projects/base', { timeouts: { pendingMs: '1000' } }, /pendingMs/],
        ['PATCH', '/projects/base', { afkEnabled: 0 }, /afkEnabled/],
        ['PATCH', '/projects/base', { kind: 'game' }, /kind must be one of "stream", "agent"/],
        [
          'PATCH',
          '/projects/base',
          { name: 'renamed', worker: { driver: 'process', command: 'run' } },
          /worker|command/,
        ],
        ['POST', '/sessions', { projectId: 42 }, /projectId/],
        ['POST', '/sessions', { projectId: 'base', config: 'x' }, /config/],
        ['POST', `/sessions/${live.id}/join`, { role: 'viewer' }, /role/],
      ];
      for (const [method, path, body, field] of cases) {
        const err = assertError(await t.api(method, path, body), 400, 'BAD_REQUEST');
        assert.match(err.message, field, `${method} ${path} ${JSON.stringify(body)}`);
      }
      for (const query of ['limit=abc', 'limit=2.5']) {
        const err = assertError(await t.api('GET', `/sessions?${query}`), 400, 'BAD_PARAMETER');
        assert.match(err.message, /limit/);
      }
      await intact();
    });

    test('out-of-range values are refused, naming the field; a PATCH is all or nothing', async () => {
      const minMax = assertError(
        await t.api('PATCH', '/projects/base', { name: 'renamed', regions: { default: { min: 3, max: 1 } } }),
        400,
        'BAD_REQUEST',
      );
      assert.match(minMax.message, /regions\.default/);
      assert.match(minMax.message, /min/);
      const created = assertError(
        await t.api('POST', '/projects', { id: 'new-3', regions: { eu: { min: 5, max: 2 } } }),
        400,
        'BAD_REQUEST',
      );
      assert.match(created.message, /regions\.eu/);
      const cases: [string, string, unknown, RegExp][] = [
        ['PATCH', '/projects/base', { maxQueueLength: -1 }, /maxQueueLength/],
        ['PATCH', '/projects/base', { timeouts: { pendingMs: 0 } }, /pendingMs/],
        ['PATCH', '/projects/base', { timeouts: { maxRuntimeMs: -5 } }, /maxRuntimeMs/],
        ['PATCH', '/projects/base', { session: { timeouts: { pending: -5 } } }, /pending/],
        ['PATCH', '/projects/base', { session: { timeouts: { idle: 0 } } }, /idle/],
        ['PATCH', '/projects/base', { autoRestart: { maxRestarts: 1000 } }, /maxRestarts/],
        ['PATCH', '/projects/base', { regions: { default: { min: 0, max: 20_000 } } }, /max/],
        ['PATCH', '/projects/base', { name: '' }, /name/],
        ['PATCH', '/projects/base', { defaultRegion: 'mars' }, /defaultRegion/],
        ['PATCH', '/projects/base', { id: 'other' }, /id/],
        ['POST', '/projects', { id: 'Bad_Id!' }, /id/],
        ['POST', '/projects', { id: 'x'.repeat(64) }, /id/],
        ['POST', '/sessions', { projectId: 'base', region: 'Not A Region' }, /region/],
        ['POST', '/sessions', { projectId: 'base', agentType: '' }, /agentType/],
      ];
      for (const [method, path, body, field] of cases) {
        const err = assertError(await t.api(method, path, body), 400, 'BAD_REQUEST');
        assert.match(err.message, field, `${method} ${path} ${JSON.stringify(body)}: ${err.message}`);
      }
      for (const query of ['limit=0', 'limit=1001', 'limit=-3']) {
        const err = assertError(await t.api('GET', `/sessions?${query}`), 400, 'BAD_PARAMETER');
        assert.match(err.message, /limit/);
      }
      await intact();
    });

    test('a body over 1 MiB is a 413 PAYLOAD_TOO_LARGE', async () => {
      const big = JSON.stringify({ projectId: 'base', config: { blob: 'x'.repeat(1024 * 1024) } });
      const tooLarge = assertError(await raw('POST', '/sessions', big, json), 413, 'PAYLOAD_TOO_LARGE');
      assert.match(tooLarge.message, /bodyLimitBytes/, 'the message names the setting');
      const project = JSON.stringify({ id: 'big', name: 'x'.repeat(1024 * 1024 + 1) });
      assertError(await raw('POST', '/projects', project, json), 413, 'PAYLOAD_TOO_LARGE');
      // sent in chunks, without a Content-Length: the limit holds while reading
      const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 0) controller.enqueue(new TextEncoder().encode('{"projectId":"base","config":{"b":"'));
          if (sent > 20) {
            controller.enqueue(new TextEncoder().encode('"}}'));
            controller.close();
            return;
          }
          sent++;
          controller.enqueue(chunk);
        },
      });
      assertError(await raw('PATCH', '/projects/base', stream, json), 413, 'PAYLOAD_TOO_LARGE');
      // just under the limit the body is read (and this one is refused for what it says, not for its size)
      const fits = JSON.stringify({ blob: 'x'.repeat(1024 * 1024 - 100) });
      assertError(await raw('POST', '/sessions/s_nope/end', fits, json), 404, 'NOT_FOUND');
      await intact();
    });

    test('unknown ids are 404 NOT_FOUND', async () => {
      const cases: [string, string, unknown?][] = [
        ['GET', '/sessions/s_nope'],
        ['POST', '/sessions/s_nope/join'],
        ['POST', '/sessions/s_nope/pause'],
        ['POST', '/sessions/s_nope/resume'],
        ['POST', '/sessions/s_nope/end'],
        ['GET', '/projects/nope'],
        ['PATCH', '/projects/nope', { name: 'x' }],
        ['POST', '/projects/nope/enable'],
        ['POST', '/projects/nope/disable'],
        ['POST', '/workers/w_nope/drain'],
        ['POST', '/sessions', { projectId: 'nope' }],
      ];
      for (const [method, path, body] of cases) {
        const err = assertError(await t.api(method, path, body), 404, 'NOT_FOUND');
        assert.match(err.message, /nope/, 'the message names the id');
      }
      const sock = new WebSocket(
        `${t.url.replace(/^http/, 'ws')}/sessions/s_nope/ws?token=${TEST_ADMIN_KEY}`,
      );
      const frames: Record<string, unknown>[] = [];
      sock.on('message', (d) => frames.push(JSON.parse(d.toString())));
      const code = await new Promise<number>((resolve) => sock.once('close', (c) => resolve(c)));
      assert.equal(code, 1008);
      assert.equal(frames[0]?.code, 'NOT_FOUND');
      await intact();
    });

    test('unknown routes and methods are 404 ROUTE_NOT_FOUND', async () => {
      for (const [method, path] of [
        ['GET', '/nope'],
        ['GET', '/'],
        ['POST', `/sessions/${live.id}/explode`],
        ['DELETE', `/sessions/${live.id}`],
        ['DELETE', '/projects/base'],
        ['PUT', '/projects/base'],
        ['GET', `/sessions/${live.id}/end`],
        ['GET', '/workers/w_1/drain'],
      ]) {
        const err = assertError(await t.api(method!, path!), 404, 'ROUTE_NOT_FOUND');
        assert.ok(err.message.includes(`${method} ${path}`), err.message);
      }
      await intact();
    });

    test("odd paths get errors in Usher's shape: bad percent-encoding and over-long ids are 400, not the router's", async () => {
      assertError(await t.api('GET', '/sessions/%E0%A4%A'), 400, 'BAD_REQUEST');
      assertError(await t.api('GET', `/sessions/s_${'x'.repeat(150)}`), 404, 'NOT_FOUND');
      assertError(await t.api('GET', `/sessions/s_${'x'.repeat(230)}`), 400, 'BAD_REQUEST');
      assertError(await t.api('GET', `/sessions/s_${'x'.repeat(400)}`), 400, 'BAD_REQUEST');
      await intact();
    });

    test('timeouts over their maximum are a 400 naming the field (past it a deadline overflowed dates and bigint: a 500)', async () => {
      const cases: [unknown, RegExp][] = [
        [
          { timeouts: { afkDisconnectMs: Number.MAX_SAFE_INTEGER } },
          /timeouts\.afkDisconnectMs must be <= 2592000000/,
        ],
        [{ timeouts: { pendingMs: 30 * DAY_MS + 1 } }, /timeouts\.pendingMs/],
        [{ timeouts: { maxRuntimeMs: 1e20 } }, /timeouts\.maxRuntimeMs/],
        [{ name: 'renamed', timeouts: { reconnectWindowMs: 1e15 } }, /timeouts\.reconnectWindowMs/],
        [{ timeouts: { shutdownGraceMs: 60_001 } }, /timeouts\.shutdownGraceMs must be <= 60000/],
        [{ session: { timeouts: { pending: 1e303 } } }, /session\.timeouts\.pending must be <= 2592000/],
        [{ session: { timeouts: { paused: 30 * 86_400 + 0.5 } } }, /session\.timeouts\.paused/],
      ];
      for (const [body, field] of cases) {
        for (const [method, path, sent] of [
          ['PATCH', '/projects/base', body],
          ['POST', '/projects', { id: 'far-off', ...(body as object) }],
        ] as const) {
          const err = assertError(await t.api(method, path, sent), 400, 'BAD_REQUEST');
          assert.match(err.message, field, `${method} ${path} ${JSON.stringify(sent)}: ${err.message}`);
        }
      }
      await intact();
    });

    test('JSON nested deeper than 64 levels is a 400 naming the limit, not a 500', async () => {
      const deepObject = `${'{"a":'.repeat(100)}1${'}'.repeat(100)}`;
      for (const [method, path, body] of [
        ['POST', '/sessions', `{"projectId":"base","config":{"x":${nested(10_000)}}}`],
        ['POST', '/sessions', `{"projectId":"base","config":${deepObject}}`],
        ['PATCH', '/projects/base', `{"name":"x","regions":${nested(65)}}`],
        ['POST', `/sessions/${live.id}/join`, nested(65)],
        ['POST', '/projects', `{"id":"deep","x":${nested(10_000)}`], // not even complete
      ] as const) {
        const err = assertError(await raw(method, path, body, json), 400, 'BAD_REQUEST');
        assert.match(err.message, /nested deeper than 64 levels/, `${method} ${path}: ${err.message}`);
      }
      // 64 levels are fine, and brackets inside strings (escaped quotes too) are no nesting: these bodies go on
      // to their route, a 404
      for (const body of [
        nested(64),
        `{"a":${nested(63)}}`,
        JSON.stringify({ a: '['.repeat(10_000), b: '\\"{{{{'.repeat(1_000), c: { d: '}]' } }),
      ])
        assertError(await raw('POST', '/sessions/s_nope/end', body, json), 404, 'NOT_FOUND');
      await intact();
    });

    test("a bad URL's 400 never repeats its query string (a token in it stays out of the answer)", async () => {
      const secret = 'secret-token-0123456789';
      for (const path of [
        `/sessions/%E0%A4%A?token=${secret}`,
        `/sessions/%E0%A4%A/ws?token=${secret}&x=1`,
        `/sessions/s_${'x'.repeat(300)}?token=${secret}`,
        `/sessions/%zz/messages?before=%E0%A4%A&key=${secret}`,
      ]) {
        const err = assertError(await t.api('GET', path), 400, 'BAD_REQUEST');
        assert.match(err.message, /URL path is not valid/);
        assert.ok(!err.message.includes(secret), `${path.slice(0, 40)}: ${err.message}`);
        assert.ok(!err.message.includes('?'), `no query string in: ${err.message}`);
      }
      await intact();
    });

    test('illegal transitions are 409 ILLEGAL_TRANSITION and change nothing', async () => {
      const cases: [string, RegExp][] = [
        [`/sessions/${live.id}/resume`, /active/],
        [`/sessions/${waiting.id}/pause`, /queued/],
        [`/sessions/${waiting.id}/resume`, /queued/],
        [`/sessions/${done.id}/end`, /ended/],
        [`/sessions/${done.id}/pause`, /ended/],
        [`/sessions/${done.id}/resume`, /ended/],
        [`/sessions/${done.id}/join`, /ended/],
      ];
      for (const [path, state] of cases) {
        const err = assertError(await t.api('POST', path), 409, 'ILLEGAL_TRANSITION');
        assert.match(err.message, state, `${path}: the message says the current state`);
      }
      assert.deepEqual(viewer.states, ['connecting', 'active'], 'the viewer saw no change');
      await intact();
    });

    test('a body that is not JSON is a 415 UNSUPPORTED_MEDIA_TYPE', async () => {
      const body = JSON.stringify({ id: 'typed', name: 'typed' });
      for (const type of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
        'application/octet-stream',
      ]) {
        assertError(
          await raw('POST', '/projects', body, { 'content-type': type }),
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        );
        assertError(
          await raw('PATCH', '/projects/base', '{"name":"typed"}', { 'content-type': type }),
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        );
        const err = assertError(
          await raw('POST', '/sessions', '{"projectId":"base"}', { 'content-type': type }),
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        );
        assert.match(err.message, /content-type: application\/json/, 'the message says how to send it');
      }
      // the charset parameter is fine
      const ok = await raw('POST', '/sessions/s_nope/end', '{}', {
        'content-type': 'application/json; charset=utf-8',
      });
      assertError(ok, 404, 'NOT_FOUND');
      await intact();
    });

    test('bad credentials in odd shapes are 401, not 500', async () => {
      for (const authorization of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a.b.c', 'Bearer x.y', 'token']) {
        const r = await raw('GET', '/projects', undefined, { authorization });
        assertError(r, 401, 'UNAUTHORIZED');
      }
      await intact();
    });

    // ------------------------------------------------------------------ session socket

    test('session socket: malformed JSON and unknown frames get a BAD_REQUEST frame; the socket stays open', async () => {
      const sock = await t.connect(live, TEST_ADMIN_KEY);
      await sock.waitFor((e) => e.type === 'session.status_changed');
      const bad: (string | Buffer)[] = [
        'not json{',
        '',
        JSON.stringify({ type: 'dance' }),
        JSON.stringify({ kind: 'ping' }),
        JSON.stringify({ type: 'ping', extra: true }),
        JSON.stringify({ type: 'message', data: 1 }),
        JSON.stringify([1, 2]),
        Buffer.from([0xff, 0x00, 0x12]),
      ];
      for (const frame of bad) {
        const from = sock.other.length;
        sock.ws.send(frame);
        const err = await nextFrame(sock, (f) => f.type === 'error', from);
        assert.equal(err.code, 'BAD_REQUEST', `frame ${String(frame)}`);
        assert.equal(typeof err.message, 'string');
        assert.equal(sock.ws.readyState, WebSocket.OPEN);
      }
      const from = sock.other.length;
      sock.send({ type: 'ping', id: 'still-here' });
      assert.equal((await nextFrame(sock, (f) => f.type === 'pong', from)).id, 'still-here');

      // the viewer's own socket too, without ending or changing its session
      const vfrom = viewer.other.length;
      viewer.ws.send('{oops');
      assert.equal((await nextFrame(viewer, (f) => f.type === 'error', vfrom)).code, 'BAD_REQUEST');
      assert.equal(viewer.ws.readyState, WebSocket.OPEN);
      await sock.close(1000);
      await intact();
    });

    test('session socket: a frame nested deeper than 64 levels, or holding a NUL character, gets a BAD_REQUEST frame; nothing is relayed', async () => {
      const transcript = async () => (await t.api('GET', `/sessions/${live.id}/messages`)).body;
      const before = await transcript();
      const frames = [
        `{"type":"message","messageType":"user_text","ref":"r1","data":${nested(10_000)}}`,
        `{"type":"message","messageType":"user_text","ref":"r2","data":{"x":${nested(64)}}}`,
        JSON.stringify({ type: 'message', messageType: 'user_text', ref: 'r3', data: 'boom\u0000x' }),
        JSON.stringify({ type: 'message', messageType: 'user_text', ref: 'r4', data: { 'k\u0000': 1 } }),
        JSON.stringify({ type: 'ping', id: '\u0000' }),
      ];
      for (const frame of frames) {
        const from = viewer.other.length;
        viewer.ws.send(frame);
        // an ack would mean the message was relayed
        const answer = await nextFrame(
          viewer,
          (f) => f.type === 'error' || f.type === 'message_ack' || f.type === 'pong',
          from,
        );
        assert.equal(answer.type, 'error', `${frame.slice(0, 60)}: ${JSON.stringify(answer)}`);
        assert.equal(answer.code, 'BAD_REQUEST', String(answer.message));
        assert.match(String(answer.message), /nested deeper than 64 levels|NUL/);
        assert.equal(viewer.ws.readyState, WebSocket.OPEN);
      }
      const from = viewer.other.length;
      viewer.send({ type: 'ping', id: 'still-here' });
      assert.equal((await nextFrame(viewer, (f) => f.type === 'pong', from)).id, 'still-here');
      assert.deepEqual(await transcript(), before, 'nothing was recorded');
      await intact();
    });

    test('session socket: a frame over 64 KiB closes it with 1009', async () => {
      const sock = await t.connect(live, TEST_ADMIN_KEY);
      await sock.waitFor((e) => e.type === 'session.status_changed');
      sock.send({ type: 'message', messageType: 'user_text', data: 'x'.repeat(64 * 1024 + 1) });
      assert.equal((await sock.closed).code, 1009);
      await intact();
    });

    // ------------------------------------------------------------------ worker socket

    const workerSocket = async (first: string | Buffer) => {
      const ws = new WebSocket(`${t.url.replace(/^http/, 'ws')}/workers/ws`);
      const frames: Record<string, unknown>[] = [];
      ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
      const closed = new Promise<{ code: number; reason: string }>((resolve) =>
        ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
      );
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.send(first);
      return { closed: await closed, frames };
    };

    test('worker socket: a first frame that is not register closes it with 1008', async () => {
      for (const first of [{ type: 'ready' }, { type: 'heartbeat' }, { type: 'stopped' }]) {
        const { closed, frames } = await workerSocket(JSON.stringify(first));
        assert.equal(closed.code, 1008);
        assert.match(closed.reason, /register/);
        assert.equal(frames[0]?.type, 'error');
        assert.ok(isErrorCode(frames[0]?.code), 'the error frame carries a known code');
      }
      await intact();
    });

    test('worker socket: an invalid token closes it with 1008', async () => {
      const otherSecret = new TokenIssuer('another-secret-0123456789-0123456789-0123', () => t.clock.now());
      const forged = await otherSecret.sign({ role: 'worker', wid: 'w_forged', pid: 'base' }, 60_000);
      for (const token of ['not-a-token', 'a.b.c', forged, live.token]) {
        const { closed, frames } = await workerSocket(JSON.stringify({ type: 'register', token }));
        assert.equal(closed.code, 1008, `token ${token.slice(0, 20)}`);
        assert.equal(frames[0]?.type, 'error');
        assert.ok(isErrorCode(frames[0]?.code), 'the error frame carries a known code');
      }
      await intact();
    });

    test('worker socket: a registration that fails on the server side closes it with 1011 (try again), not 1008', async () => {
      const engine = t.engine as { workerRegistered: unknown };
      const real = engine.workerRegistered;
      engine.workerRegistered = async () => {
        throw new Error('the database is away');
      };
      try {
        const issuer = new TokenIssuer(TEST_SECRET, () => t.clock.now());
        const token = await issuer.sign({ role: 'worker', wid: 'w_any', pid: 'base' }, 60_000);
        const { closed, frames } = await workerSocket(JSON.stringify({ type: 'register', token }));
        assert.equal(closed.code, 1011);
        assert.equal(frames[0]?.type, 'error');
        assert.equal(frames[0]?.code, 'INTERNAL');
        assert.match(String(frames[0]?.message), /try again/);
        // a Pixel Streaming streamer registering on /workers/signalling is told the same
        const streamer = new TestStreamer(
          `${t.url.replace(/^http/, 'ws')}/workers/signalling?token=${token}`,
        );
        assert.equal((await streamer.closed).code, 1011);
        const error = streamer.received.find((m) => m.type === 'error');
        assert.equal(error?.code, 'INTERNAL');
      } finally {
        engine.workerRegistered = real;
      }
      await intact();
    });

    test('worker socket: malformed JSON or a bad register frame first closes it with 1008', async () => {
      for (const first of [
        '{"type": "register", "token":',
        'hello',
        JSON.stringify({ type: 'register' }),
        JSON.stringify({ type: 'register', token: 'x', extra: 1 }),
        JSON.stringify({ type: 'wave' }),
        Buffer.from([1, 2, 3]),
      ]) {
        const { closed } = await workerSocket(first);
        assert.equal(closed.code, 1008, `first frame ${String(first)}`);
      }
      await intact();
    });
  });

  describe(`bad worker frames (${kind})`, () => {
    // liveness stands still: the hand-dialled worker below sends no heartbeats and is never lost
    const { t } = useTestServer(kind, { engine: { livenessClock: new ManualClock(Date.now()) } });
    let worker: FrameSocket;
    let session: CreatedSession;

    before(async () => {
      await t.createProject(agentProject('by-hand', { min: 0, max: 1 }, { worker: { driver: 'external' } }));
      const pool = await t.api<{ token: string; workerUrl: string }>(
        'POST',
        '/projects/by-hand/pool-tokens',
        {},
      );
      worker = new FrameSocket(pool.body.workerUrl);
      await worker.opened;
      worker.send({ type: 'register', token: pool.body.token });
      await worker.waitFor((f) => f.type === 'registered');
      worker.send({ type: 'ready' });
      await t.readyWorkers('by-hand', 1);
      // the session stays connecting (the manual clock keeps its timer from firing): session_failed applies
      session = await t.createSession('by-hand');
      await worker.waitFor((f) => f.type === 'assign');
      await t.waitForState(session.id, 'connecting');
    });

    test('a frame nested deeper than 64 levels, or holding a NUL character, gets a BAD_REQUEST frame and changes nothing', async () => {
      const sessionId = session.id;
      const state = async () => ({
        session: (await t.api('GET', `/sessions/${sessionId}`)).body,
        messages: (await t.api('GET', `/sessions/${sessionId}/messages`)).body,
        workers: (await t.api('GET', '/workers')).body,
      });
      await t.settled();
      const before = await state();
      const frames = [
        JSON.stringify({ type: 'session_failed', sessionId, message: 'boom\u0000x' }),
        JSON.stringify({ type: 'message', sessionId, messageType: 'agent_text', data: { text: '\u0000' } }),
        JSON.stringify({ type: 'save_state', sessionId, state: { ['k\u0000']: 1 } }),
        `{"type":"save_state","sessionId":"${sessionId}","state":${nested(10_000)}}`,
        `{"type":"message","sessionId":"${sessionId}","messageType":"agent_text","data":${nested(65)}}`,
      ];
      for (const frame of frames) {
        const from = worker.frames.length;
        worker.send(frame);
        // its error frame, or none once the server has settled (the frame was applied)
        const answer = await Promise.race([
          worker.waitFor((f) => worker.frames.indexOf(f) >= from && f.type === 'error'),
          t
            .settled()
            .then(() => new Promise((r) => setTimeout(r, 200)))
            .then(() => null),
        ]);
        assert.ok(answer, `${frame.slice(0, 60)}: no error frame`);
        assert.equal(answer.code, 'BAD_REQUEST', String(answer.message));
        assert.match(String(answer.message), /nested deeper than 64 levels|NUL/);
        assert.equal(worker.ws.readyState, WebSocket.OPEN);
      }
      await t.settled();
      assert.deepEqual(await state(), before, 'the session, its transcript and the worker are unchanged');
      // and the worker goes on
      worker.send({ type: 'session_started', sessionId });
      await t.waitForState(sessionId, 'active');
    });
  });
}
