// Talking in a session's room: acknowledged messages, invitations, and who this participant is.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ACK_TIMEOUT_MS } from './acks.ts';
import { UsherError } from './errors.ts';
import { harness, json, record, settledYet, status } from './fakes.ts';
import { tokenIdentity } from './identity.ts';
import { UsherSession } from './session.ts';

/** A token shaped like the server's: header.payload.signature, base64url, with the identity claim. */
function fakeToken(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ role: 'viewer', sid: 's1', ...claims })}.c2ln`;
}

async function joined() {
  const h = harness();
  const session = await UsherSession.join({
    ...h.options,
    url: 'ws://usher.test/sessions/s1/ws?token=token-s1',
  });
  const events = record(session);
  const ws = h.net.last;
  ws.open();
  ws.receive(status('active', 'connecting', 'worker:started'));
  return { h, session, events, ws };
}

describe('sendMessageAcked', () => {
  test('sends the message with a ref and resolves with the ack that names it', async () => {
    const { session, ws } = await joined();
    const first = session.sendMessageAcked('user_text', { text: 'hello' });
    const second = session.sendMessageAcked('typing', null);
    assert.deepEqual(ws.sent, [
      { type: 'message', messageType: 'user_text', data: { text: 'hello' }, ref: 'm1' },
      { type: 'message', messageType: 'typing', data: null, ref: 'm2' },
    ]);
    // answered out of order: each promise gets its own
    ws.receive({
      type: 'message_ack',
      ref: 'm2',
      id: 'msg-b',
      at: '2026-01-01T00:00:00.000002Z',
      recorded: false,
    });
    assert.equal(await settledYet(first), false);
    ws.receive({
      type: 'message_ack',
      ref: 'm1',
      id: 'msg-a',
      at: '2026-01-01T00:00:00.000001Z',
      recorded: true,
    });
    assert.deepEqual(await first, {
      ref: 'm1',
      id: 'msg-a',
      at: '2026-01-01T00:00:00.000001Z',
      recorded: true,
    });
    assert.deepEqual(await second, {
      ref: 'm2',
      id: 'msg-b',
      at: '2026-01-01T00:00:00.000002Z',
      recorded: false,
    });
  });

  test("the server's refusal rejects that message's promise (not the error event); others still resolve", async () => {
    const { session, events, ws } = await joined();
    const refused = session.sendMessageAcked('user_text', { text: 'x'.repeat(10) });
    const fine = session.sendMessageAcked('user_text', { text: 'ok' });
    ws.receive({ type: 'error', code: 'RATE_LIMITED', message: 'too many messages', ref: 'm1' });
    await assert.rejects(refused, (err: unknown) => {
      assert.ok(err instanceof UsherError);
      assert.equal(err.code, 'RATE_LIMITED');
      assert.equal(err.message, 'too many messages');
      assert.equal(err.retryable, true);
      return true;
    });
    ws.receive({ type: 'message_ack', ref: 'm2', id: 'x2', at: '2026-01-01T00:00:00Z', recorded: true });
    assert.equal((await fine).id, 'x2');
    assert.deepEqual(events.of('error'), []);
    // an error frame for a ref nobody waits for is still an error event
    ws.receive({ type: 'error', code: 'TOO_LARGE', message: 'too big', ref: 'm9' });
    assert.deepEqual(
      events.of('error'),
      [{ code: 'TOO_LARGE', message: 'too big', recoverable: true }],
      'the server refused one frame: the session goes on',
    );
  });

  test('not open: rejects with NOT_CONNECTED and sends nothing; sendMessage still answers false', async () => {
    const h = harness();
    const session = await UsherSession.join({
      ...h.options,
      url: 'ws://usher.test/sessions/s1/ws?token=token-s1',
    });
    await assert.rejects(session.sendMessageAcked('user_text', { text: 'early' }), {
      code: 'NOT_CONNECTED',
      retryable: true,
    });
    assert.equal(session.sendMessage('user_text', { text: 'early' }), false);
    assert.deepEqual(h.net.last.sent, []);
  });

  test('no ack in time rejects with NO_ACK after timeoutMs; a late ack changes nothing', async () => {
    const { h, session, ws } = await joined();
    const waiting = session.sendMessageAcked('user_text', { text: 'hi' });
    const quick = session.sendMessageAcked('user_text', { text: 'hi' }, { timeoutMs: 100 });
    h.clock.advance(99);
    assert.equal(await settledYet(quick), false);
    h.clock.advance(1);
    await assert.rejects(quick, { code: 'NO_ACK', message: /within 100 ms/ });
    h.clock.advance(ACK_TIMEOUT_MS - 101);
    assert.equal(await settledYet(waiting), false);
    h.clock.advance(1);
    await assert.rejects(waiting, { code: 'NO_ACK' });
    ws.receive({ type: 'message_ack', ref: 'm1', id: 'late', at: '2026-01-01T00:00:00Z', recorded: true });
  });

  test('the connection drops before the ack: NO_ACK at once; after reconnecting, acks work again', async () => {
    const { h, session, ws } = await joined();
    const lost = session.sendMessageAcked('user_text', { text: 'in flight' });
    ws.serverClose(1006);
    assert.equal(await settledYet(lost), true, 'settled at once, not at the ack timeout');
    await assert.rejects(lost, { code: 'NO_ACK', message: /closed \(1006\)/ });
    h.clock.advance(60_000);
    const again = h.net.last;
    assert.notEqual(again, ws, 'the SDK reconnected');
    again.open();
    again.receive(status('active', null, 'snapshot'));
    const sent = session.sendMessageAcked('user_text', { text: 'after' });
    assert.equal(again.sent.at(-1)!.ref, 'm2');
    again.receive({ type: 'message_ack', ref: 'm2', id: 'x', at: '2026-01-01T00:00:00Z', recorded: true });
    assert.equal((await sent).id, 'x');
  });

  test('leaving rejects what is still pending', async () => {
    const { session } = await joined();
    const pending = session.sendMessageAcked('user_text', { text: 'bye' });
    session.leave();
    assert.equal(await settledYet(pending), true);
    await assert.rejects(pending, { code: 'NO_ACK', message: /ended first/ });
  });
});

describe('limits and what a reopened socket repeats', () => {
  test('a message over the server’s 64 KiB frame limit is refused here with TOO_LARGE, and nothing is sent', async () => {
    const { session, ws, events } = await joined();
    const big = { text: 'é'.repeat(33_000) }; // 33,000 characters, 66,000 bytes in UTF-8
    assert.throws(() => session.sendMessage('user_text', big), { name: 'UsherError', code: 'TOO_LARGE' });
    await assert.rejects(session.sendMessageAcked('user_text', big), { code: 'TOO_LARGE' });
    assert.deepEqual(
      ws.sent.filter((f) => f.type === 'message'),
      [],
    );
    // just under the limit goes, with its ref
    assert.equal(session.sendMessage('user_text', { text: 'x'.repeat(60_000) }), true);
    const acked = session.sendMessageAcked('user_text', { text: 'y'.repeat(60_000) });
    const sent = ws.sent.filter((f) => f.type === 'message');
    assert.equal(sent.length, 2);
    assert.equal(sent[1]!.ref, 'm1');
    assert.deepEqual(events.of('ended'), []);
    ws.receive({ type: 'message_ack', ref: 'm1', id: 'x1', at: '2026-01-01T00:00:00Z', recorded: true });
    await acked;
  });

  test('who is in the room is news once: a reopened socket lists everyone again, and only newcomers are announced', async () => {
    const { h, events, ws } = await joined();
    const ana = { identity: 'ana', kind: 'viewer' };
    const bo = { identity: 'bo', kind: 'user' };
    const cy = { identity: 'cy', kind: 'user' };
    const joinedEvent = (participant: Record<string, unknown>) => ({
      type: 'session.participant_joined',
      sessionId: 's1',
      at: '2026-01-01T00:00:00.000Z',
      participant,
    });
    ws.receive(joinedEvent(ana));
    ws.receive(joinedEvent(bo));
    ws.serverClose(1006);
    h.clock.advance(10_000);
    const again = h.net.last;
    again.open();
    again.receive(status('active', 'connecting', 'worker:started'));
    for (const p of [ana, bo, cy]) again.receive(joinedEvent(p));
    assert.deepEqual(
      events.of('participantJoined').map((p) => p.identity),
      ['ana', 'bo', 'cy'],
    );
    // one who left and came back is news again
    again.receive({ ...joinedEvent(bo), type: 'session.participant_left' });
    again.receive(joinedEvent(bo));
    assert.deepEqual(
      events.of('participantJoined').map((p) => p.identity),
      ['ana', 'bo', 'cy', 'bo'],
    );
    // a departure told twice (heard live, then replayed after a reconnect) is news once
    again.receive({ ...joinedEvent(cy), type: 'session.participant_left' });
    again.receive({ ...joinedEvent(cy), type: 'session.participant_left' });
    assert.deepEqual(
      events.of('participantLeft').map((p) => p.identity),
      ['bo', 'cy'],
    );
  });

  test('a reopened socket asks for what it missed since the newest message heard; a message that comes twice is dropped', async () => {
    const { h, events, ws } = await joined();
    const message = (id: string, at: string) => ({
      type: 'session.message',
      sessionId: 's1',
      at,
      message: {
        id,
        sessionId: 's1',
        type: 'user_text',
        from: { identity: 'bo', kind: 'user' },
        at,
        data: {},
      },
    });
    // the first socket asks to hear from now on; the server says where that is
    assert.equal(new URL(ws.url).searchParams.get('after'), 'now');
    ws.receive({ type: 'replayed', upto: '2026-01-01T00:00:00.000100Z', count: 0, complete: true });
    ws.serverClose(1006);
    h.clock.advance(10_000);
    const second = h.net.last;
    assert.equal(new URL(second.url).searchParams.get('after'), '2026-01-01T00:00:00.000100Z');
    assert.equal(new URL(second.url).searchParams.get('after_id'), null);
    second.open();
    second.receive(status('active', 'active', 'snapshot'));
    second.receive(message('m1', '2026-01-01T00:00:01.000000Z'));
    second.receive(message('m2', '2026-01-01T00:00:02.000000Z'));
    second.receive({ type: 'replayed', upto: '2026-01-01T00:00:01.500000Z', count: 2, complete: true });
    // relayed through another server, it came live as well as in the replay
    second.receive(message('m2', '2026-01-01T00:00:02.000000Z'));
    assert.deepEqual(
      events.of('message').map((m) => m.id),
      ['m1', 'm2'],
    );
    second.serverClose(1006);
    h.clock.advance(10_000);
    const third = h.net.last;
    // the newest message heard is later than where the replay stopped: the cursor is that message
    assert.equal(new URL(third.url).searchParams.get('after'), '2026-01-01T00:00:02.000000Z');
    assert.equal(new URL(third.url).searchParams.get('after_id'), 'm2');
    assert.equal(new URL(third.url).searchParams.get('token'), 'token-s1');
    third.open();
    third.receive(status('active', 'active', 'snapshot'));
    third.receive({ type: 'replayed', upto: '2026-01-01T00:00:09.000000Z', count: 1000, complete: false });
    assert.deepEqual(
      events.of('error').map((e) => [e.code, e.recoverable]),
      [['REPLAY_INCOMPLETE', true]],
    );
  });

  test('an error that refuses the connection (before its snapshot) is not recoverable, unless it failed on the server', async () => {
    const h = harness();
    const session = await UsherSession.join({ ...h.options, url: 'ws://usher.test/sessions/s1/ws?token=tk' });
    const events = record(session);
    h.net.last.open();
    h.net.last.receive({ type: 'error', code: 'INTERNAL', message: 'could not open the session socket' });
    h.net.last.serverClose(1011);
    h.clock.advance(10_000);
    h.net.last.open();
    h.net.last.receive({ type: 'error', code: 'UNAUTHORIZED', message: 'the token has expired' });
    assert.deepEqual(
      events.of('error').map((e) => [e.code, e.recoverable]),
      [
        ['INTERNAL', true],
        ['UNAUTHORIZED', false],
      ],
    );
    session.leave();
  });
});

describe('invitations', () => {
  test('invite() asks POST /join with this participant token and answers a ticket with its socket URL', async () => {
    const { h, session } = await joined();
    h.http.next.push(
      json(200, { token: 'tok-u1', url: 'ws://usher.test/sessions/s1/ws', identity: 'user-u1' }),
    );
    const invite = await session.invite({ role: 'user' });
    assert.deepEqual(invite, {
      token: 'tok-u1',
      url: 'ws://usher.test/sessions/s1/ws?token=tok-u1',
      identity: 'user-u1',
    });
    assert.deepEqual(h.http.calls, [
      {
        url: 'http://usher.test/sessions/s1/join',
        method: 'POST',
        headers: { authorization: 'Bearer token-s1', 'content-type': 'application/json' },
        body: { role: 'user' },
      },
    ]);
  });

  test('in a session whose rooms are on LiveKit, an invitation is for a LiveKit client: its URL is given as it is', async () => {
    const { h, session } = await joined();
    h.http.next.push(json(200, { token: 'lk-token', url: 'wss://livekit.example.com', identity: 'user-u2' }));
    const invite = await session.invite();
    assert.deepEqual(invite, { token: 'lk-token', url: 'wss://livekit.example.com', identity: 'user-u2' });
    await assert.rejects(UsherSession.acceptInvite({ ...h.options, url: invite.url, token: invite.token }), {
      code: 'BAD_OPTIONS',
      message: /LiveKit client/,
    });
  });

  test('acceptInvite() exchanges the invite token for its own and connects with it, under its identity', async () => {
    const h = harness();
    h.http.next.push(json(200, { token: 'tok-bo', url: 'ws://usher.test/sessions/s1/ws', identity: 'Bo' }));
    const session = await UsherSession.acceptInvite({
      ...h.options,
      url: 'ws://usher.test/sessions/s1/ws?token=tok-invite',
      identity: 'Bo',
    });
    assert.deepEqual(h.http.calls[0], {
      url: 'http://usher.test/sessions/s1/join',
      method: 'POST',
      headers: { authorization: 'Bearer tok-invite', 'content-type': 'application/json' },
      body: { identity: 'Bo' },
    });
    assert.equal(session.identity, 'Bo');
    assert.equal(session.id, 's1');
    assert.equal(h.net.last.url, 'ws://usher.test/sessions/s1/ws?token=tok-bo&after=now');
  });

  test('an invite to an ended session rejects with the server error, and no socket is opened', async () => {
    const h = harness();
    h.http.next.push(
      json(409, {
        error: { code: 'ILLEGAL_TRANSITION', message: 'session "s1" is ended; nobody can join it' },
      }),
    );
    await assert.rejects(
      UsherSession.acceptInvite({ ...h.options, url: 'ws://usher.test/sessions/s1/ws?token=t' }),
      { code: 'ILLEGAL_TRANSITION', status: 409 },
    );
    assert.equal(h.net.sockets.length, 0);
  });

  test('an answer without token, url and identity is BAD_RESPONSE', async () => {
    const { h, session } = await joined();
    h.http.next.push(json(200, { token: 'x' }));
    await assert.rejects(session.invite(), { code: 'BAD_RESPONSE' });
  });
});

describe('identity', () => {
  test("is read from the session token's identity claim, and null for a token the SDK cannot read", async () => {
    assert.equal(tokenIdentity(fakeToken({ idn: 'viewer-Ab3' })), 'viewer-Ab3');
    assert.equal(tokenIdentity(fakeToken({ idn: 'Zoë' })), 'Zoë', 'UTF-8 identities survive');
    assert.equal(tokenIdentity(fakeToken({})), null);
    assert.equal(tokenIdentity('token-s1'), null);
    assert.equal(tokenIdentity('a.%%%.c'), null);
    const h = harness();
    const token = fakeToken({ idn: 'viewer-1' });
    const session = await UsherSession.join({
      ...h.options,
      url: `ws://usher.test/sessions/s1/ws?token=${token}`,
    });
    assert.equal(session.identity, 'viewer-1');
  });
});
