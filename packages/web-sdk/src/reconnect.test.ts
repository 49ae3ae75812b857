// Reconnection (SPEC §4): 1006 resumes the same session with backoff and jitter, 4007 starts a fresh one, every
// other code ends the session; the SDK gives up after maxAttempts or when the viewer cancels.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { harness, json, record, settle, status } from './fakes.ts';
import { DEFAULT_RECONNECT, reconnectDelayMs } from './reconnect.ts';
import { CONNECT_TIMEOUT_MS, PING_INTERVAL_MS, UsherSession } from './session.ts';

const policy = { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 3000 };

async function live(options: { join?: boolean; maxAttempts?: number } = {}) {
  const h = harness();
  const reconnect = { ...policy, maxAttempts: options.maxAttempts ?? policy.maxAttempts };
  const session = options.join
    ? await UsherSession.join({ ...h.options, reconnect, url: 'ws://usher.test/sessions/s1/ws?token=tk' })
    : await UsherSession.start({
        ...h.options,
        reconnect,
        server: 'http://usher.test',
        projectId: 'demo',
        region: 'eu',
      });
  h.net.last.open();
  h.net.last.receive(status('active', 'connecting', 'worker:answer'));
  const events = record(session);
  return { h, session, events };
}

/** The session was lost while the viewer was away: the server closes with 4007. */
function lost(h: ReturnType<typeof harness>): void {
  h.net.last.serverClose(4007, 'reconnect_failed');
}

describe('reconnectDelayMs', () => {
  test('equal jitter: half of min(maxDelayMs, baseDelayMs·2ⁿ), and a random share of the other half', () => {
    assert.equal(
      reconnectDelayMs(0, policy, () => 0),
      250,
    );
    assert.equal(
      reconnectDelayMs(0, policy, () => 0.5),
      375,
    );
    assert.equal(
      reconnectDelayMs(2, policy, () => 0.5),
      1500,
    );
    assert.equal(
      reconnectDelayMs(3, policy, () => 0),
      1500,
    );
    assert.equal(
      reconnectDelayMs(10, policy, () => 0.999),
      2998,
    );
  });

  test('by default the SDK tries for longer than the server keeps a dropped session (60 s by default)', () => {
    assert.deepEqual(DEFAULT_RECONNECT, { maxAttempts: 20, baseDelayMs: 500, maxDelayMs: 8000 });
    let shortest = 0;
    for (let n = 0; n < DEFAULT_RECONNECT.maxAttempts; n++)
      shortest += reconnectDelayMs(n, DEFAULT_RECONNECT, () => 0);
    assert.ok(shortest > 60_000, `the attempts span at least ${shortest} ms`);
  });
});

describe('1006: resume the same session', () => {
  test('reopens the same URL after each drawn delay, within the jitter bounds, then reports success', async () => {
    const { h, session, events } = await live();
    h.randoms.push(0.9, 0.1, 0.999);
    const url = h.net.last.url;
    h.net.last.serverClose(1006);
    const drops = 3;
    for (let i = 0; i < drops; i++) {
      const { delayMs } = events.of('reconnecting')[i]!;
      const before = h.net.sockets.length;
      h.clock.advance(delayMs - 1);
      assert.equal(h.net.sockets.length, before, `attempt ${i + 1} waits its delay`);
      h.clock.advance(1);
      assert.equal(h.net.sockets.length, before + 1);
      assert.equal(h.net.last.url, url);
      if (i < drops - 1) h.net.last.serverClose(1006);
    }
    const reconnecting = events.of('reconnecting');
    assert.deepEqual(
      reconnecting.map((r) => [r.attempt, r.code]),
      [
        [1, 1006],
        [2, 1006],
        [3, 1006],
      ],
    );
    reconnecting.forEach((r, n) => {
      const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** n);
      assert.ok(
        r.delayMs >= cap / 2 && r.delayMs < cap,
        `attempt ${n + 1}: ${r.delayMs} in [${cap / 2}, ${cap})`,
      );
    });
    assert.deepEqual(
      reconnecting.map((r) => r.delayMs),
      [475, 550, 1999],
    );
    h.net.last.open();
    h.net.last.receive(status('active', 'connecting', 'worker:answer'));
    assert.deepEqual(events.of('reconnected'), [{ attempts: 3, sessionId: 's1', fresh: false }]);
    assert.equal(session.state, 'active');
    assert.deepEqual(events.of('state'), [], 'the state did not change while reconnecting');

    // success reset the attempts: the next drop starts over at attempt 1 with the smallest cap
    h.randoms.push(0.999);
    h.net.last.serverClose(1006);
    assert.deepEqual(events.of('reconnecting').at(-1), { attempt: 1, delayMs: 499, code: 1006 });
  });

  test('a connection that stops answering pings is taken for a drop and resumed', async () => {
    const { h, events } = await live();
    h.randoms.push(0);
    const dead = h.net.last;
    dead.answersPings = false;
    const url = dead.url;
    // the server answers each ping; this one has vanished, and its socket never closes
    h.clock.advance(PING_INTERVAL_MS * 2);
    assert.deepEqual(events.of('reconnecting'), [], 'two pings may go unanswered');
    h.clock.advance(PING_INTERVAL_MS);
    assert.deepEqual(events.of('reconnecting'), [{ attempt: 1, delayMs: 250, code: 1006 }]);
    h.clock.advance(250);
    assert.equal(h.net.sockets.length, 2);
    assert.equal(h.net.last.url, url);
    h.net.last.open();
    h.net.last.receive(status('active', 'connecting', 'worker:answer'));
    assert.deepEqual(events.of('reconnected'), [{ attempts: 1, sessionId: 's1', fresh: false }]);
    dead.serverClose(1006); // the dead socket's close, when it comes at last, changes nothing
    assert.equal(events.of('reconnecting').length, 1);
  });

  test('a socket that does not open within CONNECT_TIMEOUT_MS is given up and counts as a failed attempt', async () => {
    const { h, events } = await live();
    h.randoms.push(0, 0);
    h.net.last.serverClose(1006);
    h.clock.advance(250);
    const stuck = h.net.last;
    assert.equal(h.net.sockets.length, 2);
    // a black-holed host: the socket neither opens nor closes
    h.clock.advance(CONNECT_TIMEOUT_MS - 1);
    assert.equal(events.of('reconnecting').length, 1, 'it may take up to CONNECT_TIMEOUT_MS');
    h.clock.advance(1);
    assert.deepEqual(stuck.closedWith, { code: undefined, reason: undefined }, 'the stuck socket is closed');
    assert.deepEqual(events.of('reconnecting').at(-1), { attempt: 2, delayMs: 500, code: 1006 });
    h.clock.advance(500);
    assert.equal(h.net.sockets.length, 3);
    const next = h.net.last;
    next.open();
    next.receive(status('active', 'active', 'snapshot'));
    assert.deepEqual(events.of('reconnected'), [{ attempts: 2, sessionId: 's1', fresh: false }]);
    stuck.open(); // opening late changes nothing
    stuck.serverClose(1006);
    assert.equal(events.of('reconnecting').length, 2);
    // an open socket is kept however long the session lasts
    h.clock.advance(CONNECT_TIMEOUT_MS * 10);
    assert.equal(h.net.sockets.length, 3);
  });

  test('leave() between attempts to resume tells the server over HTTP, which would not hear the socket', async () => {
    const { h, session, events } = await live();
    h.randoms.push(0.5);
    h.net.last.serverClose(1006);
    assert.equal(events.of('reconnecting').length, 1);
    const sockets = h.net.sockets.length;
    session.leave();
    await settle();
    assert.deepEqual(
      h.http.calls.map((c) => `${c.method} ${c.url} ${c.headers.authorization ?? ''}`).slice(-1),
      ['POST http://usher.test/sessions/s1/end Bearer token-s1'],
    );
    h.clock.advance(policy.maxDelayMs);
    assert.equal(h.net.sockets.length, sockets, 'no attempt after leaving');
    assert.deepEqual(events.of('ended'), [{ code: 1000, reason: 'completed', outcome: 'disconnected' }]);
  });

  test('a failure on the server side (1011) resumes the same session like a drop', async () => {
    const { h, events } = await live();
    h.randoms.push(0);
    h.net.last.serverClose(1011);
    assert.deepEqual(events.of('reconnecting'), [{ attempt: 1, delayMs: 250, code: 1011 }]);
  });

  test('a server restart (1012) resumes the same session like a drop', async () => {
    const { h, events } = await live();
    h.randoms.push(0);
    const url = h.net.last.url;
    h.net.last.serverClose(1012);
    assert.deepEqual(events.of('reconnecting'), [{ attempt: 1, delayMs: 250, code: 1012 }]);
    h.clock.advance(250);
    assert.equal(h.net.last.url, url);
    h.net.last.open();
    h.net.last.receive(status('active', 'connecting', 'worker:answer'));
    assert.deepEqual(events.of('reconnected'), [{ attempts: 1, sessionId: 's1', fresh: false }]);
    assert.deepEqual(events.of('ended'), []);
  });

  test('gives up after maxAttempts: reconnectFailed, then ended (4007, reconnect_failed)', async () => {
    const { h, session, events } = await live({ maxAttempts: 2 });
    h.net.last.serverClose(1006);
    h.clock.advance(policy.maxDelayMs);
    h.net.last.serverClose(1006);
    h.clock.advance(policy.maxDelayMs);
    h.net.last.serverClose(1006);
    assert.equal(h.net.sockets.length, 3);
    assert.deepEqual(
      events.all.filter(([name]) => name !== 'reconnecting'),
      [
        ['reconnectFailed', { attempts: 2, code: 1006 }],
        ['state', { state: 'ended', previous: 'active', cause: 'reconnect:failed' }],
        ['ended', { code: 4007, reason: 'reconnect_failed', outcome: 'failed' }],
      ],
    );
    assert.equal(session.state, 'ended');
    h.clock.advance(60_000);
    assert.equal(h.net.sockets.length, 3);
  });

  test('cancelReconnect() stops: ended (reconnect_canceled), no more sockets', async () => {
    const { h, events, session } = await live();
    h.net.last.serverClose(1006);
    session.cancelReconnect();
    h.clock.advance(60_000);
    assert.equal(h.net.sockets.length, 1);
    assert.deepEqual(events.of('ended'), [{ code: 4007, reason: 'reconnect_canceled', outcome: 'failed' }]);
  });

  describe('the server hears of every end, even when no socket can carry the 1000', () => {
    const ends = (h: ReturnType<typeof harness>) =>
      h.http.calls
        .filter((c) => c.url.endsWith('/end'))
        .map((c) => `${c.url} ${c.headers.authorization ?? ''}`);

    test('leave() while the first socket is still opening ends the session over HTTP', async () => {
      const h = harness();
      const session = await UsherSession.start({
        ...h.options,
        server: 'http://usher.test',
        projectId: 'demo',
      });
      session.leave();
      await settle();
      assert.deepEqual(ends(h), ['http://usher.test/sessions/s1/end Bearer token-s1']);
    });

    test('leave() on an open socket closes it with 1000 and asks nothing over HTTP', async () => {
      const { h, session } = await live();
      session.leave();
      await settle();
      assert.deepEqual(ends(h), []);
      assert.equal(h.net.last.closedWith?.code, 1000);
    });

    test('cancelReconnect() and giving up after maxAttempts end the session over HTTP', async () => {
      const canceled = await live();
      canceled.h.net.last.serverClose(1006);
      canceled.session.cancelReconnect();
      await settle();
      assert.deepEqual(ends(canceled.h), ['http://usher.test/sessions/s1/end Bearer token-s1']);

      const failed = await live({ maxAttempts: 1 });
      failed.h.net.last.serverClose(1006);
      failed.h.clock.advance(policy.maxDelayMs);
      failed.h.net.last.serverClose(1006);
      await settle();
      assert.deepEqual(failed.events.of('reconnectFailed'), [{ attempts: 1, code: 1006 }]);
      assert.deepEqual(ends(failed.h), ['http://usher.test/sessions/s1/end Bearer token-s1']);
    });

    test('a close that ends the session for the SDK but not on the server (1009) is told over HTTP; an end code is not', async () => {
      const tooLarge = await live();
      tooLarge.h.net.last.serverClose(1009, 'frames are limited to 65536 bytes');
      await settle();
      assert.deepEqual(tooLarge.events.of('ended'), [
        { code: 1009, reason: 'frames are limited to 65536 bytes', outcome: 'failed' },
      ]);
      assert.deepEqual(ends(tooLarge.h), ['http://usher.test/sessions/s1/end Bearer token-s1']);

      const timedOut = await live();
      timedOut.h.net.last.serverClose(4004, 'max_runtime');
      await settle();
      assert.deepEqual(ends(timedOut.h), [], 'the server ended it: its end code says so');
    });

    test('an invited user who leaves while reconnecting leaves the room; the session is not ended', async () => {
      const h = harness();
      const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const userToken = `${part({ alg: 'HS256' })}.${part({ role: 'user', sid: 's1', idn: 'bo' })}.c2ln`;
      const session = await UsherSession.join({
        ...h.options,
        reconnect: policy,
        url: `ws://usher.test/sessions/s1/ws?token=${userToken}`,
      });
      h.net.last.open();
      h.net.last.receive(status('active', 'connecting', 'worker:answer'));
      h.net.last.serverClose(1006);
      session.leave();
      await settle();
      assert.deepEqual(ends(h), []);
    });
  });

  test('a renewed token (a `token` frame) is the one reconnects and API calls use from then on', async () => {
    const { h, session } = await live();
    h.net.last.receive({ type: 'token', token: 'token-s1-renewed' });
    h.net.last.serverClose(1006);
    h.clock.advance(policy.maxDelayMs);
    assert.equal(new URL(h.net.last.url).searchParams.get('token'), 'token-s1-renewed');
    h.net.last.open();
    h.net.last.receive(status('active', 'connecting', 'worker:answer'));
    await session.end();
    const end = h.http.calls.find((c) => c.url.endsWith('/end'));
    assert.equal(end?.headers.authorization, 'Bearer token-s1-renewed');
  });

  test('with reconnect: false a drop ends the session', async () => {
    const h = harness();
    const session = await UsherSession.start({
      ...h.options,
      reconnect: false,
      server: 'http://usher.test',
      projectId: 'demo',
    });
    const events = record(session);
    h.net.last.open();
    h.net.last.serverClose(1006);
    assert.deepEqual(events.of('ended'), [{ code: 1006, reason: 'connection_lost', outcome: 'failed' }]);
    assert.deepEqual(events.of('reconnecting'), []);
  });

  test('a session that ended while the viewer was away is not resumed again', async () => {
    const { h, events } = await live();
    h.net.last.serverClose(1006);
    h.clock.advance(policy.maxDelayMs);
    h.net.last.open();
    h.net.last.serverEnded('ending', 'timer:afk', {
      endCode: 4004,
      endReason: 'afk_timeout',
      outcome: 'disconnected',
    });
    h.clock.advance(60_000);
    assert.equal(h.net.sockets.length, 2);
    assert.deepEqual(events.of('reconnected'), []);
    assert.deepEqual(events.of('ended'), [{ code: 4004, reason: 'afk_timeout', outcome: 'disconnected' }]);
  });
});

describe('a listener that stops the session while the SDK reconnects', () => {
  test('cancelReconnect() in a `reconnecting` listener after 1006: no socket opens after `ended`', async () => {
    const { h, session, events } = await live();
    session.on('reconnecting', () => session.cancelReconnect());
    h.net.last.serverClose(1006);
    assert.deepEqual(events.of('ended'), [{ code: 4007, reason: 'reconnect_canceled', outcome: 'failed' }]);
    // (the server is told over HTTP, whose answer comes first)
    await settle();
    assert.equal(h.clock.pending, 0, 'no timer is left armed');
    h.clock.advance(60_000);
    assert.equal(h.net.sockets.length, 1, 'no socket after ended');
  });

  test('cancelReconnect() in a `reconnecting` listener after 4007: no new session is asked for', async () => {
    const { h, session, events } = await live();
    session.on('reconnecting', () => session.cancelReconnect());
    lost(h);
    await settle();
    assert.equal(h.clock.pending, 0, 'no timer is left armed');
    h.clock.advance(60_000);
    await settle();
    assert.deepEqual(
      h.http.calls.filter((c) => c.url.endsWith('/sessions')).length,
      1,
      'only the first session was ever asked for',
    );
    assert.equal(h.net.sockets.length, 1);
    assert.deepEqual(events.of('ended'), [{ code: 4007, reason: 'reconnect_canceled', outcome: 'failed' }]);
  });

  test('leave() in a `state` listener while a fresh session starts: no socket, and the new session is ended', async () => {
    const { h, session, events } = await live();
    session.on('state', ({ cause }) => {
      if (cause === 'reconnect:fresh') session.leave();
    });
    lost(h);
    h.clock.advance(policy.maxDelayMs);
    await settle();
    assert.equal(h.net.sockets.length, 1, 'no socket for the new session');
    assert.deepEqual(
      h.http.calls.map((c) => `${c.method} ${c.url} ${c.headers.authorization ?? ''}`),
      [
        'POST http://usher.test/sessions ',
        'POST http://usher.test/sessions ',
        'POST http://usher.test/sessions/s2/end Bearer token-s2',
      ],
    );
    assert.equal(events.of('ended').length, 1);
    assert.equal(session.state, 'ended');
    h.clock.advance(60_000);
    assert.equal(h.net.sockets.length, 1);
  });
});

describe('codes that end the session', () => {
  const cases: [number, string, string][] = [
    [1000, 'completed', 'disconnected'],
    [1001, 'viewer_left', 'disconnected'],
    [4000, 'project_disabled', 'disconnected'],
    [4001, 'pending_timeout', 'failed'],
    [4002, 'app_not_found', 'failed'],
    [4003, 'launch_failed', 'failed'],
    [4004, 'afk_timeout', 'disconnected'],
    [4005, 'worker_lost', 'failed'],
    [4006, 'worker_crashed', 'failed'],
  ];
  for (const [code, reason, outcome] of cases) {
    test(`${code} (${reason}): no reconnection, ended carries the code and the close reason`, async () => {
      const { h, session, events } = await live();
      h.net.last.serverClose(code, reason);
      h.clock.advance(60_000);
      await settle();
      assert.equal(h.net.sockets.length, 1);
      assert.equal(h.http.calls.length, 1, 'no fresh session was asked for');
      assert.deepEqual(events.of('reconnecting'), []);
      assert.deepEqual(events.of('ended'), [{ code, reason, outcome }]);
      assert.equal(session.state, 'ended');
    });
  }

  test('the end the server announced wins over the bare close', async () => {
    const { h, events } = await live();
    h.net.last.receive(
      status('ended', 'ending', 'worker:exit', {
        endCode: 4006,
        endReason: 'worker_crashed',
        outcome: 'failed',
      }),
    );
    h.net.last.serverClose(4006, '');
    assert.deepEqual(events.of('ended'), [{ code: 4006, reason: 'worker_crashed', outcome: 'failed' }]);
  });

  test('a refused connection (1008) ends with the server error reported', async () => {
    const { h, events } = await live();
    h.net.last.serverClose(1006);
    h.clock.advance(policy.maxDelayMs);
    h.net.last.open();
    h.net.last.receive({ type: 'error', code: 'UNAUTHORIZED', message: 'the token expired' });
    h.net.last.serverClose(1008, 'the token expired');
    assert.deepEqual(events.of('error'), [
      { code: 'UNAUTHORIZED', message: 'the token expired', recoverable: false },
    ]);
    assert.deepEqual(events.of('ended'), [{ code: 1008, reason: 'the token expired', outcome: 'failed' }]);
  });
});

describe('4007: start a fresh session', () => {
  test('asks for a new session of the same project, follows it under its new id', async () => {
    const { h, session, events } = await live();
    h.net.last.serverClose(1006);
    h.clock.advance(policy.maxDelayMs);
    const resumed = h.net.last;
    resumed.open();
    resumed.serverEnded('active', 'timer:reconnect', {
      endCode: 4007,
      endReason: 'reconnect_failed',
      outcome: 'failed',
    });
    assert.deepEqual(events.of('reconnecting').at(-1)?.code, 4007);
    assert.equal(session.state, 'active', 'the lost session is not shown as ended');
    h.clock.advance(policy.maxDelayMs);
    await settle();
    assert.equal(h.http.calls.length, 2);
    assert.deepEqual(h.http.calls[1]!.body, { projectId: 'demo', region: 'eu' });
    assert.equal(session.id, 's2');
    assert.equal(h.net.last.url, 'ws://usher.test/sessions/s2/ws?token=token-s2&after=now');
    h.net.last.open();
    h.net.last.receive(status('queued', 'requesting', 'admission'));
    h.net.last.receive(status('connecting', 'queued', 'worker:seated'));
    assert.deepEqual(events.of('reconnected'), [{ attempts: 2, sessionId: 's2', fresh: true }]);
    assert.deepEqual(events.of('state'), [
      { state: 'queued', previous: 'active', cause: 'reconnect:fresh' },
      { state: 'connecting', previous: 'queued', cause: 'worker:seated' },
    ]);
    assert.deepEqual(events.of('ended'), []);
  });

  test('a retryable failure to create it is retried; a final one ends the session', async () => {
    const { h, events } = await live();
    h.net.last.serverClose(4007, 'reconnect_failed');
    h.http.next.push(
      json(503, { error: { code: 'QUEUE_FULL', message: 'the queue is full', retryable: true } }),
      json(403, { error: { code: 'PROJECT_DISABLED', message: 'project "demo" is disabled' } }),
    );
    h.clock.advance(policy.maxDelayMs);
    await settle();
    h.clock.advance(policy.maxDelayMs);
    await settle();
    assert.equal(h.http.calls.length, 3);
    assert.deepEqual(
      events.of('reconnecting').map((r) => [r.attempt, r.code]),
      [
        [1, 4007],
        [2, 4007],
      ],
    );
    assert.deepEqual(events.of('error'), [
      { code: 'PROJECT_DISABLED', message: 'project "demo" is disabled', recoverable: false },
    ]);
    assert.deepEqual(events.of('ended'), [{ code: 4007, reason: 'reconnect_failed', outcome: 'failed' }]);
  });

  test('a joined session (project unknown) cannot start fresh: 4007 ends it', async () => {
    const { h, events } = await live({ join: true });
    h.net.last.serverEnded('active', 'worker:lost', {
      endCode: 4007,
      endReason: 'reconnect_failed',
      outcome: 'failed',
    });
    h.clock.advance(60_000);
    await settle();
    assert.equal(h.http.calls.length, 0);
    assert.deepEqual(events.of('reconnecting'), []);
    assert.deepEqual(events.of('ended'), [{ code: 4007, reason: 'reconnect_failed', outcome: 'failed' }]);
  });

  test("everyone in the lost session's room is reported as having left before the new room is listed", async () => {
    const { h, session, events } = await live();
    const joined = (participant: Record<string, unknown>, sessionId = 's1') => ({
      type: 'session.participant_joined',
      sessionId,
      at: '2026-01-01T00:00:00.000Z',
      participant,
    });
    const me = { identity: 'viewer-1', kind: 'viewer' };
    const agent = { identity: 'agent', kind: 'agent', name: 'Stella' };
    h.net.last.receive(joined(me));
    h.net.last.receive(joined(agent));
    lost(h);
    const before = events.all.length;
    assert.deepEqual(events.of('participantLeft'), [], 'not while the new session is being asked for');
    h.clock.advance(policy.maxDelayMs);
    await settle();
    assert.equal(session.id, 's2');
    assert.deepEqual(events.of('participantLeft'), [me, agent]);
    const fresh = h.net.last;
    fresh.open();
    fresh.receive(status('queued', 'requesting', 'admission'));
    // the new room: the same agent identity is an arrival again
    fresh.receive(joined({ identity: 'viewer-2', kind: 'viewer' }, 's2'));
    fresh.receive(joined(agent, 's2'));
    assert.deepEqual(
      events.all
        .slice(before)
        .filter(([name]) => name === 'participantJoined' || name === 'participantLeft')
        .map(([name, p]) => `${name} ${(p as { identity: string }).identity}`),
      [
        'participantLeft viewer-1',
        'participantLeft agent',
        'participantJoined viewer-2',
        'participantJoined agent',
      ],
    );
  });

  test('leave() in a `participantLeft` listener of a fresh start: no socket, and the new session is ended', async () => {
    const { h, session } = await live();
    h.net.last.receive({
      type: 'session.participant_joined',
      sessionId: 's1',
      at: '2026-01-01T00:00:00.000Z',
      participant: { identity: 'agent', kind: 'agent' },
    });
    session.on('participantLeft', () => session.leave());
    lost(h);
    h.clock.advance(policy.maxDelayMs);
    await settle();
    assert.equal(h.net.sockets.length, 1);
    assert.equal(session.state, 'ended');
    assert.deepEqual(
      h.http.calls.filter((c) => c.url.endsWith('/end')).map((c) => c.url),
      ['http://usher.test/sessions/s2/end'],
    );
  });

  test('a new session created after the viewer left is ended at once', async () => {
    const { h, session } = await live();
    h.net.last.serverClose(4007, 'reconnect_failed');
    h.clock.advance(policy.maxDelayMs);
    session.leave();
    await settle();
    assert.deepEqual(
      h.http.calls.map((c) => `${c.method} ${c.url} ${c.headers.authorization ?? ''}`),
      [
        'POST http://usher.test/sessions ',
        'POST http://usher.test/sessions ',
        'POST http://usher.test/sessions/s2/end Bearer token-s2',
      ],
    );
    assert.equal(h.net.sockets.length, 1);
  });
});
