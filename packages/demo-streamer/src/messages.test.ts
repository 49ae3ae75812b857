// Parsing what the signalling server sends a streamer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServerSignal } from './messages.ts';

const parse = (m: unknown) => parseServerSignal(JSON.stringify(m));

test('config keeps the ICE servers of peerConnectionOptions, and only well-formed ones', () => {
  const stun = { urls: ['stun:stun.example.org:3478'] };
  const turn = { urls: 'turn:turn.example.org', username: 'u', credential: 'c' };
  assert.deepEqual(
    parse({ type: 'config', peerConnectionOptions: { iceServers: [stun, { urls: 3 }, turn] } }),
    {
      type: 'config',
      iceServers: [stun, turn],
    },
  );
  assert.deepEqual(parse({ type: 'config', protocolVersion: '1.3.0' }), { type: 'config', iceServers: [] });
});

test('player messages carry the playerId as a string', () => {
  assert.deepEqual(parse({ type: 'playerConnected', playerId: 7, dataChannel: true, sendOffer: true }), {
    type: 'playerConnected',
    playerId: '7',
    sessionId: null,
  });
  assert.deepEqual(parse({ type: 'playerConnected', playerId: 'p', sessionId: 's_1' }), {
    type: 'playerConnected',
    playerId: 'p',
    sessionId: 's_1',
  });
  assert.deepEqual(parse({ type: 'answer', playerId: 'p', sdp: 'v=0' }), {
    type: 'answer',
    playerId: 'p',
    sdp: 'v=0',
  });
  assert.deepEqual(
    parse({
      type: 'iceCandidate',
      playerId: 'p',
      candidate: { candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 },
    }),
    {
      type: 'iceCandidate',
      playerId: 'p',
      candidate: { candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 },
    },
  );
  assert.equal(parse({ type: 'playerDisconnected' }), 'playerDisconnected without a playerId');
  assert.equal(
    parse({ type: 'iceCandidate', playerId: 'p', candidate: {} }),
    'iceCandidate without a candidate',
  );
});

test('handshake and keep-alive messages', () => {
  assert.deepEqual(parse({ type: 'identify' }), { type: 'identify' });
  assert.deepEqual(parse({ type: 'endpointIdConfirm', committedId: 'w1' }), {
    type: 'endpointIdConfirm',
    committedId: 'w1',
  });
  assert.deepEqual(parse({ type: 'ping', time: 5 }), { type: 'ping', time: 5 });
  assert.deepEqual(parse({ type: 'layerPreference', playerId: 'p' }), {
    type: 'ignored',
    original: 'layerPreference',
  });
});

test('what is not a message says why', () => {
  assert.equal(parseServerSignal('{'), 'not JSON');
  assert.equal(parse([1]), 'not an object with a string "type"');
  assert.equal(parse({ type: 'teleport' }), 'unknown message type teleport');
});
