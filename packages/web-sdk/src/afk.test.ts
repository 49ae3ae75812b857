// AFK on the viewer's side: input reports (at most one a second), the warning, its countdown and its dismissal,
// and the SDK's own stricter threshold.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type FakeVideo, fakeVideo, harness, record, status } from './fakes.ts';
import type { AfkOptions } from './options.ts';
import { UsherSession } from './session.ts';

const at = '2026-01-01T00:00:00.000Z';

async function live(afk?: AfkOptions) {
  const h = harness();
  const video = fakeVideo();
  const session = await UsherSession.start({
    ...h.options,
    video,
    ...(afk ? { afk } : {}),
    server: 'http://usher.test',
    projectId: 'demo',
  });
  const ws = h.net.last;
  ws.open();
  ws.receive(status('active', 'connecting', 'worker:answer'));
  const events = record(session);
  return { h, session, ws, video, events };
}

function press(video: FakeVideo, type = 'keydown'): void {
  video.page.dispatchEvent(new Event(type));
}

function inputs(sent: Record<string, unknown>[]): number {
  return sent.filter((m) => m.type === 'input').length;
}

describe('input reports', () => {
  test('input on the page is reported at most once a second', async () => {
    const { h, ws, video } = await live();
    press(video, 'mousemove');
    assert.equal(inputs(ws.sent), 1);
    h.clock.advance(300);
    press(video, 'wheel');
    h.clock.advance(699);
    press(video, 'keydown');
    assert.equal(inputs(ws.sent), 1);
    h.clock.advance(1);
    press(video, 'touchstart');
    assert.equal(inputs(ws.sent), 2);
    h.clock.advance(1000);
    press(video, 'mousedown');
    assert.equal(inputs(ws.sent), 3);
  });

  test('sendInput() and markActive() count as input too', async () => {
    const { h, session, ws } = await live();
    session.sendInput('x');
    session.markActive();
    assert.equal(inputs(ws.sent), 1);
    h.clock.advance(1000);
    session.markActive();
    assert.equal(inputs(ws.sent), 2);
  });

  test('with trackDom: false (or AFK disabled) the page is not watched', async () => {
    for (const afk of [{ trackDom: false }, { enabled: false }]) {
      const { session, ws, video } = await live(afk);
      press(video);
      assert.equal(inputs(ws.sent), 0);
      session.markActive();
      assert.equal(inputs(ws.sent), 1);
    }
  });

  test('the page is no longer watched once the session ended', async () => {
    const { session, video } = await live();
    assert.equal(video.page.listeners, 5);
    session.leave();
    assert.equal(video.page.listeners, 0);
  });
});

describe('the server warning', () => {
  test('warning → a countdown tick each second → input dismisses it and is reported at once', async () => {
    const { h, ws, video, events } = await live();
    press(video);
    h.clock.advance(100);
    ws.receive({
      type: 'session.afk_warning',
      sessionId: 's1',
      at,
      disconnectAt: '2026-01-01T00:02:30.000Z',
      remainingMs: 30_000,
    });
    ws.receive(status('idle', 'active', 'timer:afk_warning'));
    h.clock.advance(3000);
    press(video);
    assert.equal(inputs(ws.sent), 2, 'reported at once, although the last report was less than a second ago');
    h.clock.advance(5000);
    assert.deepEqual(events.all, [
      ['afkWarning', { remainingMs: 30_000, disconnectAt: '2026-01-01T00:02:30.000Z' }],
      ['state', { state: 'idle', previous: 'active', cause: 'timer:afk_warning' }],
      ['afkCountdown', { remainingMs: 29_000 }],
      ['afkCountdown', { remainingMs: 28_000 }],
      ['afkCountdown', { remainingMs: 27_000 }],
      ['afkDismissed', { by: 'input' }],
    ]);
    ws.receive(status('active', 'idle', 'viewer:input'));
    assert.equal(events.of('afkDismissed').length, 1, 'the server confirming does not dismiss it twice');
  });

  test('the server going back to active dismisses the warning (by: server)', async () => {
    const { h, ws, events } = await live({ trackDom: false });
    ws.receive({ type: 'session.afk_warning', sessionId: 's1', at, disconnectAt: at, remainingMs: 10_000 });
    ws.receive(status('idle', 'active', 'timer:afk_warning'));
    ws.receive(status('active', 'idle', 'viewer:input'));
    h.clock.advance(5000);
    assert.deepEqual(events.of('afkDismissed'), [{ by: 'server' }]);
    assert.deepEqual(events.of('afkCountdown'), []);
  });

  test('the countdown stops at zero; the server, not the SDK, ends the session', async () => {
    const { h, ws, session, events } = await live();
    ws.receive({ type: 'session.afk_warning', sessionId: 's1', at, disconnectAt: at, remainingMs: 2500 });
    h.clock.advance(10_000);
    assert.deepEqual(
      events.of('afkCountdown').map((c) => c.remainingMs),
      [1500, 500, 0],
    );
    assert.equal(session.state, 'active');
    assert.equal(ws.closedWith, null);
  });
});

describe('the SDK’s own threshold (afk.warnAfterMs)', () => {
  test('warns after warnAfterMs without input, counting from the last input', async () => {
    const { h, video, events } = await live({ warnAfterMs: 60_000, disconnectAfterMs: 10_000 });
    h.clock.advance(40_000);
    press(video);
    h.clock.advance(59_999);
    assert.deepEqual(events.of('afkWarning'), []);
    h.clock.advance(1);
    assert.deepEqual(events.of('afkWarning'), [
      { remainingMs: 10_000, disconnectAt: new Date(h.clock.time + 10_000).toISOString() },
    ]);
  });

  test('no input until its disconnect: the SDK leaves (4004 to the server, which records afk_timeout) and ends with 4004 afk_timeout', async () => {
    const { h, ws, session, events } = await live({ warnAfterMs: 60_000, disconnectAfterMs: 3000 });
    h.clock.advance(63_000);
    assert.deepEqual(
      events.of('afkCountdown').map((c) => c.remainingMs),
      [2000, 1000, 0],
    );
    assert.deepEqual(ws.closedWith, { code: 4004, reason: undefined });
    assert.equal(session.state, 'ended');
    assert.deepEqual(events.of('ended'), [{ code: 4004, reason: 'afk_timeout', outcome: 'disconnected' }]);
  });

  test('input during its warning dismisses it and starts the wait again', async () => {
    const { h, video, session, events } = await live({ warnAfterMs: 60_000, disconnectAfterMs: 3000 });
    h.clock.advance(61_000);
    press(video);
    h.clock.advance(59_000);
    assert.equal(session.state, 'active');
    assert.equal(events.of('afkWarning').length, 1);
    assert.deepEqual(events.of('afkDismissed'), [{ by: 'input' }]);
    h.clock.advance(1000);
    assert.equal(events.of('afkWarning').length, 2);
  });

  test('does not run while the session is not live', async () => {
    const { h, ws, events } = await live({ warnAfterMs: 60_000 });
    ws.receive(status('paused', 'active', 'user:pause'));
    h.clock.advance(10 * 60_000);
    assert.deepEqual(events.of('afkWarning'), []);
    ws.receive(status('active', 'paused', 'user:resume'));
    h.clock.advance(60_000);
    assert.equal(events.of('afkWarning').length, 1);
  });
});
