// UsherSession: creating and joining, state and queue events, room events, pings, ending.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsherError } from './errors.ts';
import { harness, json, record, status } from './fakes.ts';
import { REQUEST_TIMEOUT_MS } from './options.ts';
import { PING_INTERVAL_MS, UsherSession } from './session.ts';

describe('UsherSession.start', () => {
  test('creates the session over HTTP, then opens its socket with the viewer token', async () => {
    const h = harness();
    const session = await UsherSession.start({
      ...h.options,
      server: 'http://usher.test/',
      projectId: 'demo',
      region: 'eu',
      apiKey: 'admin-key',
    });
    assert.deepEqual(h.http.calls, [
      {
        url: 'http://usher.test/sessions',
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer admin-key' },
        body: { projectId: 'demo', region: 'eu' },
      },
    ]);
    assert.equal(session.id, 's1');
    assert.equal(session.state, 'queued');
    assert.equal(h.net.sockets.length, 1);
    assert.equal(h.net.last.url, 'ws://usher.test/sessions/s1/ws?token=token-s1&after=now');
  });

  test('reads the nested answer shape {session, token, url} too, and keeps a token already in the url', async () => {
    const h = harness();
    h.http.next.push(
      json(201, {
        session: { id: 'abc', state: 'connecting' },
        token: 'tok',
        url: 'wss://usher.test/sessions/abc/ws?token=tok',
      }),
    );
    const session = await UsherSession.start({
      ...h.options,
      server: 'https://usher.test',
      projectId: 'demo',
    });
    assert.equal(session.id, 'abc');
    assert.equal(session.state, 'connecting');
    assert.equal(h.net.last.url, 'wss://usher.test/sessions/abc/ws?token=tok&after=now');
    assert.deepEqual(h.http.calls[0]!.body, { projectId: 'demo' });
    assert.equal(h.http.calls[0]!.headers.authorization, undefined);
  });

  test('an error answer rejects with UsherError carrying its code, message, status and details', async () => {
    const h = harness();
    h.http.next.push(
      json(403, {
        error: {
          code: 'PROJECT_DISABLED',
          message: 'project "demo" is disabled',
          retryable: false,
          details: { closeCode: 4000, sessionId: 's9' },
        },
      }),
    );
    const err = await UsherSession.start({
      ...h.options,
      server: 'http://usher.test',
      projectId: 'demo',
    }).catch((e: unknown) => e);
    assert.ok(err instanceof UsherError);
    assert.equal(err.code, 'PROJECT_DISABLED');
    assert.equal(err.message, 'project "demo" is disabled');
    assert.equal(err.status, 403);
    assert.equal(err.retryable, false);
    assert.deepEqual(err.details, { closeCode: 4000, sessionId: 's9' }, 'the close code of the refusal');
    assert.equal(h.net.sockets.length, 0);
  });

  test('an unreachable server rejects with NETWORK, a non-JSON error answer with BAD_RESPONSE', async () => {
    const h = harness();
    h.http.next.push(
      new TypeError('fetch failed'),
      new Response('<html>bad gateway</html>', { status: 502 }),
    );
    const start = () => UsherSession.start({ ...h.options, server: 'http://usher.test', projectId: 'demo' });
    await assert.rejects(start(), { name: 'UsherError', code: 'NETWORK', status: null, retryable: true });
    await assert.rejects(start(), { name: 'UsherError', code: 'BAD_RESPONSE', status: 502, retryable: true });
  });

  test(`a server that does not answer: start() rejects with NETWORK after ${REQUEST_TIMEOUT_MS / 1000} s, and the request is aborted`, async () => {
    const h = harness();
    let signal: AbortSignal | undefined;
    const started = UsherSession.start({
      ...h.options,
      fetch: (_url, init) => {
        signal = init.signal ?? undefined;
        return new Promise(() => {});
      },
      server: 'http://usher.test',
      projectId: 'demo',
    });
    h.clock.advance(REQUEST_TIMEOUT_MS - 1);
    assert.equal(signal?.aborted, false);
    h.clock.advance(1);
    await assert.rejects(started, { code: 'NETWORK', retryable: true, message: /no answer within 30 s/ });
    assert.equal(signal?.aborted, true);
  });

  test('bad options are refused with one error naming each of them', async () => {
    const h = harness();
    await assert.rejects(UsherSession.start({ ...h.options, server: 'usher.test', projectId: 'demo' }), {
      code: 'BAD_OPTIONS',
      message: /`server` must be the server's http:\/\/ or https:\/\/ URL/,
    });
    await assert.rejects(
      UsherSession.start({
        ...h.options,
        server: 'http://usher.test',
        projectId: 'demo',
        reconnect: { maxAttempts: -1, baseDelayMs: 100, maxDelayMs: 10 },
      }),
      { code: 'BAD_OPTIONS', message: /reconnect\.maxAttempts.*; `reconnect\.maxDelayMs` must be ≥/ },
    );
  });
});

describe('UsherSession.join', () => {
  test('attaches to a session socket URL; end() posts with the viewer token and closes with 1000', async () => {
    const h = harness();
    const session = await UsherSession.join({
      ...h.options,
      url: 'wss://usher.test/api/sessions/s9/ws?token=tk',
    });
    const events = record(session);
    assert.equal(session.id, 's9');
    assert.equal(h.net.last.url, 'wss://usher.test/api/sessions/s9/ws?token=tk&after=now');
    h.net.last.open();
    h.net.last.receive(status('active', 'connecting', 'worker:answer'));
    await session.end();
    assert.deepEqual(h.http.calls, [
      {
        url: 'https://usher.test/api/sessions/s9/end',
        method: 'POST',
        headers: { authorization: 'Bearer tk' },
        body: undefined,
      },
    ]);
    assert.deepEqual(h.net.last.closedWith, { code: 1000, reason: undefined });
    assert.equal(session.state, 'ended');
    assert.deepEqual(events.of('ended'), [{ code: 1000, reason: 'completed', outcome: 'disconnected' }]);
  });

  test('a token given apart is added to the URL; no token at all is refused', async () => {
    const h = harness();
    await UsherSession.join({ ...h.options, url: 'ws://usher.test/sessions/s2/ws', token: 'tk' });
    assert.equal(h.net.last.url, 'ws://usher.test/sessions/s2/ws?token=tk&after=now');
    await assert.rejects(UsherSession.join({ ...h.options, url: 'ws://usher.test/sessions/s2/ws' }), {
      code: 'BAD_OPTIONS',
      message: /no \?token=/,
    });
    await assert.rejects(UsherSession.join({ ...h.options, url: 'http://usher.test/elsewhere' }), {
      code: 'BAD_OPTIONS',
      message: /session socket URL/,
    });
  });
});

describe('session events', () => {
  async function started() {
    const h = harness();
    const session = await UsherSession.start({
      ...h.options,
      server: 'http://usher.test',
      projectId: 'demo',
    });
    const events = record(session);
    const ws = h.net.last;
    ws.open();
    return { h, session, events, ws };
  }

  test('status_changed events drive the state; the snapshot of the current state emits nothing', async () => {
    const { session, events, ws } = await started();
    ws.receive(status('queued', 'requesting', 'admission'));
    ws.receive(status('connecting', 'queued', 'worker:seated'));
    ws.receive(status('active', 'connecting', 'worker:answer'));
    ws.receive(status('paused', 'active', 'user:pause'));
    assert.deepEqual(events.of('state'), [
      { state: 'connecting', previous: 'queued', cause: 'worker:seated' },
      { state: 'active', previous: 'connecting', cause: 'worker:answer' },
      { state: 'paused', previous: 'active', cause: 'user:pause' },
    ]);
    assert.equal(session.state, 'paused');
  });

  test('queue positions are emitted and kept while queued', async () => {
    const { session, events, ws } = await started();
    ws.receive(status('queued', 'requesting', 'admission'));
    const at = '2026-01-01T00:00:00.000Z';
    ws.receive({
      type: 'session.queue_position',
      sessionId: 's1',
      at,
      position: 3,
      queueLength: 4,
      estimatedWaitMs: null,
    });
    ws.receive({
      type: 'session.queue_position',
      sessionId: 's1',
      at,
      position: 1,
      queueLength: 2,
      estimatedWaitMs: 9000,
    });
    assert.deepEqual(events.of('queue'), [
      { position: 3, queueLength: 4, estimatedWaitMs: null },
      { position: 1, queueLength: 2, estimatedWaitMs: 9000 },
    ]);
    assert.deepEqual(session.queue, { position: 1, queueLength: 2, estimatedWaitMs: 9000 });
    ws.receive(status('connecting', 'queued', 'worker:seated'));
    assert.equal(session.queue, null);
  });

  test('room messages, participants and errors are passed on; unknown messages are ignored', async () => {
    const { events, ws } = await started();
    const at = '2026-01-01T00:00:00.000Z';
    const participant = { identity: 'agent-1', kind: 'agent' };
    const envelope = {
      id: 'm1',
      sessionId: 's1',
      type: 'agent_text',
      from: participant,
      at,
      data: { text: 'hi' },
    };
    ws.receive({ type: 'session.participant_joined', sessionId: 's1', at, participant });
    ws.receive({ type: 'session.message', sessionId: 's1', at, message: envelope });
    ws.receive({ type: 'somethingNew', value: 1 });
    ws.receive({
      type: 'session.error',
      sessionId: 's1',
      at,
      code: 'AGENT_CRASHED',
      message: 'boom',
      recoverable: true,
    });
    ws.receive({ type: 'error', code: 'BAD_REQUEST', message: 'bad frame' });
    ws.receive({ type: 'session.participant_left', sessionId: 's1', at, participant });
    assert.deepEqual(events.all, [
      ['participantJoined', participant],
      ['message', envelope],
      ['error', { code: 'AGENT_CRASHED', message: 'boom', recoverable: true }],
      ['error', { code: 'BAD_REQUEST', message: 'bad frame', recoverable: false }],
      ['participantLeft', participant],
    ]);
  });

  test('sendMessage sends a room message frame; false while the socket is not open', async () => {
    const h = harness();
    const session = await UsherSession.start({
      ...h.options,
      server: 'http://usher.test',
      projectId: 'demo',
    });
    assert.equal(session.sendMessage('user_text', { text: 'too early' }), false);
    h.net.last.open();
    assert.equal(session.sendMessage('user_text', { text: 'hello' }), true);
    assert.deepEqual(h.net.last.sent, [
      { type: 'message', messageType: 'user_text', data: { text: 'hello' } },
    ]);
  });

  test('pings every 20 seconds with the time', async () => {
    const { h, ws } = await started();
    h.clock.advance(PING_INTERVAL_MS - 1);
    assert.deepEqual(ws.sent, []);
    h.clock.advance(1);
    h.clock.advance(PING_INTERVAL_MS);
    assert.deepEqual(ws.sent, [
      { type: 'ping', time: h.clock.time - PING_INTERVAL_MS },
      { type: 'ping', time: h.clock.time },
    ]);
  });

  test('the server ends the session: state ended, then `ended` with its code, reason and outcome', async () => {
    const { session, events, ws } = await started();
    ws.receive(status('active', 'connecting', 'worker:answer'));
    ws.receive(status('ending', 'active', 'timer:max_runtime'));
    ws.serverEnded('ending', 'cleanup', { endCode: 4004, endReason: 'max_runtime', outcome: 'disconnected' });
    assert.equal(session.state, 'ended');
    assert.deepEqual(events.all.slice(-2), [
      ['state', { state: 'ended', previous: 'ending', cause: 'cleanup' }],
      ['ended', { code: 4004, reason: 'max_runtime', outcome: 'disconnected' }],
    ]);
  });

  test('leave() while queued closes with 1000 and ends as canceled; end() after it does nothing', async () => {
    const { h, session, events, ws } = await started();
    ws.receive(status('queued', 'requesting', 'admission'));
    session.leave();
    await session.end();
    assert.deepEqual(ws.closedWith, { code: 1000, reason: undefined });
    assert.deepEqual(events.of('ended'), [{ code: 1000, reason: 'canceled', outcome: 'disconnected' }]);
    assert.equal(h.http.calls.length, 1);
  });

  test('end() that fails still leaves, and rejects with the error', async () => {
    const { h, session, events, ws } = await started();
    h.http.next.push(json(404, { error: { code: 'NOT_FOUND', message: 'no session "s1"' } }));
    await assert.rejects(session.end(), { code: 'NOT_FOUND', status: 404 });
    assert.deepEqual(ws.closedWith, { code: 1000, reason: undefined });
    assert.equal(events.of('ended').length, 1);
  });
});
