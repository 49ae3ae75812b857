// Room messages sent while the SDK reconnects: held (up to OUTBOX_LIMIT) and sent in order once the same session's
// socket is back; never sent to a fresh session or after the end, whose promises reject with NOT_SENT.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { harness, record, settle, settledYet, status } from './fakes.ts';
import { OUTBOX_LIMIT } from './outbox.ts';
import { UsherSession } from './session.ts';

const policy = { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 3000 };

async function started() {
  const h = harness();
  const session = await UsherSession.start({
    ...h.options,
    reconnect: policy,
    server: 'http://usher.test',
    projectId: 'demo',
  });
  const events = record(session);
  h.net.last.open();
  h.net.last.receive(status('active', 'connecting', 'worker:answer'));
  return { h, session, events };
}

/** The socket the SDK reopened after a drop, open, with the server's snapshot sent or not. */
function reopen(h: ReturnType<typeof harness>, snapshot = true) {
  h.clock.advance(policy.maxDelayMs);
  const ws = h.net.last;
  ws.open();
  if (snapshot) ws.receive(status('active', 'active', 'snapshot'));
  return ws;
}

const messages = (ws: { sent: Record<string, unknown>[] }) => ws.sent.filter((f) => f.type === 'message');

describe('while reconnecting to the same session', () => {
  test('messages are held, then sent in order once the snapshot is back; an acked one settles with the ack of the frame sent', async () => {
    const { h, session, events } = await started();
    const first = h.net.last;
    first.serverClose(1006);
    assert.equal(session.sendMessage('user_text', { text: 'one' }), true, 'held');
    const two = session.sendMessageAcked('user_text', { text: 'two' });
    assert.equal(session.sendMessage('typing', null), true);
    const again = reopen(h, false);
    // open, but the snapshot has not come: what is sent now would pass what is held
    assert.equal(session.sendMessage('user_text', { text: 'four' }), true);
    assert.deepEqual(messages(again), []);
    session.on('reconnected', () => session.sendMessage('user_text', { text: 'five' }));
    again.receive(status('active', 'active', 'snapshot'));
    assert.deepEqual(messages(again), [
      { type: 'message', messageType: 'user_text', data: { text: 'one' } },
      { type: 'message', messageType: 'user_text', data: { text: 'two' }, ref: 'm1' },
      { type: 'message', messageType: 'typing', data: null },
      { type: 'message', messageType: 'user_text', data: { text: 'four' } },
      { type: 'message', messageType: 'user_text', data: { text: 'five' } },
    ]);
    assert.deepEqual(messages(first), []);
    assert.equal(events.of('reconnected').length, 1);
    assert.equal(await settledYet(two), false);
    again.receive({ type: 'message_ack', ref: 'm1', id: 'x1', at: '2026-01-01T00:00:01Z', recorded: true });
    assert.deepEqual(await two, { ref: 'm1', id: 'x1', at: '2026-01-01T00:00:01Z', recorded: true });
  });

  test('the ack timeout counts from when the held message is sent', async () => {
    const { h, session } = await started();
    h.net.last.serverClose(1006);
    const held = session.sendMessageAcked('user_text', { text: 'hi' }, { timeoutMs: 100 });
    h.clock.advance(policy.maxDelayMs - 1);
    assert.equal(await settledYet(held), false, 'held longer than its timeout, still waiting');
    reopen(h);
    h.clock.advance(99);
    assert.equal(await settledYet(held), false);
    h.clock.advance(1);
    await assert.rejects(held, { code: 'NO_ACK', message: /within 100 ms/ });
  });

  test(`at most OUTBOX_LIMIT (${OUTBOX_LIMIT}) are held: the next is refused, OUTBOX_FULL or false`, async () => {
    const { h, session } = await started();
    h.net.last.serverClose(1006);
    const held = [session.sendMessageAcked('n', 0)];
    for (let i = 1; i < OUTBOX_LIMIT; i++) assert.equal(session.sendMessage('n', i), true);
    await assert.rejects(session.sendMessageAcked('n', OUTBOX_LIMIT), {
      name: 'UsherError',
      code: 'OUTBOX_FULL',
      retryable: true,
      message: /100 messages are already waiting/,
    });
    assert.equal(session.sendMessage('n', OUTBOX_LIMIT), false);
    const again = reopen(h);
    assert.deepEqual(
      messages(again).map((f) => f.data),
      Array.from({ length: OUTBOX_LIMIT }, (_, i) => i),
    );
    assert.equal(await settledYet(held[0]!), false, 'the first is sent, waiting for its ack');
    // once sent, there is room again
    assert.equal(session.sendMessage('n', 'after'), true);
    assert.equal(messages(again).at(-1)!.data, 'after');
  });

  test('input and control frames are not held: only room messages are', async () => {
    const { h, session } = await started();
    h.net.last.serverClose(1006);
    session.markActive();
    const again = reopen(h);
    assert.deepEqual(
      again.sent.filter((f) => f.type === 'input'),
      [],
    );
  });

  test('a message too large is refused at once (TOO_LARGE), not held', async () => {
    const { h, session } = await started();
    h.net.last.serverClose(1006);
    const big = { text: 'é'.repeat(33_000) };
    assert.throws(() => session.sendMessage('user_text', big), { code: 'TOO_LARGE' });
    await assert.rejects(session.sendMessageAcked('user_text', big), { code: 'TOO_LARGE' });
    assert.deepEqual(messages(reopen(h)), []);
  });
});

describe('held messages that are never sent', () => {
  test('the SDK gives up reconnecting: nothing is sent, the acked ones reject with NOT_SENT', async () => {
    const { h, session, events } = await started();
    h.net.last.serverClose(1006);
    const held = session.sendMessageAcked('user_text', { text: 'lost' });
    session.sendMessage('user_text', { text: 'lost too' });
    for (let i = 0; i < policy.maxAttempts; i++) {
      h.clock.advance(policy.maxDelayMs);
      h.net.last.serverClose(1006);
    }
    assert.equal(events.of('ended').length, 1);
    await assert.rejects(held, {
      name: 'UsherError',
      code: 'NOT_SENT',
      retryable: false,
      message: /was not sent: the session ended \(4007, reconnect_failed\)/,
    });
    for (const ws of h.net.sockets) assert.deepEqual(messages(ws), []);
  });

  test('the session ended while the viewer was away: held messages are not sent', async () => {
    const { h, session } = await started();
    h.net.last.serverClose(1006);
    const held = session.sendMessageAcked('user_text', { text: 'late' });
    h.clock.advance(policy.maxDelayMs);
    const again = h.net.last;
    again.open();
    again.serverEnded('ending', 'timer:afk', {
      endCode: 4004,
      endReason: 'afk_timeout',
      outcome: 'disconnected',
    });
    await assert.rejects(held, { code: 'NOT_SENT', message: /ended \(4004, afk_timeout\)/ });
    assert.deepEqual(messages(again), []);
  });

  test('cancelReconnect() and leave() drop what is held', async () => {
    const canceled = await started();
    canceled.h.net.last.serverClose(1006);
    const one = canceled.session.sendMessageAcked('user_text', { text: 'x' });
    canceled.session.cancelReconnect();
    await assert.rejects(one, { code: 'NOT_SENT', message: /reconnect_canceled/ });

    const left = await started();
    left.h.net.last.serverClose(1006);
    const two = left.session.sendMessageAcked('user_text', { text: 'y' });
    left.session.leave();
    await assert.rejects(two, { code: 'NOT_SENT' });
  });

  test('a fresh session replaces the lost one: held messages reject NOT_SENT and never reach the new room', async () => {
    const { h, session } = await started();
    h.net.last.serverClose(1006);
    const held = session.sendMessageAcked('user_text', { text: 'for the old room' });
    session.sendMessage('user_text', { text: 'for the old room too' });
    h.clock.advance(policy.maxDelayMs);
    h.net.last.open();
    h.net.last.serverClose(4007, 'reconnect_failed');
    assert.equal(await settledYet(held), true, 'rejected as soon as the session is known lost');
    await assert.rejects(held, {
      code: 'NOT_SENT',
      message: /the session was lost \(4007\); a fresh one replaces it/,
    });
    // while the fresh session is being started, nothing is held: it is another room
    assert.equal(session.sendMessage('user_text', { text: 'meanwhile' }), false);
    await assert.rejects(session.sendMessageAcked('user_text', { text: 'meanwhile' }), {
      code: 'NOT_CONNECTED',
    });
    h.clock.advance(policy.maxDelayMs);
    await settle();
    assert.equal(session.id, 's2');
    const fresh = h.net.last;
    fresh.open();
    fresh.receive(status('queued', 'requesting', 'admission'));
    assert.deepEqual(messages(fresh), []);
    for (const ws of h.net.sockets) assert.deepEqual(messages(ws), []);
  });
});
