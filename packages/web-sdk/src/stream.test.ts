// The WebRTC half of a stream session: listStreamers → subscribe → answer to the offer, ICE both ways, the
// stream on the <video>, the data channel, and negotiating again after a reconnection.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeChannel, fakeStream, fakeVideo, harness, record, settle, status } from './fakes.ts';
import { UsherSession } from './session.ts';

const iceServers = [{ urls: 'stun:stun.test:3478' }];
const config = { type: 'config', peerConnectionOptions: { iceServers }, protocolVersion: '1.3.0' };

async function streamSession() {
  const h = harness();
  const video = fakeVideo();
  const session = await UsherSession.start({
    ...h.options,
    video,
    server: 'http://usher.test',
    projectId: 'demo',
  });
  const events = record(session);
  const ws = h.net.last;
  ws.open();
  return { h, session, events, video, ws };
}

describe('signalling', () => {
  test('listStreamers on config (the server answers once seated) → subscribe → answer, with ICE both ways', async () => {
    const { h, ws, events } = await streamSession();
    assert.deepEqual(ws.sent, [], 'nothing before the server says it is a stream session');
    ws.receive(config);
    assert.deepEqual(ws.sent, [{ type: 'listStreamers' }], 'asked at once, without waiting for the snapshot');
    ws.receive(status('queued', 'requesting', 'admission'));
    assert.deepEqual(ws.sent, [{ type: 'listStreamers' }], 'asked once');

    ws.receive({ type: 'streamerList', ids: ['worker-7'] });
    assert.deepEqual(ws.sent.at(-1), { type: 'subscribe', streamerId: 'worker-7' });

    ws.receive({ type: 'offer', sdp: 'offer-sdp', playerId: 'p1' });
    // a candidate right behind the offer waits for the offer to be applied
    ws.receive({ type: 'iceCandidate', candidate: { candidate: 'remote-1', sdpMid: '0', sdpMLineIndex: 0 } });
    await settle();
    const pc = h.rtc.peers[0]!;
    assert.equal(h.rtc.peers.length, 1);
    assert.deepEqual(pc.configuration, { iceServers });
    assert.deepEqual(pc.calls, [
      'setRemoteDescription:offer:offer-sdp',
      'createAnswer',
      'setLocalDescription:answer',
      'addIceCandidate:remote-1',
    ]);
    assert.deepEqual(ws.sent.at(-1), { type: 'answer', sdp: 'answer-sdp' });

    pc.localCandidate({ candidate: 'local-1', sdpMid: '0', sdpMLineIndex: 0 });
    assert.deepEqual(ws.sent.at(-1), {
      type: 'iceCandidate',
      candidate: { candidate: 'local-1', sdpMid: '0', sdpMLineIndex: 0 },
    });
    pc.onicecandidate?.({ candidate: null } as RTCPeerConnectionIceEvent);
    assert.equal(ws.sent.length, 4, 'the end of candidates is not sent');
    assert.deepEqual(events.of('error'), []);
  });

  test('the remote track plays muted and inline on the video; autoplay refusal is ignored', async () => {
    const { h, ws, video, events, session } = await streamSession();
    ws.receive(config);
    ws.receive(status('connecting', 'queued', 'worker:seated'));
    ws.receive({ type: 'offer', sdp: 'offer-sdp' });
    await settle();
    const stream = fakeStream('media-1');
    h.rtc.peers[0]!.remoteTrack(stream);
    h.rtc.peers[0]!.remoteTrack(stream); // the audio track of the same stream
    await settle();
    assert.equal(video.srcObject, stream);
    assert.equal(video.muted, true);
    assert.equal(video.playsInline, true);
    assert.equal(video.plays, 1);
    assert.deepEqual(events.of('stream'), [stream]);
    assert.equal(session.stream, stream);
  });

  test('the data channel the worker opens carries input both ways', async () => {
    const { h, ws, session, events } = await streamSession();
    ws.receive(config);
    ws.receive(status('connecting', 'queued', 'worker:seated'));
    assert.equal(session.sendInput('too early'), false);
    ws.receive({ type: 'offer', sdp: 'offer-sdp' });
    await settle();
    const channel = new FakeChannel();
    h.rtc.peers[0]!.dataChannel(channel);
    assert.equal(channel.binaryType, 'arraybuffer');
    const bytes = new Uint8Array([1, 2, 3]).buffer;
    assert.equal(session.sendInput(bytes), true);
    assert.equal(session.sendInput('text'), true);
    assert.deepEqual(channel.sent, [bytes, 'text']);
    channel.onmessage?.({ data: 'from worker' } as MessageEvent);
    assert.deepEqual(events.of('dataChannelMessage'), ['from worker']);
  });

  test('a media connection that fails asks for the stream again, three times in a row at most', async () => {
    const { h, ws, events } = await streamSession();
    ws.receive(config);
    ws.receive(status('active', 'connecting', 'worker:started'));
    const negotiate = async (n: number) => {
      ws.receive({ type: 'streamerList', ids: ['worker-7'] });
      ws.receive({ type: 'offer', sdp: `offer-${n}`, playerId: `p${n}` });
      await settle();
      return h.rtc.peers.at(-1)!;
    };
    const fail = (pc: (typeof h.rtc.peers)[number]) => {
      pc.connectionState = 'failed';
      pc.onconnectionstatechange?.({} as Event);
    };
    // a failure, then a connection that works: the count starts again
    fail(await negotiate(1));
    assert.deepEqual(ws.sent.at(-1), { type: 'listStreamers' }, 'the stream is asked for again');
    const good = await negotiate(2);
    good.connectionState = 'connected';
    good.onconnectionstatechange?.({} as Event);
    fail(good);
    for (let i = 3; i <= 5; i++) fail(await negotiate(i));
    const errors = events.of('error') as { code: string; recoverable: boolean; message: string }[];
    assert.deepEqual(
      errors.map((e) => [e.code, e.recoverable]),
      [
        ['WEBRTC_FAILED', true],
        ['WEBRTC_FAILED', true],
        ['WEBRTC_FAILED', true],
        ['WEBRTC_FAILED', true],
        ['WEBRTC_FAILED', false],
      ],
    );
    assert.match(errors.at(-1)!.message, /4 times in a row.*TURN/);
    assert.equal(
      h.rtc.peers.every((pc) => pc.closed),
      true,
      'every failed connection is closed',
    );
    assert.equal(
      ws.sent.filter((m) => m.type === 'listStreamers').length,
      1 + 4,
      'not asked again after the last',
    );
  });

  test('subscribeFailed is reported as an error', async () => {
    const { ws, events } = await streamSession();
    ws.receive(config);
    ws.receive(status('connecting', 'queued', 'worker:seated'));
    ws.receive({ type: 'subscribeFailed', message: 'no such streamer' });
    assert.deepEqual(events.of('error'), [
      {
        code: 'SUBSCRIBE_FAILED',
        message: 'the server refused the stream subscription: no such streamer',
        recoverable: false,
      },
    ]);
  });

  test('an agent session (no config) does not signal', async () => {
    const { h, ws } = await streamSession();
    ws.receive(status('active', 'connecting', 'worker:ready'));
    ws.receive({ type: 'offer', sdp: 'offer-sdp' });
    await settle();
    assert.deepEqual(ws.sent, []);
    assert.equal(h.rtc.peers.length, 0);
  });

  test('after a reconnection the peer connection is closed and negotiated again', async () => {
    const { h, ws, events } = await streamSession();
    ws.receive(config);
    ws.receive(status('active', 'connecting', 'worker:answer'));
    ws.receive({ type: 'offer', sdp: 'offer-1' });
    await settle();
    const first = h.rtc.peers[0]!;
    ws.serverClose(1006);
    assert.equal(first.closed, true);
    h.clock.advance(events.of('reconnecting')[0]!.delayMs);
    const again = h.net.last;
    assert.notEqual(again, ws);
    again.open();
    again.receive(config);
    again.receive(status('active', 'connecting', 'worker:answer'));
    assert.deepEqual(again.sent, [{ type: 'listStreamers' }]);
    again.receive({ type: 'streamerList', ids: ['worker-7'] });
    again.receive({ type: 'offer', sdp: 'offer-2' });
    await settle();
    assert.equal(h.rtc.peers.length, 2);
    assert.equal(h.rtc.peers[1]!.calls[0], 'setRemoteDescription:offer:offer-2');
    assert.deepEqual(
      again.sent.map((m) => m.type),
      ['listStreamers', 'subscribe', 'answer'],
    );
  });

  test('the session ending closes the peer connection and clears the video', async () => {
    const { h, ws, video, session } = await streamSession();
    ws.receive(config);
    ws.receive(status('active', 'connecting', 'worker:answer'));
    ws.receive({ type: 'offer', sdp: 'offer-sdp' });
    await settle();
    h.rtc.peers[0]!.remoteTrack(fakeStream('media-1'));
    session.leave();
    assert.equal(h.rtc.peers[0]!.closed, true);
    assert.equal(video.srcObject, null);
    assert.equal(session.stream, null);
  });
});
